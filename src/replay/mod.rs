//! The subscriber side: the replication daemon and everything it changes.
//!
//! - [`worker`]: `replay`, the process's threads (ticker, replay, copy pool) and the replay
//!   thread's loop, which hands new tables to the copy threads; [`lock`]: one replay per
//!   job, a lock held in the subscriber;
//! - [`batch`]: one batch applied exactly once; [`apply`]: decoding row events and applying
//!   them in grouped statements; [`control`]: the events that are not row changes
//!   (`execute` scripts, table removals);
//! - [`copy`]: the copy threads, the initial COPY and the hand-over to replay; [`aside`]:
//!   indexes, foreign keys and triggers set aside while a table is copied; [`progress`]: how
//!   far each running copy is, for `subscriber tables` and `status`;
//! - [`state`]: the subscriber's table registry, merge states and applied ticks;
//!   [`protect`]: the write guard on replicated tables;
//! - [`job`], [`session`]: what every replay thread shares (the job, its connections,
//!   sessions and the last error recorded for `status`);
//! - [`subscriber`], [`seqs`]: the `subscriber ...` commands, and sequences that follow the
//!   provider.
//!
//! Uses `base`, `db`, `config`, `service`, `queue` and `capture`.

pub mod apply;
pub mod aside;
pub mod batch;
pub mod control;
pub mod copy;
pub mod job;
pub mod lock;
pub mod progress;
pub mod protect;
pub mod seqs;
pub mod session;
pub mod state;
pub mod subscriber;
pub mod worker;
