//! The integration tests, one module per screen or area, built as one test binary (see
//! `autotests` in Cargo.toml). Each test runs in its own process under nextest, once per engine,
//! on a database of its own; `common` is the harness, `sim_support` the Graph simulator's.

#[macro_use]
mod common;
mod sim_support;

mod access_matrix;
mod add_policies;
mod backup_export;
mod backup_sets_api;
mod cancel;
mod canonical_rows;
mod captures;
mod claim_order;
mod cli;
mod connection_check;
mod fair_share;
mod graph_client;
mod graph_sim;
mod graph_write;
mod id_lists;
mod inventory;
mod invitations;
mod members;
mod metrics;
mod migrations;
mod notifications;
mod picker;
mod plans;
mod recovery;
mod redirects;
mod restore;
mod restore_access;
mod restore_fence;
mod restore_references;
mod robustness;
mod run_detail;
mod run_export;
mod runs_list;
mod sanitizer;
mod scale_out;
mod sessions;
mod snapshots;
mod tenant_pages;
mod tenants;
mod transactions;
mod versions;
mod worker;
