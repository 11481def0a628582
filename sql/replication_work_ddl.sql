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
