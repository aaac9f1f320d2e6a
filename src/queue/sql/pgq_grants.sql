-- skyrep: who may use the pgq schema, PgQ 3's privilege model.
--
-- Three roles, as in PgQ 3:
--   reader (pgq_reader)  consumes: registers consumers, takes, reads, retries and finishes
--                        batches; reads the event tables
--   writer (pgq_writer)  produces: pgq.insert_event, pgq.current_event_table, the generic
--                        trigger functions pgq.logutriga, sqltriga, jsontriga
--   admin (pgq_admin)    ticks and maintains, creates, drops and configures queues; a
--                        member of reader and writer
-- PUBLIC keeps USAGE on the schema, SELECT on the queue, tick, consumer and subscription
-- tables and on the queues' sequences, and may call only seq_getval, get_queue_info,
-- get_consumer_info, quote_fqname and version. Everything else is for the schema's owner and
-- these roles. The capture triggers skyrep generates for `provider add` run as their owner
-- (skyrep_capture.sql), so the application roles that write the captured tables need none of
-- the roles, and writing those tables is the only way their changes reach the queue.
--
-- The role names are pgq_reader, pgq_writer and pgq_admin unless the settings
-- skyrep.pgq_reader_role, skyrep.pgq_writer_role and skyrep.pgq_admin_role name others (the
-- installer sets them from its config). A role that does not exist is created when the
-- installing role may create roles (superuser or CREATEROLE), and otherwise left out: the
-- installer says what to create, and running the script again grants to it.
--
-- Run after pgq_core.sql (and, where they are installed, pgq_triggers.sql and
-- skyrep_capture.sql), in the same transaction, by the schema's owner. Running it again puts
-- every privilege back to this model: what older installs granted more widely (EXECUTE on
-- every function for PUBLIC) is taken back, also on the event tables of existing queues.
-- Functions that are not in PgQ's lists are for the owner only, except skyrep's internal
-- helpers that a role's own calls reach: the generic triggers' helpers (writer) and the
-- checks of pgq.insert_event_raw (admin).
set local client_min_messages = warning;

do $$
declare
    c_public text[] := array[
        'pgq.seq_getval(text)', 'pgq.get_queue_info()', 'pgq.get_queue_info(text)',
        'pgq.get_consumer_info()', 'pgq.get_consumer_info(text)',
        'pgq.get_consumer_info(text, text)', 'pgq.quote_fqname(text)', 'pgq.version()'];
    c_reader text[] := array[
        'pgq.batch_event_sql(bigint)', 'pgq.batch_event_tables(bigint)',
        'pgq.find_tick_helper(int4, int8, timestamptz, int8, int8, interval)',
        'pgq.register_consumer(text, text)', 'pgq.register_consumer_at(text, text, bigint)',
        'pgq.unregister_consumer(text, text)', 'pgq.next_batch_info(text, text)',
        'pgq.next_batch(text, text)',
        'pgq.next_batch_custom(text, text, interval, int4, interval)',
        'pgq.get_batch_events(bigint)', 'pgq.get_batch_info(bigint)',
        'pgq.get_batch_cursor(bigint, text, int4, text)',
        'pgq.get_batch_cursor(bigint, text, int4)',
        'pgq.event_retry(bigint, bigint, timestamptz)',
        'pgq.event_retry(bigint, bigint, integer)', 'pgq.batch_retry(bigint, integer)',
        'pgq.force_tick(text)', 'pgq.finish_batch(bigint)'];
    c_writer text[] := array[
        'pgq.insert_event(text, text, text)',
        'pgq.insert_event(text, text, text, text, text, text, text)',
        'pgq.current_event_table(text)', 'pgq.jsontriga()', 'pgq.sqltriga()',
        'pgq.logutriga()'];
    c_admin text[] := array[
        'pgq.ticker(text, bigint, timestamptz, bigint)', 'pgq.ticker(text)', 'pgq.ticker()',
        'pgq.maint_retry_events()', 'pgq.maint_rotate_tables_step1(text)',
        'pgq.maint_rotate_tables_step2()', 'pgq.maint_tables_to_vacuum()',
        'pgq.maint_operations()', 'pgq.upgrade_schema()', 'pgq.grant_perms(text)',
        'pgq._grant_perms_from(text, text, text, text)', 'pgq.tune_storage(text)',
        'pgq.seq_setval(text, int8)', 'pgq.create_queue(text)',
        'pgq.drop_queue(text, bool)', 'pgq.drop_queue(text)',
        'pgq.set_queue_config(text, text, text)',
        'pgq.insert_event_raw(text, bigint, timestamptz, integer, integer, text, text, text, text, text, text)',
        'pgq.event_retry_raw(text, text, timestamptz, bigint, timestamptz, integer, text, text, text, text, text, text)',
        -- skyrep's: reached by pgq.insert_event_raw, which runs as its caller
        'pgq._insert_check(text, text, bigint, boolean, integer)', 'pgq._use_event_id(text)'];
    c_meta text := 'pgq.consumer, pgq.queue, pgq.tick, pgq.subscription';
    v_reader text := coalesce(nullif(current_setting('skyrep.pgq_reader_role', true), ''),
                              'pgq_reader');
    v_writer text := coalesce(nullif(current_setting('skyrep.pgq_writer_role', true), ''),
                              'pgq_writer');
    v_admin text := coalesce(nullif(current_setting('skyrep.pgq_admin_role', true), ''),
                             'pgq_admin');
    v_may_create boolean;
    v_grantees text;             -- PUBLIC and the roles that exist, quoted
    v_role text;
    v_fn text;
    v_tbl text;
    q record;
begin
    select r.rolsuper or r.rolcreaterole into v_may_create
      from pg_catalog.pg_roles r where r.rolname = current_user;
    if v_may_create then
        foreach v_role in array array[v_reader, v_writer, v_admin] loop
            if not exists (select 1 from pg_catalog.pg_roles where rolname = v_role) then
                begin
                    execute pg_catalog.format('create role %I nologin', v_role);
                exception when duplicate_object or unique_violation then
                    -- created meanwhile by the install of another database
                    continue;
                end;
                if v_role = v_admin then
                    begin
                        execute pg_catalog.format('grant %I, %I to %I', v_reader, v_writer,
                                                  v_admin);
                    exception when insufficient_privilege then
                        -- (PostgreSQL 16+: roles someone else created need their ADMIN option)
                        raise warning 'role % was created, but not as a member of % and %: %',
                            v_admin, v_reader, v_writer, sqlerrm;
                    end;
                end if;
            end if;
        end loop;
    end if;
    select pg_catalog.string_agg(pg_catalog.quote_ident(r.rolname), ', ') into v_grantees
      from pg_catalog.pg_roles r where r.rolname in (v_reader, v_writer, v_admin);
    v_grantees := pg_catalog.concat_ws(', ', 'public', v_grantees);

    -- Functions: nobody but the owner, then the lists.
    execute 'revoke all on all functions in schema pgq from ' || v_grantees;
    foreach v_fn in array c_public loop
        execute pg_catalog.format('grant execute on function %s to public', v_fn);
    end loop;
    for v_role, v_fn in
        select v_reader, f from pg_catalog.unnest(c_reader) f
        union all
        select v_writer, f from pg_catalog.unnest(c_writer) f
        union all
        -- the generic triggers' helpers run as the writer that fires the trigger
        select v_writer, p.oid::pg_catalog.regprocedure::text
          from pg_catalog.pg_proc p
         where p.pronamespace = 'pgq'::pg_catalog.regnamespace
           and p.proname like '\_skyrep\_trg\_%'
        union all
        select v_admin, f from pg_catalog.unnest(c_admin) f
    loop
        -- (pgq_triggers.sql is not installed where PgQ's own C triggers are)
        if exists (select 1 from pg_catalog.pg_roles where rolname = v_role)
           and pg_catalog.to_regprocedure(v_fn) is not null then
            execute pg_catalog.format('grant execute on function %s to %I', v_fn, v_role);
        end if;
    end loop;

    -- Tables: the queue's bookkeeping, the event tables (through their template) and the
    -- retry queue.
    execute pg_catalog.format('revoke all on table %s, pgq.event_template, pgq.retry_queue from %s',
                              c_meta, v_grantees);
    execute pg_catalog.format('grant select on table %s to public', c_meta);
    if exists (select 1 from pg_catalog.pg_roles where rolname = v_reader) then
        execute pg_catalog.format('grant select on table %s, pgq.event_template to %I',
                                  c_meta, v_reader);
    end if;
    if exists (select 1 from pg_catalog.pg_roles where rolname = v_admin) then
        execute pg_catalog.format('grant select, insert, update, delete on table %s, pgq.retry_queue to %I',
                                  c_meta, v_admin);
        execute pg_catalog.format('grant select, insert, truncate on table pgq.event_template to %I',
                                  v_admin);
    end if;
    -- Existing queues: their event tables get the template's privileges again.
    for q in select queue_name, queue_data_pfx, queue_ntables, queue_event_seq, queue_tick_seq
               from pgq.queue order by queue_id loop
        foreach v_tbl in array array[q.queue_data_pfx] || array(
                select q.queue_data_pfx || '_' || i
                  from pg_catalog.generate_series(0, q.queue_ntables - 1) i) loop
            if pg_catalog.to_regclass(pgq.quote_fqname(v_tbl)) is not null then
                execute pg_catalog.format('revoke all on table %s from %s',
                                          pgq.quote_fqname(v_tbl), v_grantees);
            end if;
        end loop;
        execute pg_catalog.format('revoke all on sequence %s, %s from %s',
                                  pgq.quote_fqname(q.queue_event_seq),
                                  pgq.quote_fqname(q.queue_tick_seq), v_grantees);
        perform pgq.grant_perms(q.queue_name);
    end loop;

    -- PgQ grants USAGE on the schema to PUBLIC: the functions above decide the rest.
    grant usage on schema pgq to public;
end
$$;
