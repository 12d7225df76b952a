//! The run engine: every kind of background work is a run on it. The engine claims a run (fairly
//! across tenants, in the run's lane), holds it with a lease and a heartbeat, writes the run's
//! items, keeps its counters, ends it and notifies the initiator; what an operation does with
//! each item is its handler's part ([`operation::Operation`], one file per operation in [`ops`]).

pub mod cancel;
mod graph_figures;
pub mod instance;
pub mod operation;
pub mod ops;
pub mod runner;
pub mod worker;
