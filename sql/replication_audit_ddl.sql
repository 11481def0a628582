-- The replication ledger on the target, outside the replicated schemas. Idempotent.
-- Parameters: none.
CREATE SCHEMA IF NOT EXISTS pagila_support;
CREATE TABLE IF NOT EXISTS pagila_support.replication_audit (
    run_id       text PRIMARY KEY,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL DEFAULT now(),
    succeeded    boolean NOT NULL,
    tables       integer NOT NULL,
    rows         bigint NOT NULL,
    bytes        bigint NOT NULL,
    error        text,
    detail       jsonb NOT NULL DEFAULT '[]'
);
-- Added by the swap: when the new copy went live, how long the switch held its locks, and what
-- the run left on the target ('switched', 'replaced in place', 'unchanged', 'partly replaced').
ALTER TABLE pagila_support.replication_audit
    ADD COLUMN IF NOT EXISTS switched_at timestamptz,
    ADD COLUMN IF NOT EXISTS switch_ms double precision,
    ADD COLUMN IF NOT EXISTS target_state text;
