//! Row-level security on the subscriber: replay run by an ordinary role that owns the tables
//! never skips rows a policy hides from it (it runs with row_security off, so a policy that
//! applies to it is an error); it goes on once the policy no longer applies to it.

use crate::replay::{Pair, stop};

#[test]
fn a_policy_that_hides_rows_from_replay_stops_it_instead_of_skipping_them() {
    let pair = Pair::new("create table t (id int primary key, v text);");
    // Equal on both sides already: added without a copy.
    let rows = "insert into t select g, 'shown' from generate_series(1, 10) g; \
                update t set v = 'hidden' where id = 3";
    pair.provider.execute(rows);
    pair.subscriber.execute(rows);
    pair.ok(&["provider", "add", "t"]);
    // Replay connects to the subscriber as the table's owner, an ordinary role, for whom a
    // forced policy hides the rows marked hidden.
    pair.subscriber.execute(
        "create role owner login; alter table t owner to owner; \
         grant usage on schema londiste to owner; \
         grant select, insert, update, delete on all tables in schema londiste to owner; \
         alter table t enable row level security; alter table t force row level security; \
         create policy visible on t using (v <> 'hidden') with check (true)",
    );
    pair.subscriber_as("owner");
    // Added by the role replay runs as: the write guard lets that role's replay through.
    pair.ok(&["subscriber", "add", "--expect-sync", "t"]);
    let mut replay = pair.start_replay();
    pair.provider
        .execute("update t set v = 'changed' where id = 3; delete from t where id = 4");
    // The updated row is hidden from replay: its update is never skipped.
    pair.wait_for_log("would be affected by row-level security");
    // The owner no longer subject to the policy: replay goes on, hidden rows included.
    pair.subscriber
        .execute("alter table t no force row level security");
    pair.wait_equal(&[("t", "id")]);
    stop(&mut replay, libc::SIGINT);
}
