-- Objects outside one schema that depend on an object in it (pg_depend, normal and automatic
-- dependencies): what DROP SCHEMA ... CASCADE of that schema would drop or change elsewhere. A
-- column default, trigger, policy or rule (a view's too) is named by its relation.
-- Parameters: :schema (an exact schema name).
SELECT DISTINCT dep.type, dep.identity
FROM pg_catalog.pg_depend d
LEFT JOIN pg_catalog.pg_rewrite r
    ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND r.oid = d.objid
LEFT JOIN pg_catalog.pg_attrdef a
    ON d.classid = 'pg_catalog.pg_attrdef'::regclass AND a.oid = d.objid
LEFT JOIN pg_catalog.pg_trigger g
    ON d.classid = 'pg_catalog.pg_trigger'::regclass AND g.oid = d.objid
LEFT JOIN pg_catalog.pg_policy p
    ON d.classid = 'pg_catalog.pg_policy'::regclass AND p.oid = d.objid
CROSS JOIN LATERAL (SELECT coalesce(r.ev_class, a.adrelid, g.tgrelid, p.polrelid) AS relid) AS m
CROSS JOIN LATERAL pg_catalog.pg_identify_object(d.refclassid, d.refobjid, 0) AS ref
CROSS JOIN LATERAL pg_catalog.pg_identify_object(
    CASE WHEN m.relid IS NULL THEN d.classid ELSE 'pg_catalog.pg_class'::regclass END,
    coalesce(m.relid, d.objid),
    0
) AS dep
WHERE d.refobjid >= 16384
  AND d.deptype IN ('n', 'a')
  AND ref.schema = %(schema)s
  AND dep.schema IS DISTINCT FROM %(schema)s
ORDER BY 1, 2;
