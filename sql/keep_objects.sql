-- The objects of the given schemas, each by a key that reads the same on any server (its type
-- and identity, as pg_identify_object gives them), what extensions bring left out. Run on the
-- source it is what a replication puts there (recorded at the switch); run on the target, a key
-- that no run recorded is an object someone made there. Indexes, constraints, triggers, policies
-- and rules also carry the key of their relation and the statement that makes them again.
-- NOT NULL constraints (pg_constraint rows from PostgreSQL 18 on) are part of their column. An
-- index on a partitioned table is made again whole (ON, not ON ONLY: its partitions' indexes
-- with it), so those are not listed apart.
-- Run with search_path = pg_catalog, so every name comes back qualified.
-- Parameters: :schemas (text[]).
WITH s AS (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = ANY (%(schemas)s)),
ext AS (SELECT classid, objid FROM pg_catalog.pg_depend WHERE deptype = 'e'),
rel AS (
    SELECT c.oid, c.relkind, c.relispartition, c.relnamespace,
           'pg_catalog.pg_class'::regclass AS classid
    FROM pg_catalog.pg_class c
    WHERE c.relnamespace IN (SELECT oid FROM s)
      AND ('pg_catalog.pg_class'::regclass, c.oid) NOT IN (SELECT classid, objid FROM ext)
),
objects (classid, objid, parent, create_sql, nsp) AS (
    SELECT classid, oid, NULL::oid, NULL::text, relnamespace FROM rel WHERE relkind NOT IN ('i', 'I')
    UNION ALL
    SELECT 'pg_catalog.pg_class'::regclass, i.indexrelid, i.indrelid,
           pg_catalog.regexp_replace(pg_catalog.pg_get_indexdef(i.indexrelid), ' ON ONLY ', ' ON '),
           rel.relnamespace
    FROM pg_catalog.pg_index i JOIN rel ON rel.oid = i.indexrelid
    WHERE NOT rel.relispartition AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint k
                      WHERE k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x'))
    UNION ALL
    SELECT 'pg_catalog.pg_constraint'::regclass, k.oid, k.conrelid,
           pg_catalog.format('ALTER TABLE %%s ADD CONSTRAINT %%I %%s', k.conrelid::regclass,
                             k.conname, pg_catalog.pg_get_constraintdef(k.oid)), rel.relnamespace
    FROM pg_catalog.pg_constraint k JOIN rel ON rel.oid = k.conrelid
    WHERE k.contype <> 'n' AND k.conparentid = 0
    UNION ALL
    SELECT 'pg_catalog.pg_trigger'::regclass, t.oid, t.tgrelid, pg_catalog.pg_get_triggerdef(t.oid),
           rel.relnamespace
    FROM pg_catalog.pg_trigger t JOIN rel ON rel.oid = t.tgrelid
    WHERE NOT t.tgisinternal AND t.tgparentid = 0
    UNION ALL
    SELECT 'pg_catalog.pg_policy'::regclass, p.oid, p.polrelid,
           pg_catalog.format('CREATE POLICY %%I ON %%s AS %%s FOR %%s TO %%s%%s%%s',
                  p.polname, p.polrelid::regclass,
                  CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
                  CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT'
                                WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                  (SELECT pg_catalog.string_agg(CASE WHEN r = 0 THEN 'PUBLIC'
                          ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(r)) END, ', ')
                   FROM pg_catalog.unnest(p.polroles) r),
                  ' USING (' || pg_catalog.pg_get_expr(p.polqual, p.polrelid) || ')',
                  ' WITH CHECK (' || pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) || ')'),
           rel.relnamespace
    FROM pg_catalog.pg_policy p JOIN rel ON rel.oid = p.polrelid
    UNION ALL
    SELECT 'pg_catalog.pg_rewrite'::regclass, r.oid, r.ev_class, pg_catalog.pg_get_ruledef(r.oid),
           rel.relnamespace
    FROM pg_catalog.pg_rewrite r JOIN rel ON rel.oid = r.ev_class WHERE r.rulename <> '_RETURN'
    UNION ALL
    SELECT 'pg_catalog.pg_proc'::regclass, p.oid, NULL, NULL, p.pronamespace FROM pg_catalog.pg_proc p
    WHERE p.pronamespace IN (SELECT oid FROM s)
      AND ('pg_catalog.pg_proc'::regclass, p.oid) NOT IN (SELECT classid, objid FROM ext)
    UNION ALL
    SELECT 'pg_catalog.pg_type'::regclass, t.oid, NULL, NULL, t.typnamespace FROM pg_catalog.pg_type t
    WHERE t.typnamespace IN (SELECT oid FROM s) AND t.typcategory <> 'A'
      AND (t.typrelid = 0 OR (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid) = 'c')
      AND ('pg_catalog.pg_type'::regclass, t.oid) NOT IN (SELECT classid, objid FROM ext)
    UNION ALL
    SELECT 'pg_catalog.pg_collation'::regclass, oid, NULL, NULL, collnamespace FROM pg_catalog.pg_collation
    WHERE collnamespace IN (SELECT oid FROM s)
      AND ('pg_catalog.pg_collation'::regclass, oid) NOT IN (SELECT classid, objid FROM ext)
    UNION ALL
    SELECT 'pg_catalog.pg_operator'::regclass, oid, NULL, NULL, oprnamespace FROM pg_catalog.pg_operator
    WHERE oprnamespace IN (SELECT oid FROM s)
      AND ('pg_catalog.pg_operator'::regclass, oid) NOT IN (SELECT classid, objid FROM ext)
    UNION ALL
    SELECT 'pg_catalog.pg_ts_config'::regclass, oid, NULL, NULL, cfgnamespace FROM pg_catalog.pg_ts_config
    WHERE cfgnamespace IN (SELECT oid FROM s)
      AND ('pg_catalog.pg_ts_config'::regclass, oid) NOT IN (SELECT classid, objid FROM ext)
    UNION ALL
    SELECT 'pg_catalog.pg_statistic_ext'::regclass, oid, NULL, NULL, stxnamespace FROM pg_catalog.pg_statistic_ext
    WHERE stxnamespace IN (SELECT oid FROM s)
)
SELECT o.type || ' ' || o.identity AS key, objects.classid::oid || ':' || objects.objid AS ref,
       (SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE n.oid = objects.nsp) AS schema,
       (SELECT p.type || ' ' || p.identity
        FROM pg_catalog.pg_identify_object('pg_catalog.pg_class'::regclass, objects.parent, 0) p
        WHERE objects.parent IS NOT NULL) AS parent_key,
       objects.create_sql,
       CASE WHEN objects.parent IS NULL THEN ARRAY[]::text[]
            ELSE (SELECT ARRAY[pg_catalog.quote_ident(n.nspname), pg_catalog.quote_ident(c.relname)]
                  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.oid = objects.parent) END AS on_relation
FROM objects CROSS JOIN LATERAL pg_catalog.pg_identify_object(objects.classid, objects.objid, 0) o
ORDER BY 1;
