//! Operator commands (`coupon audit`, `consumer audit`, …): each drives one use case,
//! shows its progress on the terminal and answers with an exit code scripts can use.

pub mod audit;
mod progress;
pub mod rewind;

use std::process::ExitCode;

/// Exit code when the command could not run (storage or log unreachable, a wrong key, a
/// refused rewind…).
pub const COULD_NOT_RUN: u8 = 2;

/// Says why `command` could not run, on stderr and in the log; its exit code.
pub fn could_not_run(command: &str, error: &dyn std::fmt::Display) -> ExitCode {
    tracing::error!(%error, "{command} could not run");
    eprintln!("{command} could not run: {error}");
    ExitCode::from(COULD_NOT_RUN)
}
