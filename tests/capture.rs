//! Tests of the capture triggers: event formats, trigger arguments, and agreement with PgQ's own C triggers.
