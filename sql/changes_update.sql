-- Rows fetched from the source whose key the live table holds: every other column set to the
-- source's values.
-- Template: {live} the live table; {set} its columns to set; {values} r's same columns;
-- {rows} the fetched rows r; {on} the key columns equal between r and t.
UPDATE ONLY {live} AS t SET ({set}) = ROW({values})
FROM {rows} AS r
WHERE {on};
