-- Count and checksum of a database's large objects (oid and content), comparable with
-- large_object_stage_checksum.sql. Reading a large object needs SELECT on it (its owner has it).
-- Parameters: none.
SELECT count(*),
       coalesce(pg_catalog.md5(string_agg(m.oid::text || ':' || pg_catalog.md5(pg_catalog.lo_get(m.oid)),
                                          ',' ORDER BY m.oid)), '')
FROM pg_catalog.pg_largeobject_metadata m;
