//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod connect;
pub mod pg;
pub mod process;
