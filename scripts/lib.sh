# shellcheck shell=bash
# shellcheck disable=SC2034  # the variables set here are used by the scripts that source it
# Helpers shared by ./kumo and the scripts under scripts/. Source it; do not run it.

# Never prompt, never phone home: these scripts run in CI with no stdin.
export DOTNET_CLI_TELEMETRY_OPTOUT=1
export DOTNET_NOLOGO=1
export DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
export DOTNET_GENERATE_ASPNET_CERTIFICATE=false
export DEBIAN_FRONTEND=noninteractive

KUMO_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KUMO_DEFAULT_STATE_DIR=/var/lib/kumo
# REST is HTTPS with kumod's own CA (STATE/pki/ca.crt); see docs/api.md.
KUMO_API_URL="${KUMO_API_URL:-https://127.0.0.1:7400}"

kumo_log() { printf 'kumo: %s\n' "$*" >&2; }
kumo_die() { printf 'kumo: %s\n' "$*" >&2; exit 1; }

# Print the path of a dotnet host that has a .NET 10 SDK, or nothing.
kumo_find_dotnet() {
    local candidate
    for candidate in "$(command -v dotnet 2>/dev/null || true)" \
                     "${DOTNET_ROOT:+$DOTNET_ROOT/dotnet}" \
                     /usr/share/dotnet/dotnet /usr/lib/dotnet/dotnet "$HOME/.dotnet/dotnet"; do
        [[ -n "$candidate" && -x "$candidate" ]] || continue
        if "$candidate" --list-sdks 2>/dev/null | grep -q '^10\.'; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

# Exit with instructions unless a .NET 10 SDK is usable; puts it first on PATH.
kumo_require_dotnet() {
    local dotnet
    if ! dotnet="$(kumo_find_dotnet)"; then
        kumo_die "the .NET 10 SDK is required but was not found (dotnet --list-sdks shows no 10.*).
kumo: No package registry reachable from this machine serves it (Debian 12 does not package it).
kumo: Install it on a machine with internet access from Microsoft: their Debian package feed
kumo: (package dotnet-sdk-10.0) or their dotnet-install.sh script (--channel 10.0), then make
kumo: 'dotnet' reachable on PATH (or set DOTNET_ROOT) and run this command again."
    fi
    KUMO_DOTNET="$dotnet"
    PATH="$(dirname "$dotnet"):$PATH"
    export PATH
}

# True if PID exists and is not a zombie (a zombie still answers kill -0).
kumo_alive() {
    local pid="$1" stat
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [[ "${stat:0:1}" != Z ]]
}

# True if PID is alive and its command line contains PATTERN.
kumo_pid_matches() {
    local pid="$1" pattern="$2"
    kumo_alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$pattern"
}

# Read a pid file; prints the pid if the process is alive and matches PATTERN.
kumo_live_pid() {
    local file="$1" pattern="$2" pid
    [[ -r "$file" ]] || return 1
    pid="$(head -n1 "$file" 2>/dev/null || true)"
    kumo_pid_matches "$pid" "$pattern" || return 1
    printf '%s\n' "$pid"
}

# SIGTERM a pid, wait up to TIMEOUT seconds, then SIGKILL. Returns when it is gone.
kumo_stop_pid() {
    local pid="$1" timeout="${2:-20}" name="${3:-process}" waited=0
    kumo_alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    while kumo_alive "$pid" && ((waited < timeout * 10)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    if kumo_alive "$pid"; then
        kumo_log "$name (pid $pid) ignored SIGTERM for ${timeout}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while kumo_alive "$pid"; do sleep 0.1; done
    fi
}
