//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod attack;
pub mod audit;
pub mod browser;
pub mod cluster;
pub mod connect;
pub mod embedded;
pub mod faulty_store;
pub mod flood;
pub mod kafka_log;
pub mod listing;
pub mod model;
pub mod pg;
pub mod process;
pub mod traffic;
