-- The populated materialized views outside the replicated schemas (the target's users') that
-- read, directly or through views and other materialized views, a table whose rows the apply
-- changed: refreshed in the apply's transaction, as a new copy's switch makes them again, in
-- the order they depend on each other.
-- Parameters: :tables (text[] of regclass names: the changed tables and their partition
-- roots), :schemas (text[]: the replicated schemas, whose own are refreshed anyway).
WITH RECURSIVE dep(oid, depth) AS (
    SELECT t::regclass::oid, 0 FROM unnest(%(tables)s::text[]) AS t
    UNION
    SELECT r.ev_class, dep.depth + 1
    FROM dep
    JOIN pg_catalog.pg_depend d
      ON d.refobjid = dep.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass
     AND d.classid = 'pg_catalog.pg_rewrite'::regclass
    JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
    WHERE r.ev_class <> dep.oid AND dep.depth < 50
)
SELECT n.nspname, c.relname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN (SELECT oid, max(depth) AS depth FROM dep GROUP BY oid) AS found ON found.oid = c.oid
WHERE c.relkind = 'm' AND c.relispopulated AND n.nspname <> ALL (%(schemas)s::text[])
ORDER BY found.depth, n.nspname, c.relname;
