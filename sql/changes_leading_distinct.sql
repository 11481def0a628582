-- The planner's statistics of a table's column (the leading column of its row key, for
-- changeplan.range_kind): n_distinct (negative: a share of the rows) and the table's row
-- estimate; no row when the table was never analyzed. Only a cost hint: it decides how deleted
-- keys are looked for, never what is found.
-- Parameters: :table (a regclass name), :column.
SELECT s.n_distinct, c.reltuples
FROM pg_catalog.pg_stats s
JOIN pg_catalog.pg_class c ON c.oid = %(table)s::regclass
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = %(column)s
  AND NOT s.inherited;
