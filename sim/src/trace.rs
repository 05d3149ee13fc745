//! The event stream of a run: every operation, I/O call and fault, hashed so two runs of one
//! seed can be compared, and printed when asked.

use std::fmt::{self, Write as _};
use std::io::Write as _;

/// Accumulates a 64-bit FNV-1a hash of every event, and prints events when `print` is set.
#[derive(Debug)]
pub struct Trace {
    hash: u64,
    print: bool,
    line: String,
}

impl Trace {
    pub fn off() -> Self {
        Self { hash: 0xcbf2_9ce4_8422_2325, print: false, line: String::new() }
    }

    pub fn printing() -> Self {
        Self { print: true, ..Self::off() }
    }

    pub fn event(&mut self, event: fmt::Arguments<'_>) {
        self.line.clear();
        self.line.write_fmt(event).expect("formatting into a String cannot fail");
        for &byte in self.line.as_bytes().iter().chain(b"\n") {
            self.hash ^= u64::from(byte);
            self.hash = self.hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A reader that went away (`replay --trace | head`) ends the printing, not the run.
        if self.print && writeln!(std::io::stdout(), "  {}", self.line).is_err() {
            self.print = false;
        }
    }

    pub fn hash(&self) -> u64 {
        self.hash
    }
}
