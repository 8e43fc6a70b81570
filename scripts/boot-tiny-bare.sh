#!/usr/bin/env bash
# Boot the tiny image with bare qemu-system-x86_64 (TCG) and print the milliseconds from
# launching qemu to reading KUMO_READY from the readiness socket; then kill qemu.
# Baseline for the VM start benchmark.
#
# Usage: scripts/boot-tiny-bare.sh OUTDIR WORKDIR
#   OUTDIR   holds image.json, vmlinuz, initrd.img (scripts/build-tiny-image.sh OUTDIR)
#   WORKDIR  scratch dir: disk.qcow2 (fresh each run), rdy.sock, serial.log
# Env: ACCEL (default tcg), DISK_SIZE (default 1G), TIMEOUT_S (default 60)
set -euo pipefail

die() { echo "boot-tiny-bare: $*" >&2; exit 1; }
[[ $# -eq 2 ]] || die "usage: $0 OUTDIR WORKDIR"
OUTDIR=$(realpath "$1")
WORKDIR=$2
[[ -s $OUTDIR/image.json ]] || die "$OUTDIR/image.json missing (run scripts/build-tiny-image.sh $1)"

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v python3 >/dev/null || need+=(python3)
if ((${#need[@]})); then
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >&2
fi

mkdir -p "$WORKDIR"
WORKDIR=$(realpath "$WORKDIR")
rm -f "$WORKDIR/disk.qcow2" "$WORKDIR/rdy.sock" "$WORKDIR/serial.log"
qemu-img create -q -f qcow2 "$WORKDIR/disk.qcow2" "${DISK_SIZE:-1G}"

exec python3 - "$OUTDIR" "$WORKDIR" "${ACCEL:-tcg}" "${TIMEOUT_S:-60}" <<'PY'
import json, os, socket, subprocess, sys, time

outdir, work, accel, timeout_s = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
img = json.load(open(os.path.join(outdir, "image.json")))
sock = os.path.join(work, "rdy.sock")
cmd = [
    "qemu-system-x86_64", "-accel", accel, "-machine", "q35", "-cpu", "max", "-m", "256",
    "-nographic", "-nodefaults", "-no-reboot",
    "-serial", "file:" + os.path.join(work, "serial.log"),
    "-kernel", os.path.join(outdir, img["kernel"]),
    "-initrd", os.path.join(outdir, img["initrd"]),
    "-append", img["cmdline"],
    "-drive", "file=" + os.path.join(work, "disk.qcow2") + ",if=virtio,format=qcow2",
    "-device", "virtio-serial-pci",
    "-chardev", "socket,id=rdy,path=" + sock + ",server=on,wait=off",
    "-device", "virtserialport,chardev=rdy,name=kumo.ready",
]
t0 = time.monotonic()
qemu = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
deadline = t0 + timeout_s
ms = None
try:
    s = None
    while s is None:
        if qemu.poll() is not None:
            sys.exit("boot-tiny-bare: qemu exited early: " + qemu.stderr.read().decode(errors="replace"))
        if time.monotonic() > deadline:
            sys.exit("boot-tiny-bare: timeout connecting to " + sock)
        try:
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(sock)
            s = c
        except OSError:
            c.close()
            time.sleep(0.005)
    buf = b""
    while b"KUMO_READY\n" not in buf:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            d = s.recv(4096)
        except socket.timeout:
            sys.exit("boot-tiny-bare: timeout waiting for KUMO_READY")
        if not d:
            sys.exit("boot-tiny-bare: readiness socket closed")
        buf += d
    ms = (time.monotonic() - t0) * 1000
    s.close()
finally:
    qemu.kill()
    qemu.wait()
print(round(ms))
PY
