-- Empty the source's public schema before a load (inside the load's transaction).
-- Parameters: none. The database owner may do this without superuser rights (PostgreSQL 15+).
DROP SCHEMA IF EXISTS public CASCADE;
CREATE SCHEMA public;
