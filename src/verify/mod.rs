//! Looking at a job from outside: `check` (connect to every database, [`check`]), bringing
//! a table to one point of the stream on both sides ([`sync`]) for `compare` ([`compare`])
//! and `repair` ([`repair`]), and `status` ([`status`]).
//!
//! Uses every folder above it: `base`, `db`, `config`, `queue`, `capture` and `replay`.

pub mod check;
pub mod compare;
pub mod repair;
pub mod status;
pub mod sync;
