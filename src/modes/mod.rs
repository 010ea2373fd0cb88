//! Composition roots: each mode wires the same use cases to its own adapters.

pub mod embedded;
pub mod shutdown;
