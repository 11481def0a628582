-- Which database this is: the server's system identifier and the database's name (two
-- connections that agree on both reach the same database, whatever host name or port they used).
-- Parameters: none.
SELECT s.system_identifier::text, pg_catalog.current_database()::text
FROM pg_catalog.pg_control_system() s;
