-- Whether a table's last {pages} pages hold a row written since a measure (as
-- table_untouched.sql counts them: xmin no older than {limit}, not the measure's {writer}).
-- New rows and the new versions of updated rows that do not fit beside the old ones are put at
-- the table's end, so one found here settles, at the cost of a few pages, what the whole scan
-- of table_untouched.sql would find; none found here proves nothing (that scan follows).
-- Template: {table} the table; {pages} and {limit} integers; {writer} an xid, or NULL.
SELECT EXISTS (
    SELECT 1
    FROM ONLY {table} AS t
    WHERE t.ctid >= (
            SELECT format('(%s,0)', greatest(
                pg_catalog.pg_relation_size({regclass}::regclass)
                    / pg_catalog.current_setting('block_size')::bigint - {pages}, 0))::tid)
      AND pg_catalog.age(t.xmin) <= {limit}
      AND t.xmin IS DISTINCT FROM {writer}
);
