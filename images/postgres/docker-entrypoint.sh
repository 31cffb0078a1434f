#!/bin/bash
# The subset of the official postgres image's entrypoint that clients rely on:
# POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB, initdb into $PGDATA on first start,
# scripts in /docker-entrypoint-initdb.d, the server run as the postgres user and
# listening on all addresses with password (scram-sha-256) authentication, replication
# connections included (pg_basebackup, standbys).
set -Eeo pipefail

if [ "$1" = 'postgres' ] && [ "$(id -u)" = '0' ]; then
	mkdir -p "$PGDATA" /var/run/postgresql
	chown -R postgres:postgres "$PGDATA" /var/run/postgresql
	chmod 700 "$PGDATA"
	exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

# A streaming hot standby (POSTGRES_STANDBY_OF=<primary host>): its first start is a base backup of the primary
# through the replication slot POSTGRES_STANDBY_SLOT (made by deploygate), written with standby.signal and a
# primary_conninfo naming it POSTGRES_STANDBY_NAME (pg_stat_replication's application_name); then it follows.
if [ "$1" = 'postgres' ] && [ -n "${POSTGRES_STANDBY_OF:-}" ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
	: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set (the primary password)}"
	PGPASSWORD="$POSTGRES_PASSWORD" pg_basebackup --pgdata="$PGDATA" --wal-method=stream --write-recovery-conf \
		--checkpoint=fast --no-password --slot="$POSTGRES_STANDBY_SLOT" \
		--dbname="host=$POSTGRES_STANDBY_OF port=${POSTGRES_STANDBY_PORT:-5432} user=${POSTGRES_USER:-postgres} application_name=$POSTGRES_STANDBY_NAME"
	echo "standby of $POSTGRES_STANDBY_OF ready to start"
fi

if [ "$1" = 'postgres' ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
	: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set (as with the official image)}"
	POSTGRES_USER="${POSTGRES_USER:-postgres}"
	POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
	initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
		--encoding=UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 \
		-D "$PGDATA" >/dev/null
	printf "listen_addresses = '*'\n" >> "$PGDATA/postgresql.conf"
	printf 'host all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
	# Replication connections by password: deploygate's physical backups (pg_basebackup) and standbys.
	printf 'host replication all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"

	# A server on the socket only, so nothing connects before initialisation is done.
	pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
	if [ "$POSTGRES_DB" != 'postgres' ]; then
		# psql variables quote the name safely; they are only expanded in input, not -c.
		echo 'CREATE DATABASE :"db";' | psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres -q --set db="$POSTGRES_DB"
	fi
	for f in /docker-entrypoint-initdb.d/*; do
		case "$f" in
			*.sh) echo "running $f"; . "$f" ;;
			*.sql) echo "running $f"; psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -f "$f" ;;
			*.sql.gz) echo "running $f"; gunzip -c "$f" | psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" ;;
			*) ;;
		esac
	done
	pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
	echo 'PostgreSQL init process complete; ready for start up.'
fi

exec "$@"
