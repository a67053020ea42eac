#!/bin/sh
# Lab stand-in for the entrypoint of the official nginx image (docker-library/nginx,
# entrypoint/docker-entrypoint.sh). Behaviour re-implemented, not copied; each rule and where it
# comes from: README.md next to this file. It prepares nothing and watches nothing itself: what a
# deployment needs at start-up comes from the hooks it mounts into /docker-entrypoint.d/.
set -e

hook_dir=/docker-entrypoint.d

# Progress messages go to stdout; NGINX_ENTRYPOINT_QUIET_LOGS (any non-empty value) silences them
# (not the hooks' own output).
note() {
    [ -n "${NGINX_ENTRYPOINT_QUIET_LOGS:-}" ] || echo "$0: $*"
}

# One hook: *.envsh sourced, *.sh executed, each only when executable; anything else ignored.
# A hook that fails stops the container (set -e), before nginx starts.
run_hook() {
    case "$1" in
        *.envsh) how=source ;;
        *.sh) how=launch ;;
        *) note "Ignoring $1"; return 0 ;;
    esac
    if [ ! -x "$1" ]; then
        note "Ignoring $1, not executable"
        return 0
    fi
    if [ "$how" = source ]; then
        note "Sourcing $1"
        # shellcheck disable=SC1090  # a hook, known only at run time
        . "$1"
    else
        note "Launching $1"
        "$1"
    fi
}

# Hooks run only when the container runs nginx itself (`nginx ...` or `nginx-debug ...`), never for
# another command (`docker run <image> sh`, `nginx-check` scripts of a deployment, ...).
if [ "${1:-}" = nginx ] || [ "${1:-}" = nginx-debug ]; then
    # "Not empty" means a regular file directly in the directory (a symlink there does not count).
    if [ -n "$(find "$hook_dir/" -mindepth 1 -maxdepth 1 -type f -print -quit 2>/dev/null)" ]; then
        note "$hook_dir/ is not empty, will attempt to perform configuration"
        note "Looking for shell scripts in $hook_dir/"
        # Every file below the directory (subdirectories too, symlinks followed), in version order.
        # The loop is the last stage of a pipeline, so it runs in a subshell: what an .envsh exports
        # reaches the hooks after it, not nginx.
        find "$hook_dir/" -follow -type f -print | sort -V | while read -r hook; do
            run_hook "$hook"
        done
        note "Configuration complete; ready for start up"
    else
        note "No files found in $hook_dir/, skipping configuration"
    fi
fi

exec "$@"
