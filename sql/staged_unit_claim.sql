-- A block-range unit claimed in its copy's transaction, before its rows are written: no row
-- back means a copy of it committed already (a redelivered message), and it is not copied again;
-- the row's count is set when the copy commits (staged_unit_note.sql).
-- Parameters: :run_id, :unit.
INSERT INTO pagila_support.staged_units (run_id, unit, origin, rows)
VALUES (%(run_id)s, %(unit)s, %(run_id)s, 0)
ON CONFLICT (run_id, unit) DO NOTHING
RETURNING 1;
