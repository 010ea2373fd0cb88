//! Inbound adapters: the Connect API (`rpc`), the issuing workers that follow the
//! log (`log_worker`) and the operator's commands (`operator`). Each drives use cases of `application`.
//! `console` serves the web console, a client of the API.
pub mod console;
pub mod log_worker;
pub mod operator;
pub mod rpc;
