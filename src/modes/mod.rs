//! Composition roots: each mode wires the same use cases to its own adapters.

pub mod distributed;
pub mod embedded;
pub mod shutdown;
