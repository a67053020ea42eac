#!/usr/bin/env bash
# The official postgres image's entrypoint contract (docker-library/postgres,
# 15/bookworm/docker-entrypoint.sh), re-implemented for the lab. See README.md.
set -Eeo pipefail

# VAR or VAR_FILE (Docker secrets), never both; VAR_FILE is unset afterwards.
from_env_or_file() {
  local name=$1 default=${2:-} file_name="${1}_FILE" value
  if [ -n "${!name:-}" ] && [ -n "${!file_name:-}" ]; then
    echo "error: both $name and $file_name are set (but are exclusive)" >&2
    exit 1
  fi
  value=$default
  if [ -n "${!name:-}" ]; then
    value=${!name}
  elif [ -n "${!file_name:-}" ]; then
    value=$(<"${!file_name}")
  fi
  export "$name=$value"
  unset "$file_name"
}

wants_help() {
  local arg
  for arg in "$@"; do
    case $arg in -'?'|--help|--describe-config|-V|--version) return 0 ;; esac
  done
  return 1
}

sql() { # psql on the local socket as POSTGRES_USER, like the image's docker_process_sql
  local args=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
  [ -n "$POSTGRES_DB" ] && args+=(--dbname "$POSTGRES_DB")
  PGHOST='' PGHOSTADDR='' "${args[@]}" "$@"
}

run_init_files() {
  local f
  for f in "$@"; do
    case $f in
      *.sh)
        if [ -x "$f" ]; then echo "$0: running $f"; "$f"; else echo "$0: sourcing $f"; . "$f"; fi ;;
      *.sql) echo "$0: running $f"; sql -f "$f" ;;
      *.sql.gz) echo "$0: running $f"; gunzip -c "$f" | sql ;;
      *.sql.xz) echo "$0: running $f"; xzcat "$f" | sql ;;
      *.sql.zst) echo "$0: running $f"; zstd -dc "$f" | sql ;;
      *) echo "$0: ignoring $f" ;;
    esac
  done
}

initialize() { # first start only: an empty data directory
  if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
    cat >&2 <<'MSG'
Error: Database is uninitialized and superuser password is not specified.
       You must specify POSTGRES_PASSWORD to a non-empty value for the
       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".
MSG
    exit 1
  fi
  ls /docker-entrypoint-initdb.d/ >/dev/null
  local wal=()
  [ -n "${POSTGRES_INITDB_WALDIR:-}" ] && wal=(--waldir "$POSTGRES_INITDB_WALDIR")
  # No --auth options: initdb's default trusts the local socket, 127.0.0.1 and ::1, exactly as
  # in the official image. POSTGRES_INITDB_ARGS is word-split by the shell, like upstream's eval.
  eval 'initdb --username="$POSTGRES_USER" --pwfile=<(printf "%s\n" "$POSTGRES_PASSWORD") "${wal[@]}" '"$POSTGRES_INITDB_ARGS"

  # The only line that asks for a password: every other host, with the configured encryption.
  local server_args=("$@")
  [ "${server_args[0]:-}" = postgres ] && server_args=("${server_args[@]:1}")
  : "${POSTGRES_HOST_AUTH_METHOD:=$(postgres -C password_encryption "${server_args[@]}")}"
  {
    echo
    [ "$POSTGRES_HOST_AUTH_METHOD" = trust ] && echo '# warning trust is enabled for all connections'
    echo "host all all all $POSTGRES_HOST_AUTH_METHOD"
  } >>"$PGDATA/pg_hba.conf"

  export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
  NOTIFY_SOCKET='' PGUSER="${PGUSER:-$POSTGRES_USER}" \
    pg_ctl -D "$PGDATA" -o "$(printf '%q ' "${server_args[@]}" -c listen_addresses='' -p "${PGPORT:-5432}")" -w start
  if [ -z "$(POSTGRES_DB='' sql --dbname postgres --set db="$POSTGRES_DB" --tuples-only \
            <<<"SELECT 1 FROM pg_database WHERE datname = :'db';")" ]; then
    POSTGRES_DB='' sql --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
  fi
  run_init_files /docker-entrypoint-initdb.d/*
  PGUSER="${PGUSER:-postgres}" pg_ctl -D "$PGDATA" -m fast -w stop
  unset PGPASSWORD
  echo
  echo 'PostgreSQL init process complete; ready for start up.'
  echo
}

main() {
  [ "${1:0:1}" = - ] && set -- postgres "$@"
  if [ "$1" = postgres ] && ! wants_help "$@"; then
    from_env_or_file POSTGRES_PASSWORD
    from_env_or_file POSTGRES_USER postgres
    from_env_or_file POSTGRES_DB "$POSTGRES_USER"
    from_env_or_file POSTGRES_INITDB_ARGS
    : "${POSTGRES_HOST_AUTH_METHOD:=}"

    mkdir -p "$PGDATA" && chmod 00700 "$PGDATA" || :
    mkdir -p /var/run/postgresql && chmod 03775 /var/run/postgresql || :
    if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
      mkdir -p "$POSTGRES_INITDB_WALDIR"
      [ "$(id -u)" = 0 ] && find "$POSTGRES_INITDB_WALDIR" \! -user postgres -exec chown postgres '{}' +
      chmod 700 "$POSTGRES_INITDB_WALDIR"
    fi
    if [ "$(id -u)" = 0 ]; then
      find "$PGDATA" /var/run/postgresql \! -user postgres -exec chown postgres '{}' +
      exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
    fi

    if [ -s "$PGDATA/PG_VERSION" ]; then
      echo
      echo 'PostgreSQL Database directory appears to contain a database; Skipping initialization'
      echo
    else
      initialize "$@"
    fi
  fi
  exec "$@"
}

main "$@"
