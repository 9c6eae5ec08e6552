"""Alembic: are the migrations at head, and what would the pending ones lock?

Both types read the scripts with Alembic's own ``ScriptDirectory``, which imports each
revision file but never the application's ``env.py`` (what ``alembic current`` and
``alembic check`` run: they connect with the application's settings and may do
anything), and read the database's revisions with one ``SELECT`` from the version table
in readycheck's safe session (read-only, statement and lock timeouts; a migration holding
the version table makes it give up at ``lock_timeout``, naming the session). Reading
imports Python files: that runs in a worker thread, bounded by the check's time.

``alembic.head`` says whether a migration is pending. ``alembic.safety`` answers the next
question: if the pending revisions ran now, against these tables with this much data and
this traffic, what would they lock, and for how long?

1. It renders their SQL offline, as ``alembic upgrade --sql`` does minus env.py: each
   revision's ``upgrade()`` runs against Alembic's ``Operations`` on an ``as_sql``
   PostgreSQL ``MigrationContext``. A revision that needs a live connection
   (``op.get_bind()``: a data migration that reads first) is named, and WARNs.
2. It parses every statement with PostgreSQL's own parser (pglast) and works out the lock
   each takes on each table, by the lock table of the PostgreSQL docs ("Explicit
   Locking"), and the transaction it runs in (Alembic's default: one for the whole
   upgrade; ``transaction_per_migration`` when env.py says so).
3. It lints them with squawk, when installed (``pip install 'readycheck[migrations]'``),
   and with rules of its own where squawk has none or where the live database changes the
   answer: ``index-not-concurrent``, ``concurrently-in-transaction``,
   ``add-column-not-null`` (no default), ``add-column-rewrite`` (volatile default, serial,
   identity, stored generated column), ``alter-column-type-rewrite`` (unless the live
   column's type widens in place: ``varchar(n)`` to ``varchar(m>n)`` or ``text``,
   ``numeric`` precision up), ``constraint-not-valid`` (a foreign key or check validated
   at once), ``constraint-builds-index``, ``set-not-null-scan`` (unless a validated
   ``CHECK (col IS NOT NULL)`` exists), ``drop-or-rename`` (a question for the reviewer:
   does the running release still use it?), ``lock-timeout-missing``,
   ``several-access-exclusive`` (two tables held in one transaction), ``data-migration``,
   ``waits-for-session``, ``unparsed``. squawk's findings on what a rule of ours decides
   with the live database are shown as agreeing, or as not counted.
4. It weighs each finding by the live database, read-only: the table's estimated rows
   and size (``pg_class.reltuples`` as of the last ANALYZE, ``pg_total_relation_size``),
   its scan and write rates (``pg_stat_user_tables``, sampled ``traffic_window`` apart),
   and the sessions holding locks on it now (``pg_locks``). A lock that blocks the
   application for a scan or a rewrite of a table above ``max_rows`` or ``max_size``
   FAILs, as does a statement that will fail or would queue behind a transaction open
   longer than ``long_transaction``; the same findings on smaller tables WARN. Each
   evidence line is one statement: the revision, the SQL (shortened), the lock and the
   table's size and traffic, the rules with an estimate of how long the lock lasts, and
   the safer form.
5. With ``trace: true`` it also runs the pending revisions for real on a throwaway
   PostgreSQL (the demo's, on 127.0.0.1) loaded with the schema only (``pg_dump
   --schema-only`` when one as new as the server is found, else read from the catalogs
   through the safe session), records the table locks its own backend holds after each
   statement, and rolls back. The evidence says which findings the trace confirmed, and
   shows locks the SQL alone does not (triggers, cascades, revisions that could not be
   rendered). The checked database is never written to.

It ERRORs, rather than FAILs, when it cannot do its work: the scripts cannot be read, or
the database cannot be reached (alembic.head FAILs then, the database's state being its
question).
"""
