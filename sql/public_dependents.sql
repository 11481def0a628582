-- Objects outside one schema that depend on an object in it (pg_depend, normal and automatic
-- dependencies; a view is named by itself, not by its rewrite rule): what DROP SCHEMA ...
-- CASCADE of that schema would drop or change elsewhere.
-- Parameters: :schema (an exact schema name).
SELECT DISTINCT dep.type, dep.identity
FROM pg_catalog.pg_depend d
LEFT JOIN pg_catalog.pg_rewrite r
    ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND r.oid = d.objid
CROSS JOIN LATERAL pg_catalog.pg_identify_object(d.refclassid, d.refobjid, 0) AS ref
CROSS JOIN LATERAL pg_catalog.pg_identify_object(
    CASE WHEN r.oid IS NULL THEN d.classid ELSE 'pg_catalog.pg_class'::regclass END,
    coalesce(r.ev_class, d.objid),
    0
) AS dep
WHERE d.refobjid >= 16384
  AND d.deptype IN ('n', 'a')
  AND ref.schema = %(schema)s
  AND dep.schema IS DISTINCT FROM %(schema)s
ORDER BY 1, 2;
