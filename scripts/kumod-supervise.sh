#!/usr/bin/env bash
# Keeps kumod running where there is no systemd: restarts it when it exits, waiting
# 1 s, 2 s, 4 s ... up to 30 s between tries; a run that lasted 60 s resets the wait.
# SIGTERM (or SIGINT) stops kumod (SIGTERM, SIGKILL after 20 s) and then the supervisor.
#
#   scripts/kumod-supervise.sh --state-dir DIR
#
# Writes DIR/run/supervisor.pid and DIR/run/kumod.pid, appends to DIR/logs/kumod.log.
# KUMOD_CMD (tests of this script only) replaces the kumod command line; run by bash -c.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BACKOFF_MIN=${KUMO_BACKOFF_MIN:-1}
BACKOFF_MAX=${KUMO_BACKOFF_MAX:-30}
HEALTHY_AFTER=${KUMO_HEALTHY_AFTER:-60}   # seconds up after which the backoff resets
STOP_TIMEOUT=20
LOG_ROTATE_BYTES=$((50 * 1024 * 1024))

state_dir=""
stopping=0
child=""

say() { printf '%s kumo-supervise: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$log"; }

parse_args() {
    while (($#)); do
        case "$1" in
            --state-dir) state_dir="${2:?--state-dir needs a value}"; shift 2 ;;
            *) kumo_die "kumod-supervise: unknown argument: $1" ;;
        esac
    done
    [[ -n "$state_dir" ]] || kumo_die "kumod-supervise: --state-dir is required"
}

kumod_command() {
    if [[ -n "${KUMOD_CMD:-}" ]]; then
        cmd=(bash -c "$KUMOD_CMD")
    else
        kumo_require_dotnet
        cmd=("$KUMO_DOTNET" "$KUMO_REPO/artifacts/bin/kumod/kumod.dll" --all-in-one --state-dir "$state_dir")
    fi
}

rotate_log() {
    local size
    size=$(stat -c %s "$log" 2>/dev/null || echo 0)
    if ((size > LOG_ROTATE_BYTES)); then
        mv -f "$log" "$log.1"
    fi
}

on_signal() {
    stopping=1
}

stop_child() {
    [[ -n "$child" ]] || return 0
    if kumo_alive "$child"; then
        say "stopping kumod (pid $child)"
        kill -TERM "$child" 2>/dev/null || true
        local waited=0
        while kumo_alive "$child" && ((waited < STOP_TIMEOUT * 10)); do
            sleep 0.1
            waited=$((waited + 1))
        done
        if kumo_alive "$child"; then
            say "kumod ignored SIGTERM for ${STOP_TIMEOUT}s; sending SIGKILL"
            kill -KILL "$child" 2>/dev/null || true
        fi
    fi
    wait "$child" 2>/dev/null || true
    child=""
}

# Sleeps, but returns at once when a stop signal arrives.
interruptible_sleep() {
    sleep "$1" &
    local sleeper=$!
    wait "$sleeper" 2>/dev/null || true
    kill "$sleeper" 2>/dev/null || true
    wait "$sleeper" 2>/dev/null || true
}

run() {
    local backoff=$BACKOFF_MIN started rc uptime
    while ((!stopping)); do
        rotate_log
        started=$(date +%s)
        # fd 9 holds the single-instance lock; kumod must not inherit it.
        "${cmd[@]}" </dev/null >>"$log" 2>&1 9>&- &
        child=$!
        echo "$child" >"$run_dir/kumod.pid"
        say "started kumod (pid $child)"

        # Poll rather than block in wait: a signal that lands just before a blocking
        # wait would not interrupt it, and the supervisor would miss the stop.
        while ((!stopping)) && kumo_alive "$child"; do
            interruptible_sleep 1
        done
        if ((stopping)); then
            stop_child
            break
        fi
        if wait "$child"; then rc=0; else rc=$?; fi
        child=""
        rm -f "$run_dir/kumod.pid"

        uptime=$(($(date +%s) - started))
        if ((uptime >= HEALTHY_AFTER)); then
            backoff=$BACKOFF_MIN
        fi
        say "kumod exited with status $rc after ${uptime}s; restarting in ${backoff}s"
        interruptible_sleep "$backoff"
        backoff=$((backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : backoff * 2))
    done
}

main() {
    parse_args "$@"
    run_dir="$state_dir/run"
    log="$state_dir/logs/kumod.log"
    mkdir -p "$run_dir" "$state_dir/logs"

    exec 9>"$run_dir/supervisor.lock"
    flock -n 9 || kumo_die "kumod-supervise: another supervisor holds $run_dir/supervisor.lock"
    echo "$$" >"$run_dir/supervisor.pid"
    trap on_signal TERM INT HUP
    trap 'rm -f "$run_dir/supervisor.pid" "$run_dir/kumod.pid"' EXIT

    kumod_command
    say "supervising: ${cmd[*]}"
    run
    say "stopped"
}

main "$@"
