-- Which partition trees (or plain tables) reference which through foreign keys, in the chosen
-- schemas, with each key's ON DELETE and ON UPDATE actions (a no action, r restrict, c cascade,
-- n set null, d set default) and the columns it references: parents get their new rows before
-- their children, children lose theirs first, and a table whose parent changed is measured
-- again after the changes when an action could have written it.
-- Parameters: :schemas (text[]).
SELECT DISTINCT fn.nspname, fc.relname, pn.nspname, pc.relname,
       con.confdeltype::text, con.confupdtype::text,
       (SELECT array_agg(a.attname::text ORDER BY a.attname)
        FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = con.confrelid AND a.attnum = ANY (con.confkey)) AS referenced
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class fc
  ON fc.oid = coalesce(pg_catalog.pg_partition_root(con.conrelid), con.conrelid)
JOIN pg_catalog.pg_namespace fn ON fn.oid = fc.relnamespace
JOIN pg_catalog.pg_class pc
  ON pc.oid = coalesce(pg_catalog.pg_partition_root(con.confrelid), con.confrelid)
JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
WHERE con.contype = 'f'
  AND (fn.nspname = ANY (%(schemas)s) OR pn.nspname = ANY (%(schemas)s));
