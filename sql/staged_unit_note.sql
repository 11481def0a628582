-- A unit committed into a run's staging copy, in the copy's own transaction (a copy retried
-- or redelivered writes it again).
-- Parameters: :run_id, :unit, :rows.
INSERT INTO pagila_support.staged_units (run_id, unit, origin, rows)
VALUES (%(run_id)s, %(unit)s, %(run_id)s, %(rows)s)
ON CONFLICT (run_id, unit) DO UPDATE
SET origin = EXCLUDED.origin, rows = EXCLUDED.rows, copied_at = now();
