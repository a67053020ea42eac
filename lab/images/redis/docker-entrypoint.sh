#!/bin/sh
# The official redis image's entrypoint contract (docker-library/redis,
# 7.x/debian/docker-entrypoint.sh), re-implemented for the lab: it only drops privileges.
set -e

# A first argument that is an option or a config file means "run redis-server with it".
case "$1" in
  -*|*.conf) set -- redis-server "$@" ;;
esac

# As root: hand the working directory (/data) to redis, then run as redis.
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
  find . \! -user redis -exec chown redis '{}' +
  exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi

# Files redis creates (dump, AOF, a saved ACL file) are private unless a umask was chosen.
[ "$(umask)" = 0022 ] && umask 0077

exec "$@"
