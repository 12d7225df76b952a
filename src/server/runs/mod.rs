//! Runs: the observable record of background work, and the queue the worker takes it from.

pub mod create;
pub mod input;
pub mod key;
pub mod queries;
pub mod runner;
pub mod worker;
