-- Record the schema fingerprints of a run that switched in a copy of a set of schemas (one row
-- per set: the latest run's replaces the one before).
-- Parameters: :schemas (text, the set as JSON), :run_id, :source_sha256, :target_sha256,
-- :source_horizon (the run snapshot's xmin, or NULL), :measures (JSON, or NULL).
INSERT INTO pagila_support.replication_fingerprint
    (schemas, run_id, source_sha256, target_sha256, source_horizon, measures)
VALUES (%(schemas)s, %(run_id)s, %(source_sha256)s, %(target_sha256)s, %(source_horizon)s,
        %(measures)s)
ON CONFLICT (schemas) DO UPDATE
SET run_id = EXCLUDED.run_id,
    source_sha256 = EXCLUDED.source_sha256,
    target_sha256 = EXCLUDED.target_sha256,
    source_horizon = EXCLUDED.source_horizon,
    measures = EXCLUDED.measures,
    recorded_at = now();
