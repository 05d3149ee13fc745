//! The one loop every target runs: draw the swarm, then lives until the op budget is spent (an
//! open checked by the oracle, steps until a crash point, a poisoned handle or a clean reopen,
//! a crash and rot between lives), then the fault-free final phase.

use rand::Rng;

use super::target::{Checked, Opened, Step, Target};
use super::{apply_canary, Context, Failure, OPEN_ATTEMPTS_MAX};
use crate::fail;
use ballast::{Error, RecoveryMode};

/// How a life ended.
enum End {
    /// Power failed, or the life chose to cut it.
    Crash,
    /// Dropped without `close`: like a process that exits, everything synced stays.
    Drop,
    /// Closed with `close`.
    Close,
}

/// Runs target `T` for one seed. Returns the swarm line, with the failure if one was found.
pub fn run<T: Target>(context: &mut Context) -> Result<String, (String, Failure)> {
    let (mut target, mut faults) = T::draw(context);
    apply_canary(context.canary, &mut faults);
    let swarm = format!(
        "target={} seed={} ops={} {} faults: {faults}",
        T::NAME,
        context.seed,
        context.ops_budget,
        target.describe()
    );
    context.trace(format_args!("swarm {swarm}"));
    context.vfs.set_config(faults);
    match lives(&mut target, context).and_then(|()| final_phase(&mut target, context)) {
        Ok(()) => Ok(swarm),
        Err(failure) => Err((swarm, failure)),
    }
}

/// Lives until the op budget is spent.
fn lives<T: Target>(target: &mut T, context: &mut Context) -> Result<(), Failure> {
    let mut after_crash = false;
    let mut failed_opens = 0;
    while context.ops < context.ops_budget {
        let Some(mut handle) = reopen_after_failures(target, context, after_crash, &mut failed_opens)? else {
            after_crash = true;
            continue;
        };
        let crash = match life(target, context, &mut handle)? {
            End::Close => close(target, context, handle)?,
            end => {
                drop(handle);
                matches!(end, End::Crash)
            }
        };
        after_crash = crash;
        if crash {
            self::crash(target, context);
        }
    }
    Ok(())
}

/// One open, counted: power failing during recovery this many times in a row fails the seed.
fn reopen_after_failures<T: Target>(
    target: &mut T,
    context: &mut Context,
    after_crash: bool,
    failed_opens: &mut u32,
) -> Result<Option<T::Handle>, Failure> {
    let handle = open_and_check(target, context, after_crash)?;
    if handle.is_some() {
        *failed_opens = 0;
        return Ok(handle);
    }
    *failed_opens += 1;
    if *failed_opens > OPEN_ATTEMPTS_MAX {
        fail!("the {noun} could not be reopened {OPEN_ATTEMPTS_MAX} times in a row", noun = T::NOUN);
    }
    Ok(None)
}

/// Liveness, on a perfect disk: the target reopens, then runs its final work.
fn final_phase<T: Target>(target: &mut T, context: &mut Context) -> Result<(), Failure> {
    context.vfs.set_faults_enabled(false);
    context.trace(format_args!("phase final"));
    let mut failed_opens = 0;
    let handle = loop {
        if let Some(handle) = reopen_after_failures(target, context, true, &mut failed_opens)? {
            break handle;
        }
    };
    target.final_phase(context, handle)
}

/// Opens (strict, then repair if strict reports corruption) and has the oracle check what was
/// recovered. `None` if power failed during recovery (the disk has been crashed: open again)
/// or the check asks for another open.
pub fn open_and_check<T: Target>(
    target: &mut T,
    context: &mut Context,
    after_crash: bool,
) -> Result<Option<T::Handle>, Failure> {
    context.arm_crash_in_recovery(after_crash, T::RECOVERY_CRASH_IO_CALLS);
    let before = target.before_open(context);
    let mut damage = std::mem::take(&mut context.carried_damage);
    let mut mode = RecoveryMode::Strict;
    for attempt in 0..OPEN_ATTEMPTS_MAX {
        if T::EASES_FAILING_OPENS && attempt >= OPEN_ATTEMPTS_MAX / 2 {
            context.ease_io_errors();
        }
        context.gather_damage(&mut damage);
        context.trace(format_args!("op open {mode:?}"));
        match target.open(context, mode) {
            Ok(handle) => {
                if context.vfs.is_powered_off() {
                    fail!("open returned Ok although power failed during it");
                }
                // A crash point meant for recovery that recovery did not reach is void.
                context.vfs.disarm_crash();
                let opened = Opened { mode, damage: &damage, before: &before, after_crash };
                return Ok(match target.check_recovered(context, &handle, &opened)? {
                    Checked::Sound => Some(handle),
                    Checked::Reopen => {
                        context.carried_damage = damage;
                        None
                    }
                });
            }
            Err(_) if context.vfs.is_powered_off() => {
                context.note("crash_during_recovery");
                crash(target, context);
                return Ok(None);
            }
            Err(error @ Error::Io { .. }) => context.open_failed(&error, target.space_to_free()),
            Err(error @ Error::Corruption { .. }) if mode == RecoveryMode::Strict => {
                if !target.explains_corruption(&damage, &error) {
                    fail!("strict open reported corruption the disk did not cause: {error} (damage: {damage:?})");
                }
                context.note("corruption_reported");
                mode = RecoveryMode::Repair;
            }
            Err(Error::Corruption { file, .. })
                if T::RETRIES_REPAIR_ON_DAMAGE && context.vfs.damage().iter().any(|damage| damage.path == file) =>
            {
                // The repair's own writes met the failing disk; open again.
                context.note("repair_retried");
            }
            Err(error) => fail!("open ({mode:?}) failed: {error}"),
        }
    }
    fail!("open failed {OPEN_ATTEMPTS_MAX} times in a row")
}

/// One life: operations until a crash point, a poisoned handle, or a clean reopen.
fn life<T: Target>(target: &mut T, context: &mut Context, handle: &mut T::Handle) -> Result<End, Failure> {
    let plan = context.plan_life(T::LIFE_CRASH_IO_CALLS);
    for step in 0..plan.length {
        if context.ops >= context.ops_budget {
            return Ok(End::Crash);
        }
        context.arm_planned_crash(&plan, step);
        context.ops += 1;
        let outcome = target.step(context, handle)?;
        if context.vfs.is_powered_off() {
            return Ok(End::Crash);
        }
        target.after_step(context, handle)?;
        match outcome {
            Step::Continue => {}
            Step::Poisoned => {
                context.expect_poisoned(T::sync(handle), T::NOUN)?;
                return Ok(if context.rng.gen_bool(0.5) { End::Crash } else { End::Drop });
            }
            Step::Reopen if T::CLOSES_ON_REOPEN => {
                return Ok(if context.rng.gen_bool(0.5) { End::Close } else { End::Drop })
            }
            Step::Reopen => return Ok(End::Drop),
        }
    }
    Ok(End::Crash)
}

/// Closes the handle; whether the reopen comes after a crash. A close that returns makes every
/// write durable; one that fails leaves the structure as a failed sync does.
fn close<T: Target>(target: &mut T, context: &mut Context, handle: T::Handle) -> Result<bool, Failure> {
    context.trace(format_args!("op close"));
    let result = T::close(handle);
    if context.vfs.is_powered_off() {
        return Ok(true);
    }
    match result {
        Ok(()) => {
            target.closed();
            context.note("closed");
            Ok(false)
        }
        Err(Error::Io { .. }) => Ok(context.rng.gen_bool(0.5)),
        Err(error) => fail!("close failed: {error}"),
    }
}

/// Cuts power, then rots what the target says the oracle can hold the engine to.
fn crash<T: Target>(target: &T, context: &mut Context) {
    context.trace(format_args!("op crash"));
    context.crashes += 1;
    context.vfs.crash();
    let eligible = target.rot_eligible(context);
    context.vfs.rot(&eligible);
}
