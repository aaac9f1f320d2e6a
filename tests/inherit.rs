//! Inheritance: every statement replay runs acts on its own table only, as the provider's
//! did. A row event belongs to the table the row lives in; the parent's statements must not
//! reach its children's rows.

use crate::replay::{Pair, stop};

const SCHEMA: &str = "create table parent (id int primary key, v text); \
                      create table child (primary key (id)) inherits (parent);";

/// The rows of `parent` itself and of `child`, on one side.
fn rows(cluster: &crate::cluster::Cluster) -> Vec<Vec<Option<String>>> {
    cluster.query_strings(
        "postgres",
        "select 'parent', id::text, v from only parent \
         union all select 'child', id::text, v from child order by 1, 2",
    )
}

#[test]
fn statements_on_a_parent_leave_its_children_alone() {
    let pair = Pair::new(SCHEMA);
    pair.provider.execute(
        "insert into parent select g, 'parent' from generate_series(1, 5) g; \
         insert into child select g, 'child' from generate_series(1, 5) g",
    );
    // The child first: the parent's copy must not empty it.
    pair.ok(&["provider", "add", "child", "parent"]);
    pair.ok(&["subscriber", "add", "child"]);
    let mut replay = pair.start_replay();
    pair.wait_equal(&[("only child", "id")]);
    pair.ok(&["subscriber", "add", "parent"]);
    pair.wait_equal(&[("only child", "id"), ("only parent", "id")]);
    assert_eq!(rows(&pair.provider), rows(&pair.subscriber));
    pair.provider.execute(
        "update only parent set v = 'parent moved' where id = 1; \
         delete from parent where v = 'parent' and id = 2; \
         update parent set v = 'everyone' where id = 3",
    );
    pair.wait_equal(&[("only child", "id"), ("only parent", "id")]);
    assert_eq!(rows(&pair.provider), rows(&pair.subscriber));
    pair.provider.execute("truncate only parent");
    pair.wait_equal(&[("only child", "id"), ("only parent", "id")]);
    assert_eq!(rows(&pair.provider), rows(&pair.subscriber));
    assert_eq!(
        pair.subscriber
            .value("postgres", "select count(*) from child"),
        Some("5".into()),
        "{}",
        pair.replay_log()
    );
    stop(&mut replay, libc::SIGINT);
}
