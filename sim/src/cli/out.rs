//! Printing that survives its reader going away.
//!
//! `ballast-sim run --verbose | head -1` closes stdout while seeds still run. Rust ignores
//! SIGPIPE, so every later write fails with `BrokenPipe`; `println!` would panic on it. Here the
//! process ends quietly instead, with the status a shell gives a process killed by SIGPIPE.

use std::fmt;
use std::io::Write as _;

/// The exit status of a process whose stdout was closed under it (128 + SIGPIPE).
pub const CLOSED_STDOUT: i32 = 141;

/// Prints one line on stdout, or ends the process if nobody reads it any more.
pub fn line(text: fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{text}").and_then(|()| stdout.flush()).is_err() {
        std::process::exit(CLOSED_STDOUT);
    }
}

/// Prints one line on stderr; a closed stderr loses only the line.
pub fn note(text: fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// `println!` that ends the process quietly when stdout is closed.
macro_rules! out {
    ($($argument:tt)*) => {
        $crate::cli::out::line(format_args!($($argument)*))
    };
}
pub(crate) use out;
