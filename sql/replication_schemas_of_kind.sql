-- The registered schemas of one kind, of one run (:run_id) or of every run (:run_id NULL).
-- Parameters: :kind (text), :run_id (text or NULL).
SELECT name FROM pagila_support.replication_schemas
WHERE kind = %(kind)s AND (%(run_id)s::text IS NULL OR run_id = %(run_id)s)
ORDER BY created_at;
