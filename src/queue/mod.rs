//! The queue: what skyrep installs in the databases ([`install`], with its SQL in `sql/`:
//! skyrep's PgQ 3 in plain SQL, the generated capture triggers, the `londiste` registries),
//! the PgQ consumer that takes a batch, streams its events and finishes it ([`consumer`]),
//! the ticker that cuts the event stream into batches ([`ticker`]), and who may use the queue:
//! PgQ 3's roles and grants ([`privileges`]), and pgqadm's commands on a ticker config:
//! queues, consumers and queue settings ([`admin`]).
//!
//! Uses `base`, `db` and `config`.

pub mod admin;
pub mod consumer;
pub mod install;
pub mod privileges;
pub mod ticker;
