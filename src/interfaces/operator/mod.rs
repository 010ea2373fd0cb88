//! Operator commands (`coupon audit`, `consumer audit`, …): each drives one use case,
//! shows its progress on the terminal and answers with an exit code scripts can use.

pub mod audit;
mod progress;
pub mod rewind;
