-- Whether a table is as a measure taken earlier found it: its rows, and how many of them a
-- transaction wrote that had not ended when that measure's snapshot was taken (xmin at or past
-- that snapshot's xmin, whose age is {limit} in this transaction). None written since and the
-- same count: the rows are the measured ones (pagila_tasks.run.recorded).
-- Template: {table} the table; {limit} an integer.
SELECT count(*), count(*) FILTER (WHERE pg_catalog.age(t.xmin) <= {limit})
FROM ONLY {table} AS t;
