//! skyrep: trigger-based, table-level PostgreSQL replication in one binary — the PgQ queue,
//! its ticker and Londiste replay, re-created as a sync, thread-per-role Rust program.
//!
//! The binary (`src/main.rs`) parses the command line and runs one of the commands below; the
//! modules are public so that the integration tests can drive the roles directly.

pub mod apply;
pub mod aside;
pub mod batch;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod compare;
pub mod config;
pub mod connstr;
pub mod copy;
pub mod daemon;
pub mod db;
pub mod ddl;
pub mod demo;
pub mod error;
pub mod install;
pub mod job;
pub mod keys;
pub mod logging;
pub mod mask;
pub mod names;
pub mod output;
pub mod pgpass;
pub mod pgq;
pub mod protect;
pub mod provider;
pub mod repair;
pub mod replay;
pub mod script;
pub mod seqs;
pub mod session;
pub mod signals;
pub mod state;
pub mod status;
pub mod subscriber;
pub mod sync;
pub mod ticker;
pub mod tls;
