//! Simulating your own code: a small bank on logstor, run through ballast-sim's crashes and
//! disk faults by implementing `ballast_sim::Workload` (README, "Simulate your own code").
//!
//! The bank keeps eight accounts in one record, so that a transfer is one `put` and a crash
//! keeps it whole or not at all. It promises its clients two things: money is conserved, and
//! a transfer it acknowledged is never lost. `Bank::transfer` is the application's code; the
//! `Workload` below is its test: it draws transfers from the seed, remembers what the bank
//! acknowledged, and checks both promises after every recovery.
//!
//!     cargo run --release -p ballast-sim --example bank                  # 500 seeds: PASS
//!     cargo run --release -p ballast-sim --example bank -- --seeds 10000  # seeds 0..10000
//!     cargo run --release -p ballast-sim --example bank -- --acknowledge-early
//!
//! The second runs the bank with one line wrong, a tempting optimisation: it acknowledges a
//! transfer as soon as it is written and syncs only every eighth. The simulator finds a seed
//! where a power cut loses an acknowledged transfer, prints it, and `--seed N --trace` replays
//! that seed exactly, every I/O call and fault on the way.

use std::sync::Arc;

use ballast::clock::Clock;
use ballast::logstor::{Logstor, LogstorOptions};
use ballast::vfs::Vfs;
use ballast::RecoveryMode;
use ballast_sim::{run_workload, RunOptions, Sim, StepError, Workload};
use rand::Rng;

const ACCOUNTS: usize = 8;
const OPENING_BALANCE: u64 = 100;
const LEDGER: &[u8] = b"ledger";

/// The bank's state: the number of the last transfer, and every balance.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ledger {
    transfer: u64,
    balances: [u64; ACCOUNTS],
}

impl Ledger {
    fn opening() -> Self {
        Self { transfer: 0, balances: [OPENING_BALANCE; ACCOUNTS] }
    }

    fn encode(&self) -> Vec<u8> {
        std::iter::once(self.transfer).chain(self.balances).flat_map(u64::to_le_bytes).collect()
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let words: Vec<u64> =
            bytes.chunks_exact(8).map(|word| u64::from_le_bytes(word.try_into().expect("8 bytes"))).collect();
        match words.as_slice() {
            [transfer, balances @ ..] if bytes.len() == 8 * (1 + ACCOUNTS) => {
                Ok(Self { transfer: *transfer, balances: balances.try_into().expect("ACCOUNTS words") })
            }
            _ => Err(format!("a ledger of {} bytes", bytes.len())),
        }
    }
}

/// The application: a bank over a logstor store.
struct Bank {
    store: Logstor,
    ledger: Ledger,
    /// The one line wrong, when set: acknowledge before the sync, and sync every eighth.
    acknowledge_early: bool,
}

impl Bank {
    fn open(store: Logstor, acknowledge_early: bool) -> ballast::Result<Self> {
        let ledger = match store.get(LEDGER)? {
            Some(bytes) => Ledger::decode(&bytes).unwrap_or_else(|error| panic!("the ledger is damaged: {error}")),
            None => Ledger::opening(),
        };
        Ok(Self { store, ledger, acknowledge_early })
    }

    /// Moves `amount` from one account to another; returns the transfer's number once the bank
    /// may acknowledge it to the client.
    fn transfer(&mut self, from: usize, to: usize, amount: u64) -> ballast::Result<u64> {
        let mut next = self.ledger.clone();
        next.transfer += 1;
        next.balances[from] -= amount;
        next.balances[to] += amount;
        self.store.put(LEDGER, &next.encode())?;
        self.ledger = next;
        if self.acknowledge_early {
            if self.ledger.transfer.is_multiple_of(8) {
                self.store.sync()?;
            }
            return Ok(self.ledger.transfer);
        }
        self.store.sync()?;
        Ok(self.ledger.transfer)
    }
}

/// The bank's test: what it acknowledged, and every ledger it wrote since. `EARLY` runs the
/// bank with its one line wrong.
struct BankWorkload<const EARLY: bool> {
    /// The highest transfer the bank acknowledged: no recovery may come back before it.
    acknowledged: u64,
    /// Every ledger written, by transfer number (index 0: the opening ledger).
    written: Vec<Ledger>,
}

const OPTIONS: fn() -> LogstorOptions =
    || LogstorOptions { segment_size: 16 << 10, segments_per_file: 4, ..LogstorOptions::default() };

impl<const EARLY: bool> Workload for BankWorkload<EARLY> {
    type Handle = Bank;
    const NAME: &'static str = "bank";

    fn new(_sim: &mut Sim<'_>) -> Self {
        Self { acknowledged: 0, written: vec![Ledger::opening()] }
    }

    fn open(&self, vfs: Arc<dyn Vfs>, _clock: Arc<dyn Clock>, mode: RecoveryMode) -> ballast::Result<Bank> {
        let store = Logstor::open(vfs, "/bank", LogstorOptions { recovery_mode: mode, ..OPTIONS() })?;
        Bank::open(store, EARLY)
    }

    fn check_recovered(&mut self, _sim: &mut Sim<'_>, bank: &Bank) -> Result<(), String> {
        let recovered = &bank.ledger;
        let total: u64 = recovered.balances.iter().sum();
        if total != OPENING_BALANCE * ACCOUNTS as u64 {
            return Err(format!("money was not conserved: the accounts hold {total}"));
        }
        if recovered.transfer < self.acknowledged {
            return Err(format!(
                "transfer {} was acknowledged, but the bank recovered only up to transfer {}",
                self.acknowledged, recovered.transfer
            ));
        }
        let index = usize::try_from(recovered.transfer).expect("small");
        if self.written.get(index) != Some(recovered) {
            return Err(format!("the bank recovered a ledger it never wrote: {recovered:?}"));
        }
        // Transfers after the recovered one were lost unacknowledged; their numbers are reused.
        self.written.truncate(index + 1);
        Ok(())
    }

    fn step(&mut self, sim: &mut Sim<'_>, bank: &mut Bank) -> Result<(), StepError> {
        let (from, to) = (sim.rng().gen_range(0..ACCOUNTS), sim.rng().gen_range(0..ACCOUNTS));
        let amount = sim.rng().gen_range(0..=bank.ledger.balances[from]);
        sim.trace(format_args!("op transfer {amount} from {from} to {to}"));
        let mut next = bank.ledger.clone();
        next.transfer += 1;
        next.balances[from] -= amount;
        next.balances[to] += amount;
        // Written (it may survive a crash) before the bank knows whether its write succeeded.
        self.written.push(next);
        let acknowledged = bank.transfer(from, to, amount)?;
        self.acknowledged = acknowledged;
        Ok(())
    }

    fn is_poisoned(bank: &Bank) -> bool {
        bank.store.is_poisoned()
    }

    fn sync(bank: &mut Bank) -> ballast::Result<()> {
        bank.store.sync()
    }

    fn close(bank: Bank) -> ballast::Result<()> {
        bank.store.close()
    }

    fn closed(&mut self) {
        self.acknowledged = self.written.len() as u64 - 1;
    }

    fn final_check(&mut self, sim: &mut Sim<'_>, mut bank: Bank) -> Result<(), String> {
        for _ in 0..10 {
            self.step(sim, &mut bank).map_err(|error| format!("a transfer on a perfect disk failed: {error:?}"))?;
        }
        bank.store.sync().map_err(|error| error.to_string())?;
        let stored = bank.store.get(LEDGER).map_err(|error| error.to_string())?.ok_or("the ledger is gone")?;
        if Ledger::decode(&stored)? != bank.ledger {
            return Err("the ledger read back is not the one written".to_string());
        }
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    let arguments: Vec<String> = std::env::args().collect();
    let value = |name: &str| arguments.iter().position(|a| a == name).and_then(|at| arguments.get(at + 1));
    let trace = arguments.iter().any(|argument| argument == "--trace");
    let seeds = match value("--seed").map(|seed| seed.parse::<u64>()) {
        Some(Ok(seed)) => seed..seed + 1,
        Some(Err(error)) => {
            eprintln!("bad --seed: {error}");
            return std::process::ExitCode::from(2);
        }
        None => match value("--seeds").map(|count| count.parse::<u64>()) {
            Some(Ok(count)) => 0..count,
            Some(Err(error)) => {
                eprintln!("bad --seeds: {error}");
                return std::process::ExitCode::from(2);
            }
            None => 0..500,
        },
    };
    let options = RunOptions { trace, ..RunOptions::default() };
    let early = arguments.iter().any(|argument| argument == "--acknowledge-early");
    let (mut crashes, mut faults) = (0, ballast_sim::FaultCounts::default());
    for seed in seeds.clone() {
        let outcome = match early {
            true => run_workload::<BankWorkload<true>>(seed, &options),
            false => run_workload::<BankWorkload<false>>(seed, &options),
        };
        crashes += outcome.crashes;
        faults.merge(&outcome.faults);
        if let Some(failure) = outcome.failure {
            println!("FAIL seed {seed}: {failure}");
            let variant = if early { " --acknowledge-early" } else { "" };
            println!("replay: cargo run --release -p ballast-sim --example bank --{variant} --seed {seed} --trace");
            return std::process::ExitCode::from(1);
        }
    }
    let faults: Vec<String> =
        ballast_sim::FaultKind::ALL.iter().map(|kind| format!("{kind}={}", faults.get(*kind))).collect();
    println!("PASS {} seeds, {crashes} crashes; faults: {}", seeds.end - seeds.start, faults.join(" "));
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_failure<W: Workload>(seeds: std::ops::Range<u64>) -> Option<ballast_sim::WorkloadOutcome> {
        seeds.map(|seed| run_workload::<W>(seed, &RunOptions::default())).find(|outcome| outcome.failure.is_some())
    }

    #[test]
    fn the_bank_keeps_its_promises_through_every_fault() {
        if let Some(outcome) = first_failure::<BankWorkload<false>>(0..200) {
            panic!("seed {}: {}", outcome.seed, outcome.failure.unwrap());
        }
    }

    /// The variant with one line wrong is caught, and its failing seed replays exactly.
    #[test]
    fn acknowledging_before_the_sync_is_caught_and_replays_exactly() {
        let outcome = first_failure::<BankWorkload<true>>(0..300).expect("some seed loses an acknowledged transfer");
        let failure = outcome.failure.clone().unwrap();
        assert!(failure.contains("was acknowledged"), "{failure}");
        let again = run_workload::<BankWorkload<true>>(outcome.seed, &RunOptions::default());
        assert_eq!((again.failure, again.trace_hash), (Some(failure), outcome.trace_hash));
    }
}
