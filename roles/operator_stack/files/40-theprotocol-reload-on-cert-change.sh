#!/bin/sh
# 40-theprotocol-reload-on-cert-change.sh -- installed by the theprotocol.operator.operator_stack role
# and mounted read-only into nginx-federation as /docker-entrypoint.d/40-theprotocol-reload-on-cert-change.sh.
#
# nginx reads its certificate files only at start and on a reload; the official nginx image watches
# nothing. The image's entrypoint runs this hook before it execs nginx: it waits (bounded) for the
# cert-writer's first certificate set, then leaves a watcher in the background and returns. The
# watcher polls the set every THEPROTOCOL_RELOAD_INTERVAL seconds (default 2); when its content
# changes (the cert-writer swaps the ..data link to a new set) it runs `nginx -t` and, only when that
# passes, `nginx -s reload`. One line on stderr (the container log) per reload and per refused set.
# POSIX sh and what the official Debian nginx image has (coreutils; no inotify).
#
# Environment: THEPROTOCOL_CERTS_DIR (default /certs), THEPROTOCOL_RELOAD_INTERVAL (seconds, default 2),
# THEPROTOCOL_CERTS_WAIT (seconds to wait for the first set, default 120), NGINX_ENTRYPOINT_QUIET_LOGS.
set -u

me=theprotocol-reload-on-cert-change
dir=${THEPROTOCOL_CERTS_DIR:-/certs}
interval=${THEPROTOCOL_RELOAD_INTERVAL:-2}
first_wait=${THEPROTOCOL_CERTS_WAIT:-120}

log() {
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $me: $*" >&2
}

note() {
    [ -n "${NGINX_ENTRYPOINT_QUIET_LOGS:-}" ] || log "$@"
}

for value in "$interval" "$first_wait"; do
    case $value in
        '' | *[!0-9]*)
            log "THEPROTOCOL_RELOAD_INTERVAL and THEPROTOCOL_CERTS_WAIT must be whole seconds (got '$interval', '$first_wait')"
            exit 1
            ;;
    esac
done
[ "$interval" -gt 0 ] || interval=1

# The certificate set in one reading: the cert-writer's ..data link resolved once, so the three
# files come from the same set even while it swaps (a directory without ..data is read as it is).
# Prints "<set> <cksum of svid.pem, svid_key.pem and bundle.pem>"; nothing of the files' content.
cert_state() {
    set_name=$(readlink "$dir/..data" 2>/dev/null) || set_name=""
    if [ -n "$set_name" ]; then
        base="$dir/$set_name"
    else
        base=$dir
        set_name="(no ..data link)"
    fi
    sum=$(cat "$base/svid.pem" "$base/svid_key.pem" "$base/bundle.pem" 2>/dev/null | cksum)
    echo "$set_name $sum"
}

# The content part of a state (the set name changes on every write, the content only on a rotation).
content() {
    echo "${1#* }"
}

one_line() {
    printf '%s' "$1" | tr '\n\t' '  '
}

watch_certs() {
    last=$(cert_state)
    while :; do
        sleep "$interval"
        now=$(cert_state)
        [ "$(content "$now")" = "$(content "$last")" ] && continue
        if out=$(nginx -t 2>&1); then
            after=$(cert_state)
            if [ "$(content "$after")" != "$(content "$now")" ]; then
                continue  # swapped again while nginx -t read it: test the newer set on the next poll
            fi
            if out=$(nginx -s reload 2>&1); then
                log "certificate set ${now%% *} in $dir changed: nginx -t passed, reloaded"
            else
                log "certificate set ${now%% *} in $dir changed, nginx -t passed but nginx -s reload failed: $(one_line "$out")"
            fi
        else
            after=$(cert_state)
            if [ "$(content "$after")" != "$(content "$now")" ]; then
                continue
            fi
            log "certificate set ${now%% *} in $dir changed but nginx -t failed, NOT reloaded (nginx keeps serving the previous certificates and configuration): $(one_line "$out")"
        fi
        last=$now
    done
}

# nginx cannot start without a certificate: wait for the cert-writer's first set (bounded).
waited=0
while [ ! -s "$dir/svid.pem" ] || [ ! -s "$dir/svid_key.pem" ]; do
    if [ "$waited" -ge "$first_wait" ]; then
        log "no certificate set in $dir after ${first_wait}s; starting nginx anyway (it fails without one)"
        break
    fi
    sleep 1
    waited=$((waited + 1))
done

# In the background, detached from the entrypoint's pipes; nginx (PID 1 after the entrypoint's exec)
# adopts it, and it ends with the container.
watch_certs </dev/null >/dev/null &
note "watching $dir every ${interval}s (pid $!): nginx -t, then nginx -s reload when the certificate set changes"
exit 0
