//! Inbound adapters.
pub mod rpc;
