//! Integration tests for skyrep: the tests start throwaway PostgreSQL clusters
//! (see `cluster.rs`) and run the `skyrep` binary against them.
//!
//! Run the whole suite with `tests/run.sh`.

mod apply;
mod bulk;
mod capture;
mod cli;
mod cluster;
mod compare;
mod connect;
mod daemon;
mod ddl;
mod demo;
mod docs;
mod durable;
mod exact;
mod exact_capture;
mod exact_scripts;
mod faults;
mod forged;
mod fuzz;
mod harness;
mod inherit;
mod layout;
mod memory;
mod odd_input;
mod perms;
mod pgq_sql;
mod pgqadm;
mod policy;
mod progress;
mod replay;
mod seqs;
mod setup;
mod status;
mod ticker;
mod util;
