-- skyrep capture: generated, table-specific capture triggers (the fast path).
--
-- A generic trigger (pgq.logutriga) looks up the table's columns and primary key in the
-- catalog and escapes every value character by character, for every row.  The functions in
-- this file do that work once, when the trigger is registered: they generate a PL/pgSQL
-- trigger function for one table that already knows its columns, their types and the key,
-- and that escapes each value with the cheapest built-in expression its type allows.
--
-- The events are exactly those of PgQ's pgq.logutriga for the same rows:
--   ev_type   'I:<pkey>' / 'U:<pkey>' / 'D:<pkey>' ('R' for TRUNCATE)
--   ev_data   the row url-encoded: name=value pairs joined by '&', columns in table order,
--             a bare name for NULL, 'name=' for an empty string; names and values encoded
--             byte by byte: A-Z a-z 0-9 _ . - kept, space -> '+', anything else -> %xx
--             (lowercase hex) of each byte in the database encoding; TRUNCATE -> ''
--   ev_extra1 'schema.table', unquoted
--   ev_extra2 with 'backup': the old row, url-encoded (UPDATE only)
-- How an event is queued is decided when the function is generated, for the cheapest way
-- that gives the event pgq.insert_event(queue, type, data, extra1, extra2, extra3, extra4)
-- would give:
--   * on skyrep's own queue (pgq_core.sql), where the function's owner may insert into the
--     queue's event tables: the function writes the event itself, so a captured row costs
--     one PL/pgSQL call (the generated function) instead of three (it, pgq.insert_event and
--     pgq._insert_event_static).  It inserts into the current event table through
--     compiled statements, one per event table of the queue (each plan cached): usually
--     one INSERT ... SELECT into the table the session found current last time, which
--     writes only if the queue row says it still is; else it looks the queue row up
--     first.  Whatever those do not cover goes through
--     pgq.insert_event: inserts disabled or a per-transaction limit set (its checks), the
--     queue dropped (its error), dropped and created again or with another number of
--     tables (the compiled tables are not the queue's any more; a refresh compiles the new
--     ones).  See skyrep_capture_insert_stmts for why this is safe under rotation;
--   * on PgQ's C extension, where pgq.insert_event is PgQ's own forwarder to its C function
--     pgq.insert_event_raw: the C function directly (one PL/pgSQL call less);
--   * otherwise pgq.insert_event.
--
-- Why the generated code looks the way it does: PL/pgSQL prepares every expression it
-- evaluates once per transaction, and that costs about as much per function call in the
-- expression as evaluating it.  So the row is built with one format() call (which prints
-- each value with its type's output function), values that need no or little escaping go
-- in as they are, and the few characters they can contain (':' '/' '@' '+' ' ') are escaped
-- for the whole row at once with replace(); text values are checked with one regular
-- expression and only escaped by a function when they hold other characters.  NULLs and
-- empty strings are told apart by markers fixed with one replace() each (see
-- skyrep_capture_data_sql).  Each operation has one IF condition that also checks
-- session_replication_role.
--
-- API
--   pgq.skyrep_capture_create(i_table regclass, i_queue text, i_trigger text,
--                             i_args text[] default '{}') returns text
--       Generates (or regenerates) the function for the table and creates (or replaces)
--       the row trigger i_trigger (AFTER INSERT OR UPDATE OR DELETE FOR EACH ROW; BEFORE
--       with SKIP) and the statement trigger i_trigger || '_truncate' (AFTER TRUNCATE);
--       with 'bulk', the triggers of set-based capture instead (see "Set-based capture").
--       Returns the generated function's name (in schema pgq).
--   pgq.skyrep_capture_drop(i_table regclass, i_trigger text) returns boolean
--       Drops the triggers and the generated function; false if there was nothing to drop.
--   pgq.skyrep_capture_refresh(i_table regclass, i_trigger text) returns text
--       Regenerates the function from the current columns, with the queue and arguments
--       the trigger was created with (kept in pg_trigger.tgargs).  Run it after every
--       ALTER TABLE that adds, drops, renames or retypes a column (until then every row
--       takes the slower generic path, see "Changed tables" below), and after renaming
--       the table or its schema: the generated code knows the table name as it was.
--   pgq.skyrep_capture_refresh(i_table regclass) returns integer
--       Refreshes every skyrep capture trigger on the table; returns how many.
--   pgq.skyrep_capture_regenerate() returns integer
--       Regenerates the function of every capture trigger in place (not the triggers, so no
--       table is locked), for the columns and privileges of now; skyrep's install runs it
--       after it has set the privileges.  Returns how many it regenerated (see there for
--       those it leaves).
--   pgq.skyrep_capture_list() returns setof (table_name, trigger_name, queue_name, args,
--       function_name): the registered capture triggers.
--   pgq.skyrep_capture_source(i_table regclass, i_queue text, i_trigger text,
--                             i_args text[] default '{}') returns text
--       The CREATE FUNCTION statement that skyrep_capture_create would run for the row
--       trigger (for review); pgq.skyrep_capture_bulk_source the same for set-based capture.
--   pgq.skyrep_capture_bulk_refusal(i_table regclass, i_args text[]) returns text
--       Why 'bulk' would not be set-based for the table (it keeps the row trigger), or NULL.
--   pgq.skyrep_urlencode(text) returns text
--       The url-encoding used for values, as a function.
--
-- Trigger arguments (the same spelling as PgQ's triggers; case-sensitive):
--   SKIP          the trigger is created BEFORE and returns NULL: the event is queued, the
--                 row operation itself is skipped.
--   deny          every INSERT/UPDATE/DELETE/TRUNCATE fails with
--                 Table '<schema.table>' to queue '<queue>': change not allowed (<op>)
--   ignore=a,b    columns left out of ev_data and the backup; an UPDATE that changes some
--                 ignored column and no other column queues nothing.
--   pkey=a,b      key columns instead of the primary key (written into ev_type as given).
--                 Every name must be a column of the table (checked at registration).
--   backup        ev_extra2 = the old row, url-encoded, for UPDATE.
--   keymove       (skyrep's own; PgQ's triggers refuse it) an UPDATE that changes a key
--                 column queues the events of deleting the old row and inserting the new
--                 one, in that order, each as DELETE and INSERT would (when= is evaluated
--                 on the old row for the delete and on the new row for the insert).
--   bulk          (skyrep's own) set-based capture, where it gives the same events: see
--                 "Set-based capture".
--   when=EXPR     queue the event only when EXPR is true.  EXPR is evaluated as
--                 "select EXPR" with the row's columns in scope (the new row for INSERT and
--                 UPDATE, the old row for DELETE).  It is compiled into the generated
--                 function, must be boolean (checked at registration), and NULL is an error.
--                 It runs with search_path pg_catalog, pg_temp (see Privileges): objects
--                 outside pg_catalog need their schema.
--   ev_type=EXPR, ev_data=EXPR, ev_extra1=EXPR .. ev_extra4=EXPR
--                 the field is the text of EXPR (evaluated like when=; NULL gives NULL).
--                 EXPR must yield exactly one row.
-- Anything else is refused with 'bad param to pgq trigger'.  Columns named _pgq_ev_type,
-- _pgq_ev_data, _pgq_ev_extra1 .. _pgq_ev_extra4 override that field with their value and
-- are not part of ev_data; other _pgq_ev_* names are refused.
--
-- As in PgQ: with session_replication_role = 'local' the trigger does nothing; an UPDATE
-- that changes a key column fails with 'primary key update not allowed' (unless keymove);
-- UPDATE and DELETE on a table without a key fail with 'Update/Delete on table without
-- pkey' (INSERT gives 'I:').  A column counts as changed when the type's default equality says so (numeric
-- 1.0 -> 1.00 is no change), and by its text for arrays and for types without a default
-- btree or hash equality (json, xml, point, box ...).
--
-- The TRUNCATE trigger gets only the queue name (and deny) as arguments and always queues
-- an 'R' event: the other arguments have no meaning for TRUNCATE.
--
-- Differences from PgQ's C trigger that only show in corner cases: PgQ reads the table
-- name and columns at run time, the generated function has them compiled in (hence
-- refresh); bad arguments, a non-boolean when= and unknown _pgq_ev_* columns are refused
-- at registration instead of at the first row; a pkey= name that is not a column is
-- refused (PgQ ignores it); when= and ev_*= may use quoted column names (PgQ's parser
-- refuses them); on a partitioned table, ev_extra1 names the partitioned table, not the
-- partition.
--
-- Fixed form: values are printed in DateStyle ISO, IntervalStyle postgres,
-- extra_float_digits 3 (shortest exact), bytea_output hex and lc_monetary C, whatever the
-- writing session's settings, so that a date written from a 'SQL, DMY' or German session
-- arrives as the same date.  The generated function checks the settings its table's types
-- depend on (one cheap condition); only in a session whose settings differ does it set them
-- (set_config, local) for its call and put the session's values back before it returns.  In
-- the default settings the events are byte for byte PgQ's; in other settings they are PgQ's
-- events of a session in the default settings (TimeZone is not fixed: in ISO a timestamptz
-- prints its UTC offset, so the instant is exact).  A function-level SET clause would do
-- the same but costs about a quarter of the trigger's time per row on PostgreSQL 15.
--
-- Changed tables: an ALTER TABLE made without a refresh never makes a write fail and never
-- leaves a column out.  A column added since the function was generated is noticed by one
-- has_column_privilege() look-up of the next attribute number; a column dropped, renamed or
-- retyped makes reading the row fail inside a block that catches exactly those errors (the
-- unescaped kinds are read through their type's output function, so a retyped column fails
-- there too).  Either way the row goes to pgq.skyrep_capture_generic, which encodes it from
-- the catalog as the table is now (slower; a LOG line in the server log says to refresh).
-- The block only reads: events are queued after it, so its subtransaction takes no
-- transaction id.  The generic path does not know when=, ev_*= or _pgq_ev_* columns: with
-- those it fails, asking for the refresh.
--
-- Privileges: a generated function is SECURITY DEFINER, so it queues the events of every
-- role that may write the table, with or without pgq_writer, and only those writes: no role
-- but its owner may execute it, and CREATE TRIGGER asks for that, so nobody else can attach
-- it to another table.  Its search_path is fixed (pg_catalog, pg_temp) so that the caller's
-- search_path cannot put other functions or operators in its way.  The functions of this
-- file are the owner's alone (the generated functions call them as the owner).  Writing
-- into the event tables itself needs the owner's INSERT on them and USAGE on the queue's
-- event sequence (the schema's owner and pgq_admin have them); that is checked when the
-- function is generated, for the role that owns it (the one that registered the trigger;
-- a refresh by another role keeps the owner), and without them the function calls
-- pgq.insert_event.  If the owner's privileges change later, regenerate (skyrep's install
-- does).
--
-- Set-based capture ('bulk'): a row trigger costs one PL/pgSQL call and one queue insert per
-- row, however many rows one statement changes.  With 'bulk' the table gets instead three
-- AFTER ... FOR EACH STATEMENT triggers with transition tables, i_trigger (UPDATE, with the
-- arguments; skyrep_capture_list and refresh find it), i_trigger || '_insert' and
-- i_trigger || '_delete', plus the TRUNCATE trigger, and each statement queues its events
-- with one INSERT ... SELECT into the queue's current event table (per event through
-- pgq.insert_event where the queue checks its inserts: disabled, per-transaction limit).
-- The SELECT encodes the rows as the row trigger does (value by value, which costs less
-- per row; see skyrep_capture_values_sql), so the events are the row trigger's, byte for byte and in the same order within the table (fixed settings,
-- ignore=, pkey=, backup, keymove, the "no change" rule, 'primary key update not allowed',
-- the 'local' role, the generic path of a changed table); skyrep_capture_bulk_source says
-- why the order between tables and within INSERT ... ON CONFLICT DO UPDATE may differ and
-- why replay does not mind.  Where per-row code decides (SKIP, deny, when=, ev_*=,
-- _pgq_ev_* columns), for tables without a key, partitioned tables and tables in an
-- inheritance tree (whose transition tables mix the rows of several tables), the table
-- keeps the row trigger (skyrep_capture_bulk_refusal), and so does a table with other
-- AFTER triggers, which may write to it in between (one added later makes its writes fail,
-- asking for a refresh).  A fourth trigger,
-- i_trigger || '_guard' (FOR EACH ROW with a transition table, WHEN (false): it never
-- runs), makes PostgreSQL refuse to make the table an inheritance child or a partition; an
-- UPDATE or DELETE of a table that got inheritance children fails, asking for the refresh
-- that gives it the row trigger.  An UPDATE that changes no key (told by comparing the
-- keys of the old rows, in order, with those of the new rows) needs the old rows only for
-- backup and ignore=; without those its events are read from the new rows alone, and
-- only otherwise are old and new rows paired.  Measured (PostgreSQL 15, 2 cores shared
-- with other work, so only roughly; bench/bulk.sh, medians of 5 interleaved rounds): an
-- UPDATE of 100,000 rows of (int, bigint, timestamp, text, numeric) with keymove took
-- 0.18 s without capture, 1.01 s with PgQ's C trigger and 0.43 s set-based: its capture
-- costs about 0.24 s against the C trigger's 0.82 s (3.4x less).  Of it, the event
-- table's INSERT itself (heap, its ev_txid index, ev_id's sequence, WAL) is about a half,
-- encoding the rows about a third (70-90 ms, a third of that the types' output functions)
-- and the key comparison about 20 ms.  But a one-row UPDATE costs
-- about 70 us set-based against 25 us with the row trigger (20 us with the C trigger), a
-- one-row INSERT 40 against 20: a statement trigger pays per statement for its catalog
-- checks, a subtransaction that checks the table's columns, its settings and the plans of
-- the pairing.  No trigger can tell how many rows a statement will change before its row
-- triggers have run, so set-based capture is chosen per table.
--
-- Requires PostgreSQL 12 or newer.  Idempotent: every object is created with
-- CREATE OR REPLACE.

create schema if not exists pgq;

-- Url-encoding of one value (NULL gives NULL).
create or replace function pgq.skyrep_urlencode(i_value text)
returns text
language plpgsql immutable strict parallel safe
as $$
declare
    v text collate "C" := i_value;
begin
    if v !~ '[^A-Za-z0-9_.-]' then
        return v;
    end if;
    if v !~ '[^A-Za-z0-9_. -]' then
        return pg_catalog.replace(v, ' ', '+');
    end if;
    if v !~ '[^ -~]' then
        -- printable ASCII: one replace per special character; '%' first, space last
        return pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(
               pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(
               pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(
               pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(
               pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(
               pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(
               pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(
               pg_catalog.replace(pg_catalog.replace(
                   v, '%', '%25'),
                   '!', '%21'), '"', '%22'), '#', '%23'), '$', '%24'), '&', '%26'),
                   '''', '%27'), '(', '%28'), ')', '%29'), '*', '%2a'), ',', '%2c'),
                   '/', '%2f'), ':', '%3a'), ';', '%3b'), '<', '%3c'), '=', '%3d'),
                   '>', '%3e'), '?', '%3f'), '@', '%40'), '[', '%5b'), '\', '%5c'),
                   ']', '%5d'), '^', '%5e'), '`', '%60'), '{', '%7b'), '|', '%7c'),
                   '}', '%7d'), '~', '%7e'), '+', '%2b'), ' ', '+');
    end if;
    -- Anything else (control characters, non-ASCII): split into runs of kept characters
    -- and runs of others; a run of others is encoded as a whole from its bytes.
    return (
        select pg_catalog.string_agg(
                   r.m[1] || pg_catalog.replace(
                       pg_catalog.regexp_replace(
                           pg_catalog.encode(
                               pg_catalog.convert_to(r.m[2], pg_catalog.getdatabaseencoding()),
                               'hex'),
                           '(..)', '%\1', 'g'),
                       '%20', '+'),
                   '' order by r.n)
          from pg_catalog.regexp_matches(v, '([A-Za-z0-9_.-]*)([^A-Za-z0-9_.-]*)', 'g')
               with ordinality as r(m, n));
end;
$$;

-- The type a domain is based on (the type itself for other types).
create or replace function pgq.skyrep_base_type(i_type oid)
returns oid
language sql stable strict
as $$
    with recursive d(oid, base, depth) as (
        select t.oid, t.typbasetype, 0 from pg_catalog.pg_type t where t.oid = i_type
        union all
        select t.oid, t.typbasetype, d.depth + 1
          from d join pg_catalog.pg_type t on t.oid = d.base
         where d.base <> 0 and d.depth < 100
    )
    select oid from d where base = 0;
$$;

-- Whether the type (after domains) is an array.
create or replace function pgq.skyrep_type_is_array(i_type oid)
returns boolean
language sql stable strict
as $$
    select t.typelem <> 0 and t.typlen = -1
      from pg_catalog.pg_type t
     where t.oid = pgq.skyrep_base_type(i_type);
$$;

-- Whether the type has a default equality operator (from a default btree or hash operator
-- class), the way PostgreSQL's type cache decides it: arrays if their element type has one,
-- composite types if all their fields have one.
create or replace function pgq.skyrep_type_has_equality(i_type oid)
returns boolean
language plpgsql stable strict
as $$
declare
    t record;
begin
    select ty.oid, ty.typtype, ty.typelem, ty.typlen, ty.typrelid
      into t
      from pg_catalog.pg_type ty
     where ty.oid = pgq.skyrep_base_type(i_type);
    if not found then
        return false;
    end if;
    if t.typelem <> 0 and t.typlen = -1 then
        return pgq.skyrep_type_has_equality(t.typelem);
    end if;
    if t.typtype = 'c' then
        return coalesce((
            select pg_catalog.bool_and(pgq.skyrep_type_has_equality(a.atttypid))
              from pg_catalog.pg_attribute a
             where a.attrelid = t.typrelid and a.attnum > 0 and not a.attisdropped), true);
    end if;
    return exists (
        select 1
          from pg_catalog.pg_opclass oc
          join pg_catalog.pg_am am on am.oid = oc.opcmethod
         where oc.opcdefault
           and am.amname in ('btree', 'hash')
           and oc.opcintype = any (
                   array[t.oid,
                         case t.typtype
                             when 'e' then 'pg_catalog.anyenum'::pg_catalog.regtype::oid
                             when 'r' then 'pg_catalog.anyrange'::pg_catalog.regtype::oid
                             when 'm' then pg_catalog.to_regtype('pg_catalog.anymultirange')::oid
                         end]
                   || array(select c.casttarget
                              from pg_catalog.pg_cast c
                             where c.castsource = t.oid
                               and c.castmethod = 'b'
                               and c.castcontext = 'i')));
end;
$$;

-- The type's output function, schema-qualified and quoted, for use in generated code.
create or replace function pgq.skyrep_type_output_function(i_type oid)
returns text
language sql stable strict
as $$
    select pg_catalog.format('%I.%I', n.nspname, p.proname)
      from pg_catalog.pg_type t
      join pg_catalog.pg_proc p on p.oid = t.typoutput
      join pg_catalog.pg_namespace n on n.oid = p.pronamespace
     where t.oid = pgq.skyrep_base_type(i_type);
$$;

-- Url-encoding of a value for the generated functions' shared escaping (see
-- skyrep_capture_data_sql): like skyrep_urlencode, but spaces stay spaces (the generated
-- code turns them into '+' for the whole row at once), and an empty string gives '%', a
-- marker the generated code turns back into an empty value.
create or replace function pgq.skyrep_capture_inner(i_value text)
returns text
language plpgsql immutable strict parallel safe
as $$
begin
    if i_value = '' then
        return '%';
    end if;
    return pg_catalog.replace(pgq.skyrep_urlencode(i_value), '+', ' ');
end;
$$;

-- How a value of the type gets into the row's text in the generated functions:
--   plain        its output needs no escaping (integers, numeric, uuid, boolean ...)
--   float        can contain '+' (1e+100)
--   date, timestamp, timestamptz, time, timetz, interval, net (inet, cidr, macaddr)
--                can contain only a few of ':' '/' '+' ' ' (the dates and times in the
--                DateStyle ISO and IntervalStyle postgres the generated functions print in)
--   text         text and varchar: kept as they are when they hold only letters, digits and
--                _ . - : / @ + space, else escaped by skyrep_capture_inner
--   other        anything else: its text output, escaped by skyrep_capture_inner
-- The characters ':' '/' '@' '+' ' ' are escaped once for the whole row.
create or replace function pgq.skyrep_capture_kind(i_type oid)
returns text
language sql stable strict
as $$
    select case pgq.skyrep_base_type(i_type)
        when 'pg_catalog.int2'::pg_catalog.regtype then 'plain'
        when 'pg_catalog.int4'::pg_catalog.regtype then 'plain'
        when 'pg_catalog.int8'::pg_catalog.regtype then 'plain'
        when 'pg_catalog.oid'::pg_catalog.regtype then 'plain'
        when 'pg_catalog.xid'::pg_catalog.regtype then 'plain'
        when 'pg_catalog.cid'::pg_catalog.regtype then 'plain'
        when 'pg_catalog.numeric'::pg_catalog.regtype then 'plain'
        when 'pg_catalog.uuid'::pg_catalog.regtype then 'plain'
        when 'pg_catalog.bool'::pg_catalog.regtype then 'plain'
        when 'pg_catalog.float4'::pg_catalog.regtype then 'float'
        when 'pg_catalog.float8'::pg_catalog.regtype then 'float'
        when 'pg_catalog.date'::pg_catalog.regtype then 'date'
        when 'pg_catalog.timestamp'::pg_catalog.regtype then 'timestamp'
        when 'pg_catalog.timestamptz'::pg_catalog.regtype then 'timestamptz'
        when 'pg_catalog.time'::pg_catalog.regtype then 'time'
        when 'pg_catalog.timetz'::pg_catalog.regtype then 'timetz'
        when 'pg_catalog.interval'::pg_catalog.regtype then 'interval'
        when 'pg_catalog.inet'::pg_catalog.regtype then 'net'
        when 'pg_catalog.cidr'::pg_catalog.regtype then 'net'
        when 'pg_catalog.macaddr'::pg_catalog.regtype then 'net'
        when 'pg_catalog.macaddr8'::pg_catalog.regtype then 'net'
        when 'pg_catalog.text'::pg_catalog.regtype then 'text'
        when 'pg_catalog.varchar'::pg_catalog.regtype then 'text'
        else 'other'
    end;
$$;

-- The characters of ':' '/' '@' '+' ' ' a value of the kind can contain.
create or replace function pgq.skyrep_capture_kind_specials(i_kind text)
returns text
language sql immutable strict
as $$
    select case i_kind
        when 'plain' then ''
        when 'float' then '+'
        when 'date' then ' '
        when 'timestamp' then ': '
        when 'timestamptz' then ':+ '
        when 'time' then ':'
        when 'timetz' then ':+'
        when 'interval' then ':+ '
        when 'net' then ':/'
        else ':/@+ '
    end;
$$;

-- The columns of the table's primary key in index order; empty if it has none.
create or replace function pgq.skyrep_primary_key(i_table oid)
returns text[]
language sql stable strict
as $$
    select coalesce(pg_catalog.array_agg(att.attname::text order by k.ord), '{}')
      from pg_catalog.pg_index ix
           cross join lateral pg_catalog.unnest(ix.indkey::int2[]) with ordinality as k(attnum, ord)
           join pg_catalog.pg_attribute att on att.attrelid = ix.indrelid and att.attnum = k.attnum
     where ix.indrelid = i_table and ix.indisprimary;
$$;

-- The types a value of the type is made of: the type itself, the base types of domains,
-- the elements of arrays, the fields of composite types and the subtypes of ranges.
create or replace function pgq.skyrep_type_parts(i_type oid)
returns oid[]
language sql stable strict
as $$
    with recursive p(oid, depth) as (
        select i_type, 0
        union all
        select x.part, p.depth + 1
          from p
          join pg_catalog.pg_type t on t.oid = p.oid
          cross join lateral (
              select t.typbasetype where t.typbasetype <> 0
              union all
              select t.typelem where t.typelem <> 0 and t.typlen = -1
              union all
              select a.atttypid from pg_catalog.pg_attribute a
               where t.typtype = 'c' and a.attrelid = t.typrelid and a.attnum > 0
                 and not a.attisdropped
              union all
              select r.rngsubtype from pg_catalog.pg_range r where r.rngtypid = t.oid
              union all
              select r.rngtypid from pg_catalog.pg_range r
               where t.typtype = 'm' and r.rngmultitypid = t.oid
          ) x(part)
         where p.depth < 16
    )
    select pg_catalog.array_agg(distinct p.oid) from p;
$$;

-- The settings the text output of the types depends on, each with the fixed value the
-- generated functions print in, and an SQL condition that holds when the session's
-- setting prints the same as that value.  Events are thus the same whatever the writing
-- session's settings: in a session whose settings differ, the generated function sets
-- these for the time of its call (see skyrep_capture_settings).  TimeZone is not among
-- them: in DateStyle ISO a timestamptz or timetz prints its UTC offset, so the instant is
-- exact in any zone.
create or replace function pgq.skyrep_capture_fixed_settings(
    i_types oid[], out name text, out value text, out standard text)
returns setof record
language sql stable
as $$
    with parts as (
        select pg_catalog.unnest(pgq.skyrep_type_parts(ty))::pg_catalog.regtype::text as t
          from pg_catalog.unnest(i_types) ty
    )
    select s.name, s.value, s.standard
      from (values
            (1, 'DateStyle', 'ISO, MDY',
             'pg_catalog.current_setting(''DateStyle'') LIKE ''ISO,%''',
             array['date', 'time without time zone', 'time with time zone',
                   'timestamp without time zone', 'timestamp with time zone']),
            (2, 'IntervalStyle', 'postgres',
             'pg_catalog.current_setting(''IntervalStyle'') = ''postgres''',
             array['interval']),
            (3, 'extra_float_digits', '3',
             'pg_catalog.current_setting(''extra_float_digits'') IN (''1'', ''2'', ''3'')',
             array['real', 'double precision', 'point', 'line', 'lseg', 'box', 'path',
                   'polygon', 'circle']),
            (4, 'bytea_output', 'hex',
             'pg_catalog.current_setting(''bytea_output'') = ''hex''',
             array['bytea']),
            (5, 'lc_monetary', 'C',
             'pg_catalog.current_setting(''lc_monetary'') = ''C''',
             array['money'])) s(n, name, value, standard, types)
     where exists (select 1 from parts where parts.t = any(s.types))
     order by s.n;
$$;

-- Sets each setting of i_pairs (name, value, name, value ...) for the rest of the
-- transaction and returns the previous values in the same form.  A generated function
-- calls it again with that result before it returns, so the session's settings are as
-- they were; an error rolls them back with the transaction or savepoint.
create or replace function pgq.skyrep_capture_settings(i_pairs text[])
returns text[]
language plpgsql
as $$
declare
    v_old text[] := '{}';
    i int;
begin
    for i in 1 .. coalesce(pg_catalog.array_length(i_pairs, 1), 0) by 2 loop
        v_old := v_old || array[i_pairs[i], pg_catalog.current_setting(i_pairs[i])];
        perform pg_catalog.set_config(i_pairs[i], i_pairs[i + 1], true);
    end loop;
    return v_old;
end;
$$;

-- A field of the trigger's row in generated code: i_row ('NEW' or 'OLD') and the column
-- name, always in double quotes (PL/pgSQL reads some unquoted names, like "by", as its own
-- keywords).
create or replace function pgq.skyrep_capture_field(i_row text, i_name text)
returns text
language sql immutable strict
as $$
    select i_row || '."' || pg_catalog.replace(i_name, '"', '""') || '"';
$$;

-- SQL expression giving the text output of i_ref (an expression of type i_type), exactly
-- what the type's output function prints (casts to text differ for bool, inet, char(n) ...).
create or replace function pgq.skyrep_capture_output_sql(i_ref text, i_type oid)
returns text
language sql stable strict
as $$
    select case
        when pgq.skyrep_capture_kind(i_type) = 'text' then i_ref
        else pg_catalog.format('pg_catalog.textin(%s(%s))',
                               pgq.skyrep_type_output_function(i_type), i_ref)
    end;
$$;

-- SQL expression for the url-encoded row i_row ('NEW' or 'OLD') with the given columns.
--
-- The row is built by one format() call: values of the kinds that need little or no
-- escaping go in as they are (format prints them with their output functions), text
-- values as they are when they hold no unusual character, other values escaped by
-- skyrep_capture_inner.  The few characters the unescaped values can contain
-- (':' '/' '@' '+' ' ') are then replaced in the whole row, once each; names and escaped
-- values do not contain them.  A NULL prints as nothing, so 'name=&' is turned into
-- 'name&' (no value of these types prints as an empty string; an empty text value was
-- printed as the marker '%' and becomes empty again after that).  A trailing '&' makes
-- the last column look like the others and is trimmed at the end.
create or replace function pgq.skyrep_capture_data_sql(
    i_row text, i_names text[], i_types oid[], i_notnull boolean[])
returns text
language plpgsql stable
as $$
declare
    v_n int := coalesce(pg_catalog.array_length(i_names, 1), 0);
    v_kind text;
    v_specials text := '';
    v_ref text;
    v_name text;
    v_template text := '';
    v_args text[] := '{}';
    v_chunks text[] := '{}';
    v_nullable boolean := false;
    v_texts boolean := false;
    v_sentinel boolean;
    v_expr text;
    c text;
    i int;
begin
    if v_n = 0 then
        return '''''';
    end if;
    for i in 1 .. v_n loop
        v_kind := pgq.skyrep_capture_kind(i_types[i]);
        v_specials := v_specials || pgq.skyrep_capture_kind_specials(v_kind);
        v_ref := pgq.skyrep_capture_field(i_row, i_names[i]);
        -- the name, url-encoded except for spaces
        v_name := pg_catalog.replace(pgq.skyrep_urlencode(i_names[i]), '+', ' ');
        if v_name like '% %' then
            v_specials := v_specials || '+ ';
        end if;
        v_template := v_template || case when i > 1 then '&' else '' end
                      || pg_catalog.replace(v_name, '%', '%%') || '=%s';
        if v_kind = 'text' then
            v_args := v_args || pg_catalog.format(
                'CASE WHEN (%1$s COLLATE "C") ~ ''^[A-Za-z0-9_.:/@+ -]+$'' THEN %1$s '
                'ELSE pgq.skyrep_capture_inner(%1$s) END', v_ref);
            v_texts := true;
        elsif v_kind = 'other' then
            v_args := v_args || pg_catalog.format('pgq.skyrep_capture_inner(%s)',
                                                  pgq.skyrep_capture_output_sql(v_ref, i_types[i]));
            v_texts := true;
        else
            -- the type's own output function: a column whose type changed since the function
            -- was generated fails here (and the generated function falls back to the
            -- generic path) instead of printing unescaped text
            v_args := v_args || pg_catalog.format('%s(%s)',
                                                  pgq.skyrep_type_output_function(i_types[i]), v_ref);
        end if;
        if not i_notnull[i] then
            v_nullable := true;
        end if;
        -- the last column needs a following '&' for the fixes below when it can be empty
        v_sentinel := i = v_n and (not i_notnull[i] or v_kind in ('text', 'other'));
        -- format() takes at most 100 arguments: one call per 90 columns
        if pg_catalog.cardinality(v_args) = 90 or i = v_n then
            if v_sentinel then
                v_template := v_template || '&';
            end if;
            v_chunks := v_chunks || pg_catalog.format(E'pg_catalog.format(%L,\n                %s)',
                v_template, pg_catalog.array_to_string(v_args, E',\n                '));
            v_template := '';
            v_args := '{}';
        end if;
    end loop;
    v_expr := pg_catalog.array_to_string(v_chunks, ' || ');
    -- whole-row escaping, '+' before ' '
    foreach c in array array[':', '/', '@', '+', ' '] loop
        if pg_catalog.strpos(v_specials, c) > 0 then
            v_expr := pg_catalog.format('pg_catalog.replace(%s, %L, %L)', v_expr, c,
                case c when ' ' then '+' else '%' || pg_catalog.encode(pg_catalog.convert_to(c, 'UTF8'), 'hex') end);
        end if;
    end loop;
    if v_nullable or v_texts then
        v_expr := pg_catalog.format('pg_catalog.replace(%s, ''=&'', ''&'')', v_expr);
    end if;
    if v_texts then
        v_expr := pg_catalog.format('pg_catalog.replace(%s, ''=%%&'', ''=&'')', v_expr);
    end if;
    if v_sentinel then
        v_expr := pg_catalog.format('pg_catalog.rtrim(%s, ''&'')', v_expr);
    end if;
    return v_expr;
end;
$$;

-- The same row as skyrep_capture_data_sql, byte for byte, by another expression, for
-- set-based capture (i_row is a transition table's alias there).  The row trigger prepares
-- its expression once per transaction, and that costs per function call in it; a set-based
-- statement prepares once and evaluates for every row, where the whole-row replace() calls
-- cost more than calls on single values (half the time, measured).
--
-- Each column is one piece, '&name=value' (no '&' before the first), concatenated with ||:
-- the name is encoded here, the value by the cheapest expression its kind allows (see
-- skyrep_capture_kind): values of the kinds that print no or few special characters get
-- one replace() for each character their kind can print; text values are kept as they are,
-- or get spaces or the few characters ':' '/' '@' '+' ' ' replaced, when a regular
-- expression finds nothing else in them, and are escaped by pgq.skyrep_urlencode only
-- otherwise; other values are escaped by it.  A nullable column's piece is
-- COALESCE('&name=' || value, '&name'): a NULL gives the bare name, an empty string
-- 'name='.  The values of the other kinds go through the type's own output function
-- (never a cast), as in skyrep_capture_data_sql: a column whose type changed since the
-- function was generated fails there instead of printing unescaped text.
create or replace function pgq.skyrep_capture_values_sql(
    i_row text, i_names text[], i_types oid[], i_notnull boolean[])
returns text
language plpgsql stable
as $$
declare
    v_n int := coalesce(pg_catalog.array_length(i_names, 1), 0);
    v_kind text;
    v_ref text;
    v_value text;
    v_name text;
    v_piece text;
    v_group text[] := '{}';
    v_groups text[] := '{}';
    c text;
    i int;
begin
    if v_n = 0 then
        return '''''';
    end if;
    for i in 1 .. v_n loop
        v_kind := pgq.skyrep_capture_kind(i_types[i]);
        v_ref := pgq.skyrep_capture_field(i_row, i_names[i]);
        if v_kind = 'text' then
            v_ref := '(' || v_ref || ' COLLATE "C")';
            v_value := v_ref;
            foreach c in array array[':', '/', '@', '+', ' '] loop
                v_value := pg_catalog.format('pg_catalog.replace(%s, %L, %L)', v_value, c,
                    case c when ' ' then '+' else '%' || pg_catalog.encode(pg_catalog.convert_to(c, 'UTF8'), 'hex') end);
            end loop;
            v_value := pg_catalog.format(
                E'CASE WHEN %1$s !~ ''[^A-Za-z0-9_. -]'' THEN pg_catalog.replace(%1$s, '' '', ''+'')\n' ||
                E'                     WHEN %1$s !~ ''[^A-Za-z0-9_.:/@+ -]'' THEN %2$s\n' ||
                E'                     ELSE pgq.skyrep_urlencode(%1$s) END', v_ref, v_value);
        elsif v_kind = 'other' then
            v_value := pg_catalog.format('pgq.skyrep_urlencode(%s)',
                                         pgq.skyrep_capture_output_sql(v_ref, i_types[i]));
        else
            v_value := pg_catalog.format('pg_catalog.textin(%s(%s))',
                                         pgq.skyrep_type_output_function(i_types[i]), v_ref);
            foreach c in array array[':', '/', '@', '+', ' '] loop
                if pg_catalog.strpos(pgq.skyrep_capture_kind_specials(v_kind), c) > 0 then
                    v_value := pg_catalog.format('pg_catalog.replace(%s, %L, %L)', v_value, c,
                        case c when ' ' then '+' else '%' || pg_catalog.encode(pg_catalog.convert_to(c, 'UTF8'), 'hex') end);
                end if;
            end loop;
        end if;
        v_name := case when i > 1 then '&' else '' end || pgq.skyrep_urlencode(i_names[i]);
        if i_notnull[i] then
            v_piece := pg_catalog.format('%L || %s', v_name || '=', v_value);
        else
            v_piece := pg_catalog.format('COALESCE(%L || %s, %L)', v_name || '=', v_value, v_name);
        end if;
        v_group := v_group || v_piece;
        -- groups of 50 pieces, so that no expression nests deeper than that
        if pg_catalog.cardinality(v_group) = 50 or i = v_n then
            v_groups := v_groups || ('(' || pg_catalog.array_to_string(v_group, E'\n                || ') || ')');
            v_group := '{}';
        end if;
    end loop;
    return pg_catalog.array_to_string(v_groups, E'\n                || ');
end;
$$;

-- SQL expression that queues one event.  Where pgq.insert_event is PgQ's own forwarder to
-- its C function pgq.insert_event_raw, the C function is called directly (one PL/pgSQL call
-- less per row, the same event: a NULL ev_time is the transaction's now() there);
-- otherwise pgq.insert_event.
create or replace function pgq.skyrep_capture_insert_sql(
    i_queue text, i_type text, i_data text, i_extra1 text, i_extra2 text, i_extra3 text,
    i_extra4 text)
returns text
language plpgsql stable
as $$
declare
    v_direct boolean;
begin
    select exists (
        select 1
          from pg_catalog.pg_proc p
          join pg_catalog.pg_namespace n on n.oid = p.pronamespace
          join pg_catalog.pg_language l on l.oid = p.prolang
         where n.nspname = 'pgq' and p.proname = 'insert_event_raw' and l.lanname = 'c'
           and pg_catalog.oidvectortypes(p.proargtypes)
               = 'text, bigint, timestamp with time zone, integer, integer, text, text, text, '
                 'text, text, text')
       and exists (
        select 1
          from pg_catalog.pg_proc p
          join pg_catalog.pg_namespace n on n.oid = p.pronamespace
         where n.nspname = 'pgq' and p.proname = 'insert_event' and p.pronargs = 7
           and pg_catalog.regexp_replace(
                   pg_catalog.regexp_replace(p.prosrc, '--[^\n]*', '', 'g'), '\s+', '', 'g')
               = 'beginreturnpgq.insert_event_raw(queue_name,null,now(),null,null,'
                 'ev_type,ev_data,ev_extra1,ev_extra2,ev_extra3,ev_extra4);end;')
      into v_direct;
    if v_direct then
        return pg_catalog.format(
            'pgq.insert_event_raw(%L, NULL, NULL, NULL, NULL, %s, %s, %s, %s, %s, %s)',
            i_queue, i_type, i_data, i_extra1, i_extra2, i_extra3, i_extra4);
    end if;
    return pg_catalog.format('pgq.insert_event(%L, %s, %s, %s, %s, %s, %s)',
                             i_queue, i_type, i_data, i_extra1, i_extra2, i_extra3, i_extra4);
end;
$$;

-- Whether role i_owner may write events of queue i_queue into its event tables itself,
-- and the queue's layout when so: the queue is skyrep's (pgq_core.sql, where
-- pgq.insert_event is the PL/pgSQL function the generated code stands in for), it exists,
-- and i_owner may read pgq.queue, insert into every event table of the queue and take ids
-- from its event sequence.  NULL otherwise (the generated code then calls pgq.insert_event).
create or replace function pgq.skyrep_capture_direct_queue(
    i_queue text, i_owner oid,
    out queue_id integer, out data_pfx text, out ntables integer)
language plpgsql stable
as $$
begin
    if pg_catalog.to_regprocedure('pgq.skyrep_schema_version()') is null
       or pg_catalog.to_regprocedure('pgq.insert_event(text, text, text, text, text, text, text)') is null
       or not pg_catalog.has_schema_privilege(i_owner, 'pgq', 'USAGE')
       or not pg_catalog.has_table_privilege(i_owner, 'pgq.queue', 'SELECT') then
        return;
    end if;
    select q.queue_id, q.queue_data_pfx, q.queue_ntables into queue_id, data_pfx, ntables
      from pgq.queue q
     where q.queue_name = i_queue
       and (select case when s is null then false
                        else pg_catalog.has_sequence_privilege(i_owner, s, 'USAGE') end
              from pg_catalog.to_regclass(pgq.quote_fqname(q.queue_event_seq)) s)
       and (select pg_catalog.bool_and(case when t is null then false
                                            else pg_catalog.has_table_privilege(i_owner, t, 'INSERT') end)
              from pg_catalog.generate_series(0, q.queue_ntables - 1) i,
                   pg_catalog.to_regclass(pgq.quote_fqname(q.queue_data_pfx || '_' || i)) t);
    if not found then
        queue_id := null;
        data_pfx := null;
        ntables := null;
    end if;
end;
$$;

-- PL/pgSQL statements that queue the event held in i_var (a text[] of ev_type, ev_data,
-- ev_extra1 .. ev_extra4), in a generated function owned by i_owner, each line indented by
-- i_indent.
--
-- On skyrep's own queue, where the owner may insert into the event tables (see
-- skyrep_capture_direct_queue), the statements do what pgq.insert_event does without calling
-- it, with one compiled branch per event table so that each statement's plan is cached.
-- Usually one statement: the session remembers which table was current last time (a
-- setting, skyrep.capture_table_<queue id>), and an INSERT ... SELECT into that table writes
-- the event only if the queue row says, in that same statement, that the table is current
-- and nothing unusual is set.  A look-up of the queue row costs about as much as the insert
-- itself, and the table changes only at a rotation.  The setting is a guess and never more:
-- when it is missing, stale or set to anything else (by anyone), nothing is written, and the
-- statements look the queue row up, remember the table and insert into it.  The row has the
-- fields pgq.insert_event gives it (ev_time now(), ev_txid and ev_id from the table's
-- defaults).  Anything the compiled branches do not cover goes to
-- pgq.insert_event, which decides as always: inserts disabled or a per-transaction limit
-- (its checks), the queue dropped (its error), or dropped and created again, or with
-- another number of tables (another id, prefix or count: the compiled tables are not the
-- queue's any more).
--
-- Rotation: pgq.insert_event takes the transaction id before it looks up the current table,
-- so a writer that still sees the table of before a rotation has an id below the rotation's
-- step2 mark, and readers may rely on that mark.  The statement that reads the queue row
-- here (the guessing INSERT or the look-up) needs the same: its snapshot must be taken
-- after the transaction has its id.  In an AFTER row trigger on a
-- table the row change has taken it already (a heap insert, update or delete always does,
-- and the top-level id comes with a subtransaction's), before the trigger's first statement
-- takes its snapshot.  Where no row of a plain table has been written when the look-up runs
-- it is taken explicitly first (i_txid): in a BEFORE trigger (SKIP) the row is not written
-- yet, or never; on a partitioned table the trigger also fires for foreign partitions,
-- whose writes take no local id.  A TRUNCATE branch takes it itself (see the generator).
-- Otherwise (another PgQ, no privileges, no queue yet): skyrep_capture_insert_sql's call.
create or replace function pgq.skyrep_capture_insert_stmts(
    i_queue text, i_var text, i_owner oid, i_txid boolean, i_indent text)
returns text
language plpgsql stable
as $$
declare
    q record;
    v_fields text := pg_catalog.format('%1$s[1], %1$s[2], %1$s[3], %1$s[4], %1$s[5], %1$s[6]', i_var);
    v_call text := pg_catalog.format('_skyrep_ev := %s;',
        pgq.skyrep_capture_insert_sql(i_queue, i_var || '[1]', i_var || '[2]', i_var || '[3]',
                                      i_var || '[4]', i_var || '[5]', i_var || '[6]'));
    v_res text := '';
    v_checks text;               -- the queue row is still the one compiled in, and plain
    v_guc text;                  -- the session's guess of the current table
    i int;
begin
    select * into q from pgq.skyrep_capture_direct_queue(i_queue, i_owner);
    if q.queue_id is null then
        return i_indent || v_call || E'\n';
    end if;
    if i_txid then
        v_res := i_indent || E'_skyrep_ev := pg_catalog.txid_current();\n';
    end if;
    v_checks := pg_catalog.format(
        'q.queue_id = %s AND q.queue_data_pfx = %L AND q.queue_ntables = %s'
        ' AND NOT q.queue_disable_insert AND q.queue_per_tx_limit IS NULL',
        q.queue_id, q.data_pfx, q.ntables);
    v_guc := 'skyrep.capture_table_' || q.queue_id;
    -- the guess: one INSERT ... SELECT that writes only if the guessed table is current
    v_res := v_res || pg_catalog.format(
        E'%1$s_skyrep_guess := pg_catalog.current_setting(%2$L, true);\n%1$s_skyrep_hit := false;\n',
        i_indent, v_guc);
    for i in 0 .. q.ntables - 1 loop
        v_res := v_res || pg_catalog.format(
            E'%1$s%2$s _skyrep_guess = %3$L THEN\n' ||
            E'%1$s    INSERT INTO %4$s (ev_time, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4)\n' ||
            E'%1$s    SELECT pg_catalog.now(), %5$s\n' ||
            E'%1$s      FROM pgq.queue q\n' ||
            E'%1$s     WHERE q.queue_name = %6$L AND q.queue_cur_table = %3$s\n' ||
            E'%1$s       AND %7$s;\n' ||
            E'%1$s    _skyrep_hit := FOUND;\n',
            i_indent, case when i = 0 then 'IF' else 'ELSIF' end, i,
            pgq.quote_fqname(q.data_pfx || '_' || i), v_fields, i_queue, v_checks);
    end loop;
    -- missed: look the table up, remember it for the session, insert
    v_res := v_res || pg_catalog.format(
        E'%1$sEND IF;\n%1$sIF NOT _skyrep_hit THEN\n' ||
        E'%1$s    SELECT CASE WHEN %2$s THEN q.queue_cur_table END\n' ||
        E'%1$s      INTO _skyrep_cur FROM pgq.queue q WHERE q.queue_name = %3$L;\n',
        i_indent, v_checks, i_queue);
    for i in 0 .. q.ntables - 1 loop
        v_res := v_res || pg_catalog.format(
            E'%1$s    %2$s _skyrep_cur = %3$s THEN\n' ||
            E'%1$s        _skyrep_guess := pg_catalog.set_config(%6$L, %3$L, false);\n' ||
            E'%1$s        INSERT INTO %4$s (ev_time, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4)\n' ||
            E'%1$s        VALUES (pg_catalog.now(), %5$s);\n',
            i_indent, case when i = 0 then 'IF' else 'ELSIF' end, i,
            pgq.quote_fqname(q.data_pfx || '_' || i), v_fields, v_guc);
    end loop;
    return v_res || pg_catalog.format(E'%1$s    ELSE\n%1$s        %2$s\n%1$s    END IF;\n%1$sEND IF;\n',
                                      i_indent, v_call);
end;
$$;

-- SQL condition: column i_col of type i_type differs between the rows i_new and i_old (row
-- references in generated code), by the type's default equality, or by text for arrays and
-- types without one.
create or replace function pgq.skyrep_capture_changed_sql(i_col text, i_type oid, i_new text, i_old text)
returns text
language sql stable strict
as $$
    select case
        when not pgq.skyrep_type_is_array(i_type) and pgq.skyrep_type_has_equality(i_type)
        then pg_catalog.format('%s IS DISTINCT FROM %s', pgq.skyrep_capture_field(i_new, i_col),
                               pgq.skyrep_capture_field(i_old, i_col))
        else pg_catalog.format('%s IS DISTINCT FROM %s',
                               pgq.skyrep_capture_output_sql(pgq.skyrep_capture_field(i_new, i_col), i_type),
                               pgq.skyrep_capture_output_sql(pgq.skyrep_capture_field(i_old, i_col), i_type))
    end;
$$;

-- The same for the trigger's rows NEW and OLD.
create or replace function pgq.skyrep_capture_changed_sql(i_col text, i_type oid)
returns text
language sql stable strict
as $$
    select pgq.skyrep_capture_changed_sql(i_col, i_type, 'NEW', 'OLD');
$$;

-- Trigger arguments, parsed and checked the way PgQ's triggers read them.
create or replace function pgq.skyrep_capture_parse_args(
    i_args text[],
    out skip boolean, out deny boolean, out backup boolean, out keymove boolean,
    out ignore_list text[], out pkey_raw text, out pkey_list text[],
    out when_expr text, out override_fields text[], out override_exprs text[])
language plpgsql immutable
as $$
declare
    a text;
    v_field text;
begin
    skip := false;
    deny := false;
    backup := false;
    keymove := false;
    ignore_list := '{}';
    override_fields := '{}';
    override_exprs := '{}';
    foreach a in array coalesce(i_args, '{}') loop
        if a = 'SKIP' then
            skip := true;
        elsif a = 'deny' then
            deny := true;
        elsif a = 'backup' then
            backup := true;
        elsif a = 'keymove' then
            keymove := true;
        elsif a = 'bulk' then
            null;                    -- set-based capture: skyrep_capture_bulk_refusal
        elsif a like 'ignore=%' then
            select coalesce(pg_catalog.array_agg(pg_catalog.btrim(x, E' \t\n\r')), '{}')
              into ignore_list
              from pg_catalog.unnest(pg_catalog.string_to_array(pg_catalog.substr(a, 8), ',')) x
             where pg_catalog.btrim(x, E' \t\n\r') <> '';
        elsif a like 'pkey=%' then
            pkey_raw := pg_catalog.substr(a, 6);
            select coalesce(pg_catalog.array_agg(pg_catalog.btrim(x, E' \t\n\r')), '{}')
              into pkey_list
              from pg_catalog.unnest(pg_catalog.string_to_array(pkey_raw, ',')) x
             where pg_catalog.btrim(x, E' \t\n\r') <> '';
        elsif a like 'when=%' then
            -- the first when= counts, as in PgQ
            when_expr := coalesce(when_expr, pg_catalog.substr(a, 6));
        elsif a ~ '^ev_(type|data|extra[1-4])=' then
            v_field := pg_catalog.split_part(a, '=', 1);
            if not v_field = any(override_fields) then
                override_fields := override_fields || v_field;
                override_exprs := override_exprs || pg_catalog.substr(a, pg_catalog.length(v_field) + 2);
            end if;
        else
            raise exception 'bad param to pgq trigger';
        end if;
    end loop;
end;
$$;

-- Name of the generated function for a table and trigger name (in schema pgq).
create or replace function pgq.skyrep_capture_function_name(i_table regclass, i_trigger text)
returns text
language sql stable strict
as $$
    select 'skyrep_cap_'
        || pg_catalog.left(pg_catalog.regexp_replace(pg_catalog.lower(c.relname), '[^a-z0-9_]', '', 'g'), 24)
        || '_'
        || pg_catalog.left(pg_catalog.md5(pg_catalog.format('%I.%I.%I', n.nspname, c.relname, i_trigger)), 16)
      from pg_catalog.pg_class c
      join pg_catalog.pg_namespace n on n.oid = c.relnamespace
     where c.oid = i_table;
$$;

-- SQL statements that evaluate EXPR of a when= or ev_*= argument for the row i_row, as
-- "select EXPR" with the row's columns in scope, into i_var; i_out is the expression
-- that turns the result column _x.v into the wanted value.
create or replace function pgq.skyrep_capture_expr_sql(i_expr text, i_row text, i_var text, i_out text)
returns text
language sql immutable strict
as $$
    select pg_catalog.format(
        E'        SELECT pg_catalog.count(*)::int4, (pg_catalog.array_agg(%s))[1]\n' ||
        E'          INTO _skyrep_cnt, %s\n' ||
        E'          FROM (SELECT %s.*) AS _skyrep_row, LATERAL (SELECT %s) AS _x(v);\n' ||
        E'        IF _skyrep_cnt <> 1 THEN\n' ||
        E'            RAISE EXCEPTION ''Expect 1 row from override query, got %%'', _skyrep_cnt;\n' ||
        E'        END IF;\n',
        i_out, i_var, i_row, i_expr);
$$;

-- The type of EXPR of a when= or ev_*= argument, evaluated as "select EXPR" with the
-- columns of i_table in scope (the expression is checked, not run), in the generated
-- function's search_path.
create or replace function pgq.skyrep_capture_expr_type(i_table regclass, i_expr text)
returns oid
language plpgsql stable
set search_path = pg_catalog, pg_temp       -- as the generated function evaluates it
as $$
declare
    v_type oid;
begin
    execute pg_catalog.format(
        'select pg_catalog.pg_typeof((select _x.v from (select (null::%s).*) as _skyrep_row, '
        'lateral (select %s) as _x(v) limit 0))::oid', i_table, i_expr)
        into v_type;
    return v_type;
end;
$$;

-- The CREATE FUNCTION statement for the generated trigger function.
create or replace function pgq.skyrep_capture_source(
    i_table regclass, i_queue text, i_trigger text, i_args text[] default '{}')
returns text
language plpgsql stable
as $$
declare
    a record;
    c record;
    v_fname text;
    v_fq text;
    v_names text[] := '{}';      -- data columns (not ignored, not magic), in table order
    v_types oid[] := '{}';
    v_notnull boolean[] := '{}';
    v_ignored_names text[] := '{}';
    v_ignored_types oid[] := '{}';
    v_magic text[] := '{}';      -- magic columns present
    v_magic_types oid[] := '{}';
    v_pkey text[];
    v_pkey_str text;
    v_pkey_types oid[] := '{}';
    v_typ oid;
    v_body text;
    v_op text;
    v_row text;
    v_stmts text;
    v_event text;                -- the statements that queue the event of v_op
    v_insert_event text;         -- v_event of INSERT and of DELETE, for keymove
    v_delete_event text;
    v_data text;
    v_backup text;
    v_cond text;
    v_cond2 text;
    v_var text;
    v_exprs boolean;
    v_local text;
    v_ret text;
    v_fixed text[];              -- settings the values print in: name, value, name, value ...
    v_standard text;             -- true when the session's settings print the same
    v_restore text := '';        -- puts the session's settings back, before each RETURN
    v_natts int;                 -- attribute numbers in use when generated
    v_insert text;               -- queues the events the branches prepared
    v_relkind "char";
    v_owner oid;                 -- who owns the generated function (see skyrep_capture_insert_stmts)
    v_lookup boolean;            -- the events are written without pgq.insert_event
    i int;
begin
    if i_queue is null or i_queue = '' then
        raise exception 'pgq trigger must have destination queue as argument';
    end if;
    if i_trigger is null or i_trigger = '' then
        raise exception 'skyrep capture: a trigger name is needed';
    end if;
    select * into a from pgq.skyrep_capture_parse_args(i_args);

    select n.nspname, cl.relname, cl.relkind into c
      from pg_catalog.pg_class cl join pg_catalog.pg_namespace n on n.oid = cl.relnamespace
     where cl.oid = i_table;
    if c.relkind not in ('r', 'p') then
        raise exception 'skyrep capture: % is not a table', i_table;
    end if;
    v_fq := c.nspname || '.' || c.relname;
    v_relkind := c.relkind;
    v_fname := pgq.skyrep_capture_function_name(i_table, i_trigger);
    -- CREATE OR REPLACE keeps the owner of a function that exists
    select p.proowner into v_owner
      from pg_catalog.pg_proc p
     where p.pronamespace = 'pgq'::pg_catalog.regnamespace and p.proname = v_fname
       and p.pronargs = 0;
    v_owner := coalesce(v_owner, current_user::pg_catalog.regrole::oid);

    -- columns
    for c in
        select att.attname, att.atttypid, att.attnotnull
          from pg_catalog.pg_attribute att
         where att.attrelid = i_table and att.attnum > 0 and not att.attisdropped
         order by att.attnum
    loop
        if pg_catalog.left(c.attname, 8) = '_pgq_ev_' then
            if c.attname not in ('_pgq_ev_type', '_pgq_ev_data', '_pgq_ev_extra1',
                                 '_pgq_ev_extra2', '_pgq_ev_extra3', '_pgq_ev_extra4') then
                raise exception 'Unknown magic column: %', c.attname;
            end if;
            v_magic := v_magic || c.attname::text;
            v_magic_types := v_magic_types || c.atttypid;
        elsif c.attname = any(a.ignore_list) then
            v_ignored_names := v_ignored_names || c.attname::text;
            v_ignored_types := v_ignored_types || c.atttypid;
        else
            v_names := v_names || c.attname::text;
            v_types := v_types || c.atttypid;
            v_notnull := v_notnull || c.attnotnull;
        end if;
    end loop;

    -- key: pkey= as given, else the primary key's columns in index order
    if a.pkey_raw is not null then
        v_pkey := a.pkey_list;
        v_pkey_str := a.pkey_raw;
    else
        v_pkey := pgq.skyrep_primary_key(i_table);
        v_pkey_str := pg_catalog.array_to_string(v_pkey, ',');
    end if;
    for i in 1 .. coalesce(pg_catalog.array_length(v_pkey, 1), 0) loop
        select att.atttypid into v_typ
          from pg_catalog.pg_attribute att
         where att.attrelid = i_table and att.attname = v_pkey[i] and att.attnum > 0
           and not att.attisdropped;
        if not found then
            raise exception 'pkey= column "%" is not a column of table %', v_pkey[i], i_table;
        end if;
        v_pkey_types := v_pkey_types || v_typ;
    end loop;

    -- expressions are checked now
    if a.when_expr is not null then
        v_typ := pgq.skyrep_capture_expr_type(i_table, a.when_expr);
        if v_typ <> 'pg_catalog.bool'::pg_catalog.regtype then
            raise exception 'when= query result must be boolean, got=%', v_typ;
        end if;
    end if;
    v_exprs := pg_catalog.cardinality(v_magic) > 0 or pg_catalog.cardinality(a.override_fields) > 0;

    -- the values print the same whatever the writing session's settings
    select pg_catalog.array_agg(x order by s.n, x.k), pg_catalog.string_agg(s.standard, ' AND ')
                                                          filter (where x.k = 1)
      into v_fixed, v_standard
      from (select f.*, pg_catalog.row_number() over () as n
              from pgq.skyrep_capture_fixed_settings(v_types || v_magic_types) f) s
           cross join lateral (values (1, s.name), (2, s.value)) x(k, x);
    v_body := E'#variable_conflict use_column\nDECLARE\n    _skyrep_ev bigint;\n';
    if not a.deny then
        -- the statements that queue an event (a BEFORE trigger, and one on a partitioned
        -- table, take the transaction id first: see skyrep_capture_insert_stmts)
        v_insert := E'        IF _skyrep_x1 IS NOT NULL THEN\n'
                 || pgq.skyrep_capture_insert_stmts(i_queue, '_skyrep_x1', v_owner,
                                                    a.skip or v_relkind = 'p', '            ')
                 || E'        END IF;\n';
        v_lookup := pg_catalog.strpos(v_insert, 'INTO _skyrep_cur') > 0;
        if v_lookup then
            v_body := v_body || E'    _skyrep_cur int4;\n    _skyrep_guess text;\n    _skyrep_hit boolean;\n';
        end if;
    end if;
    if v_fixed is not null then
        v_body := v_body || E'    _skyrep_settings text[];\n';
        v_restore := E'        IF _skyrep_settings IS NOT NULL THEN\n'
                  || E'            PERFORM pgq.skyrep_capture_settings(_skyrep_settings);\n'
                  || E'        END IF;\n';
    end if;
    if a.when_expr is not null or v_exprs then
        v_body := v_body || E'    _skyrep_cnt int4;\n    _skyrep_when boolean;\n    _skyrep_t text;\n'
                         || E'    _skyrep_d text;\n    _skyrep_e1 text;\n    _skyrep_e2 text;\n'
                         || E'    _skyrep_e3 text;\n    _skyrep_e4 text;\n';
    end if;
    -- Every branch is guarded by its operation and by session_replication_role <> 'local'
    -- (PgQ's triggers do nothing in the 'local' role); one condition per branch keeps the
    -- number of expressions PL/pgSQL evaluates per row small.
    v_local := 'pg_catalog.current_setting(''session_replication_role'') <> ''local''';
    v_ret := case when a.skip then E'        _skyrep_skip := true;\n' else '' end;
    select pg_catalog.max(att.attnum) into v_natts
      from pg_catalog.pg_attribute att where att.attrelid = i_table and att.attnum > 0;
    -- the branches prepare up to two events (six fields each) and queue them after the block
    -- that catches a changed table
    v_body := v_body || E'    _skyrep_x1 text[];\n    _skyrep_x2 text[];\n    _skyrep_generic boolean;\n';
    if a.skip then
        v_body := v_body || E'    _skyrep_skip boolean;\n';
    end if;
    v_body := v_body || E'BEGIN\n';
    if v_fixed is not null then
        v_body := v_body || pg_catalog.format(
            E'    IF NOT (%s) THEN\n        _skyrep_settings := pgq.skyrep_capture_settings(%L);\n    END IF;\n',
            v_standard, v_fixed);
    end if;
    if not a.deny then
        v_body := v_body || pg_catalog.format(
            E'    IF pg_catalog.has_column_privilege(TG_RELID, %s::int2, ''SELECT'') IS NULL THEN\n    BEGIN\n',
            v_natts + 1);
    end if;

    if a.deny then
        v_body := v_body || pg_catalog.format(
            E'    IF %s THEN\n        RAISE EXCEPTION ''%%'', %L || TG_OP || '')'';\n    END IF;\n',
            v_local,
            pg_catalog.format('Table ''%s'' to queue ''%s'': change not allowed (', v_fq, i_queue));
    else
        -- UPDATE last: with keymove, a key change queues the events of DELETE and INSERT
        foreach v_op in array array['INSERT', 'DELETE', 'UPDATE'] loop
            v_row := case v_op when 'DELETE' then 'OLD' else 'NEW' end;
            v_stmts := '';
            v_event := '';
            v_cond := '';
            if v_op <> 'INSERT' and coalesce(pg_catalog.array_length(v_pkey, 1), 0) = 0 then
                v_body := v_body || pg_catalog.format(
                    E'    ELSIF TG_OP = %L AND %s THEN\n' ||
                    E'        RAISE EXCEPTION ''Update/Delete on table without pkey'';\n',
                    v_op, v_local);
                continue;
            end if;
            if v_op = 'UPDATE' then
                -- key unchanged (a change of the key is an error, in the next branch)
                for i in 1 .. pg_catalog.array_length(v_pkey, 1) loop
                    v_cond := v_cond || case when i > 1 then E'\n              OR ' else '' end
                              || pgq.skyrep_capture_changed_sql(v_pkey[i], v_pkey_types[i]);
                end loop;
                v_cond := pg_catalog.format(E'NOT (%s)\n          AND ', v_cond);
                -- a change of ignored columns only: no event
                if pg_catalog.cardinality(v_ignored_names) > 0 then
                    v_cond2 := '';
                    for i in 1 .. pg_catalog.array_length(v_ignored_names, 1) loop
                        v_cond2 := v_cond2 || case when i > 1 then E'\n             OR ' else '' end
                                   || pgq.skyrep_capture_changed_sql(v_ignored_names[i], v_ignored_types[i]);
                    end loop;
                    v_var := '';
                    for i in 1 .. coalesce(pg_catalog.array_length(v_names, 1), 0) loop
                        v_var := v_var || case when i > 1 then E'\n                 OR ' else '' end
                                 || pgq.skyrep_capture_changed_sql(v_names[i], v_types[i]);
                    end loop;
                    v_stmts := v_stmts || pg_catalog.format(
                        E'        IF (%s)\n           AND NOT (%s) THEN\n%s            RETURN NULL;\n        END IF;\n',
                        v_cond2, case when v_var = '' then 'false' else v_var end, v_restore);
                end if;
            end if;


            v_data := pgq.skyrep_capture_data_sql(v_row, v_names, v_types, v_notnull);
            v_backup := case when v_op = 'UPDATE' and a.backup
                             then E'\n            ' || pgq.skyrep_capture_data_sql('OLD', v_names, v_types, v_notnull)
                             else 'NULL' end;
            if v_exprs then
                v_event := pg_catalog.format(
                    E'        _skyrep_t := %L;\n        _skyrep_d := %s;\n        _skyrep_e1 := %L;\n' ||
                    E'        _skyrep_e2 := %s;\n        _skyrep_e3 := NULL;\n        _skyrep_e4 := NULL;\n',
                    pg_catalog.left(v_op, 1) || ':' || v_pkey_str, v_data, v_fq, v_backup);
                -- magic columns, then ev_*= expressions
                for i in 1 .. coalesce(pg_catalog.array_length(v_magic, 1), 0) loop
                    v_event := v_event || pg_catalog.format(E'        %s := %s;\n',
                        case v_magic[i] when '_pgq_ev_type' then '_skyrep_t' when '_pgq_ev_data' then '_skyrep_d'
                             else '_skyrep_e' || pg_catalog.right(v_magic[i], 1) end,
                        pgq.skyrep_capture_output_sql(pgq.skyrep_capture_field(v_row, v_magic[i]), v_magic_types[i]));
                end loop;
                for i in 1 .. coalesce(pg_catalog.array_length(a.override_fields, 1), 0) loop
                    v_var := case a.override_fields[i]
                                 when 'ev_type' then '_skyrep_t' when 'ev_data' then '_skyrep_d'
                                 else '_skyrep_e' || pg_catalog.right(a.override_fields[i], 1) end;
                    v_event := v_event || pgq.skyrep_capture_expr_sql(a.override_exprs[i], v_row, v_var,
                        pgq.skyrep_capture_output_sql('_x.v',
                            pgq.skyrep_capture_expr_type(i_table, a.override_exprs[i])));
                end loop;
                v_event := v_event || E'        _skyrep_x1 := ARRAY[_skyrep_t, _skyrep_d, _skyrep_e1, '
                                   || E'_skyrep_e2, _skyrep_e3, _skyrep_e4];\n';
            else
                v_event := pg_catalog.format(E'        _skyrep_x1 := ARRAY[%L,\n            %s,\n            %L, %s, NULL, NULL];\n',
                    pg_catalog.left(v_op, 1) || ':' || v_pkey_str, v_data, v_fq, v_backup);
            end if;
            -- when=: the event only where EXPR is true for the row
            if a.when_expr is not null then
                v_event := pgq.skyrep_capture_expr_sql(a.when_expr, v_row, '_skyrep_when', '_x.v')
                    || E'        IF _skyrep_when IS NULL THEN\n'
                    || E'            RAISE EXCEPTION ''when= should not be NULL'';\n'
                    || E'        END IF;\n'
                    || E'        IF _skyrep_when THEN\n'
                    || v_event
                    || E'        END IF;\n';
            end if;
            if v_op = 'INSERT' then
                v_insert_event := v_event;
            elsif v_op = 'DELETE' then
                v_delete_event := v_event;
            end if;
            v_stmts := v_stmts || v_event;
            v_body := v_body || pg_catalog.format(E'    %s TG_OP = %L\n          AND %s%s THEN\n',
                                                  case v_op when 'INSERT' then 'IF' else 'ELSIF' end,
                                                  v_op, v_cond, v_local)
                             || v_stmts || v_ret;
            if v_op = 'UPDATE' and a.keymove then
                -- the key changed: the old row goes, the new row comes
                v_body := v_body || pg_catalog.format(E'    ELSIF TG_OP = ''UPDATE'' AND %s THEN\n', v_local)
                                 || v_delete_event
                                 || pg_catalog.replace(v_insert_event, '_skyrep_x1 :=', '_skyrep_x2 :=')
                                 || v_ret;
            elsif v_op = 'UPDATE' then
                v_body := v_body || pg_catalog.format(
                    E'    ELSIF TG_OP = ''UPDATE'' AND %s THEN\n' ||
                    E'        RAISE EXCEPTION ''primary key update not allowed'';\n', v_local);
            end if;
        end loop;
        -- (TRUNCATE need not have taken a transaction id when the event table is looked up)
        v_body := v_body || pg_catalog.format(
            E'    ELSIF TG_OP = ''TRUNCATE'' AND %s THEN\n%s        _skyrep_x1 := ARRAY[''R'', '''', %L, NULL, NULL, NULL];\n    END IF;\n',
            v_local,
            case when v_lookup then E'        _skyrep_ev := pg_catalog.txid_current();\n' else '' end,
            v_fq);
        -- A column added since the function was generated (a new attribute number), or one
        -- dropped, renamed or retyped (the branches fail reading it): the generic path
        -- encodes the row as the table is now, and the application's write goes on.  The
        -- branches only read the row; events are queued outside the block, so that its
        -- subtransaction never takes a transaction id.
        if a.keymove then
            v_insert := v_insert || pg_catalog.replace(v_insert, '_skyrep_x1', '_skyrep_x2');
        end if;
        v_body := v_body || pg_catalog.format(
            E'    EXCEPTION WHEN undefined_column OR datatype_mismatch OR undefined_function THEN\n' ||
            E'        _skyrep_generic := true;\n    END;\n    ELSE\n        _skyrep_generic := true;\n    END IF;\n' ||
            E'    IF _skyrep_generic THEN\n' ||
            E'        RAISE LOG ''skyrep capture: %% changed since its capture trigger was generated; run pgq.skyrep_capture_refresh()'', %1$L;\n' ||
            E'        IF TG_OP = ''INSERT'' THEN\n' ||
            E'            %2$s pgq.skyrep_capture_generic(TG_OP, TG_RELID, TG_ARGV, NEW, NEW);\n' ||
            E'        ELSIF TG_OP = ''UPDATE'' THEN\n' ||
            E'            %2$s pgq.skyrep_capture_generic(TG_OP, TG_RELID, TG_ARGV, NEW, OLD);\n' ||
            E'        ELSIF TG_OP = ''DELETE'' THEN\n' ||
            E'            %2$s pgq.skyrep_capture_generic(TG_OP, TG_RELID, TG_ARGV, OLD, OLD);\n' ||
            E'        ELSE\n' ||
            E'            %2$s pgq.skyrep_capture_generic(TG_OP, TG_RELID, TG_ARGV, NULL, NULL);\n' ||
            E'        END IF;\n' ||
            E'    ELSE\n%3$s    END IF;\n',
            v_fq, case when a.skip then '_skyrep_skip :=' else 'PERFORM' end, v_insert);
    end if;
    -- reached without an event only in the 'local' role (and with deny)
    v_body := v_body || v_restore;
    if a.skip then
        v_body := v_body || E'    IF _skyrep_skip THEN\n        RETURN NULL;\n    END IF;\n'
                         || E'    IF TG_OP = ''DELETE'' THEN\n        RETURN OLD;\n    END IF;\n'
                         || E'    RETURN NEW;\nEND\n';
    else
        v_body := v_body || E'    RETURN NULL;\nEND\n';
    end if;

    return pg_catalog.format(
        E'CREATE OR REPLACE FUNCTION pgq.%I() RETURNS trigger LANGUAGE plpgsql\n' ||
        E'SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS %L',
        v_fname, v_body);
end;
$$;

-- Set-based capture (the 'bulk' argument): why a table keeps the row trigger, or NULL when
-- its changes can be captured per statement with exactly the row trigger's events.
-- Everything that is decided per row by code the row trigger runs for that row alone
-- (SKIP, deny, when=, ev_*=, _pgq_ev_* columns), a table without a key (its UPDATE and
-- DELETE fail per row) and tables in an inheritance tree or partitioned (a statement
-- trigger's transition tables carry the rows of every table of the tree, converted to the
-- named table's type, without saying where each came from) keep the row trigger.
create or replace function pgq.skyrep_capture_bulk_refusal(i_table regclass, i_args text[])
returns text
language plpgsql stable
as $$
declare
    a record;
    v_pkey text[];
begin
    select * into a from pgq.skyrep_capture_parse_args(i_args);
    if a.skip or a.deny or a.when_expr is not null or pg_catalog.cardinality(a.override_fields) > 0 then
        return 'SKIP, deny, when= and ev_*= are evaluated per row';
    end if;
    if exists (select 1 from pg_catalog.pg_attribute att
                where att.attrelid = i_table and att.attnum > 0 and not att.attisdropped
                  and pg_catalog.left(att.attname, 8) = '_pgq_ev_') then
        return 'its _pgq_ev_* columns are evaluated per row';
    end if;
    if (select c.relkind from pg_catalog.pg_class c where c.oid = i_table) <> 'r' then
        return 'it is partitioned';
    end if;
    if exists (select 1 from pg_catalog.pg_inherits i where i.inhrelid = i_table or i.inhparent = i_table) then
        return 'it is part of an inheritance tree';
    end if;
    if exists (select 1 from pg_catalog.pg_trigger t
                where t.tgrelid = i_table and not t.tgisinternal and t.tgenabled <> 'D'
                  and (t.tgtype & 66) = 0 and (t.tgtype & 28) <> 0
                  -- but PgQ's and skyrep's own capture triggers, which do not write to it
                  and (select p.pronamespace from pg_catalog.pg_proc p where p.oid = t.tgfoid)
                      <> 'pgq'::pg_catalog.regnamespace) then
        return 'other AFTER triggers on it may write to it, and the row trigger''s events '
               'keep their order with those writes';
    end if;
    v_pkey := coalesce(a.pkey_list, pgq.skyrep_primary_key(i_table));
    if pg_catalog.cardinality(v_pkey) = 0 then
        return 'it has no key';
    end if;
    return null;
end;
$$;

-- The CREATE FUNCTION statement for the set-based capture function of a table (the 'bulk'
-- argument; skyrep_capture_bulk_refusal must have found nothing against it).  Its triggers
-- are AFTER ... FOR EACH STATEMENT with transition tables (see skyrep_capture_create), and
-- each statement queues its events with one INSERT ... SELECT into the queue's current
-- event table.  The rows are encoded and compared as in the row trigger
-- (skyrep_capture_values_sql, skyrep_capture_changed_sql), so the events are the row
-- trigger's, in the same order: a transition table holds the rows in the order the row
-- trigger would have seen them, and an UPDATE's old and new rows are paired by that
-- position (not by key, which keymove and pkey= may change or repeat).
--
-- The event order differs from the row trigger's only between tables, within INSERT ... ON
-- CONFLICT DO UPDATE and within a query whose writable CTEs change the table in several
-- parts: the row trigger's event for a row comes right after the events that triggers fired
-- for that row queued (FK cascades, other triggers' writes), a statement's events all come
-- at its end, ON CONFLICT's updates come before its inserts, and each part of a query
-- queues its events together.  Replay nets each table's events per key and applies them
-- per table, and one statement changes a row of a table at most once (PostgreSQL refuses to
-- change a row twice in one statement, and ON CONFLICT DO UPDATE cannot touch a row it
-- inserted), so none of these orders changes what replay does.  What would is a write to
-- the same table by another trigger of the table, in between the row trigger's events: so a
-- table with other AFTER triggers (but PgQ's and skyrep's own) keeps the row trigger, and
-- one added later makes the statement fail, asking for the refresh that gives the table
-- its row trigger.
-- PL/pgSQL statements of a set-based capture function that queue the events i_sel selects
-- (columns _n, _k, t, d, x2), in i_order: into the queue's current event table, with an
-- INSERT planned once for each table the queue had when generated (the variable
-- _skyrep_table names the current one), or else one planned each time; per event through
-- the queue's insert function where the queue checks its inserts (_skyrep_direct false).
create or replace function pgq.skyrep_capture_bulk_queue_sql(
    i_queue text, i_fq text, i_pfx text, i_ntables int, i_sel text, i_order text)
returns text
language plpgsql stable
as $$
declare
    v_sql text;
    i int;
begin
    v_sql := pg_catalog.format(E'        IF NOT _skyrep_direct THEN\n            PERFORM %s\n' ||
                               E'              FROM (%s) AS _skyrep_e%s;\n',
                 pgq.skyrep_capture_insert_sql(i_queue, '_skyrep_e.t', '_skyrep_e.d', pg_catalog.quote_literal(i_fq),
                                               '_skyrep_e.x2', 'NULL', 'NULL'),
                 i_sel, i_order);
    for i in 0 .. coalesce(i_ntables, 0) - 1 loop
        v_sql := v_sql || pg_catalog.format(
            E'        ELSIF _skyrep_table = %L THEN\n' ||
            E'            INSERT INTO %s (ev_time, ev_type, ev_data, ev_extra1, ev_extra2)\n' ||
            E'            SELECT pg_catalog.now(), _skyrep_e.t, _skyrep_e.d, %L, _skyrep_e.x2\n' ||
            E'              FROM (%s) AS _skyrep_e%s;\n',
            i_pfx || '_' || i, pgq.quote_fqname(i_pfx || '_' || i), i_fq, i_sel, i_order);
    end loop;
    return v_sql || pg_catalog.format(
        E'        ELSE\n            EXECUTE ''INSERT INTO '' || pgq.quote_fqname(_skyrep_table) || %L;\n        END IF;\n',
        pg_catalog.format(E' (ev_time, ev_type, ev_data, ev_extra1, ev_extra2)\n' ||
                          E' SELECT pg_catalog.now(), _skyrep_e.t, _skyrep_e.d, %L, _skyrep_e.x2\n' ||
                          E'   FROM (%s) AS _skyrep_e%s',
                          i_fq, i_sel, i_order));
end;
$$;

create or replace function pgq.skyrep_capture_bulk_source(
    i_table regclass, i_queue text, i_trigger text, i_args text[] default '{}')
returns text
language plpgsql stable
as $$
declare
    a record;
    c record;
    v_fname text;
    v_fq text;
    v_names text[] := '{}';
    v_types oid[] := '{}';
    v_notnull boolean[] := '{}';
    v_all text[] := '{}';
    v_ignored_names text[] := '{}';
    v_ignored_types oid[] := '{}';
    v_pkey text[];
    v_pkey_str text;
    v_pkey_types oid[] := '{}';
    v_typ oid;
    v_n text := '_skyrep_n';     -- the position column of the numbered transition tables
    v_kc text := '';             -- a key column changed
    v_ign text := '';            -- an ignored column changed
    v_dat text := '';            -- a data column changed
    v_new_data text;
    v_old_data text;
    v_backup text;
    v_sel text;
    v_sel_plain text;
    v_order_plain text;
    v_kold text[] := '{}';       -- the key columns of the old and of the new row
    v_knew text[] := '{}';
    v_kchk text;                 -- an UPDATE changed a key
    v_order text;
    v_pfx text;
    v_ntables int;
    v_checked text;
    v_fixed text[];
    v_standard text;
    v_natts int;
    v_op text;
    v_ops text := '';
    v_probe text := '';
    v_generic text;
    v_body text;
    i int;
begin
    if i_queue is null or i_queue = '' then
        raise exception 'pgq trigger must have destination queue as argument';
    end if;
    select * into a from pgq.skyrep_capture_parse_args(i_args);
    select n.nspname || '.' || cl.relname into v_fq
      from pg_catalog.pg_class cl join pg_catalog.pg_namespace n on n.oid = cl.relnamespace
     where cl.oid = i_table;
    v_fname := pgq.skyrep_capture_function_name(i_table, i_trigger);

    for c in
        select att.attname::text as attname, att.atttypid, att.attnotnull
          from pg_catalog.pg_attribute att
         where att.attrelid = i_table and att.attnum > 0 and not att.attisdropped
         order by att.attnum
    loop
        v_all := v_all || c.attname;
        if c.attname = any(a.ignore_list) then
            v_ignored_names := v_ignored_names || c.attname;
            v_ignored_types := v_ignored_types || c.atttypid;
        else
            v_names := v_names || c.attname;
            v_types := v_types || c.atttypid;
            v_notnull := v_notnull || c.attnotnull;
        end if;
    end loop;
    while v_n = any(v_all) loop
        v_n := v_n || '_';
    end loop;
    if a.pkey_raw is not null then
        v_pkey := a.pkey_list;
        v_pkey_str := a.pkey_raw;
    else
        v_pkey := pgq.skyrep_primary_key(i_table);
        v_pkey_str := pg_catalog.array_to_string(v_pkey, ',');
    end if;
    for i in 1 .. coalesce(pg_catalog.array_length(v_pkey, 1), 0) loop
        select att.atttypid into v_typ
          from pg_catalog.pg_attribute att
         where att.attrelid = i_table and att.attname = v_pkey[i] and att.attnum > 0
           and not att.attisdropped;
        if not found then
            raise exception 'pkey= column "%" is not a column of table %', v_pkey[i], i_table;
        end if;
        v_kc := v_kc || case when i > 1 then ' OR ' else '' end
                || pgq.skyrep_capture_changed_sql(v_pkey[i], v_typ, '_skyrep_new', '_skyrep_old');
        -- the key as skyrep_capture_changed_sql compares it: by equality, or by its text
        v_kold := v_kold || case when not pgq.skyrep_type_is_array(v_typ) and pgq.skyrep_type_has_equality(v_typ)
                                 then pgq.skyrep_capture_field('_skyrep_old', v_pkey[i])
                                 else pgq.skyrep_capture_output_sql(pgq.skyrep_capture_field('_skyrep_old', v_pkey[i]), v_typ) end;
        v_knew := v_knew || case when not pgq.skyrep_type_is_array(v_typ) and pgq.skyrep_type_has_equality(v_typ)
                                 then pgq.skyrep_capture_field('_skyrep_new', v_pkey[i])
                                 else pgq.skyrep_capture_output_sql(pgq.skyrep_capture_field('_skyrep_new', v_pkey[i]), v_typ) end;
    end loop;
    v_kc := '(' || v_kc || ')';
    -- Whether the UPDATE changed a key: the keys of the old rows, in order, against those of
    -- the new rows (the transition tables hold an UPDATE's rows in the same order), without
    -- pairing the rows; IS DISTINCT FROM compares arrays element by element with each type's
    -- equality, as skyrep_capture_changed_sql does
    v_kchk := pg_catalog.format(
        E'(SELECT pg_catalog.array_agg(%s) FROM skyrep_old_rows AS _skyrep_old)\n' ||
        E'           IS DISTINCT FROM (SELECT pg_catalog.array_agg(%s) FROM skyrep_new_rows AS _skyrep_new)',
        case when pg_catalog.cardinality(v_kold) = 1 then v_kold[1]
             else 'ROW(' || pg_catalog.array_to_string(v_kold, ', ') || ')' end,
        case when pg_catalog.cardinality(v_knew) = 1 then v_knew[1]
             else 'ROW(' || pg_catalog.array_to_string(v_knew, ', ') || ')' end);
    for i in 1 .. coalesce(pg_catalog.array_length(v_ignored_names, 1), 0) loop
        v_ign := v_ign || case when i > 1 then ' OR ' else '' end
                 || pgq.skyrep_capture_changed_sql(v_ignored_names[i], v_ignored_types[i], '_skyrep_new', '_skyrep_old');
    end loop;
    for i in 1 .. coalesce(pg_catalog.array_length(v_names, 1), 0) loop
        v_dat := v_dat || case when i > 1 then ' OR ' else '' end
                 || pgq.skyrep_capture_changed_sql(v_names[i], v_types[i], '_skyrep_new', '_skyrep_old');
    end loop;
    v_new_data := pgq.skyrep_capture_values_sql('_skyrep_new', v_names, v_types, v_notnull);
    v_old_data := pgq.skyrep_capture_values_sql('_skyrep_old', v_names, v_types, v_notnull);
    v_backup := case when a.backup then v_old_data else 'NULL::text' end;

    select pg_catalog.array_agg(x order by s.n, x.k), pg_catalog.string_agg(s.standard, ' AND ')
                                                          filter (where x.k = 1)
      into v_fixed, v_standard
      from (select f.*, pg_catalog.row_number() over () as n
              from pgq.skyrep_capture_fixed_settings(v_types || v_ignored_types) f) s
           cross join lateral (values (1, s.name), (2, s.value)) x(k, x);
    select pg_catalog.max(att.attnum) into v_natts
      from pg_catalog.pg_attribute att where att.attrelid = i_table and att.attnum > 0;
    -- the event tables the queue has now get an INSERT each that is planned once
    select q.queue_data_pfx, q.queue_ntables into v_pfx, v_ntables
      from pgq.queue q where q.queue_name = i_queue;
    -- queues whose inserts are checked (disabled, per-transaction limit) get them per event
    v_checked := case when exists (
                          select 1 from pg_catalog.pg_attribute att
                           where att.attrelid = 'pgq.queue'::pg_catalog.regclass
                             and att.attname = 'queue_per_tx_limit' and not att.attisdropped)
                      then 'q.queue_disable_insert OR q.queue_per_tx_limit IS NOT NULL'
                      else 'q.queue_disable_insert' end;

    foreach v_op in array array['INSERT', 'DELETE', 'UPDATE'] loop
        -- the events of the statement: (position, order within the row, type, data, extra2)
        if v_op = 'INSERT' then
            v_sel := pg_catalog.format(
                E'SELECT 0::int8 AS _n, 0 AS _k, %L::text AS t,\n              %s AS d,\n' ||
                E'              NULL::text AS x2\n         FROM skyrep_new_rows AS _skyrep_new',
                'I:' || v_pkey_str, v_new_data);
            v_order := '';
        elsif v_op = 'DELETE' then
            v_sel := pg_catalog.format(
                E'SELECT 0::int8 AS _n, 0 AS _k, %L::text AS t,\n              %s AS d,\n' ||
                E'              NULL::text AS x2\n         FROM skyrep_old_rows AS _skyrep_old',
                'D:' || v_pkey_str, v_old_data);
            v_order := '';
        else
            -- the UPDATE that changed no key (checked before, see v_kchk): without backup
            -- and ignore= its events need only the new rows, in their order; else each new
            -- row is paired with its old row by position
            if not a.backup and v_ign = '' then
                v_sel_plain := pg_catalog.format(
                    E'SELECT 0::int8 AS _n, 0 AS _k, %L::text AS t,\n              %s AS d,\n' ||
                    E'              NULL::text AS x2\n         FROM skyrep_new_rows AS _skyrep_new',
                    'U:' || v_pkey_str, v_new_data);
                v_order_plain := '';
            else
                v_sel_plain := pg_catalog.format(
                    E'SELECT _skyrep_new.%1$I AS _n, 0 AS _k, %2$L::text AS t,\n' ||
                    E'              %3$s AS d,\n' ||
                    E'              %4$s AS x2\n' ||
                    E'         FROM (SELECT pg_catalog.row_number() OVER () AS %1$I, * FROM skyrep_old_rows) AS _skyrep_old\n' ||
                    E'         JOIN (SELECT pg_catalog.row_number() OVER () AS %1$I, * FROM skyrep_new_rows) AS _skyrep_new\n' ||
                    E'           ON _skyrep_new.%1$I = _skyrep_old.%1$I%5$s',
                    v_n, 'U:' || v_pkey_str, v_new_data, v_backup,
                    case when v_ign <> '' then pg_catalog.format(E'\n        WHERE NOT ((%s) AND NOT (%s))', v_ign,
                                                                 case when v_dat = '' then 'false' else v_dat end)
                         else '' end);
                v_order_plain := ' ORDER BY _skyrep_e._n';
            end if;
            v_sel := v_sel_plain;
            v_order := v_order_plain;
        end if;
        if v_op = 'UPDATE' and a.keymove then
            -- a key change queues the events of DELETE (_k 0) and INSERT (_k 1): two rows
            -- from generate_series, the old row encoded only then
            v_sel := pg_catalog.format(
                E'SELECT _skyrep_p._n, _skyrep_p._k,\n' ||
                E'              CASE WHEN _skyrep_p._k = 0 THEN %2$L WHEN _skyrep_p._kc THEN %3$L ELSE %4$L END::text AS t,\n' ||
                E'              CASE WHEN _skyrep_p._k = 0 THEN _skyrep_p._do ELSE _skyrep_p._dn END AS d,\n' ||
                E'              _skyrep_p._x2 AS x2\n' ||
                E'         FROM (SELECT _skyrep_new.%1$I AS _n, %5$s AS _kc,\n' ||
                E'                      pg_catalog.generate_series(CASE WHEN %5$s THEN 0 ELSE 1 END, 1) AS _k,\n' ||
                E'                      %7$s AS _dn,\n' ||
                E'                      CASE WHEN %5$s THEN %6$s END AS _do,\n' ||
                E'                      CASE WHEN NOT %5$s THEN %8$s END AS _x2\n' ||
                E'                 FROM (SELECT pg_catalog.row_number() OVER () AS %1$I, * FROM skyrep_old_rows) AS _skyrep_old\n' ||
                E'                 JOIN (SELECT pg_catalog.row_number() OVER () AS %1$I, * FROM skyrep_new_rows) AS _skyrep_new\n' ||
                E'                   ON _skyrep_new.%1$I = _skyrep_old.%1$I\n' ||
                E'                WHERE CASE WHEN %5$s THEN true%9$s ELSE true END) AS _skyrep_p',
                v_n, 'D:' || v_pkey_str, 'I:' || v_pkey_str, 'U:' || v_pkey_str, v_kc,
                v_old_data, v_new_data, v_backup,
                case when v_ign <> '' then pg_catalog.format(' WHEN (%s) AND NOT (%s) THEN false', v_ign,
                                                             case when v_dat = '' then 'false' else v_dat end)
                     else '' end);
            v_order := ' ORDER BY _skyrep_e._n, _skyrep_e._k';
        end if;
        v_probe := v_probe || pg_catalog.format(
            E'        %s TG_OP = %L THEN\n            PERFORM 1 FROM (%s) AS _skyrep_e LIMIT 0;\n',
            case v_op when 'INSERT' then 'IF' else 'ELSIF' end, v_op, v_sel);
        if v_op = 'UPDATE' and a.keymove then
            v_probe := v_probe || pg_catalog.format(
                E'            PERFORM 1 FROM (%s) AS _skyrep_e LIMIT 0;\n', v_sel_plain);
        end if;
        if v_op = 'UPDATE' then
            v_probe := v_probe || pg_catalog.format(E'            PERFORM %s LIMIT 0;\n', v_kchk);
        end if;
        v_ops := v_ops || pg_catalog.format(E'    %s TG_OP = %L THEN\n', case v_op when 'INSERT' then 'IF' else 'ELSIF' end, v_op);
        if v_op = 'UPDATE' and a.keymove then
            -- Most UPDATEs change no key: the plain query (without a second row per input
            -- row) queues the same events then.
            v_ops := v_ops || pg_catalog.format(E'        IF %s THEN\n', v_kchk)
                || pgq.skyrep_capture_bulk_queue_sql(i_queue, v_fq, v_pfx, v_ntables, v_sel, v_order)
                || E'        ELSE\n'
                || pgq.skyrep_capture_bulk_queue_sql(i_queue, v_fq, v_pfx, v_ntables, v_sel_plain, v_order_plain)
                || E'        END IF;\n';
        elsif v_op = 'UPDATE' then
            v_ops := v_ops || pg_catalog.format(
                    E'        IF %s THEN\n            RAISE EXCEPTION ''primary key update not allowed'';\n        END IF;\n',
                    v_kchk)
                || pgq.skyrep_capture_bulk_queue_sql(i_queue, v_fq, v_pfx, v_ntables, v_sel, v_order);
        else
            v_ops := v_ops || pgq.skyrep_capture_bulk_queue_sql(i_queue, v_fq, v_pfx, v_ntables, v_sel, v_order);
        end if;
    end loop;
    v_ops := v_ops || E'    END IF;\n';

    -- the generic path (a changed table): the rows one by one through skyrep_capture_generic
    -- (a whole row of a transition table is an anonymous record: ROW(x.*) typed as the table)
    v_generic := pg_catalog.format(
        E'        RAISE LOG ''skyrep capture: %% changed since its capture trigger was generated; run pgq.skyrep_capture_refresh()'', %1$L;\n' ||
        E'        IF TG_OP = ''INSERT'' THEN\n' ||
        E'            FOR _skyrep_r IN EXECUTE ''SELECT ROW(x.*)::'' || TG_RELID::pg_catalog.regclass || '' AS n FROM skyrep_new_rows AS x'' LOOP\n' ||
        E'                PERFORM pgq.skyrep_capture_generic(TG_OP, TG_RELID, TG_ARGV, _skyrep_r.n, _skyrep_r.n);\n' ||
        E'            END LOOP;\n' ||
        E'        ELSIF TG_OP = ''DELETE'' THEN\n' ||
        E'            FOR _skyrep_r IN EXECUTE ''SELECT ROW(x.*)::'' || TG_RELID::pg_catalog.regclass || '' AS o FROM skyrep_old_rows AS x'' LOOP\n' ||
        E'                PERFORM pgq.skyrep_capture_generic(TG_OP, TG_RELID, TG_ARGV, _skyrep_r.o, _skyrep_r.o);\n' ||
        E'            END LOOP;\n' ||
        E'        ELSE\n' ||
        E'            FOR _skyrep_r IN EXECUTE pg_catalog.format(''SELECT n.r AS n, o.r AS o''\n' ||
        E'                || '' FROM (SELECT pg_catalog.row_number() OVER () AS i, ROW(x.*)::%%1$s AS r FROM skyrep_old_rows AS x) AS o''\n' ||
        E'                || '' JOIN (SELECT pg_catalog.row_number() OVER () AS i, ROW(x.*)::%%1$s AS r FROM skyrep_new_rows AS x) AS n''\n' ||
        E'                || '' ON n.i = o.i ORDER BY n.i'', TG_RELID::pg_catalog.regclass) LOOP\n' ||
        E'                PERFORM pgq.skyrep_capture_generic(TG_OP, TG_RELID, TG_ARGV, _skyrep_r.n, _skyrep_r.o);\n' ||
        E'            END LOOP;\n' ||
        E'        END IF;\n', v_fq);

    v_body := E'#variable_conflict use_column\nDECLARE\n    _skyrep_settings text[];\n    _skyrep_table text;\n    _skyrep_why text;\n'
           || E'    _skyrep_direct boolean;\n    _skyrep_generic boolean := false;\n    _skyrep_r record;\nBEGIN\n'
           || E'    IF pg_catalog.current_setting(''session_replication_role'') = ''local'' THEN\n        RETURN NULL;\n    END IF;\n'
           || pg_catalog.format(E'    IF TG_OP = ''TRUNCATE'' THEN\n        PERFORM %s;\n        RETURN NULL;\n    END IF;\n',
                  pgq.skyrep_capture_insert_sql(i_queue, '''R''', '''''', pg_catalog.quote_literal(v_fq), 'NULL', 'NULL', 'NULL'))
           -- the guard trigger (see skyrep_capture_create) never fires
           || E'    IF TG_LEVEL = ''ROW'' THEN\n        RETURN NULL;\n    END IF;\n'
           -- What skyrep_capture_bulk_refusal refuses, arisen since (one query): an UPDATE or
           -- DELETE of an inheritance parent also changes its children's rows; an AFTER
           -- trigger added since may write to the table (see skyrep_capture_bulk_source).
           || pg_catalog.format(
                  E'    SELECT CASE WHEN TG_OP <> ''INSERT'' AND EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhparent = TG_RELID)\n' ||
                  E'                THEN ''cannot tell the rows of inheritance children from the table''''s own''\n' ||
                  E'                WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = TG_RELID AND NOT t.tgisinternal\n' ||
                  E'                               AND t.tgenabled <> ''D'' AND (t.tgtype & 66) = 0 AND (t.tgtype & 28) <> 0\n' ||
                  E'                               AND (SELECT p.pronamespace FROM pg_catalog.pg_proc p WHERE p.oid = t.tgfoid)\n' ||
                  E'                                   <> ''pgq''::pg_catalog.regnamespace)\n' ||
                  E'                THEN ''cannot keep its events in order with the writes of the table''''s other AFTER triggers'' END\n' ||
                  E'      INTO _skyrep_why;\n' ||
                  E'    IF _skyrep_why IS NOT NULL THEN\n' ||
                  E'        RAISE EXCEPTION ''skyrep capture: %%: set-based capture %%; run pgq.skyrep_capture_refresh(%%) to capture it per row'', %1$L, _skyrep_why, %2$L;\n' ||
                  E'    END IF;\n', v_fq, pg_catalog.quote_literal(v_fq))
           || case when v_fixed is null then ''
                   else pg_catalog.format(
                       E'    IF NOT (%s) THEN\n        _skyrep_settings := pgq.skyrep_capture_settings(%L);\n    END IF;\n',
                       v_standard, v_fixed) end
           -- a changed table: a new attribute number, or a column the queries cannot read
           || pg_catalog.format(
                  E'    IF pg_catalog.has_column_privilege(TG_RELID, %s::int2, ''SELECT'') IS NOT NULL THEN\n' ||
                  E'        _skyrep_generic := true;\n    ELSE\n        BEGIN\n%s        END IF;\n' ||
                  E'        EXCEPTION WHEN undefined_column OR datatype_mismatch OR undefined_function THEN\n' ||
                  E'            _skyrep_generic := true;\n        END;\n    END IF;\n',
                  v_natts + 1, v_probe)
           || E'    IF _skyrep_generic THEN\n' || v_generic
           || E'    ELSE\n'
           || pg_catalog.format(
                  E'    SELECT q.queue_data_pfx || ''_'' || q.queue_cur_table, NOT (%s)\n' ||
                  E'      INTO _skyrep_table, _skyrep_direct\n' ||
                  E'      FROM pgq.queue q WHERE q.queue_name = %L;\n' ||
                  E'    _skyrep_direct := coalesce(_skyrep_direct, false);\n', v_checked, i_queue)
           || v_ops
           || E'    END IF;\n'
           || case when v_fixed is null then ''
                   else E'    IF _skyrep_settings IS NOT NULL THEN\n        PERFORM pgq.skyrep_capture_settings(_skyrep_settings);\n    END IF;\n' end
           || E'    RETURN NULL;\nEND\n';

    -- jit and enable_nestloop: the plans are made once, for the size of the first statement,
    -- and must not be slow for any size (no JIT compile for a small statement, no nested
    -- loop over two large transition tables); work_mem: the pairing of an UPDATE's rows and
    -- the order of its events are sorts of rows in order already, quick in memory
    return pg_catalog.format(
        E'CREATE OR REPLACE FUNCTION pgq.%I() RETURNS trigger LANGUAGE plpgsql\n' ||
        E'SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off SET enable_nestloop = off\n' ||
        E'SET work_mem = ''64MB'' AS %L',
        v_fname, v_body);
end;
$$;

-- The generic path of a generated function, taken when the table's columns changed since
-- the function was generated: queues the events the function would queue if it were
-- generated now, with the columns and key read from the catalog for every row (slower, but
-- the application's writes go on until pgq.skyrep_capture_refresh).  i_args are the
-- trigger's arguments (the queue first); i_new and i_old the rows (for INSERT and DELETE
-- both the row).  when=, ev_*= and magic columns need the generated function: with those it
-- fails, saying so.  Returns true where the generated function's branch for the operation
-- was taken (for SKIP).
create or replace function pgq.skyrep_capture_generic(
    i_op text, i_relid oid, i_args text[], i_new record, i_old record)
returns boolean
language plpgsql
as $$
declare
    a record;
    v_queue text := i_args[pg_catalog.array_lower(i_args, 1)];    -- TG_ARGV counts from 0
    v_fq text;
    v_names text[];
    v_outf text[];
    v_data boolean[];            -- per column: part of ev_data (not ignored)
    v_key boolean[];
    v_new text[];
    v_old text[];
    v_pkey text[];
    v_pkey_str text;
    v_sql text;
    v_changed boolean := false;
    v_ign_changed boolean := false;
    v_key_changed boolean := false;
    v_ev_new text;
    v_ev_old text;
    v_settings text[];
    i int;
begin
    if pg_catalog.current_setting('session_replication_role') = 'local' then
        return false;
    end if;
    -- every fixed setting: the types are the table's as they are now
    select pgq.skyrep_capture_settings(pg_catalog.array_agg(x order by f.n, x.k))
      into v_settings
      from (select s.*, pg_catalog.row_number() over () as n
              from pgq.skyrep_capture_fixed_settings(
                       array['date', 'interval', 'float8', 'bytea', 'money']::pg_catalog.regtype[]::oid[]) s) f
           cross join lateral (values (1, f.name), (2, f.value)) x(k, x);
    select * into a
      from pgq.skyrep_capture_parse_args(i_args[pg_catalog.array_lower(i_args, 1) + 1 :]);
    select n.nspname || '.' || c.relname into v_fq
      from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
     where c.oid = i_relid;
    if i_op = 'TRUNCATE' then
        perform pgq.insert_event(v_queue, 'R', '', v_fq, null, null, null);
        perform pgq.skyrep_capture_settings(v_settings);
        return true;
    end if;
    select pg_catalog.array_agg(att.attname::text order by att.attnum),
           pg_catalog.array_agg(pgq.skyrep_type_output_function(att.atttypid) order by att.attnum)
      into v_names, v_outf
      from pg_catalog.pg_attribute att
     where att.attrelid = i_relid and att.attnum > 0 and not att.attisdropped;
    if a.when_expr is not null or pg_catalog.cardinality(a.override_fields) > 0
       or exists (select 1 from pg_catalog.unnest(v_names) x where pg_catalog.left(x, 8) = '_pgq_ev_') then
        raise exception 'skyrep capture: % changed since its capture trigger was generated, and its '
                        'when=, ev_*= or _pgq_ev_* columns need the generated function: run '
                        'pgq.skyrep_capture_refresh(%)', v_fq, pg_catalog.quote_literal(v_fq);
    end if;
    if a.pkey_raw is not null then
        v_pkey := a.pkey_list;
        v_pkey_str := a.pkey_raw;
    else
        v_pkey := pgq.skyrep_primary_key(i_relid);
        v_pkey_str := pg_catalog.array_to_string(v_pkey, ',');
    end if;
    if i_op <> 'INSERT' and pg_catalog.cardinality(v_pkey) = 0 then
        raise exception 'Update/Delete on table without pkey';
    end if;
    select pg_catalog.array_agg(not x = any(a.ignore_list) order by n),
           pg_catalog.array_agg(x = any(v_pkey) order by n),
           'select array[' || pg_catalog.string_agg(
               pg_catalog.format('pg_catalog.textin(%s(($1).%I))', v_outf[n], x), ', ' order by n)
           || ']::text[]'
      into v_data, v_key, v_sql
      from pg_catalog.unnest(v_names) with ordinality as c(x, n);
    execute v_sql into v_new using i_new;
    if i_op = 'UPDATE' then
        execute v_sql into v_old using i_old;
        for i in 1 .. pg_catalog.cardinality(v_names) loop
            if v_new[i] is distinct from v_old[i] then
                v_key_changed := v_key_changed or v_key[i];
                v_changed := v_changed or v_data[i];
                v_ign_changed := v_ign_changed or not v_data[i];
            end if;
        end loop;
        if v_key_changed and not a.keymove then
            raise exception 'primary key update not allowed';
        end if;
        if v_ign_changed and not v_changed then
            perform pgq.skyrep_capture_settings(v_settings);
            return true;
        end if;
    end if;
    select pg_catalog.string_agg(
               pgq.skyrep_urlencode(x) || coalesce('=' || pgq.skyrep_urlencode(v_new[n]), ''),
               '&' order by n) filter (where v_data[n])
      into v_ev_new
      from pg_catalog.unnest(v_names) with ordinality as c(x, n);
    if i_op = 'UPDATE' then
        select pg_catalog.string_agg(
                   pgq.skyrep_urlencode(x) || coalesce('=' || pgq.skyrep_urlencode(v_old[n]), ''),
                   '&' order by n) filter (where v_data[n])
          into v_ev_old
          from pg_catalog.unnest(v_names) with ordinality as c(x, n);
    end if;
    if i_op = 'UPDATE' and v_key_changed then
        perform pgq.insert_event(v_queue, 'D:' || v_pkey_str, coalesce(v_ev_old, ''), v_fq, null, null, null);
        perform pgq.insert_event(v_queue, 'I:' || v_pkey_str, coalesce(v_ev_new, ''), v_fq, null, null, null);
    else
        perform pgq.insert_event(v_queue, pg_catalog.left(i_op, 1) || ':' || v_pkey_str,
                                 coalesce(v_ev_new, ''), v_fq,
                                 case when i_op = 'UPDATE' and a.backup then coalesce(v_ev_old, '') end,
                                 null, null);
    end if;
    perform pgq.skyrep_capture_settings(v_settings);
    return true;
end;
$$;

-- Parses pg_trigger.tgargs (NUL-terminated strings) into an array.
create or replace function pgq.skyrep_capture_trigger_args(i_tgargs bytea, i_nargs int)
returns text[]
language plpgsql stable strict
as $$
declare
    v_res text[] := '{}';
    v_pos int := 1;
    v_len int;
    i int;
begin
    for i in 1 .. i_nargs loop
        v_len := pg_catalog.position(pg_catalog.substring(i_tgargs, v_pos), '\x00'::bytea) - 1;
        if v_len < 0 then
            v_len := pg_catalog.length(i_tgargs) - v_pos + 1;
        end if;
        v_res := v_res || pg_catalog.convert_from(
            pg_catalog.substring(i_tgargs, v_pos, v_len), pg_catalog.getdatabaseencoding());
        v_pos := v_pos + v_len + 1;
    end loop;
    return v_res;
end;
$$;

-- The capture triggers created by skyrep_capture_create, one row per row trigger, or per
-- UPDATE trigger of a set-based capture (the TRUNCATE trigger of each is named
-- trigger_name || '_truncate', the other triggers of a set-based capture trigger_name ||
-- '_insert', '_delete' and '_guard').
create or replace function pgq.skyrep_capture_list(
    out table_name regclass, out trigger_name text, out queue_name text, out args text[],
    out function_name text)
returns setof record
language sql stable
as $$
    select t.tgrelid::pg_catalog.regclass, t.tgname::text, x.a[1], x.a[2:], p.proname::text
      from pg_catalog.pg_trigger t
      join pg_catalog.pg_proc p on p.oid = t.tgfoid
      join pg_catalog.pg_namespace n on n.oid = p.pronamespace
      cross join lateral (select pgq.skyrep_capture_trigger_args(t.tgargs, t.tgnargs) as a) x
     where n.nspname = 'pgq'
       and p.proname like 'skyrep\_cap\_%'
       and not t.tgisinternal
       and (t.tgtype & 16) <> 0         -- fires on UPDATE: the trigger named i_trigger
     order by t.tgrelid::pg_catalog.regclass::text, t.tgname;
$$;

-- Drops a generated function if no trigger uses it any more.
create or replace function pgq.skyrep_capture_drop_function_if_unused(i_fname text)
returns boolean
language plpgsql
as $$
declare
    v_oid oid;
begin
    select p.oid into v_oid
      from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
     where n.nspname = 'pgq' and p.proname = i_fname and p.pronargs = 0;
    if v_oid is null or exists (select 1 from pg_catalog.pg_trigger t where t.tgfoid = v_oid) then
        return false;
    end if;
    execute pg_catalog.format('DROP FUNCTION pgq.%I()', i_fname);
    return true;
end;
$$;

-- Creates or replaces the generated function and the two triggers.
create or replace function pgq.skyrep_capture_create(
    i_table regclass, i_queue text, i_trigger text, i_args text[] default '{}')
returns text
language plpgsql
as $$
declare
    v_fname text;
    v_old text[];
    v_truncate text := i_trigger || '_truncate';
    v_parsed record;
    v_args text;
    v_targs text;
    v_f text;
    v_names text[] := array[i_trigger, i_trigger || '_truncate', i_trigger || '_insert',
                            i_trigger || '_delete', i_trigger || '_guard'];
    v_bulk boolean := 'bulk' = any(coalesce(i_args, '{}'));
    v_refusal text;
begin
    if pg_catalog.octet_length(v_truncate) > 63 then
        raise exception 'skyrep capture: trigger name "%" is too long (at most 54 bytes)', i_trigger;
    end if;
    select * into v_parsed from pgq.skyrep_capture_parse_args(i_args);
    if v_bulk then
        v_refusal := pgq.skyrep_capture_bulk_refusal(i_table, i_args);
        if v_refusal is not null then
            raise notice 'skyrep capture: % is captured per row: %', i_table, v_refusal;
            v_bulk := false;
        end if;
    end if;
    v_fname := pgq.skyrep_capture_function_name(i_table, i_trigger);
    -- functions the triggers used so far (dropped below when nothing else uses them)
    select coalesce(pg_catalog.array_agg(p.proname::text), '{}') into v_old
      from pg_catalog.pg_trigger t
      join pg_catalog.pg_proc p on p.oid = t.tgfoid
      join pg_catalog.pg_namespace n on n.oid = p.pronamespace
     where t.tgrelid = i_table and t.tgname = any(v_names)
       and n.nspname = 'pgq' and p.proname like 'skyrep\_cap\_%';

    if v_bulk then
        execute pgq.skyrep_capture_bulk_source(i_table, i_queue, i_trigger, i_args);
    else
        execute pgq.skyrep_capture_source(i_table, i_queue, i_trigger, i_args);
    end if;
    -- fired by its triggers only: nobody needs EXECUTE, which CREATE TRIGGER asks for
    execute pg_catalog.format('REVOKE ALL ON FUNCTION pgq.%I() FROM PUBLIC', v_fname);
    execute pg_catalog.format('COMMENT ON FUNCTION pgq.%I() IS %L', v_fname,
        pg_catalog.format('skyrep capture trigger %I on %s to queue %s (generated; run '
                          'pgq.skyrep_capture_refresh() after the table changes)',
                          i_trigger, i_table, i_queue));

    select pg_catalog.string_agg(pg_catalog.format('%L', x), ', ')
      into v_args
      from pg_catalog.unnest(array[i_queue] || coalesce(i_args, '{}')) x;
    v_targs := pg_catalog.format('%L', i_queue)
               || case when v_parsed.deny then ', ''deny''' else '' end;

    -- the triggers of the other mode too (the set-based ones only where they are ours)
    for v_f in
        select t.tgname from pg_catalog.pg_trigger t
         where t.tgrelid = i_table
           and (t.tgname in (i_trigger, v_truncate)
                or (t.tgname = any(v_names)
                    and exists (select 1 from pg_catalog.pg_proc p
                                 where p.oid = t.tgfoid and p.pronamespace = 'pgq'::pg_catalog.regnamespace
                                   and p.proname like 'skyrep\_cap\_%')))
    loop
        execute pg_catalog.format('DROP TRIGGER %I ON %s', v_f, i_table);
    end loop;
    if v_bulk then
        -- Set-based: one trigger per operation (PostgreSQL allows transition tables only on
        -- triggers for one event), and a guard that never fires but keeps the table from
        -- becoming an inheritance child or partition, whose rows a statement on the parent
        -- would change without firing these triggers (PostgreSQL refuses ROW triggers with
        -- transition tables there).
        execute pg_catalog.format(
            'CREATE TRIGGER %I AFTER UPDATE ON %s REFERENCING OLD TABLE AS skyrep_old_rows '
            'NEW TABLE AS skyrep_new_rows FOR EACH STATEMENT EXECUTE FUNCTION pgq.%I(%s)',
            i_trigger, i_table, v_fname, v_args);
        execute pg_catalog.format(
            'CREATE TRIGGER %I AFTER INSERT ON %s REFERENCING NEW TABLE AS skyrep_new_rows '
            'FOR EACH STATEMENT EXECUTE FUNCTION pgq.%I(%s)',
            i_trigger || '_insert', i_table, v_fname, v_args);
        execute pg_catalog.format(
            'CREATE TRIGGER %I AFTER DELETE ON %s REFERENCING OLD TABLE AS skyrep_old_rows '
            'FOR EACH STATEMENT EXECUTE FUNCTION pgq.%I(%s)',
            i_trigger || '_delete', i_table, v_fname, v_args);
        execute pg_catalog.format(
            'CREATE TRIGGER %I AFTER INSERT ON %s REFERENCING NEW TABLE AS skyrep_new_rows '
            'FOR EACH ROW WHEN (false) EXECUTE FUNCTION pgq.%I(%s)',
            i_trigger || '_guard', i_table, v_fname, v_args);
    else
        execute pg_catalog.format(
            'CREATE TRIGGER %I %s INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION pgq.%I(%s)',
            i_trigger, case when v_parsed.skip then 'BEFORE' else 'AFTER' end, i_table, v_fname, v_args);
    end if;
    execute pg_catalog.format(
        'CREATE TRIGGER %I AFTER TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION pgq.%I(%s)',
        v_truncate, i_table, v_fname, v_targs);

    foreach v_f in array v_old loop
        if v_f <> v_fname then
            perform pgq.skyrep_capture_drop_function_if_unused(v_f);
        end if;
    end loop;
    return v_fname;
end;
$$;

-- Drops the triggers and the generated function.
create or replace function pgq.skyrep_capture_drop(i_table regclass, i_trigger text)
returns boolean
language plpgsql
as $$
declare
    t record;
    v_funcs text[] := '{}';
    v_f text;
begin
    for t in
        select tg.tgname, p.proname
          from pg_catalog.pg_trigger tg
          join pg_catalog.pg_proc p on p.oid = tg.tgfoid
          join pg_catalog.pg_namespace n on n.oid = p.pronamespace
         where tg.tgrelid = i_table
           and tg.tgname in (i_trigger, i_trigger || '_truncate', i_trigger || '_insert',
                             i_trigger || '_delete', i_trigger || '_guard')
           and n.nspname = 'pgq' and p.proname like 'skyrep\_cap\_%'
    loop
        execute pg_catalog.format('DROP TRIGGER %I ON %s', t.tgname, i_table);
        v_funcs := v_funcs || t.proname::text;
    end loop;
    foreach v_f in array v_funcs loop
        perform pgq.skyrep_capture_drop_function_if_unused(v_f);
    end loop;
    return pg_catalog.cardinality(v_funcs) > 0;
end;
$$;

-- Regenerates one capture trigger from the table's current columns, with the queue and
-- arguments it was created with.
create or replace function pgq.skyrep_capture_refresh(i_table regclass, i_trigger text)
returns text
language plpgsql
as $$
declare
    v_queue text;
    v_args text[];
begin
    select l.queue_name, l.args into v_queue, v_args
      from pgq.skyrep_capture_list() l
     where l.table_name = i_table and l.trigger_name = i_trigger;
    if not found then
        raise exception 'skyrep capture: no capture trigger "%" on table %', i_trigger, i_table;
    end if;
    return pgq.skyrep_capture_create(i_table, v_queue, i_trigger, v_args);
end;
$$;

-- Regenerates every capture trigger of the table; returns how many.
create or replace function pgq.skyrep_capture_refresh(i_table regclass)
returns integer
language plpgsql
as $$
declare
    t record;
    n integer := 0;
begin
    for t in select l.trigger_name from pgq.skyrep_capture_list() l where l.table_name = i_table loop
        perform pgq.skyrep_capture_refresh(i_table, t.trigger_name);
        n := n + 1;
    end loop;
    return n;
end;
$$;

-- Regenerates the functions of all capture triggers in place, from the tables' current
-- columns and privileges, without touching the triggers (so without locking the tables);
-- skyrep's install runs it last, so that triggers created by an older skyrep, or before the
-- privileges changed, get the code this generator writes now.  Functions it may not
-- replace (another owner), tables renamed since (the function knows the old name: that
-- needs pgq.skyrep_capture_refresh) and tables it cannot generate for (an argument that no
-- longer fits the columns) are left as they are, with a WARNING each.  Returns how many
-- functions it regenerated.
create or replace function pgq.skyrep_capture_regenerate()
returns integer
language plpgsql
as $$
declare
    l record;
    n integer := 0;
begin
    for l in
        select c.table_name, c.trigger_name, c.queue_name, c.args, c.function_name,
               pg_catalog.pg_has_role(p.proowner, 'USAGE') as mine,
               pgq.skyrep_capture_function_name(c.table_name, c.trigger_name) = c.function_name as named,
               -- set-based capture ('bulk' where the table allowed it): statement triggers
               exists (select 1 from pg_catalog.pg_trigger t
                        where t.tgrelid = c.table_name and t.tgname = c.trigger_name
                          and (t.tgtype::integer & 1) = 0) as bulk
          from pgq.skyrep_capture_list() c
          join pg_catalog.pg_proc p
            on p.pronamespace = 'pgq'::pg_catalog.regnamespace and p.proname = c.function_name
           and p.pronargs = 0
    loop
        if not l.mine then
            raise warning 'skyrep capture: trigger % on % was not regenerated: its function belongs to another role (run pgq.skyrep_capture_refresh as that role)',
                l.trigger_name, l.table_name;
        elsif not l.named then
            raise warning 'skyrep capture: trigger % on % was not regenerated: the table was renamed (run pgq.skyrep_capture_refresh)',
                l.trigger_name, l.table_name;
        else
            begin
                if l.bulk then
                    execute pgq.skyrep_capture_bulk_source(l.table_name, l.queue_name,
                                                           l.trigger_name, l.args);
                else
                    execute pgq.skyrep_capture_source(l.table_name, l.queue_name,
                                                      l.trigger_name, l.args);
                end if;
                n := n + 1;
            exception when others then
                raise warning 'skyrep capture: trigger % on % was not regenerated: %',
                    l.trigger_name, l.table_name, sqlerrm;
            end;
        end if;
    end loop;
    return n;
end;
$$;

-- Privileges (see the header): this file's functions are the owner's; functions generated by
-- older installs, which ran as the writing role, become SECURITY DEFINER too.
do $$
declare
    f record;
begin
    for f in
        select p.oid::pg_catalog.regprocedure as fn, p.proname like 'skyrep\_cap\_%' as generated
          from pg_catalog.pg_proc p
         where p.pronamespace = 'pgq'::pg_catalog.regnamespace
           and p.proname like 'skyrep\_%'
           and pg_catalog.pg_has_role(p.proowner, 'USAGE')
    loop
        if f.generated then
            execute pg_catalog.format(
                'alter function %s security definer set search_path = pg_catalog, pg_temp', f.fn);
        end if;
        execute pg_catalog.format('revoke all on function %s from public', f.fn);
    end loop;
end
$$;
