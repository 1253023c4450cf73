#!/usr/bin/env bash
# Runs once, on the first start of an empty postgres-data volume (docker-entrypoint-initdb.d).
# One role and one database per service, so a service can read and write only its own store, and
# each personal-data key store (intake, referral) in a database of its own, apart from the events it
# protects.
# Passwords come from the environment of the postgres container (see docker-compose.yml).
set -euo pipefail

create_database() {
    local name="$1" password="$2"
    if [[ -z "$password" ]]; then
        echo "10-tsunagu-databases: no password for database '$name'" >&2
        exit 1
    fi
    # psql variables (:"name" and :'password') quote the identifier and the literal safely.
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
        --set=name="$name" --set=password="$password" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name" ENCODING 'UTF8';
-- Nobody but the owner (and the superuser) may even connect.
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
    echo "10-tsunagu-databases: created role and database '$name'"
}

create_database intake "${INTAKE_DB_PASSWORD:-}"
create_database referral "${REFERRAL_DB_PASSWORD:-}"
create_database resources "${RESOURCES_DB_PASSWORD:-}"
create_database reporting "${REPORTING_DB_PASSWORD:-}"
# referral's personal-data key store (intake's is `keystore`, below).
create_database referral_keystore "${REFERRAL_KEYSTORE_DB_PASSWORD:-}"
# Last on purpose: the compose healthcheck connects to it, so "healthy" means all databases exist.
create_database keystore "${KEYSTORE_DB_PASSWORD:-}"
