-- Count and checksum of the large objects a run staged on the target (see large_object_checksum.sql).
-- Parameters: none.
SELECT count(*),
       coalesce(pg_catalog.md5(string_agg(s.loid::text || ':' || pg_catalog.md5(s.data),
                                          ',' ORDER BY s.loid)), '')
FROM pagila_support.large_object_stage s;
