-- The working tables of replication runs on the target, beside the ledger in pagila_support.
-- replication_schemas registers the schemas runs create (staging copies being built, previous
-- copies waiting to be dropped): only a schema listed there is ever dropped as a leftover, so a
-- schema of someone else's that happens to share the prefix is never touched.
-- replication_steps records, in the transaction that did it, each finishing step a run has
-- committed, so a redelivered callback skips it instead of failing on what already exists.
-- large_object_stage holds a run's large objects, read from the source snapshot and written to
-- the target's own in the switch's transaction (they live outside every schema).
-- Parameters: none. Idempotent.
CREATE SCHEMA IF NOT EXISTS pagila_support;
CREATE TABLE IF NOT EXISTS pagila_support.replication_schemas (
    name        text PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('stage', 'old')),
    live        text NOT NULL,
    run_id      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS pagila_support.replication_steps (
    run_id   text NOT NULL,
    step     text NOT NULL,
    done_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS pagila_support.large_object_stage (
    loid  oid PRIMARY KEY,
    data  bytea NOT NULL
);
-- replication_live names each live schema a run switched in (or replaced in place): a target
-- schema not listed here is someone else's, and no run replaces it without --overwrite-target.
CREATE TABLE IF NOT EXISTS pagila_support.replication_live (
    name         text PRIMARY KEY,
    run_id       text NOT NULL,
    switched_at  timestamptz NOT NULL DEFAULT now()
);
-- replication_manifest holds what the last switch put in each live schema (the source's objects
-- and comments, by keys that read the same on any server): anything else there was made on the
-- target, and a run keeps it (pagila_tasks.replication.keep).
CREATE TABLE IF NOT EXISTS pagila_support.replication_manifest (
    schema_name  text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('object', 'comment')),
    key          text NOT NULL,
    value        text NOT NULL DEFAULT '',
    PRIMARY KEY (kind, key)
);
-- kept_objects holds a run's plan for what the target's users built (dropped before an in-place
-- reset and made again after it), so the errback or the next run can put back what a failed run
-- took down.
CREATE TABLE IF NOT EXISTS pagila_support.kept_objects (
    run_id      text PRIMARY KEY,
    plan        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- replication_fingerprint holds, per set of replicated schemas, the sha256 of the source's schema
-- dump the last run switched in and of the live schemas' dump on the target just after it: a
-- later run whose dumps of both sides hash the same knows that neither schema changed since
-- (pagila_tasks.replication.proof). A switch deletes it in its transaction; the run records
-- the new one after, so a run that could not record it leaves none (the next run copies).
CREATE TABLE IF NOT EXISTS pagila_support.replication_fingerprint (
    schemas        text PRIMARY KEY,
    run_id         text NOT NULL,
    source_sha256  text NOT NULL,
    target_sha256  text NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    source_horizon bigint,
    measures       text
);
-- source_horizon: the xmin (xid8) of the source snapshot the live copy was last proven equal to
-- (a switch, changes applied in place, or a run that found nothing changed). Rows the source
-- wrote since carry an xmin at or past it: a later refresh compares those first, a hint that
-- its checksums must confirm (pagila_tasks.replication.changes). measures: every table's count
-- and checksum on both sides at that point and from which xmin each holds (JSON,
-- pagila_tasks.run.recorded), which the next proof takes for a table shown unwritten since.
-- Both are added to tables made before them.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                   WHERE attrelid = 'pagila_support.replication_fingerprint'::regclass
                     AND attname = 'measures' AND NOT attisdropped) THEN
        ALTER TABLE pagila_support.replication_fingerprint
            ADD COLUMN IF NOT EXISTS source_horizon bigint,
            ADD COLUMN measures text;
    END IF;
END
$$;
-- staged_runs and staged_units let a run that ended without switching be resumed: the plan a
-- swap run built its staging copy for (written with its pre-data) and each unit a copy committed
-- there (written in the copy's own transaction, so a unit listed is a unit whose rows are
-- there). A later run with the same schema adopts the staging copy and copies again only the
-- units it cannot prove equal to the source at its own snapshot (pagila_tasks.replication.resume).
CREATE TABLE IF NOT EXISTS pagila_support.staged_runs (
    run_id       text PRIMARY KEY,
    schemas      text NOT NULL,
    fingerprint  text NOT NULL,
    units        text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS pagila_support.staged_units (
    run_id     text NOT NULL,
    unit       text NOT NULL,
    origin     text NOT NULL,
    rows       bigint NOT NULL,
    copied_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, unit)
);
