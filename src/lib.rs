//! skyrep: trigger-based, table-level PostgreSQL replication in one binary — the PgQ queue,
//! its ticker and Londiste replay, re-created as a sync, thread-per-role Rust program.
//!
//! The binary (`src/main.rs`) parses the command line ([`cli`]) and runs one command. The
//! folders are the roles, and each uses only those listed before it:
//!
//! | folder | role |
//! |---|---|
//! | [`base`] | errors and exit codes, table names and quoting, command output, hiding passwords |
//! | [`db`] | connection strings, the password file, TLS, opening connections |
//! | [`config`] | the INI file and the table of every key |
//! | [`service`] | running as a daemon: detaching, pidfile, signals, logging |
//! | [`queue`] | PgQ: the schemas skyrep installs, the consumer, the ticker |
//! | [`capture`] | the provider: registered tables, capture triggers, `execute` scripts |
//! | [`replay`] | the subscriber: the daemon's threads, applying, copying, merge states |
//! | [`verify`] | looking from outside: `check`, `compare`, `repair`, `status` |
//! | [`cli`] | the command line, one file per command group |
//! | [`demo`] | `skyrep demo` and the throwaway servers it shares with the tests |
//!
//! The modules are public so that the integration tests can drive the roles directly.

pub mod base;
pub mod capture;
pub mod cli;
pub mod config;
pub mod db;
pub mod demo;
pub mod queue;
pub mod replay;
pub mod service;
pub mod verify;
