-- What dropping the replicated schemas' objects would take with it elsewhere: every object
-- outside them that depends on one of their objects (pg_depend, normal and automatic), directly
-- or through another such object, with what it takes to drop it and to make it again.
-- A view's or matview's rule stands for its relation; a dependency of a table column (a column
-- type, a sequence owned by a column) stands for the table, which cannot be made again. Members
-- of an operator family live in the family's schema.
-- Run with search_path = pg_catalog, so every name comes back qualified.
-- Parameters: :schemas (text[]) the live replicated schemas; :ignore (text[]) schemas whose
-- objects are the project's own (staging copies, previous copies, pagila_support).
WITH RECURSIVE
s AS (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = ANY (%(schemas)s)),
skip AS (
    SELECT oid FROM pg_catalog.pg_namespace
    WHERE nspname = ANY (%(schemas)s) OR nspname = ANY (%(ignore)s)
       OR nspname IN ('pg_catalog', 'information_schema', 'pg_toast')
),
inside AS (
    SELECT 'pg_catalog.pg_class'::regclass AS classid, oid AS objid FROM pg_catalog.pg_class WHERE relnamespace IN (SELECT oid FROM s)
    UNION ALL SELECT 'pg_catalog.pg_proc'::regclass, oid FROM pg_catalog.pg_proc WHERE pronamespace IN (SELECT oid FROM s)
    UNION ALL SELECT 'pg_catalog.pg_type'::regclass, oid FROM pg_catalog.pg_type WHERE typnamespace IN (SELECT oid FROM s)
    UNION ALL SELECT 'pg_catalog.pg_collation'::regclass, oid FROM pg_catalog.pg_collation WHERE collnamespace IN (SELECT oid FROM s)
    UNION ALL SELECT 'pg_catalog.pg_operator'::regclass, oid FROM pg_catalog.pg_operator WHERE oprnamespace IN (SELECT oid FROM s)
    UNION ALL SELECT 'pg_catalog.pg_opclass'::regclass, oid FROM pg_catalog.pg_opclass WHERE opcnamespace IN (SELECT oid FROM s)
    UNION ALL SELECT 'pg_catalog.pg_opfamily'::regclass, oid FROM pg_catalog.pg_opfamily WHERE opfnamespace IN (SELECT oid FROM s)
    UNION ALL SELECT 'pg_catalog.pg_ts_config'::regclass, oid FROM pg_catalog.pg_ts_config WHERE cfgnamespace IN (SELECT oid FROM s)
    UNION ALL SELECT 'pg_catalog.pg_ts_dict'::regclass, oid FROM pg_catalog.pg_ts_dict WHERE dictnamespace IN (SELECT oid FROM s)
    UNION ALL SELECT 'pg_catalog.pg_conversion'::regclass, oid FROM pg_catalog.pg_conversion WHERE connamespace IN (SELECT oid FROM s)
    UNION ALL SELECT 'pg_catalog.pg_constraint'::regclass, oid FROM pg_catalog.pg_constraint WHERE connamespace IN (SELECT oid FROM s)
),
dep AS (
    SELECT u.classid, u.objid, d.refclassid, d.refobjid,
           coalesce(c.relnamespace, rc.relnamespace, adc.relnamespace, tgc.relnamespace,
                    poc.relnamespace, p.pronamespace, t.typnamespace, co.connamespace,
                    op.oprnamespace, st.stxnamespace, opc.opcnamespace, opf.opfnamespace,
                    col.collnamespace, cv.connamespace, tsc.cfgnamespace, tsd.dictnamespace,
                    tsp.prsnamespace, tst.tmplnamespace, amopf.opfnamespace,
                    amprocf.opfnamespace) AS nsp
    FROM pg_catalog.pg_depend d
    LEFT JOIN pg_catalog.pg_rewrite r
           ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND r.oid = d.objid
    CROSS JOIN LATERAL (
        SELECT CASE WHEN r.rulename = '_RETURN' THEN 'pg_catalog.pg_class'::regclass
                    ELSE d.classid::regclass END AS classid,
               CASE WHEN r.rulename = '_RETURN' THEN r.ev_class ELSE d.objid END AS objid
    ) u
    LEFT JOIN pg_catalog.pg_class c ON u.classid = 'pg_catalog.pg_class'::regclass AND c.oid = u.objid
    LEFT JOIN pg_catalog.pg_class rc ON r.rulename <> '_RETURN' AND rc.oid = r.ev_class
    LEFT JOIN pg_catalog.pg_attrdef ad ON u.classid = 'pg_catalog.pg_attrdef'::regclass AND ad.oid = u.objid
    LEFT JOIN pg_catalog.pg_class adc ON adc.oid = ad.adrelid
    LEFT JOIN pg_catalog.pg_trigger tg ON u.classid = 'pg_catalog.pg_trigger'::regclass AND tg.oid = u.objid
    LEFT JOIN pg_catalog.pg_class tgc ON tgc.oid = tg.tgrelid
    LEFT JOIN pg_catalog.pg_policy po ON u.classid = 'pg_catalog.pg_policy'::regclass AND po.oid = u.objid
    LEFT JOIN pg_catalog.pg_class poc ON poc.oid = po.polrelid
    LEFT JOIN pg_catalog.pg_proc p ON u.classid = 'pg_catalog.pg_proc'::regclass AND p.oid = u.objid
    LEFT JOIN pg_catalog.pg_type t ON u.classid = 'pg_catalog.pg_type'::regclass AND t.oid = u.objid
    LEFT JOIN pg_catalog.pg_constraint co ON u.classid = 'pg_catalog.pg_constraint'::regclass AND co.oid = u.objid
    LEFT JOIN pg_catalog.pg_operator op ON u.classid = 'pg_catalog.pg_operator'::regclass AND op.oid = u.objid
    LEFT JOIN pg_catalog.pg_statistic_ext st ON u.classid = 'pg_catalog.pg_statistic_ext'::regclass AND st.oid = u.objid
    LEFT JOIN pg_catalog.pg_opclass opc ON u.classid = 'pg_catalog.pg_opclass'::regclass AND opc.oid = u.objid
    LEFT JOIN pg_catalog.pg_opfamily opf ON u.classid = 'pg_catalog.pg_opfamily'::regclass AND opf.oid = u.objid
    LEFT JOIN pg_catalog.pg_collation col ON u.classid = 'pg_catalog.pg_collation'::regclass AND col.oid = u.objid
    LEFT JOIN pg_catalog.pg_conversion cv ON u.classid = 'pg_catalog.pg_conversion'::regclass AND cv.oid = u.objid
    LEFT JOIN pg_catalog.pg_ts_config tsc ON u.classid = 'pg_catalog.pg_ts_config'::regclass AND tsc.oid = u.objid
    LEFT JOIN pg_catalog.pg_ts_dict tsd ON u.classid = 'pg_catalog.pg_ts_dict'::regclass AND tsd.oid = u.objid
    LEFT JOIN pg_catalog.pg_ts_parser tsp ON u.classid = 'pg_catalog.pg_ts_parser'::regclass AND tsp.oid = u.objid
    LEFT JOIN pg_catalog.pg_ts_template tst ON u.classid = 'pg_catalog.pg_ts_template'::regclass AND tst.oid = u.objid
    LEFT JOIN pg_catalog.pg_amop amop ON u.classid = 'pg_catalog.pg_amop'::regclass AND amop.oid = u.objid
    LEFT JOIN pg_catalog.pg_opfamily amopf ON amopf.oid = amop.amopfamily
    LEFT JOIN pg_catalog.pg_amproc amproc ON u.classid = 'pg_catalog.pg_amproc'::regclass AND amproc.oid = u.objid
    LEFT JOIN pg_catalog.pg_opfamily amprocf ON amprocf.oid = amproc.amprocfamily
    WHERE d.deptype IN ('n', 'a')
),
walk (classid, objid, depth, parent) AS (
    SELECT dep.classid, dep.objid, 1, i.classid::oid || ':' || i.objid
    FROM dep JOIN inside i ON i.classid = dep.refclassid AND i.objid = dep.refobjid
    WHERE dep.nsp IS NULL OR dep.nsp NOT IN (SELECT oid FROM skip)
    UNION
    SELECT dep.classid, dep.objid, w.depth + 1, w.classid::oid || ':' || w.objid
    FROM dep JOIN walk w ON w.classid = dep.refclassid AND w.objid = dep.refobjid
    WHERE (dep.nsp IS NULL OR dep.nsp NOT IN (SELECT oid FROM skip)) AND w.depth < 32
      AND (dep.classid, dep.objid) <> (w.classid, w.objid)
),
units AS (
    SELECT classid, objid, max(depth) AS depth,
           pg_catalog.array_agg(DISTINCT parent) AS parents
    FROM walk
    WHERE (classid, objid) NOT IN (
        SELECT classid, objid FROM pg_catalog.pg_depend WHERE deptype = 'e')
    GROUP BY classid, objid
)
SELECT u.classid::oid || ':' || u.objid AS key, u.parents, u.depth, o.type, o.identity,
       CASE
         WHEN u.classid = 'pg_catalog.pg_class'::regclass THEN
           CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'matview'
                          WHEN 'i' THEN 'index' WHEN 'I' THEN 'index' ELSE 'other' END
         WHEN u.classid = 'pg_catalog.pg_proc'::regclass THEN
           CASE WHEN p.prokind IN ('f', 'p', 'w') THEN 'function' ELSE 'other' END
         WHEN u.classid = 'pg_catalog.pg_trigger'::regclass THEN 'trigger'
         WHEN u.classid = 'pg_catalog.pg_policy'::regclass THEN 'policy'
         WHEN u.classid = 'pg_catalog.pg_attrdef'::regclass THEN 'default'
         WHEN u.classid = 'pg_catalog.pg_rewrite'::regclass THEN 'rule'
         WHEN u.classid = 'pg_catalog.pg_constraint'::regclass AND co.conrelid <> 0
              AND co.contype IN ('f', 'c') THEN 'constraint'
         ELSE 'other'
       END AS kind,
       CASE
         WHEN c.relkind = 'v' THEN pg_catalog.format('CREATE VIEW %%s%%s AS %%s', c.oid::regclass,
              CASE WHEN c.reloptions IS NULL THEN ''
                   ELSE ' WITH (' || pg_catalog.array_to_string(c.reloptions, ', ') || ')' END,
              pg_catalog.rtrim(pg_catalog.pg_get_viewdef(c.oid), ';'))
         WHEN c.relkind = 'm' THEN pg_catalog.format('CREATE MATERIALIZED VIEW %%s%%s AS %%s WITH NO DATA',
              c.oid::regclass,
              CASE WHEN c.reloptions IS NULL THEN ''
                   ELSE ' WITH (' || pg_catalog.array_to_string(c.reloptions, ', ') || ')' END,
              pg_catalog.rtrim(pg_catalog.pg_get_viewdef(c.oid), ';'))
         WHEN c.relkind IN ('i', 'I') THEN
              pg_catalog.regexp_replace(pg_catalog.pg_get_indexdef(c.oid), ' ON ONLY ', ' ON ')
         WHEN p.prokind IN ('f', 'p', 'w') THEN pg_catalog.pg_get_functiondef(p.oid)
         WHEN u.classid = 'pg_catalog.pg_trigger'::regclass THEN pg_catalog.pg_get_triggerdef(u.objid)
         WHEN u.classid = 'pg_catalog.pg_rewrite'::regclass THEN pg_catalog.pg_get_ruledef(u.objid)
         WHEN u.classid = 'pg_catalog.pg_constraint'::regclass AND co.conrelid <> 0 THEN
              pg_catalog.format('ALTER TABLE %%s ADD CONSTRAINT %%I %%s', co.conrelid::regclass,
                                co.conname, pg_catalog.pg_get_constraintdef(co.oid))
         WHEN u.classid = 'pg_catalog.pg_attrdef'::regclass THEN
              (SELECT pg_catalog.format('ALTER TABLE %%s ALTER COLUMN %%I SET DEFAULT %%s',
                      ad.adrelid::regclass, a.attname, pg_catalog.pg_get_expr(ad.adbin, ad.adrelid))
               FROM pg_catalog.pg_attrdef ad JOIN pg_catalog.pg_attribute a
                 ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum WHERE ad.oid = u.objid)
         WHEN u.classid = 'pg_catalog.pg_policy'::regclass THEN
              (SELECT pg_catalog.format('CREATE POLICY %%I ON %%s AS %%s FOR %%s TO %%s%%s%%s',
                      po.polname, po.polrelid::regclass,
                      CASE WHEN po.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
                      CASE po.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT'
                                     WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                      (SELECT pg_catalog.string_agg(CASE WHEN r = 0 THEN 'PUBLIC'
                              ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(r)) END, ', ')
                       FROM pg_catalog.unnest(po.polroles) r),
                      ' USING (' || pg_catalog.pg_get_expr(po.polqual, po.polrelid) || ')',
                      ' WITH CHECK (' || pg_catalog.pg_get_expr(po.polwithcheck, po.polrelid) || ')')
               FROM pg_catalog.pg_policy po WHERE po.oid = u.objid)
       END AS create_sql,
       CASE
         WHEN c.relkind = 'v' THEN pg_catalog.format('DROP VIEW %%s', c.oid::regclass)
         WHEN c.relkind = 'm' THEN pg_catalog.format('DROP MATERIALIZED VIEW %%s', c.oid::regclass)
         WHEN c.relkind IN ('i', 'I') THEN pg_catalog.format('DROP INDEX %%s', c.oid::regclass)
         WHEN p.prokind IN ('f', 'p', 'w') THEN pg_catalog.format('DROP ROUTINE %%s', p.oid::regprocedure)
         WHEN u.classid = 'pg_catalog.pg_trigger'::regclass THEN
              (SELECT pg_catalog.format('DROP TRIGGER %%I ON %%s', tg.tgname, tg.tgrelid::regclass)
               FROM pg_catalog.pg_trigger tg WHERE tg.oid = u.objid)
         WHEN u.classid = 'pg_catalog.pg_rewrite'::regclass THEN
              (SELECT pg_catalog.format('DROP RULE %%I ON %%s', r.rulename, r.ev_class::regclass)
               FROM pg_catalog.pg_rewrite r WHERE r.oid = u.objid)
         WHEN u.classid = 'pg_catalog.pg_policy'::regclass THEN
              (SELECT pg_catalog.format('DROP POLICY %%I ON %%s', po.polname, po.polrelid::regclass)
               FROM pg_catalog.pg_policy po WHERE po.oid = u.objid)
         WHEN u.classid = 'pg_catalog.pg_constraint'::regclass AND co.conrelid <> 0 THEN
              pg_catalog.format('ALTER TABLE %%s DROP CONSTRAINT %%I', co.conrelid::regclass, co.conname)
         WHEN u.classid = 'pg_catalog.pg_attrdef'::regclass THEN
              (SELECT pg_catalog.format('ALTER TABLE %%s ALTER COLUMN %%I DROP DEFAULT',
                      ad.adrelid::regclass, a.attname)
               FROM pg_catalog.pg_attrdef ad JOIN pg_catalog.pg_attribute a
                 ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum WHERE ad.oid = u.objid)
       END AS drop_sql,
       coalesce(c.relispopulated, false) AS populated,
       CASE
         WHEN c.relkind = 'm' THEN pg_catalog.format('CREATE MATERIALIZED VIEW %%I.%%s%%s AS %%s WITH %%s',
              n.nspname, pg_catalog.chr(1),
              CASE WHEN c.reloptions IS NULL THEN ''
                   ELSE ' WITH (' || pg_catalog.array_to_string(c.reloptions, ', ') || ')' END,
              pg_catalog.rtrim(pg_catalog.pg_get_viewdef(c.oid), ';'),
              CASE WHEN c.relispopulated THEN 'DATA' ELSE 'NO DATA' END)
         WHEN u.classid = 'pg_catalog.pg_constraint'::regclass AND co.conrelid <> 0 THEN
              pg_catalog.format('ALTER TABLE %%s ADD CONSTRAINT %%s %%s', co.conrelid::regclass,
                                pg_catalog.chr(1), pg_catalog.pg_get_constraintdef(co.oid))
       END AS prebuild_sql,
       CASE
         WHEN c.relkind = 'm' THEN pg_catalog.format('ALTER MATERIALIZED VIEW %%I.%%s RENAME TO %%I',
              n.nspname, pg_catalog.chr(1), c.relname)
         WHEN u.classid = 'pg_catalog.pg_constraint'::regclass AND co.conrelid <> 0 THEN
              pg_catalog.format('ALTER TABLE %%s RENAME CONSTRAINT %%s TO %%I', co.conrelid::regclass,
                                pg_catalog.chr(1), co.conname)
       END AS swap_in_sql
FROM units u
CROSS JOIN LATERAL pg_catalog.pg_identify_object(u.classid, u.objid, 0) o
LEFT JOIN pg_catalog.pg_class c ON u.classid = 'pg_catalog.pg_class'::regclass AND c.oid = u.objid
LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_proc p ON u.classid = 'pg_catalog.pg_proc'::regclass AND p.oid = u.objid
LEFT JOIN pg_catalog.pg_constraint co ON u.classid = 'pg_catalog.pg_constraint'::regclass AND co.oid = u.objid
ORDER BY u.depth, o.type, o.identity;
