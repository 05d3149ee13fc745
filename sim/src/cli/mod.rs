//! The `ballast-sim` command line, apart from its argument definitions (in `main.rs`).

pub mod many;
pub mod merge;
pub mod out;
pub mod plan;
pub mod summary;

/// How to run this binary again, as the user invoked it: replay lines are printed with it, so
/// that they run as printed.
pub fn program() -> String {
    std::env::args().next().unwrap_or_else(|| "ballast-sim".to_string())
}
