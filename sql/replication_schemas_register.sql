-- Register a schema a run created (a staging copy, or a previous copy waiting to be dropped),
-- in the transaction that created it. Parameters: :name, :kind ('stage' or 'old'), :live, :run_id.
INSERT INTO pagila_support.replication_schemas (name, kind, live, run_id)
VALUES (%(name)s, %(kind)s, %(live)s, %(run_id)s)
ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind, live = EXCLUDED.live,
    run_id = EXCLUDED.run_id, created_at = now();
