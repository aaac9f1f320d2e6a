-- skyrep's londiste schema: the table and sequence registry on both sides and, on the
-- subscriber, the per-table merge state and the record of applied ticks.
--
-- Installed by `provider install` and `subscriber install`, in one transaction, as often as
-- wanted: every statement is idempotent and keeps what is there. The table names differ from
-- Londiste 2's and 3's own, so a database that still holds those keeps them untouched.

create schema if not exists londiste;

-- Provider: tables whose changes go into a queue.
create table if not exists londiste.provider_tables (
    queue_name   text not null,
    table_name   text not null,          -- schema.table, unquoted, as in ev_extra1
    trigger_name text not null,          -- the capture trigger on the table
    added_at     timestamptz not null default now(),
    primary key (queue_name, table_name)
);

-- Subscriber: tables applied from a queue.
create table if not exists londiste.subscriber_tables (
    queue_name      text not null,
    table_name      text not null,       -- the provider's schema.table
    dest_table      text not null,       -- the local schema.table the rows go to
    merge_state     text,                -- NULL (new), in-copy, catching-up, wanna-sync:TICK,
                                         -- do-sync:TICK or ok
    custom_snapshot text,                -- the copy's snapshot while it catches up
    copy_condition  text,
    skip_truncate   boolean not null default false,
    added_at        timestamptz not null default now(),
    primary key (queue_name, table_name)
);

-- Subscriber: the last tick whose batch is applied here, per consumer. Written in the same
-- transaction as the batch's changes: a batch is applied wholly or not at all, and never twice.
create table if not exists londiste.applied_ticks (
    queue_name    text not null,
    consumer_name text not null,
    last_tick_id  bigint not null,
    applied_at    timestamptz not null default now(),
    primary key (queue_name, consumer_name)
);

-- Subscriber: the last error of each thread of `replay`, shown by `status` until the thread
-- next gets work done (the row is then deleted). consumer_name is the job's consumer for the
-- replay thread and `CONSUMER.copy` for the copy thread. Written by a connection of its own,
-- so the error survives the rollback of the failed work.
create table if not exists londiste.replay_status (
    queue_name    text not null,
    consumer_name text not null,
    last_error    text not null,         -- one line, passwords masked
    error_at      timestamptz not null default now(),
    failures      integer not null default 1,  -- failed attempts in a row
    primary key (queue_name, consumer_name)
);

-- Subscriber: the replay daemon of each job, as it last said: written every second or so by the
-- connection that holds the job's lock (`replay`), so `status` can tell where and since when
-- it runs, and when it was last seen after it stopped.
create table if not exists londiste.replay_daemons (
    queue_name    text not null,
    consumer_name text not null,
    host          text not null,
    pid           integer not null,      -- the daemon's process id on host
    version       text not null,         -- skyrep's version
    started_at    timestamptz not null,
    beat_at       timestamptz not null,  -- the last heartbeat
    primary key (queue_name, consumer_name)
);
-- The server's pid of the connection that holds the job's lock and writes the row: while
-- another session holds the lock, the row is an earlier run's (the daemon is starting).
alter table londiste.replay_daemons add column if not exists backend_pid integer;

-- Subscriber: how far each running copy is, for `subscriber tables` and `status`. Written
-- about once a second by a connection of the copy thread's own (the copy's transaction is not
-- visible until it commits), started afresh by each attempt, deleted when the attempt ends.
-- The estimate is the provider's (pg_class, as of its last ANALYZE or VACUUM): NULL where
-- it has none (never analyzed); with a copy condition it counts the whole table, so it is an
-- upper bound (estimate_upper_bound).
create table if not exists londiste.copy_progress (
    queue_name           text not null,
    table_name           text not null,  -- the provider's schema.table
    copied_rows          bigint not null default 0,
    copied_bytes         bigint not null default 0,  -- COPY text sent to the subscriber
    estimate_rows        bigint,
    estimate_bytes       bigint,         -- the provider table's size on disk
    estimate_upper_bound boolean not null default false,
    started              timestamptz not null default now(),
    updated              timestamptz not null default now(),
    primary key (queue_name, table_name)
);

-- Subscriber: indexes, foreign keys and triggers set aside while a table is copied, with the
-- SQL that puts each back. Saved in the transaction that drops them, so a crash never loses
-- one. Indexes come back in the copy's own transaction; a foreign key once the tables at both
-- its ends are in sync; triggers once their table is.
create table if not exists londiste.pending_objects (
    queue_name   text not null,
    table_name   text not null,          -- the copied table (local schema.table)
    kind         text not null check (kind in ('index', 'fkey', 'trigger')),
    owner_table  text not null,          -- the table the object is on (regclass text)
    object_name  text not null,
    other_table  text,                   -- fkeys: the table at the other end
    definition   text not null,          -- the statement that creates it again
    set_aside_at timestamptz not null default now(),
    primary key (queue_name, kind, owner_table, object_name)
);

-- Both sides: the scripts of `provider execute`, by file name. On the provider, each script
-- run (a script of the same name is not run twice); on a subscriber, each script its replay
-- ran or skipped, written in the batch's transaction. A subscriber row with status 'skip'
-- (from `subscriber skip-execute`) makes replay pass over that script once it reaches it.
create table if not exists londiste.executed_scripts (
    queue_name  text not null,
    file_name   text not null,
    sql_md5     text,                    -- md5 of the script as queued (NULL for 'skip')
    status      text not null check (status in ('done', 'skip', 'skipped')),
    executed_at timestamptz not null default now(),
    primary key (queue_name, file_name)
);

-- Provider: each `provider remove`, with the transaction that queued its
-- londiste.remove-table event. Replay applies such an event only if this record (or the
-- table no longer being registered) vouches for it: anyone who may insert events could
-- queue one.
create table if not exists londiste.removed_tables (
    queue_name text not null,
    table_name text not null,
    ev_txid    bigint not null,
    removed_at timestamptz not null default now(),
    primary key (queue_name, table_name, ev_txid)
);

create or replace function londiste.skyrep_schema_version() returns integer
language sql immutable as $$ select 1 $$;

-- Subscriber protection: a statement trigger on every replicated table refuses ordinary
-- writes. Its arguments are the queue and the role that put it there (the role of skyrep's
-- subscriber connection). skyrep's own sessions pass: with session_replication_role =
-- replica the trigger does not fire at all; otherwise they set skyrep.replay = on, which
-- lets a session through only if its role is that role, a member of it or a superuser. A
-- role that may only write to the table cannot switch the protection off.
create or replace function londiste.deny_write() returns trigger
language plpgsql as $$
begin
    if pg_catalog.current_setting('skyrep.replay', true) = 'on'
       and tg_nargs >= 2 and pg_catalog.pg_has_role(tg_argv[1], 'MEMBER') then
        return null;
    end if;
    raise exception 'table %.% is replicated from queue % by skyrep: % is not allowed here',
        tg_table_schema, tg_table_name, tg_argv[0], tg_op
        using hint = 'change it on the provider, or remove it from replication first';
end
$$;

-- Provider: sequences whose values the subscribers of a queue follow.
create table if not exists londiste.provider_seqs (
    queue_name text not null,
    seq_name   text not null,            -- schema.sequence, unquoted, like table_name
    added_at   timestamptz not null default now(),
    primary key (queue_name, seq_name)
);

-- Subscriber: sequences that replay moves forward to the provider's values, before each batch.
create table if not exists londiste.subscriber_seqs (
    queue_name text not null,
    seq_name   text not null,            -- the provider's schema.sequence (the same name here)
    added_at   timestamptz not null default now(),
    primary key (queue_name, seq_name)
);
