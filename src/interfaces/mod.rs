//! Inbound adapters: the Connect API (`rpc`) and the issuing workers that follow the
//! log (`log_worker`). Each drives use cases of `application`.
pub mod log_worker;
pub mod rpc;
