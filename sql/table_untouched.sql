-- Whether a table is as a measure taken earlier found it: its rows, and how many of them a
-- transaction wrote that had not ended when that measure's snapshot was taken (xmin at or past
-- that snapshot's xmin, whose age is {limit} in this transaction), other than the measure's own
-- writer (a refresh that wrote the table in place: its rows are the measured ones). None written
-- since and the same count: the rows are the measured ones (pagila_tasks.run.recorded).
-- Template: {table} the table; {limit} an integer; {writer} an xid, or NULL for none.
SELECT count(*),
       count(*) FILTER (WHERE pg_catalog.age(t.xmin) <= {limit}
                          AND t.xmin IS DISTINCT FROM {writer})
FROM ONLY {table} AS t;
