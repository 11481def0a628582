#!/usr/bin/env bash
# Runs once, on the first start of an empty data folder (the postgres image's
# /docker-entrypoint-initdb.d), as the cluster superuser POSTGRES_USER.
#
# Creates the pipeline's login role APP_DB_USER with no superuser, createrole or createdb right,
# and the database APP_DB_NAME owned by it: what a managed PostgreSQL hands out. PostgreSQL 15+
# gives the public schema to the database owner (pg_database_owner), so nothing else is needed.
# The password travels in the environment (\getenv), never on a command line or in the log.
set -euo pipefail

: "${APP_DB_NAME:?APP_DB_NAME must be set}"
: "${APP_DB_USER:?APP_DB_USER must be set}"
: "${APP_DB_PASSWORD:?APP_DB_PASSWORD must be set}"

psql --no-psqlrc -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<'SQL'
\getenv app_db APP_DB_NAME
\getenv app_user APP_DB_USER
\getenv app_password APP_DB_PASSWORD
SET log_min_error_statement = panic;
CREATE ROLE :"app_user" LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION
    PASSWORD :'app_password';
CREATE DATABASE :"app_db" OWNER :"app_user";
REVOKE ALL ON DATABASE :"app_db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"app_db" TO :"app_user";
SQL
