//! The text of `skyrep --help`.

/// Text of `skyrep --help`.
pub const HELP: &str = "\
skyrep: trigger-based table replication for PostgreSQL (Londiste-compatible)

Usage:
  skyrep [OPTIONS] CONFIG.ini COMMAND [ARGS...]
  skyrep -s|-k|-r CONFIG.ini   signal the running daemon of that config
  skyrep demo                  replicate a sample workload between two throwaway servers
  skyrep --ini                 print a sample config with every key and its default
  skyrep help [COMMAND]        show this help (as --help)

Options:
  -h, --help        show this help and exit
  -V, --version     show the version and exit
  -q, --quiet       only warnings and errors on the terminal
  -v, --verbose     debug logging (twice: also the database driver's)
  -d, --daemon      run `replay` or `ticker` in the background (needs logfile, pidfile);
                    returns once it passed its start-up checks, or fails saying why
  -s, --stop        ask the daemon to stop safely (SIGINT: finish the batch, roll back copies)
  -k, --kill        stop it at once (SIGTERM): a batch in progress is rolled back
                    and applied again at the next start
  -r, --reload      reload the daemon's config and reopen its log file (SIGHUP)
      --ini         print the sample config and exit

Commands:
  check             load the config and connect to every database it names
  install           install or upgrade pgq in `db` (a ticker config)
  ticker            tick `db`, or every database under `base_connstr`, as pgqd does
  replay            the replication daemon: ticker, replay and copy threads (alias: worker)

  With a ticker config, Londiste 2's pgqadm commands, on `db`:
  status [--json] [--max-lag SECONDS]
                    every queue: last tick, ticker lag, events/s, pending events; and
                    each consumer's lag, last seen and pending events (events not yet
                    ticked count as pending); exit 1 when a consumer's lag is over
                    SECONDS while events wait for it
  create QUEUE      create a queue, with PgQ's default settings
  drop QUEUE [--force]
                    drop it with its events; refused while consumers are registered
                    (--force: unregister them first)
  register QUEUE CONSUMER
                    register a consumer; it gets the events from the next tick on
  unregister QUEUE CONSUMER
                    remove it, with its retry events
  config [QUEUE [KEY=VALUE...]]
                    show every queue's settings or QUEUE's, or set them in one
                    transaction: ticker_max_count, ticker_max_lag, ticker_idle_period,
                    rotation_period (seconds or an interval), ticker_paused,
                    external_ticker (on/off); the queue_ prefix may be given

  provider install  install or upgrade pgq and londiste in `provider_db`; create the queue
  provider add TABLE... [--all] [--bulk]
                    register tables and create their capture triggers; --bulk: capture
                    each statement at once (much faster for statements of many rows,
                    slower for one-row statements); adding again without it goes back
                    to row triggers
  provider remove TABLE...
                    drop their capture triggers and unregister them
  provider tables   list the registered tables
  provider refresh-trigger TABLE...
                    regenerate their capture triggers after their columns changed
  provider execute FILE.sql...
                    run each script on the provider and queue it: every subscriber
                    runs it at the same point of the stream (alias: execute)
  provider add-seq SEQ...
                    register sequences whose values subscribers follow
  provider remove-seq SEQ...
                    unregister them
  provider seqs     list the registered sequences

  subscriber install
                    install or upgrade londiste in `subscriber_db`
  subscriber add TABLE... [--all] [--expect-sync] [--skip-truncate] [--force]
                 [--create] [--dest-table=NAME] [--copy-condition=SQL]
                    register tables for replication (--expect-sync: already equal;
                    --skip-truncate: copy without emptying; --force: even if the
                    columns differ; --create: create missing tables; --dest-table:
                    apply to another local table; --copy-condition: only these rows)
  subscriber resync TABLE...
                    copy the tables again
  subscriber missing
                    provider tables not added here
  subscriber remove TABLE...
                    stop applying events to them; their data is left alone
  subscriber tables one row per table: table_name  merge_state  table_attrs
                    (key=value: dest_table, copy_condition and, while a table is
                    copied, copied_rows, copied_bytes, estimated_rows, percent, eta)
  subscriber add-seq SEQ...
                    follow provider sequences: before each batch, replay moves them
                    forward to the provider's values (never back)
  subscriber remove-seq SEQ...
                    stop following them; their values are left alone
  subscriber seqs   one row per sequence: name, local last value, and a mark when
                    the provider no longer has it
  subscriber fkeys [pending|active]
                    foreign keys set aside while a table is copied (pending) or in
                    place (active); without an argument both lists, each titled
  subscriber triggers [pending|active]
                    the same for the tables' triggers
  subscriber restore-triggers TABLE [TRIGGER]
                    put the triggers set aside on TABLE back now
  subscriber register
                    register the job's consumer on the provider queue (once the
                    subscriber is set up)
  subscriber unregister
                    remove it, and its copy consumers, and forget the position it
                    had applied up to (not while replay runs; works with the
                    subscriber unreachable)
  subscriber skip-execute FILE.sql
                    let replay pass over that queued script instead of running it
  tables, add-table, remove-table, resync, missing, add-seq, remove-seq, seqs
                    the same as subscriber tables, add, remove, resync, missing,
                    add-seq, remove-seq, seqs (Londiste 3's short forms)

  compare [TABLE...]
                    wait until replay has caught up (provider locked at most
                    lock_timeout; refused at once when replay does not run or is
                    further behind), then count and checksum both sides; exit 1 if
                    any differ
  repair [TABLE...] [--apply] [--dir DIR]
                    the same wait, then a row-by-row diff written as SQL to
                    DIR/fix.JOB.SCHEMA.TABLE.sql, mode 0600 (DIR: default the
                    current directory; --apply: also run it on the subscriber)
  status [--json] [--max-lag SECONDS]
                    whether replay runs, the queue, the ticker and every consumer
                    with its lag and pending events, this subscriber's tables
                    ok/copying/other, how far each copy is and the last errors;
                    exit 1 when replay does not run or (--max-lag) the lag is
                    over SECONDS while events wait

Exit codes: 0 success, 1 the command failed, 2 usage or config error.
See skyrep(1) and skyrep(5).
";
