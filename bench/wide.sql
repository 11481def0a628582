-- The wide-row table of the benchmark's wide dataset (psql -v rows=N -v batch=B -f wide.sql).
-- public.wide_rows: id text primary key (md5 of the row number), created_at timestamptz (with a
-- secondary index), payload text of 1560..1800 characters. No integer key on purpose: this
-- project then splits the table by heap block ranges (ctid), not key ranges. A row is
-- 1636..1876 bytes with its header, below the TOAST threshold (2032): the payload stays inline,
-- uncompressed, four rows a page. The payload is base64 of a slice, at an offset and of a length
-- drawn per row, of 1 MiB of md5 digests: 6 bits of entropy a character, so neither TOAST nor
-- pg_dump's gzip gets much out of it, unlike repeat(). Rows are inserted in batches of :batch
-- row numbers, all in one transaction with the CREATE TABLE (no WAL for them at
-- wal_level=minimal); the keys are built after the rows, then the table is frozen and analyzed
-- (the planner's row estimate decides how many units it is split into).
-- Idempotent: the table is dropped first. Parameters: :rows (> 0), :batch (> 0).
\set ON_ERROR_STOP on
SET client_min_messages = warning;
BEGIN;
DROP TABLE IF EXISTS public.wide_rows;
CREATE TABLE public.wide_rows (
    id text NOT NULL,
    created_at timestamptz NOT NULL,
    payload text NOT NULL
);

-- One INSERT per batch; psql runs each row of this query as a statement (\gexec).
SELECT format(
    $sql$
    WITH pool AS MATERIALIZED (
        SELECT decode(string_agg(md5('wide pool ' || k), '' ORDER BY k), 'hex') AS bytes
        FROM generate_series(1, 65536) AS k
    )
    INSERT INTO public.wide_rows (id, created_at, payload)
    SELECT md5('wide row ' || i),
           timestamptz '2020-01-01 00:00:00+00' + i * interval '7 seconds',
           replace(
               encode(
                   substring(
                       pool.bytes
                       FROM 1 + (hashint4(i) & 2147483647) %% (length(pool.bytes) - 1350)
                       FOR 1170 + (hashint4(-i) & 2147483647) %% 181
                   ),
                   'base64'
               ),
               E'\n',
               ''
           )
    FROM pool CROSS JOIN generate_series(%s, %s) AS i
    $sql$,
    lo,
    least(lo + :batch - 1, :rows)
)
FROM generate_series(1, :rows, :batch) AS lo
\gexec

ALTER TABLE public.wide_rows ADD CONSTRAINT wide_rows_pkey PRIMARY KEY (id);
CREATE INDEX wide_rows_created_at ON public.wide_rows (created_at);
COMMIT;

VACUUM (FREEZE, ANALYZE) public.wide_rows;
