-- PgQ 3 trigger functions in PL/pgSQL: pgq.logutriga(), pgq.sqltriga(), pgq.jsontriga().
--
-- Generic triggers: on every row they read the table's columns and key from the catalog,
-- so they work on any table without preparation (skyrep_capture.sql generates faster,
-- table-specific functions for the same events).  The events are those of PgQ's C
-- triggers for the same rows:
--
--   logutriga  ev_type 'I:<pkey>' / 'U:<pkey>' / 'D:<pkey>' ('R' for TRUNCATE); ev_data the
--              row url-encoded: name=value joined by '&', a bare name for NULL, 'name=' for
--              an empty string; A-Z a-z 0-9 _ . - kept, space -> '+', every other byte ->
--              %xx (lowercase hex, bytes of the database encoding); TRUNCATE -> ''
--   sqltriga   ev_type 'I' / 'U' / 'D' / 'R'; ev_data a piece of SQL:
--              INSERT "(col,...) values ('v',null,...)", UPDATE "col='v',col2=NULL where
--              pk='old' and ...", DELETE "pk='old' and ...", TRUNCATE ''
--   jsontriga  ev_type {"op":"INSERT","table":["schema","table"],"pkey":["id"]};
--              ev_data the row as a JSON object (integers and booleans as JSON values,
--              timestamps and dates in ISO 8601, everything else as the string of its
--              text output); TRUNCATE -> {}
--
-- ev_extra1 is 'schema.table' (unquoted) for all three.  Values are the types' text output
-- (so DateStyle, bytea_output and the like apply, as in PgQ).  Events are inserted with
-- pgq.insert_event(queue, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4).
--
-- Trigger arguments: the queue name first, then in any order:
--   SKIP        (BEFORE triggers) queue the event but skip the row operation
--   deny        refuse every change: Table '<schema.table>' to queue '<queue>': change not
--               allowed (<INSERT|UPDATE|DELETE|TRUNCATE>)
--   ignore=a,b  leave these columns out; an UPDATE changing only them queues nothing
--   pkey=a,b    key columns instead of the primary key
--   backup      ev_extra2 = the old row (url-encoded; JSON for jsontriga), UPDATE only
--   when=EXPR   queue only when EXPR ("select EXPR" with the row's columns in scope) is true
--   ev_type=EXPR, ev_data=EXPR, ev_extra1=EXPR .. ev_extra4=EXPR
--               the field is the text of EXPR, evaluated the same way
-- Columns named _pgq_ev_type, _pgq_ev_data, _pgq_ev_extra1 .. _pgq_ev_extra4 set that
-- field and are not part of the row.  With session_replication_role = 'local' the
-- triggers do nothing.  An UPDATE that changes a key column is refused; UPDATE and DELETE
-- need a key.  A column counts as changed by the type's default equality (by its text for
-- arrays and for types without one).
--
-- The table's columns, types and key are read from the catalog once per session and kept
-- in the setting skyrep.trigger_table_<table oid>; a cheap check of the column names, types
-- and primary key on every row notices when the table changed.
--
-- Installed only where PgQ's own C triggers are not: it replaces pgq.logutriga,
-- pgq.sqltriga and pgq.jsontriga.  Requires PostgreSQL 12 or newer; idempotent.

create schema if not exists pgq;

-- Url-encoding of one value (NULL gives NULL).
create or replace function pgq._skyrep_trg_urlencode(i_value text)
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
    -- runs of kept characters and runs of others; a run of others is encoded from its bytes
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

-- A value as a JSON string, as PgQ's jsontriga writes it.
create or replace function pgq._skyrep_trg_json_string(i_value text)
returns text
language sql immutable strict parallel safe
as $$
    select pg_catalog.to_json(i_value)::text;
$$;

-- The type a domain is based on (the type itself for other types).
create or replace function pgq._skyrep_trg_base_type(i_type oid)
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

-- Whether the type has a default equality operator (from a default btree or hash operator
-- class), the way PostgreSQL's type cache decides it.
create or replace function pgq._skyrep_trg_has_equality(i_type oid)
returns boolean
language plpgsql stable strict
as $$
declare
    t record;
begin
    select ty.oid, ty.typtype, ty.typelem, ty.typlen, ty.typrelid
      into t
      from pg_catalog.pg_type ty
     where ty.oid = pgq._skyrep_trg_base_type(i_type);
    if not found then
        return false;
    end if;
    if t.typelem <> 0 and t.typlen = -1 then
        return pgq._skyrep_trg_has_equality(t.typelem);
    end if;
    if t.typtype = 'c' then
        return coalesce((
            select pg_catalog.bool_and(pgq._skyrep_trg_has_equality(a.atttypid))
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

-- SQL expression for the text output of i_ref, an expression of type i_type.
create or replace function pgq._skyrep_trg_output_sql(i_ref text, i_type oid)
returns text
language sql stable strict
as $$
    select pg_catalog.format('pg_catalog.textin(%I.%I(%s))', n.nspname, p.proname, i_ref)
      from pg_catalog.pg_type t
      join pg_catalog.pg_proc p on p.oid = t.typoutput
      join pg_catalog.pg_namespace n on n.oid = p.pronamespace
     where t.oid = pgq._skyrep_trg_base_type(i_type);
$$;

-- Evaluates EXPR of a when= or ev_*= argument as "select EXPR" with the columns of the row
-- i_row in scope.  Returns the result's type and its text output.
create or replace function pgq._skyrep_trg_eval(
    i_relid oid, i_expr text, i_row anyelement, out o_type oid, out o_value text)
language plpgsql
as $$
declare
    v_count int4;
begin
    execute pg_catalog.format(
        'select pg_catalog.pg_typeof((select _x.v from (select (null::%s).*) as _skyrep_row, '
        'lateral (select %s) as _x(v) limit 0))::oid', i_relid::pg_catalog.regclass, i_expr)
        into o_type;
    execute pg_catalog.format(
        'select pg_catalog.count(*)::int4, (pg_catalog.array_agg(%s))[1] '
        'from (select ($1).*) as _skyrep_row, lateral (select %s) as _x(v)',
        pgq._skyrep_trg_output_sql('_x.v', o_type), i_expr)
        into v_count, o_value
        using i_row;
    if v_count <> 1 then
        raise exception 'Expect 1 row from override query, got %', v_count;
    end if;
end;
$$;

-- The table's columns (names, types, output functions, whether they compare by equality:
-- arrays and types without a default equality compare by text) and primary key.  Kept for
-- the session in a setting, and used while the columns and the key stay the same.
create or replace function pgq._skyrep_trg_table_info(
    i_relid oid, out names text[], out types oid[], out outf text[], out has_eq boolean[],
    out pkey text[])
language plpgsql
as $$
declare
    v_sig text;
    v_setting text := 'skyrep.trigger_table_' || i_relid;
    v_cache text[];
begin
    select pg_catalog.string_agg(pg_catalog.format('%s %s', att.atttypid, att.attname), ',' order by att.attnum)
           || '|' || coalesce((select ix.indkey::text from pg_catalog.pg_index ix
                                where ix.indrelid = i_relid and ix.indisprimary), '')
      into v_sig
      from pg_catalog.pg_attribute att
     where att.attrelid = i_relid and att.attnum > 0 and not att.attisdropped;
    v_cache := nullif(pg_catalog.current_setting(v_setting, true), '')::text[];
    if v_cache[1] = v_sig then
        names := v_cache[2]::text[];
        types := v_cache[3]::oid[];
        outf := v_cache[4]::text[];
        has_eq := v_cache[5]::boolean[];
        pkey := v_cache[6]::text[];
        return;
    end if;
    select pg_catalog.array_agg(att.attname::text order by att.attnum),
           pg_catalog.array_agg(att.atttypid order by att.attnum),
           pg_catalog.array_agg(pg_catalog.format('%I.%I', pn.nspname, p.proname) order by att.attnum),
           pg_catalog.array_agg(
               case when bt.typelem <> 0 and bt.typlen = -1 then false
                    when bt.typtype = 'c' then pgq._skyrep_trg_has_equality(bt.oid)
                    else exists (
                        select 1
                          from pg_catalog.pg_opclass oc
                          join pg_catalog.pg_am am on am.oid = oc.opcmethod
                         where oc.opcdefault
                           and am.amname in ('btree', 'hash')
                           and oc.opcintype = any (
                                   array[bt.oid,
                                         case bt.typtype
                                             when 'e' then 'pg_catalog.anyenum'::pg_catalog.regtype::oid
                                             when 'r' then 'pg_catalog.anyrange'::pg_catalog.regtype::oid
                                             when 'm' then pg_catalog.to_regtype('pg_catalog.anymultirange')::oid
                                         end]
                                   || array(select c.casttarget
                                              from pg_catalog.pg_cast c
                                             where c.castsource = bt.oid
                                               and c.castmethod = 'b'
                                               and c.castcontext = 'i')))
               end order by att.attnum)
      into names, types, outf, has_eq
      from pg_catalog.pg_attribute att
      join pg_catalog.pg_type ty on ty.oid = att.atttypid
      join pg_catalog.pg_type bt
        on bt.oid = case when ty.typtype = 'd' then pgq._skyrep_trg_base_type(ty.oid) else ty.oid end
      join pg_catalog.pg_proc p on p.oid = bt.typoutput
      join pg_catalog.pg_namespace pn on pn.oid = p.pronamespace
     where att.attrelid = i_relid and att.attnum > 0 and not att.attisdropped;
    select coalesce(pg_catalog.array_agg(att.attname::text order by k.ord), '{}')
      into pkey
      from pg_catalog.pg_index ix
           cross join lateral pg_catalog.unnest(ix.indkey::int2[]) with ordinality as k(attnum, ord)
           join pg_catalog.pg_attribute att on att.attrelid = ix.indrelid and att.attnum = k.attnum
     where ix.indrelid = i_relid and ix.indisprimary;
    perform pg_catalog.set_config(v_setting,
        array[v_sig, names::text, types::text, outf::text, has_eq::text, pkey::text]::text, false);
end;
$$;

-- Checks the arguments of a TRUNCATE trigger and queues its event.
create or replace function pgq._skyrep_trg_truncate(
    i_format text, i_when text, i_level text, i_relid oid, i_args text[])
returns void
language plpgsql
as $$
declare
    a text;
    v_queue text;
    v_deny boolean := false;
    v_fq text;
    v_pkey text;
    v_type text;
begin
    if pg_catalog.current_setting('session_replication_role') = 'local' then
        return;
    end if;
    if coalesce(pg_catalog.cardinality(i_args), 0) = 0 then
        raise exception 'pgq trigger must have destination queue as argument';
    end if;
    if i_level <> 'STATEMENT' then
        raise exception 'pgq tRuncate trigger must be fired FOR EACH STATEMENT';
    end if;
    v_queue := i_args[pg_catalog.array_lower(i_args, 1)];
    foreach a in array i_args[pg_catalog.array_lower(i_args, 1) + 1 :] loop
        if a = 'SKIP' then
            if i_when = 'AFTER' then
                raise exception 'SKIP does not work in AFTER trigger.';
            end if;
        elsif a = 'deny' then
            v_deny := true;
        elsif a = 'backup' then
            raise exception 'Backup does not make sense for truncate trigger';
        elsif a like 'ignore=%' then
            raise exception 'Column ignore does not make sense for truncate trigger';
        elsif a like 'pkey=%' then
            raise exception 'Custom pkey_list does not make sense for truncate trigger';
        elsif a like 'when=%' or a ~ '^ev_(type|data|extra[1-4])=' then
            raise exception 'Custom expressions do not make sense for truncater trigger';
        else
            raise exception 'bad param to pgq trigger';
        end if;
    end loop;
    select n.nspname || '.' || c.relname into v_fq
      from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
     where c.oid = i_relid;
    if v_deny then
        raise exception '%', pg_catalog.format('Table ''%s'' to queue ''%s'': change not allowed (TRUNCATE)',
                                               v_fq, v_queue);
    end if;
    if i_format = 'jsontriga' then
        select coalesce(pg_catalog.string_agg(pgq._skyrep_trg_json_string(att.attname), ',' order by k.ord), '')
          into v_pkey
          from pg_catalog.pg_index ix
               cross join lateral pg_catalog.unnest(ix.indkey::int2[]) with ordinality as k(attnum, ord)
               join pg_catalog.pg_attribute att on att.attrelid = ix.indrelid and att.attnum = k.attnum
         where ix.indrelid = i_relid and ix.indisprimary;
        select pg_catalog.format('{"op":"TRUNCATE","table":[%s,%s],"pkey":[%s]}',
                                 pgq._skyrep_trg_json_string(n.nspname),
                                 pgq._skyrep_trg_json_string(c.relname), v_pkey)
          into v_type
          from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
         where c.oid = i_relid;
        perform pgq.insert_event(v_queue, v_type, '{}', v_fq, null, null, null);
    else
        perform pgq.insert_event(v_queue, 'R', '', v_fq, null, null, null);
    end if;
end;
$$;

-- The work of a row trigger: checks, the event's fields, pgq.insert_event.  Returns true
-- when the row operation is to be skipped (SKIP).
create or replace function pgq._skyrep_trg_row(
    i_format text, i_op text, i_when text, i_level text, i_relid oid, i_args text[],
    i_new anyelement, i_old anyelement)
returns boolean
language plpgsql
as $$
declare
    a text;
    v_queue text;
    v_skip boolean := false;
    v_deny boolean := false;
    v_backup boolean := false;
    v_ignore text[] := '{}';
    v_pkey_raw text;
    v_pkey text[];
    v_when text;
    v_fields text[] := '{}';
    v_exprs text[] := '{}';
    v_field text;
    v_nsp text;
    v_rel text;
    v_fq text;
    v_names text[];             -- all columns, in table order
    v_types oid[];
    v_is_data boolean[] := '{}';   -- not ignored, not magic
    v_is_key boolean[] := '{}';
    v_is_ign boolean[] := '{}';
    v_has_eq boolean[];
    v_outf text[];              -- output function of each column
    v_new text[];               -- text output of each column
    v_old text[];
    v_eqchg boolean[];          -- changed by equality (columns with one)
    v_changed boolean[] := '{}';
    v_sql text;
    v_exprs_new text := '';
    v_exprs_old text := '';
    v_exprs_chg text := '';
    v_exprs_jnew text := '';
    v_exprs_jold text := '';
    v_jnew text[];
    v_jold text[];
    v_any_key boolean;
    v_ign_changed boolean := false;
    v_data_changed boolean := false;
    v_ev_type text;
    v_ev_data text;
    v_ev_extra1 text;
    v_ev_extra2 text;
    v_ev_extra3 text;
    v_ev_extra4 text;
    v_row_vals text[];
    v_parts text[];
    v_set text[];
    v_where text[];
    v_typ oid;
    v_val text;
    i int;
    v_n int;
begin
    if pg_catalog.current_setting('session_replication_role') = 'local' then
        return false;
    end if;
    if coalesce(pg_catalog.cardinality(i_args), 0) = 0 then
        raise exception 'pgq trigger must have destination queue as argument';
    end if;
    if i_level <> 'ROW' then
        raise exception 'pgq Ins/Upd/Del trigger must be fired FOR EACH ROW';
    end if;

    -- arguments
    v_queue := i_args[pg_catalog.array_lower(i_args, 1)];
    foreach a in array i_args[pg_catalog.array_lower(i_args, 1) + 1 :] loop
        if a = 'SKIP' then
            v_skip := true;
        elsif a = 'deny' then
            v_deny := true;
        elsif a = 'backup' then
            v_backup := true;
        elsif a like 'ignore=%' then
            select coalesce(pg_catalog.array_agg(pg_catalog.btrim(x, E' \t\n\r')), '{}')
              into v_ignore
              from pg_catalog.unnest(pg_catalog.string_to_array(pg_catalog.substr(a, 8), ',')) x;
        elsif a like 'pkey=%' then
            v_pkey_raw := pg_catalog.substr(a, 6);
        elsif a like 'when=%' then
            v_when := coalesce(v_when, pg_catalog.substr(a, 6));
        elsif a ~ '^ev_(type|data|extra[1-4])=' then
            v_field := pg_catalog.split_part(a, '=', 1);
            if not v_field = any(v_fields) then
                v_fields := v_fields || v_field;
                v_exprs := v_exprs || pg_catalog.substr(a, pg_catalog.length(v_field) + 2);
            end if;
        else
            raise exception 'bad param to pgq trigger';
        end if;
    end loop;
    if v_skip and i_when = 'AFTER' then
        raise exception 'SKIP does not work in AFTER trigger.';
    end if;

    select n.nspname, c.relname into v_nsp, v_rel
      from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
     where c.oid = i_relid;
    v_fq := v_nsp || '.' || v_rel;
    if v_deny then
        raise exception '%', pg_catalog.format('Table ''%s'' to queue ''%s'': change not allowed (%s)',
                                               v_fq, v_queue, i_op);
    end if;

    -- key: pkey= (names trimmed; unknown names match nothing), else the primary key
    select * into v_names, v_types, v_outf, v_has_eq, v_pkey
      from pgq._skyrep_trg_table_info(i_relid);
    if v_pkey_raw is not null then
        select coalesce(pg_catalog.array_agg(pg_catalog.btrim(x, E' \t\n\r')), '{}')
          into v_pkey
          from pg_catalog.unnest(pg_catalog.string_to_array(v_pkey_raw, ',')) x;
    else
        v_pkey_raw := pg_catalog.array_to_string(v_pkey, ',');
    end if;
    v_n := coalesce(pg_catalog.array_length(v_names, 1), 0);
    for i in 1 .. v_n loop
        if pg_catalog.left(v_names[i], 8) = '_pgq_ev_'
           and v_names[i] not in ('_pgq_ev_type', '_pgq_ev_data', '_pgq_ev_extra1',
                                  '_pgq_ev_extra2', '_pgq_ev_extra3', '_pgq_ev_extra4') then
            raise exception 'Unknown magic column: %', v_names[i];
        end if;
        v_is_ign := v_is_ign || (v_names[i] = any(v_ignore));
        v_is_data := v_is_data || (pg_catalog.left(v_names[i], 8) <> '_pgq_ev_' and not v_names[i] = any(v_ignore));
        v_is_key := v_is_key || (v_names[i] = any(v_pkey));
        v_exprs_new := v_exprs_new || case when i > 1 then ', ' else '' end
                       || pg_catalog.format('pg_catalog.textin(%s(($1).%I))', v_outf[i], v_names[i]);
        v_exprs_old := v_exprs_old || case when i > 1 then ', ' else '' end
                       || pg_catalog.format('pg_catalog.textin(%s(($2).%I))', v_outf[i], v_names[i]);
        v_exprs_chg := v_exprs_chg || case when i > 1 then ', ' else '' end
                       || case when v_has_eq[i]
                               then pg_catalog.format('($1).%1$I IS DISTINCT FROM ($2).%1$I', v_names[i])
                               else 'NULL::boolean' end;
        if i_format = 'jsontriga' then
            v_exprs_jnew := v_exprs_jnew || case when i > 1 then ', ' else '' end
                || case when v_types[i] in ('pg_catalog.timestamp'::pg_catalog.regtype,
                                            'pg_catalog.timestamptz'::pg_catalog.regtype,
                                            'pg_catalog.date'::pg_catalog.regtype)
                        then pg_catalog.format('pg_catalog.to_json(($1).%I)::text', v_names[i])
                        else 'NULL::text' end;
            v_exprs_jold := v_exprs_jold || case when i > 1 then ', ' else '' end
                || case when v_types[i] in ('pg_catalog.timestamp'::pg_catalog.regtype,
                                            'pg_catalog.timestamptz'::pg_catalog.regtype,
                                            'pg_catalog.date'::pg_catalog.regtype)
                        then pg_catalog.format('pg_catalog.to_json(($2).%I)::text', v_names[i])
                        else 'NULL::text' end;
        end if;
    end loop;

    -- the rows' values as text, in one query
    if v_n > 0 then
        v_sql := pg_catalog.format('select array[%s]::text[], array[%s]::text[], array[%s]::boolean[]',
                                   v_exprs_new, v_exprs_old, v_exprs_chg);
        if i_format = 'jsontriga' then
            v_sql := v_sql || pg_catalog.format(', array[%s]::text[], array[%s]::text[]', v_exprs_jnew, v_exprs_jold);
            execute v_sql into v_new, v_old, v_eqchg, v_jnew, v_jold using i_new, i_old;
        else
            execute v_sql into v_new, v_old, v_eqchg using i_new, i_old;
        end if;
    end if;

    v_any_key := true = any(v_is_key);
    if i_op in ('UPDATE', 'DELETE') and not v_any_key and pg_catalog.cardinality(v_pkey) = 0 then
        raise exception 'Update/Delete on table without pkey';
    end if;
    if i_op = 'UPDATE' then
        for i in 1 .. v_n loop
            v_changed := v_changed || case when v_has_eq[i] then v_eqchg[i]
                                           else v_new[i] is distinct from v_old[i] end;
            if v_is_key[i] and v_changed[i] then
                raise exception 'primary key update not allowed';
            end if;
            if v_is_ign[i] and v_changed[i] then
                v_ign_changed := true;
            elsif v_is_data[i] and v_changed[i] then
                v_data_changed := true;
            end if;
        end loop;
        if v_ign_changed and not v_data_changed then
            return v_skip;
        end if;
    end if;

    if v_when is not null then
        if i_op = 'DELETE' then
            select * into v_typ, v_val from pgq._skyrep_trg_eval(i_relid, v_when, i_old);
        else
            select * into v_typ, v_val from pgq._skyrep_trg_eval(i_relid, v_when, i_new);
        end if;
        if v_typ <> 'pg_catalog.bool'::pg_catalog.regtype then
            raise exception 'when= query result must be boolean, got=%', v_typ;
        end if;
        if v_val is null then
            raise exception 'when= should not be NULL';
        end if;
        if v_val <> 't' then
            return v_skip;
        end if;
    end if;

    -- the event
    v_row_vals := case i_op when 'DELETE' then v_old else v_new end;
    v_ev_extra1 := v_fq;
    if i_format = 'logutriga' then
        v_ev_type := pg_catalog.left(i_op, 1) || ':' || v_pkey_raw;
        select coalesce(pg_catalog.string_agg(
                   pgq._skyrep_trg_urlencode(v_names[g.k])
                   || coalesce('=' || pgq._skyrep_trg_urlencode(v_row_vals[g.k]), ''), '&' order by g.k), '')
          into v_ev_data
          from pg_catalog.generate_series(1, v_n) as g(k)
         where v_is_data[g.k];
    elsif i_format = 'jsontriga' then
        select pg_catalog.format('{"op":%s,"table":[%s,%s],"pkey":[%s]}',
                   pgq._skyrep_trg_json_string(i_op), pgq._skyrep_trg_json_string(v_nsp),
                   pgq._skyrep_trg_json_string(v_rel),
                   coalesce(pg_catalog.string_agg(pgq._skyrep_trg_json_string(x), ',' order by o), ''))
          into v_ev_type
          from pg_catalog.unnest(case when v_pkey_raw = '' then '{}'::text[]
                                      else pg_catalog.string_to_array(v_pkey_raw, ',') end)
               with ordinality as p(x, o);
        v_ev_data := pgq._skyrep_trg_json_row(v_names, v_types, v_is_data, v_row_vals,
                                              case i_op when 'DELETE' then v_jold else v_jnew end);
    else
        v_ev_type := pg_catalog.left(i_op, 1);
        if i_op = 'INSERT' then
            select '(' || coalesce(pg_catalog.string_agg(pg_catalog.quote_ident(v_names[g.k]), ',' order by g.k), '')
                   || ') values ('
                   || coalesce(pg_catalog.string_agg(coalesce(pg_catalog.quote_literal(v_new[g.k]), 'null'),
                                                     ',' order by g.k), '')
                   || ')'
              into v_ev_data
              from pg_catalog.generate_series(1, v_n) as g(k)
             where v_is_data[g.k];
        else
            v_where := '{}';
            for i in 1 .. v_n loop
                if v_is_key[i] then
                    if v_old[i] is null then
                        raise exception 'logtriga: Unexpected NULL key value';
                    end if;
                    v_where := v_where || (pg_catalog.quote_ident(v_names[i]) || '='
                                           || pg_catalog.quote_literal(v_old[i]));
                end if;
            end loop;
            if i_op = 'UPDATE' then
                v_set := '{}';
                for i in 1 .. v_n loop
                    if v_is_data[i] and v_changed[i] then
                        v_set := v_set || (pg_catalog.quote_ident(v_names[i]) || '='
                                           || coalesce(pg_catalog.quote_literal(v_new[i]), 'NULL'));
                    end if;
                end loop;
                if pg_catalog.cardinality(v_set) = 0 then
                    for i in 1 .. v_n loop
                        if v_is_key[i] then
                            v_set := array[pg_catalog.quote_ident(v_names[i]) || '='
                                           || pg_catalog.quote_literal(v_old[i])];
                            exit;
                        end if;
                    end loop;
                end if;
                v_ev_data := pg_catalog.array_to_string(v_set, ',') || ' where '
                             || pg_catalog.array_to_string(v_where, ' and ');
            else
                v_ev_data := pg_catalog.array_to_string(v_where, ' and ');
            end if;
        end if;
    end if;
    if v_backup and i_op = 'UPDATE' then
        if i_format = 'jsontriga' then
            v_ev_extra2 := pgq._skyrep_trg_json_row(v_names, v_types, v_is_data, v_old, v_jold);
        else
            select coalesce(pg_catalog.string_agg(
                       pgq._skyrep_trg_urlencode(v_names[g.k])
                       || coalesce('=' || pgq._skyrep_trg_urlencode(v_old[g.k]), ''), '&' order by g.k), '')
              into v_ev_extra2
              from pg_catalog.generate_series(1, v_n) as g(k)
             where v_is_data[g.k];
        end if;
    end if;

    -- magic columns
    for i in 1 .. v_n loop
        if pg_catalog.left(v_names[i], 8) = '_pgq_ev_' then
            v_val := case i_op when 'DELETE' then v_old[i] else v_new[i] end;
            case v_names[i]
                when '_pgq_ev_type' then v_ev_type := v_val;
                when '_pgq_ev_data' then v_ev_data := v_val;
                when '_pgq_ev_extra1' then v_ev_extra1 := v_val;
                when '_pgq_ev_extra2' then v_ev_extra2 := v_val;
                when '_pgq_ev_extra3' then v_ev_extra3 := v_val;
                else v_ev_extra4 := v_val;
            end case;
        end if;
    end loop;

    -- ev_*= expressions
    for i in 1 .. coalesce(pg_catalog.array_length(v_fields, 1), 0) loop
        if i_op = 'DELETE' then
            select o_value into v_val from pgq._skyrep_trg_eval(i_relid, v_exprs[i], i_old);
        else
            select o_value into v_val from pgq._skyrep_trg_eval(i_relid, v_exprs[i], i_new);
        end if;
        case v_fields[i]
            when 'ev_type' then v_ev_type := v_val;
            when 'ev_data' then v_ev_data := v_val;
            when 'ev_extra1' then v_ev_extra1 := v_val;
            when 'ev_extra2' then v_ev_extra2 := v_val;
            when 'ev_extra3' then v_ev_extra3 := v_val;
            else v_ev_extra4 := v_val;
        end case;
    end loop;

    perform pgq.insert_event(v_queue, v_ev_type, v_ev_data, v_ev_extra1, v_ev_extra2,
                             v_ev_extra3, v_ev_extra4);
    return v_skip;
end;
$$;

-- A row as jsontriga's JSON object: i_vals are the columns' text outputs, i_json the JSON
-- of timestamp, timestamptz and date columns (NULL for others).
create or replace function pgq._skyrep_trg_json_row(
    i_names text[], i_types oid[], i_use boolean[], i_vals text[], i_json text[])
returns text
language sql stable
as $$
    select '{' || coalesce(pg_catalog.string_agg(
               pgq._skyrep_trg_json_string(i_names[i]) || ':' ||
               case
                   when i_vals[i] is null then 'null'
                   when i_types[i] in ('pg_catalog.int2'::pg_catalog.regtype,
                                       'pg_catalog.int4'::pg_catalog.regtype,
                                       'pg_catalog.int8'::pg_catalog.regtype) then i_vals[i]
                   when i_types[i] = 'pg_catalog.bool'::pg_catalog.regtype
                       then case i_vals[i] when 't' then 'true' else 'false' end
                   when i_types[i] in ('pg_catalog.timestamp'::pg_catalog.regtype,
                                       'pg_catalog.timestamptz'::pg_catalog.regtype,
                                       'pg_catalog.date'::pg_catalog.regtype) then i_json[i]
                   else pgq._skyrep_trg_json_string(i_vals[i])
               end, ',' order by i), '') || '}'
      from pg_catalog.generate_series(1, coalesce(pg_catalog.array_length(i_names, 1), 0)) i
     where i_use[i];
$$;

create or replace function pgq.logutriga()
returns trigger
language plpgsql
as $$
begin
    if TG_OP = 'TRUNCATE' then
        perform pgq._skyrep_trg_truncate('logutriga', TG_WHEN, TG_LEVEL, TG_RELID, TG_ARGV);
        return null;
    end if;
    if pgq._skyrep_trg_row('logutriga', TG_OP, TG_WHEN, TG_LEVEL, TG_RELID, TG_ARGV, NEW, OLD) then
        return null;
    end if;
    if TG_OP = 'DELETE' then
        return OLD;
    end if;
    return NEW;
end;
$$;

create or replace function pgq.sqltriga()
returns trigger
language plpgsql
as $$
begin
    if TG_OP = 'TRUNCATE' then
        perform pgq._skyrep_trg_truncate('sqltriga', TG_WHEN, TG_LEVEL, TG_RELID, TG_ARGV);
        return null;
    end if;
    if pgq._skyrep_trg_row('sqltriga', TG_OP, TG_WHEN, TG_LEVEL, TG_RELID, TG_ARGV, NEW, OLD) then
        return null;
    end if;
    if TG_OP = 'DELETE' then
        return OLD;
    end if;
    return NEW;
end;
$$;

create or replace function pgq.jsontriga()
returns trigger
language plpgsql
as $$
begin
    if TG_OP = 'TRUNCATE' then
        perform pgq._skyrep_trg_truncate('jsontriga', TG_WHEN, TG_LEVEL, TG_RELID, TG_ARGV);
        return null;
    end if;
    if pgq._skyrep_trg_row('jsontriga', TG_OP, TG_WHEN, TG_LEVEL, TG_RELID, TG_ARGV, NEW, OLD) then
        return null;
    end if;
    if TG_OP = 'DELETE' then
        return OLD;
    end if;
    return NEW;
end;
$$;
