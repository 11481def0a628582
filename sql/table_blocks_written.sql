-- A table's rows in one range of its blocks, and how many of them a transaction wrote that had
-- not ended when a measure's snapshot was taken (xmin at or past that snapshot's xmin, whose age
-- is {limit} in this transaction), other than the measure's own writer (a refresh that wrote
-- the table in place: its rows are the measured ones). Read with a TID range scan, from block
-- {low} up to {upper} (the table's end, however far it has grown, for the last range). None
-- written since in every range and the recorded count in all: the rows are the measured ones
-- (pagila_tasks.run.recorded).
-- Template: {table} the table; {low} a tid; {upper} empty or `AND t.ctid < '(n,0)'`;
-- {limit} an integer; {writer} an xid, or NULL for none.
SELECT count(*),
       count(*) FILTER (WHERE pg_catalog.age(t.xmin) <= {limit}
                          AND t.xmin IS DISTINCT FROM {writer})
FROM ONLY {table} AS t
WHERE t.ctid >= {low}::tid {upper};
