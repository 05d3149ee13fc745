//! Poisoning: a handle whose write or sync failed refuses every later mutating call until the
//! structure is reopened (invariant 2 of ARCHITECTURE.md).

use std::path::Path;

use crate::error::{Error, Result};
use crate::repair::remove_plan;
use crate::vfs::Vfs;

/// What every structure's handle tracks about its own health: whether an earlier write or sync
/// failed (invariant 2 of ARCHITECTURE.md), and whether the repair plan of a repair its open reported is
/// still on disk (it stays until the first write after that open).
#[derive(Debug)]
pub(crate) struct Health {
    poisoned: bool,
    repair_plan_present: bool,
}

impl Health {
    pub fn new(repair_reported: bool) -> Self {
        Self { poisoned: false, repair_plan_present: repair_reported }
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Refuses when poisoned; no I/O.
    pub fn check(&self) -> Result<()> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        Ok(())
    }

    /// Marks the handle poisoned and hands the error back.
    pub fn poison(&mut self, directory: &Path, error: Error) -> Error {
        tracing::warn!(directory = %directory.display(), %error, "handle poisoned");
        self.poisoned = true;
        error
    }

    /// Called first by every mutating call: refuses on a poisoned handle, and retires the
    /// repair plan of a repair this handle's open reported.
    pub fn begin_write(&mut self, vfs: &dyn Vfs, directory: &Path) -> Result<()> {
        self.check()?;
        if self.repair_plan_present {
            if let Err(error) = remove_plan(vfs, directory) {
                return Err(self.poison(directory, error));
            }
            self.repair_plan_present = false;
        }
        Ok(())
    }
}
