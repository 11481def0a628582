-- Rows fetched from the source whose key the live table lacks: inserted (identity values as
-- the source has them).
-- Template: {live} the live table; {cols} the copied columns; {rows} the fetched rows r;
-- {on} the key columns equal between r and t.
INSERT INTO {live} AS t ({cols}) OVERRIDING SYSTEM VALUE
SELECT {cols} FROM {rows} AS r
WHERE NOT EXISTS (SELECT 1 FROM ONLY {live} AS t WHERE {on});
