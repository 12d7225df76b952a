//! One handler per operation type, each dispatched to by the engine.

pub mod add_policies;
pub mod check_connection;
