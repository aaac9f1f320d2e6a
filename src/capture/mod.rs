//! The provider side: the registry of replicated tables and their capture triggers
//! ([`provider`]: `provider add | remove | tables | refresh-trigger | execute`), and the
//! scripts of `provider execute` with each database's record of scripts run ([`script`]), and
//! the sequences subscribers follow ([`seqs`]).
//!
//! Uses `base`, `db`, `config` and `queue`.

pub mod provider;
pub mod script;
pub mod seqs;
