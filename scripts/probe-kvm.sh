#!/usr/bin/env bash
# Decide whether VMs on this host run with KVM or TCG. Prints "kvm" or "tcg" on stdout and
# the reason on stderr. Always exits 0.
#
# /dev/kvm existing is not enough: on nested hosts without VMX a KVM guest can hang right
# after kernel decompression. So boot the tiny image under KVM (-cpu max, not -cpu host,
# which aborts on "failed to set MSR 0x10a" there) for at most PROBE_TIMEOUT_S seconds
# (default 4, hard SIGKILL) and require the guest's "kumo tiny: booted" serial line.
#
# Usage: scripts/probe-kvm.sh [OUTDIR]
#   OUTDIR holds the tiny image (default /tmp/kumo-tiny-image; built first if missing,
#   the build is not part of the time bound).
set -uo pipefail

OUTDIR=${1:-/tmp/kumo-tiny-image}
LIMIT=${PROBE_TIMEOUT_S:-4}   # PROBE_CPU overrides -cpu (default max)
say() { echo "$1"; echo "probe-kvm: $1: $2" >&2; exit 0; }

[[ -e /dev/kvm ]] || say tcg "/dev/kvm does not exist"
[[ -r /dev/kvm && -w /dev/kvm ]] || say tcg "/dev/kvm is not accessible to $(id -un)"
command -v qemu-system-x86_64 >/dev/null || say tcg "qemu-system-x86_64 not installed"
if [[ ! -s $OUTDIR/image.json ]]; then
    "$(dirname "${BASH_SOURCE[0]}")/build-tiny-image.sh" "$OUTDIR" >&2 || say tcg "cannot build the tiny image"
fi

work=$(mktemp -d /tmp/kumo-probe-kvm.XXXXXX)
spid=
qemu_pid() { cat "$work/qemu.pid" 2>/dev/null; }
stop_qemu() {
    local p
    p=$(qemu_pid)
    [[ -n $p ]] && kill -KILL "$p" 2>/dev/null
    [[ -n $spid ]] && pkill -KILL -P "$spid" 2>/dev/null   # in case the pidfile was not written yet
    [[ -n $spid ]] && wait "$spid" 2>/dev/null
    spid=
}
trap 'stop_qemu; rm -rf "$work"' EXIT

cmdline=$(sed -n 's/.*"cmdline":"\([^"]*\)".*/\1/p' "$OUTDIR/image.json")
start=$(date +%s%N)
deadline=$((start + LIMIT * 1000000000))
# In a subshell with stderr silenced: no "Killed"/"Aborted" job notices on our stderr.
(
    qemu-system-x86_64 -accel kvm -machine q35 -cpu "${PROBE_CPU:-max}" -m 256 \
        -nographic -nodefaults -no-reboot -serial "file:$work/serial.log" -pidfile "$work/qemu.pid" \
        -kernel "$OUTDIR/vmlinuz" -initrd "$OUTDIR/initrd.img" -append "$cmdline" \
        </dev/null >/dev/null 2>"$work/qemu.err"
    echo $? >"$work/rc"
) 2>/dev/null &
spid=$!

booted() { grep -q 'kumo tiny: booted' "$work/serial.log" 2>/dev/null; }
while kill -0 "$spid" 2>/dev/null; do
    if booted; then
        ms=$((($(date +%s%N) - start) / 1000000))
        say kvm "guest booted under KVM in ${ms} ms"
    fi
    if (($(date +%s%N) > deadline)); then
        stop_qemu
        booted && say kvm "guest booted under KVM"
        say tcg "KVM guest gave no sign of life within ${LIMIT} s (nested KVM hang?)"
    fi
    sleep 0.05
done
wait "$spid" 2>/dev/null
spid=
booted && say kvm "guest booted under KVM"
say tcg "qemu -accel kvm failed (rc=$(cat "$work/rc" 2>/dev/null)): $(head -c 300 "$work/qemu.err" | tr '\n' ' ')"
