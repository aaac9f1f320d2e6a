//! Running as a service: `-d` and the pidfile, `-s`/`-k`/`-r` ([`daemon`]), the signals of a
//! running daemon ([`signals`]) and the log in Londiste's format ([`logging`]).
//!
//! Uses `base` and `config`.

pub mod daemon;
pub mod logging;
pub mod signals;
