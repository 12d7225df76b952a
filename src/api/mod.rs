//! Server functions, one file per screen or capability. Each is thin: authorize (`server::auth`),
//! validate, call a service in `server/`, return a DTO from `domain/`. They live under `/api/`
//! with fixed endpoints so the URLs do not depend on where the code was built.

pub mod auth;
pub mod backup_sets;
pub mod runs;
