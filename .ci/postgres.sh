#!/usr/bin/env bash
# Starts Debian's PostgreSQL for the tests: the newest installed version's
# "main" cluster (created if missing), listening on 127.0.0.1:5432 only,
# with a role mt/mt that may create databases (each test makes its own).
# Durability is off: the cluster holds nothing but test data.
set -euo pipefail
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}

ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h | awk '{print $1, $2}' | grep -qx "$ver main"; then
    $SUDO pg_createcluster "$ver" main -- --auth-local=peer --auth-host=scram-sha-256
fi
conf=/etc/postgresql/$ver/main/postgresql.conf
$SUDO sed -i -E "s/^#?listen_addresses *=.*/listen_addresses = '127.0.0.1'/; s/^#?port *=.*/port = 5432/" "$conf"
for setting in "fsync = off" "synchronous_commit = off" "full_page_writes = off"; do
    key=${setting%% *}
    $SUDO sed -i -E "/^#?$key *=/d" "$conf"
    echo "$setting" | $SUDO tee -a "$conf" >/dev/null
done
if pg_lsclusters -h | awk -v v="$ver" '$1 == v && $2 == "main" {print $4}' | grep -q online; then
    # Running already: the durability settings take a reload; the address
    # and port a restart, done only when they differ.
    now=$(as_postgres psql -Atc "SELECT current_setting('listen_addresses') || ' ' || current_setting('port')")
    if [ "$now" = "127.0.0.1 5432" ]; then
        $SUDO pg_ctlcluster "$ver" main reload
    else
        $SUDO pg_ctlcluster "$ver" main restart
    fi
else
    $SUDO pg_ctlcluster "$ver" main start
fi
for _ in $(seq 30); do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 1
done
pg_isready -h 127.0.0.1 -p 5432
as_postgres psql -q -v ON_ERROR_STOP=1 -d postgres <<'SQL'
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mt') THEN
        CREATE ROLE mt LOGIN PASSWORD 'mt' CREATEDB;
    ELSE
        ALTER ROLE mt LOGIN PASSWORD 'mt' CREATEDB;
    END IF;
END $$;
SQL
PGPASSWORD=mt psql -h 127.0.0.1 -U mt -d postgres -Atc "SELECT 'PostgreSQL ' || current_setting('server_version') || ', fsync ' || current_setting('fsync')"
