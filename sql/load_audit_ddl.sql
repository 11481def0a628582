-- The loader's audit ledger, in its own schema so that resetting public leaves it alone.
-- Parameters: none. Idempotent.
CREATE SCHEMA IF NOT EXISTS pagila_support;
CREATE TABLE IF NOT EXISTS pagila_support.pagila_load_audit (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    loaded_at       timestamptz NOT NULL DEFAULT now(),
    schema_sha256   text,           -- NULL when the file could not be read
    data_sha256     text,
    actor_count     integer,
    film_count      integer,
    customer_count  integer,
    rental_count    integer,
    succeeded       boolean NOT NULL,
    run_id          text NOT NULL,
    duration_s      double precision,
    error           text,
    table_counts    jsonb
);
CREATE INDEX IF NOT EXISTS pagila_load_audit_hashes
    ON pagila_support.pagila_load_audit (schema_sha256, data_sha256, id DESC);
CREATE INDEX IF NOT EXISTS pagila_load_audit_run
    ON pagila_support.pagila_load_audit (run_id);
-- The manifest: what the last successful load created in public (pg_identify_object's type and
-- identity), written in the load's transaction; a load resets public only when it holds
-- nothing else (see pagila_tasks.load.ownership).
CREATE TABLE IF NOT EXISTS pagila_support.load_manifest (
    type        text NOT NULL,
    identity    text NOT NULL,
    run_id      text NOT NULL,
    PRIMARY KEY (type, identity)
);
