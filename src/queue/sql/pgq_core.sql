-- skyrep: the pgq schema, skyrep's own implementation of the PgQ 3 SQL API.
--
-- This script creates the queue machinery that PgQ 3 (Skytools) keeps in the `pgq` schema:
-- queues, ticks, consumers and subscriptions, rotating event tables and the retry queue,
-- together with the public functions producers, consumers and tickers call. Names,
-- arguments, result columns, return codes and error texts follow PgQ 3, so PgQ's own
-- ticker (pgqd) and consumers work against it, and skyrep works against real PgQ.
-- It is written in plain SQL and PL/pgSQL only: no C extension, no superuser. Who may call
-- what (PgQ 3's roles pgq_reader, pgq_writer and pgq_admin) is set by pgq_grants.sql, which
-- the installer runs after this script.
--
-- How it is run: as one script (simple query protocol) inside one transaction, on
-- PostgreSQL 12 or newer, by a user that may create schemas. Running it again upgrades in
-- place and keeps every queue, tick, subscription and queued event: objects are created
-- with IF NOT EXISTS or CREATE OR REPLACE, and later column additions go in guarded blocks
-- that only touch a table when something is missing.
--
-- The central rule: a batch is the set of events between two ticks of its queue, and an
-- event belongs to it when the transaction that wrote it is visible in the later tick's
-- snapshot and not in the earlier one. Event ids only order the events of a batch; they
-- never decide membership, so a long transaction that commits late lands in exactly one
-- batch.
--
-- Differences from PgQ, all deliberate:
--   * pgq.version() returns '3.5.1'; pgq.skyrep_schema_version() tells this implementation
--     apart from real PgQ (bumped whenever this schema changes).
--   * pgq.grant_perms() copies pgq.event_template's grants to the event tables (as PgQ
--     does) and gives USAGE on the event sequence to the roles that may insert into the
--     event tables, instead of to a role named pgq_admin; pgq.upgrade_schema() creates no
--     roles (the installer does, see pgq_grants.sql).
--   * pgq.insert_event() writes through pgq._insert_event_static(), one plain INSERT per
--     event table generated from pgq.queue (rebuilt by create_queue, drop_queue and this
--     script), so that each session plans its inserts once instead of once per event.
--   * queue_per_tx_limit is checked by counting the transaction's events in the current
--     event table, so events written before a rotation in the same transaction, and events
--     of rolled-back subtransactions, are not counted.
--   * Ticking a queue locks its row and leaves a new row version: two tickers cannot
--     interleave ticks of one queue, and a ticker whose REPEATABLE READ snapshot predates
--     the latest tick fails instead of adding a tick with an older snapshot.
--   * Rotation and batch reading add cheap data checks on top of PgQ's transaction-id rules
--     (see maint_rotate_tables_step1 and batch_event_tables): a writer in a REPEATABLE READ
--     transaction that looked up the current table before a rotation still has its events
--     read. (One whose transaction outlives two rotations, hours by default, is not covered.)
--   * maint_rotate_tables_step2() leaves a rotation for the next call when its step 1 has
--     not committed yet, or when the calling transaction already had a transaction id.
--   * Rotation never deletes a queue's latest tick; drop_queue also removes the queue's
--     retry events; the "does not see tick" error names the missing tick.
--   * maint_operations() lists londiste.periodic_maintenance() when it exists, but not the
--     cascading hooks of pgq_node and londiste.root_check_seqs.
--
-- Set for the rest of the installing transaction: no notices for objects that exist.
set local client_min_messages = warning;

create schema if not exists pgq;

-- ------------------------------------------------------------------------------------------
-- Tables
-- ------------------------------------------------------------------------------------------

-- Consumer names.
create table if not exists pgq.consumer (
    co_id       serial,
    co_name     text not null,
    constraint consumer_pkey primary key (co_id),
    constraint consumer_name_uq unique (co_name)
);

-- Queues, their settings and rotation state.
create table if not exists pgq.queue (
    queue_id                    serial,
    queue_name                  text not null,
    queue_ntables               integer not null default 3,
    queue_cur_table             integer not null default 0,
    queue_rotation_period       interval not null default '2 hours',
    queue_switch_step1          bigint not null default txid_current(),
    queue_switch_step2          bigint default txid_current(),
    queue_switch_time           timestamptz not null default now(),
    queue_external_ticker       boolean not null default false,
    queue_disable_insert        boolean not null default false,
    queue_ticker_paused         boolean not null default false,
    queue_ticker_max_count      integer not null default 500,
    queue_ticker_max_lag        interval not null default '3 seconds',
    queue_ticker_idle_period    interval not null default '1 minute',
    queue_per_tx_limit          integer,
    queue_data_pfx              text not null,
    queue_event_seq             text not null,
    queue_tick_seq              text not null,
    queue_extra_maint           text[],
    constraint queue_pkey primary key (queue_id),
    constraint queue_name_uq unique (queue_name)
);

-- Ticks: the snapshots that cut a queue's event stream into batches.
create table if not exists pgq.tick (
    tick_queue      int4 not null,
    tick_id         bigint not null,
    tick_time       timestamptz not null default now(),
    tick_snapshot   txid_snapshot not null default txid_current_snapshot(),
    tick_event_seq  bigint not null,
    constraint tick_pkey primary key (tick_queue, tick_id),
    constraint tick_queue_fkey foreign key (tick_queue) references pgq.queue (queue_id)
);

-- Global batch ids.
create sequence if not exists pgq.batch_id_seq;

-- Consumers registered on queues, with their position and open batch.
create table if not exists pgq.subscription (
    sub_id          serial not null,
    sub_queue       int4 not null,
    sub_consumer    int4 not null,
    sub_last_tick   bigint,
    sub_active      timestamptz not null default now(),
    sub_batch       bigint,
    sub_next_tick   bigint,
    constraint subscription_pkey primary key (sub_queue, sub_consumer),
    constraint subscription_batch_idx unique (sub_batch),
    constraint sub_queue_fkey foreign key (sub_queue) references pgq.queue (queue_id),
    constraint sub_consumer_fkey foreign key (sub_consumer) references pgq.consumer (co_id)
);

-- The shape of every event table; holds no rows itself.
create table if not exists pgq.event_template (
    ev_id       bigint not null,
    ev_time     timestamptz not null,
    ev_txid     bigint not null default txid_current(),
    ev_owner    int4,
    ev_retry    int4,
    ev_type     text,
    ev_data     text,
    ev_extra1   text,
    ev_extra2   text,
    ev_extra3   text,
    ev_extra4   text
);

-- Events a consumer asked to see again later (ev_owner is its sub_id).
create table if not exists pgq.retry_queue (
    ev_retry_after  timestamptz not null,
    ev_queue        int4 not null,
    ev_id           bigint not null,
    ev_time         timestamptz not null,
    ev_txid         bigint,
    ev_owner        int4 not null,
    ev_retry        int4,
    ev_type         text,
    ev_data         text,
    ev_extra1       text,
    ev_extra2       text,
    ev_extra3       text,
    ev_extra4       text,
    constraint rq_pkey primary key (ev_owner, ev_id),
    constraint rq_queue_id_fkey foreign key (ev_queue) references pgq.queue (queue_id)
);

-- Guarded changes: each touches a table only when it is missing something, so that running
-- the script again takes no table locks and never blocks producers or consumers.
do $$
begin
    if pg_catalog.to_regclass('pgq.rq_retry_idx') is null then
        create index rq_retry_idx on pgq.retry_queue (ev_retry_after);
    end if;
    -- Schemas of old PgQ releases had sub_last_tick NOT NULL.
    if exists (select 1 from pg_catalog.pg_attribute
                where attrelid = 'pgq.subscription'::regclass
                  and attname = 'sub_last_tick' and attnotnull) then
        alter table pgq.subscription alter column sub_last_tick drop not null;
    end if;
    if not exists (select 1 from pg_catalog.pg_attribute
                    where attrelid = 'pgq.queue'::regclass
                      and attname = 'queue_per_tx_limit' and not attisdropped) then
        alter table pgq.queue add column queue_per_tx_limit integer;
    end if;
    -- Functions a ticker calls with the queue name on every maintenance run (PgQ 3.2+).
    if not exists (select 1 from pg_catalog.pg_attribute
                    where attrelid = 'pgq.queue'::regclass
                      and attname = 'queue_extra_maint' and not attisdropped) then
        alter table pgq.queue add column queue_extra_maint text[];
    end if;
end
$$;

-- ------------------------------------------------------------------------------------------
-- Versions and small utilities
-- ------------------------------------------------------------------------------------------

-- The PgQ API version this schema provides (pgqd requires it to start with 3).
create or replace function pgq.version() returns text
language sql immutable
as $$ select '3.5.1'::text $$;

-- The version of skyrep's pgq schema; real PgQ has no such function.
create or replace function pgq.skyrep_schema_version() returns integer
language sql immutable
as $$ select 1 $$;

-- 'schema.name' or 'name' (schema public) as a safely quoted qualified name.
create or replace function pgq.quote_fqname(i_name text) returns text
language sql immutable strict
set search_path = pg_catalog, pg_temp
as $$
    select case when strpos(i_name, '.') > 0
                then quote_ident(split_part(i_name, '.', 1)) || '.'
                     || quote_ident(substr(i_name, strpos(i_name, '.') + 1))
                else 'public.' || quote_ident(i_name)
           end
$$;

-- The last value a sequence handed out (1 for a fresh one), without advancing it.
create or replace function pgq.seq_getval(i_seq_name text) returns bigint
language plpgsql strict
set search_path = pg_catalog, pg_temp
as $$
declare
    v_val bigint;
begin
    execute 'select last_value from ' || pgq.quote_fqname(i_seq_name) into v_val;
    return v_val;
end
$$;

-- Moves a sequence forward to i_new_value; never backwards. Returns its value afterwards.
create or replace function pgq.seq_setval(i_seq_name text, i_new_value int8) returns bigint
language plpgsql strict
set search_path = pg_catalog, pg_temp
as $$
declare
    v_cur bigint;
begin
    v_cur := pgq.seq_getval(i_seq_name);
    if v_cur >= i_new_value then
        return v_cur;
    end if;
    perform setval(pgq.quote_fqname(i_seq_name)::regclass, i_new_value);
    return i_new_value;
end
$$;

-- Fixes what old PgQ schemas got wrong or lack; creates no roles. Returns the number of
-- changes.
create or replace function pgq.upgrade_schema() returns int4
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    v_changes int4 := 0;
begin
    if exists (select 1 from pg_attribute
                where attrelid = 'pgq.subscription'::regclass
                  and attname = 'sub_last_tick' and attnotnull) then
        alter table pgq.subscription alter column sub_last_tick drop not null;
        v_changes := v_changes + 1;
    end if;
    if not exists (select 1 from pg_attribute
                    where attrelid = 'pgq.queue'::regclass
                      and attname = 'queue_extra_maint' and not attisdropped) then
        alter table pgq.queue add column queue_extra_maint text[];
        v_changes := v_changes + 1;
    end if;
    return v_changes;
end
$$;

-- ------------------------------------------------------------------------------------------
-- Queue administration
-- ------------------------------------------------------------------------------------------

-- Event tables of a queue: fill pages completely, no autovacuum (they are truncated, never
-- vacuumed). Returns 1, or 0 for an unknown queue.
create or replace function pgq.tune_storage(i_queue_name text) returns integer
language plpgsql strict
set search_path = pg_catalog, pg_temp
as $$
declare
    v_pfx text;
    v_ntables integer;
begin
    select q.queue_data_pfx, q.queue_ntables into v_pfx, v_ntables
      from pgq.queue q where q.queue_name = i_queue_name;
    if not found then
        return 0;
    end if;
    for i in 0 .. v_ntables - 1 loop
        execute format('alter table %s set (fillfactor = 100, autovacuum_enabled = off, '
                       'toast.autovacuum_enabled = off)',
                       pgq.quote_fqname(v_pfx || '_' || i));
    end loop;
    return 1;
end
$$;

-- Copies the table privileges granted on i_src_schema.i_src_table (to roles other than its
-- owner) to i_dst_schema.i_dst_table, grant options included. Returns 1.
create or replace function pgq._grant_perms_from(i_src_schema text, i_src_table text,
                                                 i_dst_schema text, i_dst_table text)
returns integer
language plpgsql strict
set search_path = pg_catalog, pg_temp
as $$
declare
    g record;
begin
    for g in
        select a.privilege_type, a.is_grantable,
               case when a.grantee = 0 then 'public'
                    else quote_ident(pg_get_userbyid(a.grantee)) end as grantee
          from pg_class c
          join pg_namespace n on n.oid = c.relnamespace,
               aclexplode(c.relacl) a
         where n.nspname = i_src_schema and c.relname = i_src_table
           and a.grantee <> c.relowner
    loop
        execute format('grant %s on table %I.%I to %s%s', g.privilege_type, i_dst_schema,
                       i_dst_table, g.grantee,
                       case when g.is_grantable then ' with grant option' else '' end);
    end loop;
    return 1;
end
$$;

-- Privileges for a queue's sequences and event tables: the sequences are readable by
-- everyone (lag and tick queries read them), the roles that may insert into the event
-- tables may also take event ids, and the event tables get whatever privileges
-- pgq.event_template has, so that privileges are granted once, on the template (see
-- pgq_grants.sql). Returns 1.
create or replace function pgq.grant_perms(x_queue_name text) returns integer
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    q record;
    v_schema text;
    v_table text;
    v_role text;
begin
    select queue_data_pfx, queue_ntables, queue_event_seq, queue_tick_seq into q
      from pgq.queue where queue_name = x_queue_name;
    if not found then
        raise exception 'Queue not found';
    end if;
    execute format('grant select on sequence %s, %s to public',
                   pgq.quote_fqname(q.queue_tick_seq), pgq.quote_fqname(q.queue_event_seq));
    for v_role in
        select case when a.grantee = 0 then 'public'
                    else quote_ident(pg_get_userbyid(a.grantee)) end
          from pg_class c, aclexplode(c.relacl) a
         where c.oid = 'pgq.event_template'::regclass
           and a.grantee <> c.relowner and a.privilege_type = 'INSERT'
    loop
        execute format('grant usage on sequence %s to %s',
                       pgq.quote_fqname(q.queue_event_seq), v_role);
    end loop;

    if strpos(q.queue_data_pfx, '.') > 0 then
        v_schema := split_part(q.queue_data_pfx, '.', 1);
        v_table := substr(q.queue_data_pfx, strpos(q.queue_data_pfx, '.') + 1);
    else
        v_schema := 'public';
        v_table := q.queue_data_pfx;
    end if;
    perform pgq._grant_perms_from('pgq', 'event_template', v_schema, v_table);
    for i in 0 .. q.queue_ntables - 1 loop
        perform pgq._grant_perms_from('pgq', 'event_template', v_schema, v_table || '_' || i);
    end loop;
    return 1;
end
$$;

-- Creates a queue: its row, two sequences, the parent event table and its rotating
-- children, and the first tick. Returns 1, or 0 when the queue exists already.
create or replace function pgq.create_queue(i_queue_name text) returns integer
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_id integer;
    v_pfx text;
    v_parent text;
    v_child text;
    v_ntables integer;
begin
    if i_queue_name is null then
        raise exception 'Invalid NULL value';
    end if;
    -- One queue creation or drop at a time: each rebuilds pgq._insert_event_static.
    lock table pgq.queue in share row exclusive mode;
    perform 1 from pgq.queue where queue_name = i_queue_name;
    if found then
        return 0;
    end if;

    v_id := nextval('pgq.queue_queue_id_seq');
    v_pfx := 'pgq.event_' || v_id;
    insert into pgq.queue (queue_id, queue_name, queue_data_pfx, queue_event_seq,
                           queue_tick_seq)
    values (v_id, i_queue_name, v_pfx, v_pfx || '_id_seq', v_pfx || '_tick_seq')
    returning queue_ntables into v_ntables;

    execute format('create sequence %s', pgq.quote_fqname(v_pfx || '_id_seq'));
    execute format('create sequence %s', pgq.quote_fqname(v_pfx || '_tick_seq'));

    v_parent := pgq.quote_fqname(v_pfx);
    execute format('create table %s () inherits (pgq.event_template)', v_parent);
    for i in 0 .. v_ntables - 1 loop
        v_child := pgq.quote_fqname(v_pfx || '_' || i);
        execute format('create table %s () inherits (%s)', v_child, v_parent);
        execute format('alter table %s alter column ev_id set default nextval(%L)',
                       v_child, pgq.quote_fqname(v_pfx || '_id_seq'));
        execute format('create index %I on %s (ev_txid)',
                       'event_' || v_id || '_' || i || '_txid_idx', v_child);
    end loop;

    perform pgq.grant_perms(i_queue_name);
    perform pgq.ticker(i_queue_name);
    perform pgq.tune_storage(i_queue_name);
    perform pgq._build_insert_event_static();
    return 1;
end
$$;

-- Drops a queue with its event tables, ticks and sequences. Without x_force the queue must
-- have no consumers; with it, they are unregistered first. Returns 1.
create or replace function pgq.drop_queue(x_queue_name text, x_force bool) returns integer
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    q record;
    v_consumer text;
begin
    lock table pgq.queue in share row exclusive mode;
    select queue_id, queue_name, queue_ntables, queue_data_pfx, queue_event_seq,
           queue_tick_seq into q
      from pgq.queue where queue_name = x_queue_name
       for update;
    if not found then
        raise exception 'No such event queue';
    end if;

    if x_force then
        for v_consumer in
            select c.co_name
              from pgq.subscription s join pgq.consumer c on c.co_id = s.sub_consumer
             where s.sub_queue = q.queue_id
             order by 1
        loop
            perform pgq.unregister_consumer(q.queue_name, v_consumer);
        end loop;
    elsif exists (select 1 from pgq.subscription where sub_queue = q.queue_id) then
        raise exception 'cannot drop queue, consumers still attached';
    end if;

    for i in 0 .. q.queue_ntables - 1 loop
        execute format('drop table if exists %s', pgq.quote_fqname(q.queue_data_pfx || '_' || i));
    end loop;
    execute format('drop table if exists %s', pgq.quote_fqname(q.queue_data_pfx));

    delete from pgq.retry_queue where ev_queue = q.queue_id;
    delete from pgq.tick where tick_queue = q.queue_id;
    execute format('drop sequence if exists %s', pgq.quote_fqname(q.queue_tick_seq));
    execute format('drop sequence if exists %s', pgq.quote_fqname(q.queue_event_seq));
    delete from pgq.queue where queue_id = q.queue_id;
    perform pgq._build_insert_event_static();
    return 1;
end
$$;

create or replace function pgq.drop_queue(x_queue_name text) returns integer
language sql strict
set search_path = pg_catalog, pg_temp
as $$ select pgq.drop_queue(x_queue_name, false) $$;

-- Changes one queue setting, named without its queue_ prefix. Returns 1.
create or replace function pgq.set_queue_config(x_queue_name text, x_param_name text,
                                                x_param_value text) returns integer
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_queue_id integer;
begin
    if x_queue_name is null or x_param_name is null then
        raise exception 'Invalid NULL value';
    end if;
    select queue_id into v_queue_id from pgq.queue where queue_name = x_queue_name;
    if not found then
        raise exception 'No such event queue';
    end if;
    if x_param_name not in ('ticker_max_count', 'ticker_max_lag', 'ticker_idle_period',
                            'ticker_paused', 'rotation_period', 'external_ticker') then
        raise exception 'cannot change parameter "%s"', x_param_name;
    end if;
    execute format('update pgq.queue set %I = %L where queue_id = $1',
                   'queue_' || x_param_name, x_param_value)
      using v_queue_id;
    return 1;
end
$$;

-- ------------------------------------------------------------------------------------------
-- Producing events
-- ------------------------------------------------------------------------------------------

-- Static INSERTs for the event tables, generated from pgq.queue by create_queue, drop_queue
-- and the install script: one plain INSERT per event table, so every session plans each of
-- them once, instead of parsing and planning a dynamic statement for every event. Returns
-- NULL for a table it does not know (a queue changed behind its back), and the caller falls
-- back to dynamic SQL. Everything in the generated code is fully qualified, so it is safe
-- without a search_path setting (a setting would cost time on every call).
create or replace function pgq._build_insert_event_static() returns integer
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    q record;
    v_table text;
    v_body text := '';
    v_count integer := 0;
begin
    for q in select queue_id, queue_data_pfx, queue_ntables from pgq.queue order by queue_id
    loop
        v_body := v_body || format($f$
    if i_queue_id operator(pg_catalog.=) %s then$f$, q.queue_id);
        for i in 0 .. q.queue_ntables - 1 loop
            v_table := q.queue_data_pfx || '_' || i;
            v_body := v_body || format($f$
        if i_table operator(pg_catalog.=) %L then
            insert into %s
                (ev_time, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4)
            values (pg_catalog.now(), i_type, i_data, i_extra1, i_extra2, i_extra3, i_extra4)
            returning ev_id into v_id;
            return v_id;
        end if;$f$, v_table, pgq.quote_fqname(v_table));
            v_count := v_count + 1;
        end loop;
        v_body := v_body || $f$
    end if;$f$;
    end loop;
    execute format('create or replace function pgq._insert_event_static(i_queue_id integer,'
                   ' i_table text, i_type text, i_data text, i_extra1 text, i_extra2 text,'
                   ' i_extra3 text, i_extra4 text) returns bigint language plpgsql as %L',
                   $f$
declare
    v_id bigint;
begin$f$ || v_body || $f$
    return null;
end
$f$);
    return v_count;
end
$$;

-- Writes one event into the queue's current event table and returns its id. This is the
-- hot path of every captured row: one indexed lookup of the queue, then one INSERT with a
-- cached plan (pgq._insert_event_static). SECURITY DEFINER without a search_path setting,
-- so every function and operator is schema-qualified.
--
-- The transaction id is taken before the lookup: a writer that still sees the table that
-- was current before a rotation then always has a transaction id below the rotation's
-- step2 mark, which is what lets readers skip that table later.
create or replace function pgq.insert_event(queue_name text, ev_type text, ev_data text,
                                            ev_extra1 text, ev_extra2 text, ev_extra3 text,
                                            ev_extra4 text) returns bigint
language plpgsql security definer
as $$
declare
    -- (bigint, integer and boolean are keywords; text is a name, so it is qualified too.)
    v_txid bigint;
    v_queue_id integer;
    v_table pg_catalog.text;
    v_disabled boolean;
    v_limit integer;
    v_id bigint;
begin
    if $1 is null then
        raise exception 'Queue name must not be NULL';
    end if;
    v_txid := pg_catalog.txid_current();
    select q.queue_id,
           q.queue_data_pfx operator(pg_catalog.||) '_' operator(pg_catalog.||) q.queue_cur_table,
           q.queue_disable_insert, q.queue_per_tx_limit
      into v_queue_id, v_table, v_disabled, v_limit
      from pgq.queue q
     where q.queue_name operator(pg_catalog.=) $1;
    if not found then
        raise exception 'No such queue';
    end if;
    if v_disabled or v_limit is not null then
        perform pgq._insert_check($1, v_table, v_txid, v_disabled, v_limit);
    end if;
    v_id := pgq._insert_event_static(v_queue_id, v_table, $2, $3, $4, $5, $6, $7);
    if v_id is null then
        execute 'insert into ' operator(pg_catalog.||) pgq.quote_fqname(v_table)
                operator(pg_catalog.||)
                ' (ev_time, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4)'
                ' values (pg_catalog.now(), $1, $2, $3, $4, $5, $6) returning ev_id'
           into v_id
          using $2, $3, $4, $5, $6, $7;
    end if;
    return v_id;
end
$$;

-- Advances a queue's event sequence by one.
create or replace function pgq._use_event_id(i_queue_name text) returns void
language sql
set search_path = pg_catalog, pg_temp
as $$
    select nextval(pgq.quote_fqname(q.queue_event_seq)::regclass)
      from pgq.queue q where q.queue_name = i_queue_name
$$;

-- The rarely needed checks of an insert: inserts disabled, or a per-transaction limit.
create or replace function pgq._insert_check(i_queue_name text, i_table text, i_txid bigint,
                                             i_disabled boolean, i_limit integer)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    v_count integer;
begin
    if i_disabled and current_setting('session_replication_role') <> 'replica' then
        -- Like PgQ, a refused insert still uses up an event id.
        perform pgq._use_event_id(i_queue_name);
        raise exception 'Insert into queue disallowed';
    end if;
    if i_limit is not null then
        execute format('select count(*) from (select 1 from %s where ev_txid = $1 limit $2) c',
                       pgq.quote_fqname(i_table))
           into v_count using i_txid, i_limit;
        if v_count >= i_limit then
            perform pgq._use_event_id(i_queue_name);
            raise exception 'Queue ''%'' allows max % events from one TX', i_queue_name, i_limit;
        end if;
    end if;
end
$$;

create or replace function pgq.insert_event(queue_name text, ev_type text, ev_data text)
returns bigint
language sql
set search_path = pg_catalog, pg_temp
as $$ select pgq.insert_event($1, $2, $3, null, null, null, null) $$;

-- Writes an event with every field given (used to move retried events back, and by
-- external tools). A NULL ev_id takes the next id; the event sequence always advances, so
-- that the ticker notices the new event. Returns the event id.
create or replace function pgq.insert_event_raw(queue_name text, ev_id bigint,
                                                ev_time timestamptz, ev_owner integer,
                                                ev_retry integer, ev_type text, ev_data text,
                                                ev_extra1 text, ev_extra2 text, ev_extra3 text,
                                                ev_extra4 text) returns int8
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    v_txid bigint;
    v_table text;
    v_disabled boolean;
    v_limit integer;
    v_seq text;
    v_id bigint;
begin
    if $1 is null then
        raise exception 'Queue name must not be NULL';
    end if;
    v_txid := txid_current();
    select q.queue_data_pfx || '_' || q.queue_cur_table, q.queue_disable_insert,
           q.queue_per_tx_limit, q.queue_event_seq
      into v_table, v_disabled, v_limit, v_seq
      from pgq.queue q
     where q.queue_name = $1;
    if not found then
        raise exception 'No such queue';
    end if;
    if v_disabled or v_limit is not null then
        perform pgq._insert_check($1, v_table, v_txid, v_disabled, v_limit);
    end if;
    v_id := nextval(pgq.quote_fqname(v_seq)::regclass);
    execute 'insert into ' || pgq.quote_fqname(v_table)
            || ' (ev_id, ev_time, ev_owner, ev_retry, ev_type, ev_data, ev_extra1, ev_extra2,'
               ' ev_extra3, ev_extra4) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)'
      using coalesce($2, v_id), coalesce($3, now()), $4, $5, $6, $7, $8, $9, $10, $11;
    return coalesce($2, v_id);
end
$$;

-- The table events of the queue go to now (valid until the transaction ends), for writers
-- that INSERT or COPY into it directly.
create or replace function pgq.current_event_table(x_queue_name text) returns text
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    v_pfx text;
    v_cur integer;
    v_disabled boolean;
begin
    select queue_data_pfx, queue_cur_table, queue_disable_insert
      into v_pfx, v_cur, v_disabled
      from pgq.queue where queue_name = x_queue_name;
    if not found then
        raise exception 'Event queue not found';
    end if;
    if v_disabled and current_setting('session_replication_role') <> 'replica' then
        raise exception 'Writing to queue disabled';
    end if;
    return v_pfx || '_' || v_cur;
end
$$;

-- ------------------------------------------------------------------------------------------
-- Ticker
-- ------------------------------------------------------------------------------------------

-- Ticks one queue if a tick is due: when max_count events wait, when events wait longer
-- than max_lag, or when the queue has been idle for a while (idle ticks back off, doubling
-- their spacing up to idle_period, never closer than max_lag / 2). Returns the new tick id,
-- or NULL when no tick was due.
--
-- The queue row is locked first, so ticks of one queue are made one after another and a
-- later tick id always has a later snapshot.
create or replace function pgq.ticker(i_queue_name text) returns bigint
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    q record;
    v_event_seq bigint;
    v_last record;
    v_prev_time timestamptz;
    v_lag interval;
    v_new bigint;
    v_txid bigint;
    v_tick_id bigint;
begin
    select queue_id, queue_external_ticker, queue_ticker_paused, queue_ticker_max_count,
           queue_ticker_max_lag, queue_ticker_idle_period, queue_event_seq, queue_tick_seq
      into q
      from pgq.queue where queue_name = i_queue_name
       for no key update;
    if not found then
        raise exception 'no such queue';
    end if;
    if q.queue_external_ticker then
        raise exception 'This queue has external tick source.';
    end if;
    if q.queue_ticker_paused then
        raise exception 'Ticker has been paused for this queue';
    end if;

    v_event_seq := pgq.seq_getval(q.queue_event_seq);

    select t.tick_id, t.tick_time, t.tick_event_seq, t.tick_snapshot into v_last
      from pgq.tick t
     where t.tick_queue = q.queue_id
     order by t.tick_queue desc, t.tick_id desc
     limit 1;
    if found then
        v_txid := txid_current();
        if txid_snapshot_xmin(v_last.tick_snapshot) > v_txid then
            raise exception 'Invalid PgQ state: old xmin=%, old xmax=%, cur txid=%',
                txid_snapshot_xmin(v_last.tick_snapshot),
                txid_snapshot_xmax(v_last.tick_snapshot), v_txid;
        end if;
        v_lag := now() - v_last.tick_time;
        v_new := v_event_seq - v_last.tick_event_seq;
        if v_new < 0 then
            raise warning 'Negative new_events?  old=% cur=%', v_last.tick_event_seq, v_event_seq;
        end if;
        if txid_snapshot_xmax(v_last.tick_snapshot) > v_txid then
            raise warning 'Dubious PgQ state: old xmax=%, cur txid=%',
                txid_snapshot_xmax(v_last.tick_snapshot), v_txid;
        end if;

        if v_new > 0 then
            if v_new < q.queue_ticker_max_count and v_lag < q.queue_ticker_max_lag then
                return null;
            end if;
        else
            select t.tick_time into v_prev_time
              from pgq.tick t
             where t.tick_queue = q.queue_id and t.tick_id < v_last.tick_id
             order by t.tick_queue desc, t.tick_id desc
             limit 1;
            if found then
                if v_lag < q.queue_ticker_max_lag / 2
                   or (v_lag < (v_last.tick_time - v_prev_time) * 2
                       and v_lag < q.queue_ticker_idle_period) then
                    return null;
                end if;
            end if;
        end if;
    end if;

    -- Leaves a new row version behind, so that a ticker in a REPEATABLE READ or
    -- SERIALIZABLE transaction whose snapshot predates this tick fails to lock the row
    -- instead of adding a tick with an older snapshot after this one.
    update pgq.queue set queue_ticker_paused = queue_ticker_paused where queue_id = q.queue_id;
    insert into pgq.tick (tick_queue, tick_id, tick_event_seq)
    values (q.queue_id, nextval(pgq.quote_fqname(q.queue_tick_seq)::regclass), v_event_seq)
    returning tick_id into v_tick_id;
    return v_tick_id;
end
$$;

-- Ticks every queue that is neither paused nor externally ticked, where due. Returns the
-- number of queues that got a tick.
create or replace function pgq.ticker() returns bigint
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_name text;
    v_count bigint := 0;
begin
    for v_name in
        select queue_name from pgq.queue
         where not queue_external_ticker and not queue_ticker_paused
         order by queue_name
    loop
        if pgq.ticker(v_name) > 0 then
            v_count := v_count + 1;
        end if;
    end loop;
    return v_count;
end
$$;

-- A tick made elsewhere (a queue fed from another database): inserts tick i_tick_id with
-- the given time and event sequence value, and moves both sequences forward to them.
create or replace function pgq.ticker(i_queue_name text, i_tick_id bigint,
                                      i_orig_timestamp timestamptz, i_event_seq bigint)
returns bigint
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    q record;
begin
    select queue_id, queue_event_seq, queue_tick_seq into q
      from pgq.queue
     where queue_name = i_queue_name and queue_external_ticker and not queue_ticker_paused
       for no key update;
    if not found then
        raise exception 'queue not found or ticker disabled: %', i_queue_name;
    end if;
    update pgq.queue set queue_ticker_paused = queue_ticker_paused where queue_id = q.queue_id;
    insert into pgq.tick (tick_queue, tick_id, tick_time, tick_event_seq)
    values (q.queue_id, i_tick_id, i_orig_timestamp, i_event_seq);
    perform pgq.seq_setval(q.queue_tick_seq, i_tick_id);
    perform pgq.seq_setval(q.queue_event_seq, i_event_seq);
    return i_tick_id;
end
$$;

-- Makes the next pgq.ticker() call tick the queue, by moving its event sequence far ahead.
-- Returns the queue's latest tick id as it is now; wait until that changes.
create or replace function pgq.force_tick(i_queue_name text) returns bigint
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    q record;
    v_seq regclass;
    v_last bigint;
begin
    select queue_id, queue_event_seq, queue_ticker_max_count into q
      from pgq.queue
     where queue_name = i_queue_name and not queue_external_ticker
       and not queue_ticker_paused;
    if not found then
        return null;
    end if;
    v_seq := pgq.quote_fqname(q.queue_event_seq)::regclass;
    perform setval(v_seq, nextval(v_seq) + q.queue_ticker_max_count * 2 + 1000);
    select t.tick_id into v_last
      from pgq.tick t
     where t.tick_queue = q.queue_id
     order by t.tick_queue desc, t.tick_id desc
     limit 1;
    return v_last;
end
$$;

-- ------------------------------------------------------------------------------------------
-- Consumers
-- ------------------------------------------------------------------------------------------

-- Registers a consumer on a queue at tick x_tick_pos, or at the latest tick when it is
-- NULL. An existing registration is moved to x_tick_pos (dropping its open batch) when one
-- is given. Returns 1 for a new registration, 0 for an existing one.
create or replace function pgq.register_consumer_at(x_queue_name text, x_consumer_name text,
                                                    x_tick_pos bigint) returns integer
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_queue_id integer;
    v_consumer_id integer;
    v_tick bigint;
begin
    select queue_id into v_queue_id from pgq.queue where queue_name = x_queue_name;
    if not found then
        raise exception 'Event queue not created yet';
    end if;

    -- Two sessions may register the same new name at once: the unique name decides, and
    -- the one that loses reads the winner's row.
    insert into pgq.consumer (co_name) values (x_consumer_name)
    on conflict (co_name) do nothing
    returning co_id into v_consumer_id;
    if v_consumer_id is null then
        select co_id into v_consumer_id from pgq.consumer where co_name = x_consumer_name
           for update;
    end if;

    if x_tick_pos is not null then
        perform 1 from pgq.tick where tick_queue = v_queue_id and tick_id = x_tick_pos;
        if not found then
            raise exception 'cannot reposition, tick not found: %', x_tick_pos;
        end if;
    end if;

    perform 1 from pgq.subscription
     where sub_queue = v_queue_id and sub_consumer = v_consumer_id
       for update;
    if found then
        if x_tick_pos is not null then
            update pgq.subscription
               set sub_last_tick = x_tick_pos, sub_batch = null, sub_next_tick = null,
                   sub_active = now()
             where sub_queue = v_queue_id and sub_consumer = v_consumer_id;
        end if;
        return 0;
    end if;

    if x_tick_pos is null then
        select t.tick_id into v_tick
          from pgq.tick t
         where t.tick_queue = v_queue_id
         order by t.tick_queue desc, t.tick_id desc
         limit 1;
        if v_tick is null then
            raise exception 'No ticks for this queue.  Please run ticker on database.';
        end if;
    else
        v_tick := x_tick_pos;
    end if;
    insert into pgq.subscription (sub_queue, sub_consumer, sub_last_tick)
    values (v_queue_id, v_consumer_id, v_tick)
    on conflict (sub_queue, sub_consumer) do nothing;
    -- Nothing inserted: a concurrent registration of the same consumer came first.
    if not found then
        return 0;
    end if;
    return 1;
end
$$;

-- Registers a consumer at the queue's latest tick: it sees events committed from then on.
-- Returns 1 for a new registration, 0 for an existing one.
create or replace function pgq.register_consumer(x_queue_name text, x_consumer_id text)
returns integer
language sql security definer
set search_path = pg_catalog, pg_temp
as $$ select pgq.register_consumer_at(x_queue_name, x_consumer_id, null) $$;

-- Removes a consumer from a queue, with its retry events. Returns the number of
-- registrations removed (0 when it was not registered).
create or replace function pgq.unregister_consumer(x_queue_name text, x_consumer_name text)
returns integer
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s record;
    v_count integer;
begin
    select sub.sub_id, sub.sub_queue, sub.sub_consumer, sub.sub_last_tick, sub.sub_next_tick
      into s
      from pgq.subscription sub
      join pgq.queue q on q.queue_id = sub.sub_queue
      join pgq.consumer c on c.co_id = sub.sub_consumer
     where q.queue_name = x_queue_name and c.co_name = x_consumer_name
       for update of sub, c;
    if not found then
        return 0;
    end if;

    -- Cooperating sub-consumers share one sub_id; removing one of several (an idle one, or
    -- one in the middle of a batch) leaves the others and the shared retry events alone.
    if (s.sub_last_tick is null) = (s.sub_next_tick is null) then
        select count(*) into v_count from pgq.subscription where sub_id = s.sub_id;
        if v_count > 1 then
            delete from pgq.subscription
             where sub_queue = s.sub_queue and sub_consumer = s.sub_consumer;
            return 1;
        end if;
    end if;

    delete from pgq.retry_queue where ev_owner = s.sub_id;
    delete from pgq.subscription where sub_id = s.sub_id;
    get diagnostics v_count = row_count;
    delete from pgq.consumer c
     where c.co_id = s.sub_consumer
       and not exists (select 1 from pgq.subscription x where x.sub_consumer = c.co_id);
    return v_count;
end
$$;

-- ------------------------------------------------------------------------------------------
-- Batches
-- ------------------------------------------------------------------------------------------

-- The end tick of a batch wanted to hold at least i_min_count events or span at least
-- i_min_interval: the queue's latest tick when that is at most twice the threshold away,
-- else the first tick that meets the threshold. All NULL when no tick qualifies.
create or replace function pgq.find_tick_helper(i_queue_id int4, i_prev_tick_id int8,
                                                i_prev_tick_time timestamptz,
                                                i_prev_tick_seq int8, i_min_count int8,
                                                i_min_interval interval,
                                                out next_tick_id int8,
                                                out next_tick_time timestamptz,
                                                out next_tick_seq int8)
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
declare
    v_count_diff int8;
    v_time_diff interval;
    v_enough boolean := false;
    v_far boolean := false;
begin
    select t.tick_id, t.tick_time, t.tick_event_seq
      into next_tick_id, next_tick_time, next_tick_seq
      from pgq.tick t
     where t.tick_queue = i_queue_id and t.tick_id > i_prev_tick_id
     order by t.tick_queue desc, t.tick_id desc
     limit 1;
    if not found then
        return;
    end if;

    v_count_diff := next_tick_seq - i_prev_tick_seq;
    v_time_diff := next_tick_time - i_prev_tick_time;
    if i_min_count is not null then
        if v_count_diff >= i_min_count then
            v_enough := true;
        end if;
        if v_count_diff > i_min_count * 2 then
            v_far := true;
        end if;
    end if;
    if i_min_interval is not null then
        if v_time_diff >= i_min_interval then
            v_enough := true;
        end if;
        if v_time_diff > i_min_interval * 2 then
            v_far := true;
        end if;
    end if;

    if v_far then
        -- The head is far beyond the threshold: stop at the first tick that meets it.
        select t.tick_id, t.tick_time, t.tick_event_seq
          into next_tick_id, next_tick_time, next_tick_seq
          from pgq.tick t
         where t.tick_queue = i_queue_id and t.tick_id > i_prev_tick_id
           and (t.tick_event_seq - i_prev_tick_seq >= i_min_count
                or t.tick_time - i_prev_tick_time >= i_min_interval)
         order by t.tick_queue, t.tick_id
         limit 1;
        v_enough := true;
    end if;

    if not v_enough then
        next_tick_id := null;
        next_tick_time := null;
        next_tick_seq := null;
    end if;
end
$$;

-- Hands the consumer its next batch: the open one again if it has not finished it, else a
-- new one from its last tick to the next tick (or, with i_min_count / i_min_interval, a
-- later tick; with i_min_lag, only a tick at least that old). All columns NULL when there is
-- nothing to do yet.
create or replace function pgq.next_batch_custom(i_queue_name text, i_consumer_name text,
                                                 i_min_lag interval, i_min_count int4,
                                                 i_min_interval interval,
                                                 out batch_id int8, out cur_tick_id int8,
                                                 out prev_tick_id int8,
                                                 out cur_tick_time timestamptz,
                                                 out prev_tick_time timestamptz,
                                                 out cur_tick_event_seq int8,
                                                 out prev_tick_event_seq int8)
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s record;
    v_tick_id int8;
    v_tick_time timestamptz;
    v_tick_seq int8;
begin
    -- The subscription row is locked first and read after, in a statement of its own: a
    -- caller that waited for the lock then sees what the one before it committed (its batch,
    -- or its finished position) with the matching ticks, never the row's new version joined
    -- to the ticks of the old one.
    perform 1
       from pgq.queue q
       join pgq.subscription sub on sub.sub_queue = q.queue_id
       join pgq.consumer c on c.co_id = sub.sub_consumer
      where q.queue_name = i_queue_name and c.co_name = i_consumer_name
        for update of sub;
    select sub.sub_queue, sub.sub_consumer, sub.sub_last_tick, sub.sub_batch,
           t1.tick_id as last_id, t1.tick_time as last_time, t1.tick_event_seq as last_seq,
           t2.tick_id as next_id, t2.tick_time as next_time, t2.tick_event_seq as next_seq
      into s
      from pgq.queue q
      join pgq.subscription sub on sub.sub_queue = q.queue_id
      join pgq.consumer c on c.co_id = sub.sub_consumer
      left join pgq.tick t1 on t1.tick_queue = sub.sub_queue and t1.tick_id = sub.sub_last_tick
      left join pgq.tick t2 on t2.tick_queue = sub.sub_queue and t2.tick_id = sub.sub_next_tick
     where q.queue_name = i_queue_name and c.co_name = i_consumer_name;
    if not found then
        raise exception 'Not subscriber to queue: %/%',
            coalesce(i_queue_name, 'NULL'), coalesce(i_consumer_name, 'NULL');
    end if;
    if s.last_id is null then
        raise exception 'PgQ corruption: Consumer % on queue % does not see tick %',
            i_consumer_name, i_queue_name, coalesce(s.sub_last_tick::text, 'NULL');
    end if;

    if s.sub_batch is not null then
        batch_id := s.sub_batch;
        cur_tick_id := s.next_id;
        cur_tick_time := s.next_time;
        cur_tick_event_seq := s.next_seq;
        prev_tick_id := s.last_id;
        prev_tick_time := s.last_time;
        prev_tick_event_seq := s.last_seq;
        return;
    end if;

    if i_min_count is null and i_min_interval is null then
        select t.tick_id, t.tick_time, t.tick_event_seq
          into v_tick_id, v_tick_time, v_tick_seq
          from pgq.tick t
         where t.tick_queue = s.sub_queue and t.tick_id > s.last_id
         order by t.tick_queue, t.tick_id
         limit 1;
    else
        select h.next_tick_id, h.next_tick_time, h.next_tick_seq
          into v_tick_id, v_tick_time, v_tick_seq
          from pgq.find_tick_helper(s.sub_queue, s.last_id, s.last_time, s.last_seq,
                                    i_min_count, i_min_interval) h;
    end if;
    if v_tick_id is null
       or (i_min_lag is not null and now() - v_tick_time < i_min_lag) then
        -- Nothing to do yet: all columns NULL.
        return;
    end if;

    batch_id := nextval('pgq.batch_id_seq');
    cur_tick_id := v_tick_id;
    cur_tick_time := v_tick_time;
    cur_tick_event_seq := v_tick_seq;
    prev_tick_id := s.last_id;
    prev_tick_time := s.last_time;
    prev_tick_event_seq := s.last_seq;
    update pgq.subscription
       set sub_batch = batch_id, sub_next_tick = cur_tick_id, sub_active = now()
     where sub_queue = s.sub_queue and sub_consumer = s.sub_consumer;
end
$$;

create or replace function pgq.next_batch_info(i_queue_name text, i_consumer_name text,
                                               out batch_id int8, out cur_tick_id int8,
                                               out prev_tick_id int8,
                                               out cur_tick_time timestamptz,
                                               out prev_tick_time timestamptz,
                                               out cur_tick_event_seq int8,
                                               out prev_tick_event_seq int8)
language sql
set search_path = pg_catalog, pg_temp
as $$
    select * from pgq.next_batch_custom(i_queue_name, i_consumer_name, null, null, null)
$$;

-- The consumer's next batch id, or NULL when there is none yet.
create or replace function pgq.next_batch(i_queue_name text, i_consumer_name text)
returns int8
language sql
set search_path = pg_catalog, pg_temp
as $$
    select batch_id from pgq.next_batch_custom(i_queue_name, i_consumer_name, null, null, null)
$$;

-- The event tables that can hold events of a batch: the previous table, the current one,
-- or both (previous first), decided from the batch's snapshots and the queue's rotation
-- marks. On top of those rules, the previous table is kept whenever it holds a row whose
-- transaction id falls in the batch's range, so a late writer that still used it is read.
create or replace function pgq.batch_event_tables(x_batch_id bigint) returns setof text
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
declare
    b record;
    v_prev text;
    v_cur text;
    v_prev_has_rows boolean;
begin
    select txid_snapshot_xmin(t1.tick_snapshot) as tx_min,
           txid_snapshot_xmax(t2.tick_snapshot) as tx_max,
           q.queue_data_pfx, q.queue_ntables, q.queue_cur_table,
           q.queue_switch_step1, q.queue_switch_step2
      into b
      from pgq.subscription s
      join pgq.queue q on q.queue_id = s.sub_queue
      join pgq.tick t1 on t1.tick_queue = s.sub_queue and t1.tick_id = s.sub_last_tick
      join pgq.tick t2 on t2.tick_queue = s.sub_queue and t2.tick_id = s.sub_next_tick
     where s.sub_batch = x_batch_id;
    if not found then
        raise exception 'Cannot find data for batch %', x_batch_id;
    end if;

    v_cur := b.queue_data_pfx || '_' || b.queue_cur_table;
    if b.queue_ntables < 2 then
        return next v_cur;
        return;
    end if;
    v_prev := b.queue_data_pfx || '_'
              || case when b.queue_cur_table = 0 then b.queue_ntables - 1
                      else b.queue_cur_table - 1 end;

    if b.tx_max < b.queue_switch_step1 then
        -- Every transaction of the batch ended before the last rotation.
        return next v_prev;
        return;
    end if;
    if b.queue_switch_step2 is not null and b.tx_min > b.queue_switch_step2 then
        execute format('select exists (select 1 from %s where ev_txid >= $1 and ev_txid < $2)',
                       pgq.quote_fqname(v_prev))
           into v_prev_has_rows using b.tx_min, b.tx_max;
        if not v_prev_has_rows then
            -- Every writer of the previous table was visible before the batch started.
            return next v_cur;
            return;
        end if;
    end if;
    return next v_prev;
    return next v_cur;
end
$$;

-- The SELECT that returns a batch's events, ordered by ev_id. Membership is decided by the
-- two tick snapshots: rows of transactions visible in the later one and not in the earlier
-- one. Transaction ids at or above the earlier snapshot's xmax are found with a range scan
-- of the txid index; transactions that were running at the earlier tick and ended before the
-- later one are read by an explicit id list, or folded into the range when they lie close
-- below it. Retried events are seen only by the consumer that owns them.
create or replace function pgq.batch_event_sql(x_batch_id bigint) returns text
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
declare
    -- A late transaction id this close below the range start is cheaper to scan than list.
    c_fold_gap constant bigint := 100;
    b record;
    v_start bigint;
    v_end bigint;
    v_late bigint;
    v_list bigint[] := '{}';
    v_cols text := 'ev_id, ev_time, ev_txid, ev_retry, ev_type, ev_data, '
                   'ev_extra1, ev_extra2, ev_extra3, ev_extra4';
    v_owner text;
    v_s1 text;
    v_s2 text;
    v_tbl text;
    v_sql text := '';
begin
    select s.sub_id, t1.tick_snapshot as snap1, t2.tick_snapshot as snap2
      into b
      from pgq.subscription s
      join pgq.tick t1 on t1.tick_queue = s.sub_queue and t1.tick_id = s.sub_last_tick
      join pgq.tick t2 on t2.tick_queue = s.sub_queue and t2.tick_id = s.sub_next_tick
     where s.sub_batch = x_batch_id;
    if not found then
        raise exception 'batch not found';
    end if;

    v_start := txid_snapshot_xmax(b.snap1);
    v_end := txid_snapshot_xmax(b.snap2);
    -- Running at the first tick, ended by the second: committed ones belong to the batch.
    for v_late in
        select x from txid_snapshot_xip(b.snap1) x
        except
        select y from txid_snapshot_xip(b.snap2) y
        order by 1 desc
    loop
        if v_late >= v_start - c_fold_gap then
            v_start := v_late;
        else
            v_list := v_list || v_late;
        end if;
    end loop;

    v_owner := format('(ev_owner is null or ev_owner = %s)', b.sub_id);
    v_s1 := quote_literal(b.snap1::text) || '::pg_catalog.txid_snapshot';
    v_s2 := quote_literal(b.snap2::text) || '::pg_catalog.txid_snapshot';

    for v_tbl in select pgq.quote_fqname(t) from pgq.batch_event_tables(x_batch_id) t loop
        if v_sql <> '' then
            v_sql := v_sql || ' union all ';
        end if;
        v_sql := v_sql || format(
            'select %s from %s where ev_txid >= %s and ev_txid <= %s'
            ' and pg_catalog.txid_visible_in_snapshot(ev_txid, %s)'
            ' and not pg_catalog.txid_visible_in_snapshot(ev_txid, %s) and %s',
            v_cols, v_tbl, v_start, v_end, v_s2, v_s1, v_owner);
        if cardinality(v_list) > 0 then
            v_sql := v_sql || format(
                ' union all select %s from %s where ev_txid in (%s) and %s',
                v_cols, v_tbl, array_to_string(v_list, ','), v_owner);
        end if;
    end loop;
    if v_sql = '' then
        raise exception 'could not construct sql for batch %', x_batch_id;
    end if;
    return v_sql || ' order by 1';
end
$$;

-- All events of a batch, ordered by ev_id.
create or replace function pgq.get_batch_events(x_batch_id bigint, out ev_id bigint,
                                                out ev_time timestamptz, out ev_txid bigint,
                                                out ev_retry int4, out ev_type text,
                                                out ev_data text, out ev_extra1 text,
                                                out ev_extra2 text, out ev_extra3 text,
                                                out ev_extra4 text)
returns setof record
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
begin
    return query execute pgq.batch_event_sql(x_batch_id);
end
$$;

-- Opens cursor i_cursor_name over a batch's events (optionally filtered by i_extra_where)
-- and returns its first i_quick_limit rows; the caller fetches the rest from the cursor and
-- closes it before the transaction ends.
create or replace function pgq.get_batch_cursor(i_batch_id bigint, i_cursor_name text,
                                                i_quick_limit int4, i_extra_where text,
                                                out ev_id bigint, out ev_time timestamptz,
                                                out ev_txid bigint, out ev_retry int4,
                                                out ev_type text, out ev_data text,
                                                out ev_extra1 text, out ev_extra2 text,
                                                out ev_extra3 text, out ev_extra4 text)
returns setof record
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    v_sql text;
    v_cursor refcursor;
begin
    if i_batch_id is null or i_cursor_name is null or i_quick_limit is null then
        return;
    end if;
    v_sql := pgq.batch_event_sql(i_batch_id);
    if i_extra_where is not null then
        if right(v_sql, 11) = ' order by 1' then
            v_sql := left(v_sql, -11);
        end if;
        v_sql := 'select * from (' || v_sql || ') _evs where ' || i_extra_where
                 || ' order by 1';
    end if;
    v_cursor := i_cursor_name;
    open v_cursor no scroll for execute v_sql;
    for i in 1 .. i_quick_limit loop
        fetch v_cursor into ev_id, ev_time, ev_txid, ev_retry, ev_type, ev_data,
                            ev_extra1, ev_extra2, ev_extra3, ev_extra4;
        exit when not found;
        return next;
    end loop;
end
$$;

create or replace function pgq.get_batch_cursor(i_batch_id bigint, i_cursor_name text,
                                                i_quick_limit int4,
                                                out ev_id bigint, out ev_time timestamptz,
                                                out ev_txid bigint, out ev_retry int4,
                                                out ev_type text, out ev_data text,
                                                out ev_extra1 text, out ev_extra2 text,
                                                out ev_extra3 text, out ev_extra4 text)
returns setof record
language sql strict
set search_path = pg_catalog, pg_temp
as $$
    select * from pgq.get_batch_cursor(i_batch_id, i_cursor_name, i_quick_limit, null)
$$;

-- Puts one event of an open batch into the retry queue, to come back to this consumer at
-- x_retry_time with ev_retry increased. Returns 1, or 0 when it is queued for retry already.
create or replace function pgq.event_retry(x_batch_id bigint, x_event_id bigint,
                                           x_retry_time timestamptz) returns integer
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_sql text;
    v_count integer;
begin
    v_sql := pgq.batch_event_sql(x_batch_id);
    if right(v_sql, 11) = ' order by 1' then
        v_sql := left(v_sql, -11);
    end if;
    execute 'insert into pgq.retry_queue (ev_retry_after, ev_queue, ev_id, ev_time, ev_txid,'
            ' ev_owner, ev_retry, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4)'
            ' select $1, s.sub_queue, e.ev_id, e.ev_time, null, s.sub_id,'
            ' coalesce(e.ev_retry, 0) + 1, e.ev_type, e.ev_data, e.ev_extra1, e.ev_extra2,'
            ' e.ev_extra3, e.ev_extra4'
            ' from (' || v_sql || ') e, pgq.subscription s'
            ' where s.sub_batch = $2 and e.ev_id = $3'
            ' limit 1'
      using x_retry_time, x_batch_id, x_event_id;
    get diagnostics v_count = row_count;
    if v_count = 0 then
        raise exception 'event not found';
    end if;
    return 1;
exception
    when unique_violation then
        return 0;
end
$$;

create or replace function pgq.event_retry(x_batch_id bigint, x_event_id bigint,
                                           x_retry_seconds integer) returns integer
language sql security definer
set search_path = pg_catalog, pg_temp
as $$
    select pgq.event_retry(x_batch_id, x_event_id,
                           current_timestamp + x_retry_seconds * interval '1 second')
$$;

-- Puts an arbitrary event into the retry queue of a consumer (ev_retry stored as given).
-- A NULL x_ev_id takes the next event id. Returns the event id.
create or replace function pgq.event_retry_raw(x_queue text, x_consumer text,
                                               x_retry_after timestamptz, x_ev_id bigint,
                                               x_ev_time timestamptz, x_ev_retry integer,
                                               x_ev_type text, x_ev_data text,
                                               x_ev_extra1 text, x_ev_extra2 text,
                                               x_ev_extra3 text, x_ev_extra4 text)
returns bigint
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s record;
    v_id bigint;
begin
    select sub.sub_id, sub.sub_queue, q.queue_event_seq into s
      from pgq.subscription sub
      join pgq.queue q on q.queue_id = sub.sub_queue
      join pgq.consumer c on c.co_id = sub.sub_consumer
     where q.queue_name = x_queue and c.co_name = x_consumer;
    if not found then
        raise exception 'consumer not registered';
    end if;
    v_id := coalesce(x_ev_id, nextval(pgq.quote_fqname(s.queue_event_seq)::regclass));
    insert into pgq.retry_queue (ev_retry_after, ev_queue, ev_id, ev_time, ev_txid, ev_owner,
                                 ev_retry, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3,
                                 ev_extra4)
    values (x_retry_after, s.sub_queue, v_id, x_ev_time, null, s.sub_id, x_ev_retry,
            x_ev_type, x_ev_data, x_ev_extra1, x_ev_extra2, x_ev_extra3, x_ev_extra4);
    return v_id;
end
$$;

-- Puts every event of an open batch into the retry queue (those queued already are left as
-- they are). Returns the number of events added.
create or replace function pgq.batch_retry(i_batch_id bigint, i_retry_seconds integer)
returns integer
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    s record;
    v_count integer;
begin
    select sub_id, sub_queue into s from pgq.subscription where sub_batch = i_batch_id;
    if not found then
        raise exception 'batch_retry: batch % not found', i_batch_id;
    end if;
    insert into pgq.retry_queue (ev_retry_after, ev_queue, ev_id, ev_time, ev_txid, ev_owner,
                                 ev_retry, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3,
                                 ev_extra4)
    select distinct on (e.ev_id)
           current_timestamp + i_retry_seconds * interval '1 second', s.sub_queue, e.ev_id,
           e.ev_time, null, s.sub_id, coalesce(e.ev_retry, 0) + 1, e.ev_type, e.ev_data,
           e.ev_extra1, e.ev_extra2, e.ev_extra3, e.ev_extra4
      from pgq.get_batch_events(i_batch_id) e
     where not exists (select 1 from pgq.retry_queue r
                        where r.ev_owner = s.sub_id and r.ev_id = e.ev_id
                          and r.ev_queue = s.sub_queue)
     order by e.ev_id;
    get diagnostics v_count = row_count;
    return v_count;
end
$$;

-- Closes a batch: the consumer's position moves to the batch's end tick. Returns 1, or 0
-- (with a warning) when no open batch has that id.
create or replace function pgq.finish_batch(x_batch_id bigint) returns integer
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    update pgq.subscription
       set sub_active = now(), sub_last_tick = sub_next_tick, sub_next_tick = null,
           sub_batch = null
     where sub_batch = x_batch_id;
    if not found then
        raise warning 'finish_batch: batch % not found', x_batch_id;
        return 0;
    end if;
    return 1;
end
$$;

-- ------------------------------------------------------------------------------------------
-- Information
-- ------------------------------------------------------------------------------------------

-- One row per queue (all queues when i_queue_name is NULL), by name: settings, how long ago
-- the last tick was, events per second over the last ticks, events not yet ticked.
create or replace function pgq.get_queue_info(i_queue_name text,
                                              out queue_name text, out queue_ntables integer,
                                              out queue_cur_table integer,
                                              out queue_rotation_period interval,
                                              out queue_switch_time timestamptz,
                                              out queue_external_ticker boolean,
                                              out queue_ticker_paused boolean,
                                              out queue_ticker_max_count integer,
                                              out queue_ticker_max_lag interval,
                                              out queue_ticker_idle_period interval,
                                              out ticker_lag interval, out ev_per_sec float8,
                                              out ev_new bigint, out last_tick_id bigint)
returns setof record
language sql stable
set search_path = pg_catalog, pg_temp
as $$
    select q.queue_name, q.queue_ntables, q.queue_cur_table, q.queue_rotation_period,
           q.queue_switch_time, q.queue_external_ticker, q.queue_ticker_paused,
           q.queue_ticker_max_count, q.queue_ticker_max_lag, q.queue_ticker_idle_period,
           current_timestamp - top.tick_time,
           case when early.tick_time < top.tick_time
                then (top.tick_event_seq - early.tick_event_seq)::float8
                     / extract(epoch from top.tick_time - early.tick_time)::float8
           end,
           pgq.seq_getval(q.queue_event_seq) - top.tick_event_seq,
           top.tick_id
      from pgq.queue q
      left join lateral (
            select t.tick_id, t.tick_time, t.tick_event_seq
              from pgq.tick t
             where t.tick_queue = q.queue_id
             order by t.tick_queue desc, t.tick_id desc
             limit 1) top on true
      left join lateral (
            select t.tick_time, t.tick_event_seq
              from pgq.tick t
             where t.tick_queue = q.queue_id and t.tick_id >= top.tick_id - 20
             order by t.tick_queue, t.tick_id
             limit 1) early on true
     where i_queue_name is null or q.queue_name = i_queue_name
     order by q.queue_name
$$;

create or replace function pgq.get_queue_info(out queue_name text, out queue_ntables integer,
                                              out queue_cur_table integer,
                                              out queue_rotation_period interval,
                                              out queue_switch_time timestamptz,
                                              out queue_external_ticker boolean,
                                              out queue_ticker_paused boolean,
                                              out queue_ticker_max_count integer,
                                              out queue_ticker_max_lag interval,
                                              out queue_ticker_idle_period interval,
                                              out ticker_lag interval, out ev_per_sec float8,
                                              out ev_new bigint, out last_tick_id bigint)
returns setof record
language sql stable
set search_path = pg_catalog, pg_temp
as $$ select * from pgq.get_queue_info(null) $$;

-- One row per registration (NULL arguments match all), by queue and consumer: how far the
-- consumer is behind (lag: age of its last tick; pending_events: events ticked since), when
-- it last asked for or finished a batch, and its open batch.
create or replace function pgq.get_consumer_info(i_queue_name text, i_consumer_name text,
                                                 out queue_name text, out consumer_name text,
                                                 out lag interval, out last_seen interval,
                                                 out last_tick bigint,
                                                 out current_batch bigint,
                                                 out next_tick bigint,
                                                 out pending_events bigint)
returns setof record
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
    select q.queue_name, c.co_name,
           current_timestamp - lt.tick_time,
           current_timestamp - s.sub_active,
           s.sub_last_tick, s.sub_batch, s.sub_next_tick,
           top.tick_event_seq - lt.tick_event_seq
      from pgq.subscription s
      join pgq.queue q on q.queue_id = s.sub_queue
      join pgq.consumer c on c.co_id = s.sub_consumer
      left join pgq.tick lt on lt.tick_queue = s.sub_queue and lt.tick_id = s.sub_last_tick
      left join lateral (
            select t.tick_event_seq
              from pgq.tick t
             where t.tick_queue = s.sub_queue
             order by t.tick_queue desc, t.tick_id desc
             limit 1) top on true
     where (i_queue_name is null or q.queue_name = i_queue_name)
       and (i_consumer_name is null or c.co_name = i_consumer_name)
     order by q.queue_name, c.co_name
$$;

create or replace function pgq.get_consumer_info(i_queue_name text,
                                                 out queue_name text, out consumer_name text,
                                                 out lag interval, out last_seen interval,
                                                 out last_tick bigint,
                                                 out current_batch bigint,
                                                 out next_tick bigint,
                                                 out pending_events bigint)
returns setof record
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$ select * from pgq.get_consumer_info(i_queue_name, null) $$;

create or replace function pgq.get_consumer_info(out queue_name text, out consumer_name text,
                                                 out lag interval, out last_seen interval,
                                                 out last_tick bigint,
                                                 out current_batch bigint,
                                                 out next_tick bigint,
                                                 out pending_events bigint)
returns setof record
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$ select * from pgq.get_consumer_info(null, null) $$;

-- What an open batch spans. All NULL for an unknown batch.
create or replace function pgq.get_batch_info(x_batch_id bigint,
                                              out queue_name text, out consumer_name text,
                                              out batch_start timestamptz,
                                              out batch_end timestamptz,
                                              out prev_tick_id bigint, out tick_id bigint,
                                              out lag interval, out seq_start bigint,
                                              out seq_end bigint)
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
    select q.queue_name, c.co_name, t1.tick_time, t2.tick_time, s.sub_last_tick,
           s.sub_next_tick, current_timestamp - t2.tick_time, t1.tick_event_seq,
           t2.tick_event_seq
      from pgq.subscription s
      join pgq.queue q on q.queue_id = s.sub_queue
      join pgq.consumer c on c.co_id = s.sub_consumer
      left join pgq.tick t1 on t1.tick_queue = s.sub_queue and t1.tick_id = s.sub_last_tick
      left join pgq.tick t2 on t2.tick_queue = s.sub_queue and t2.tick_id = s.sub_next_tick
     where s.sub_batch = x_batch_id
$$;

-- ------------------------------------------------------------------------------------------
-- Maintenance
-- ------------------------------------------------------------------------------------------

-- Rotation, first step: when the queue's rotation period has passed, the previous rotation
-- is complete and every consumer is past it, truncate the oldest event table and make it
-- the current one. Writers that looked up the old table before this commits may still write
-- there, which is why step 2 must run in a later transaction. Returns 0.
--
-- Beyond PgQ's rules, the rotation is skipped (until the next call) while the table being
-- recycled, or the table that readers stop reading, holds a row that some consumer may not
-- have read yet, or has a writer in progress; so no unread event is ever dropped.
create or replace function pgq.maint_rotate_tables_step1(i_queue_name text) returns integer
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    q record;
    v_txid bigint;
    v_lowest_tick bigint;
    v_lowest_xmin bigint;
    v_next integer;
    v_next_table text;
    v_old_table text;
    v_unread boolean;
begin
    select queue_id, queue_name, queue_ntables, queue_cur_table, queue_data_pfx,
           queue_switch_step1, queue_switch_step2 into q
      from pgq.queue
     where queue_name = i_queue_name
       and queue_rotation_period is not null
       and queue_switch_step2 is not null
       and queue_switch_time + queue_rotation_period < current_timestamp
       for no key update;
    if not found then
        return 0;
    end if;

    v_txid := txid_current();
    if v_txid < q.queue_switch_step1 then
        raise exception 'queue % maint failure: step1=%, current=%',
            q.queue_name, q.queue_switch_step1, v_txid;
    end if;

    select min(sub_last_tick) into v_lowest_tick
      from pgq.subscription where sub_queue = q.queue_id;
    if v_lowest_tick is not null then
        select txid_snapshot_xmin(tick_snapshot) into v_lowest_xmin
          from pgq.tick where tick_queue = q.queue_id and tick_id = v_lowest_tick;
        if not found then
            raise exception 'queue % maint failure: tick % not found', q.queue_name,
                v_lowest_tick;
        end if;
        if v_lowest_xmin <= q.queue_switch_step2 then
            -- The slowest consumer may still need the table that would be recycled.
            return 0;
        end if;
    end if;

    v_next := (q.queue_cur_table + 1) % q.queue_ntables;
    v_next_table := pgq.quote_fqname(q.queue_data_pfx || '_' || v_next);
    v_old_table := pgq.quote_fqname(q.queue_data_pfx || '_'
                   || (q.queue_cur_table + q.queue_ntables - 1) % q.queue_ntables);
    begin
        execute 'lock table ' || v_next_table || ' in access exclusive mode nowait';
        -- Waits for no writer: one still writing to the table readers stop reading skips us.
        execute 'lock table ' || v_old_table || ' in share mode nowait';
    exception
        when lock_not_available then
            return 0;
    end;
    if v_lowest_xmin is not null then
        execute format('select exists (select 1 from %s where ev_txid >= $1)'
                       ' or exists (select 1 from %s where ev_txid >= $1)',
                       v_next_table, v_old_table)
           into v_unread using v_lowest_xmin;
        if v_unread then
            return 0;
        end if;
    end if;
    execute 'truncate ' || v_next_table;

    update pgq.queue
       set queue_cur_table = v_next, queue_switch_time = current_timestamp,
           queue_switch_step1 = v_txid, queue_switch_step2 = null
     where queue_id = q.queue_id;

    -- Ticks from before the previous rotation are no longer needed (the latest one stays).
    delete from pgq.tick t
     where t.tick_queue = q.queue_id
       and txid_snapshot_xmin(t.tick_snapshot) < q.queue_switch_step2
       and t.tick_id < (select max(t2.tick_id) from pgq.tick t2
                         where t2.tick_queue = q.queue_id);
    return 0;
end
$$;

-- Rotation, second step (a separate, later transaction): marks the rotations whose first
-- step has committed as complete, with a transaction id later than every writer that could
-- still have used the old table. Returns 0.
create or replace function pgq.maint_rotate_tables_step2() returns integer
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    v_ids integer[];
begin
    -- A transaction id taken before this call could predate the first step's commit.
    if txid_current_if_assigned() is not null then
        return 0;
    end if;
    select array_agg(queue_id) into v_ids
      from pgq.queue
     where queue_switch_step2 is null
       and txid_visible_in_snapshot(queue_switch_step1, txid_current_snapshot());
    if v_ids is null then
        return 0;
    end if;
    update pgq.queue
       set queue_switch_step2 = txid_current()
     where queue_switch_step2 is null and queue_id = any (v_ids);
    return 0;
end
$$;

-- Moves up to 10 due events from the retry queue back into their queue's current event
-- table (same ev_id, visible only to the consumer that asked). Returns how many it moved;
-- call again until it returns 0.
create or replace function pgq.maint_retry_events() returns integer
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    r record;
    v_count integer := 0;
begin
    lock table pgq.retry_queue in share update exclusive mode;
    for r in
        select q.queue_name, rq.ev_id, rq.ev_time, rq.ev_owner, rq.ev_retry, rq.ev_type,
               rq.ev_data, rq.ev_extra1, rq.ev_extra2, rq.ev_extra3, rq.ev_extra4
          from pgq.retry_queue rq
          join pgq.queue q on q.queue_id = rq.ev_queue
         where rq.ev_retry_after <= current_timestamp
         order by rq.ev_retry_after
         limit 10
    loop
        perform pgq.insert_event_raw(r.queue_name, r.ev_id, r.ev_time, r.ev_owner,
                                     r.ev_retry, r.ev_type, r.ev_data, r.ev_extra1,
                                     r.ev_extra2, r.ev_extra3, r.ev_extra4);
        delete from pgq.retry_queue where ev_owner = r.ev_owner and ev_id = r.ev_id;
        v_count := v_count + 1;
    end loop;
    return v_count;
end
$$;

-- Tables to VACUUM regularly when autovacuum is off (none when it is on). Looked up in the
-- catalog, so that a ticker role without USAGE on the other schemas can call it.
create or replace function pgq.maint_tables_to_vacuum() returns setof text
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    v_name text;
begin
    if current_setting('autovacuum') = 'on' then
        return;
    end if;
    foreach v_name in array array['pgq.subscription', 'pgq.consumer', 'pgq.queue', 'pgq.tick',
                                  'pgq.retry_queue', 'pgq_ext.completed_tick',
                                  'pgq_ext.completed_batch', 'pgq_ext.completed_event',
                                  'pgq_ext.partial_batch', 'pgq_node.local_state',
                                  'londiste.seq_info', 'txid.epoch', 'londiste.completed']
    loop
        if exists (select 1 from pg_class c join pg_namespace n on n.oid = c.relnamespace
                    where n.nspname = split_part(v_name, '.', 1)
                      and c.relname = split_part(v_name, '.', 2)) then
            return next v_name;
        end if;
    end loop;
end
$$;

-- The maintenance a ticker should run now, in order: each row is a function to call with
-- func_arg as its only argument (none when NULL), again while it returns non-zero; or
-- 'vacuum' with a table name.
create or replace function pgq.maint_operations(out func_name text, out func_arg text)
returns setof record
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    r record;
    v_step1 boolean := false;
begin
    for r in
        select q.queue_name from pgq.queue q
         where q.queue_rotation_period is not null
           and q.queue_switch_step2 is not null
           and q.queue_switch_time + q.queue_rotation_period < current_timestamp
         order by q.queue_name
    loop
        func_name := 'pgq.maint_rotate_tables_step1';
        func_arg := r.queue_name;
        v_step1 := true;
        return next;
    end loop;

    if v_step1 or exists (select 1 from pgq.queue q
                           where q.queue_rotation_period is not null
                             and q.queue_switch_step2 is null) then
        func_name := 'pgq.maint_rotate_tables_step2';
        func_arg := null;
        return next;
    end if;

    -- Per-queue extra maintenance: functions called with the queue name.
    for r in
        select m.f, q.queue_name
          from pgq.queue q, unnest(q.queue_extra_maint) with ordinality m(f, n)
         order by q.queue_name, m.n
    loop
        func_name := r.f;
        func_arg := r.queue_name;
        return next;
    end loop;

    for r in select t from pgq.maint_tables_to_vacuum() t loop
        func_name := 'vacuum';
        func_arg := r.t;
        return next;
    end loop;

    if exists (select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                where n.nspname = 'londiste' and p.proname = 'periodic_maintenance'
                  and p.pronargs = 0) then
        func_name := 'londiste.periodic_maintenance';
        func_arg := null;
        return next;
    end if;
end
$$;

-- ------------------------------------------------------------------------------------------
-- Static inserts for the queues that exist now (the lock keeps create_queue and drop_queue
-- out meanwhile; producers only read pgq.queue and are not blocked).
-- ------------------------------------------------------------------------------------------

lock table pgq.queue in share row exclusive mode;
do $$ begin perform pgq._build_insert_event_static(); end $$;
