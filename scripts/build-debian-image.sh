#!/usr/bin/env bash
# Builds Kumo's Debian 12 (bookworm) base images from the Debian mirror with mmdebstrap (no registry, no
# downloaded cloud image):
#
#   scripts/build-debian-image.sh vm OUT.qcow2        a bootable disk: MBR + SYSLINUX, FAT /boot partition with
#                                                     the cloud kernel and its initramfs, ext4 root (LABEL=kumo-root)
#   scripts/build-debian-image.sh container OUT.tar   a minbase rootfs tarball for `podman import`
#
# The mirror is DEBIAN_MIRROR (default http://deb.debian.org/debian, the one Kumo's machines reach); security
# updates come from DEBIAN_SECURITY_MIRROR. Progress goes to stderr as "build-debian-image: ..." lines (mmdebstrap's
# own "I: ..." lines too). OUT is written under a temporary name and renamed, so it exists only when complete.
# Needs root (mmdebstrap's root mode), mmdebstrap, e2fsprogs, dosfstools, mtools, syslinux, syslinux-common,
# fdisk and qemu-utils (scripts/install-deps.sh installs them).
#
# Guest contract of the vm image (the agent depends on it):
#   * serial console ttyS0 (kernel cmdline console=ttyS0), a getty on it;
#   * kumo-ready.service writes "KUMO_READY" on the virtio-serial port named kumo.ready at every boot, after
#     cloud-init and ssh are up, then answers "ping" with KUMO_READY and "poweroff" with KUMO_BYE + a clean poweroff;
#   * cloud-init reads only a NoCloud seed (a disk labelled cidata); the agent attaches one carrying the user
#     "debian" with the VM's SSH keys and password hash; the root partition grows to the disk's size on first boot;
#   * systemd-networkd asks for DHCP on every ethernet NIC.
set -euo pipefail

die() { echo "build-debian-image: $*" >&2; exit 1; }
log() { echo "build-debian-image: $*" >&2; }

[[ $# -eq 2 ]] || die "usage: $0 vm|container OUT"
TYPE=$1
OUT=$2
case $TYPE in vm|container) ;; *) die "type must be vm or container, not '$TYPE'" ;; esac
[[ $(id -u) == 0 ]] || die "needs root (mmdebstrap builds in root mode)"
command -v mmdebstrap >/dev/null || die "mmdebstrap not found (scripts/install-deps.sh installs it)"

MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SUITE=bookworm
SOURCES=(
    "deb $MIRROR $SUITE main"
    "deb $MIRROR $SUITE-updates main"
    "deb $SECURITY $SUITE-security main"
)

WORK=$(mktemp -d /tmp/kumo-debian-build.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
chmod 755 "$WORK"
mkdir -p "$(dirname "$OUT")"

if [[ $TYPE == container ]]; then
    log "step 1/1: mmdebstrap minbase rootfs from $MIRROR"
    mmdebstrap --variant=minbase --format=tar --aptopt='APT::Install-Recommends "false"' \
        --customize-hook='rm -f "$1"/etc/machine-id "$1"/var/lib/dbus/machine-id' \
        "$SUITE" "$WORK/rootfs.tar" "${SOURCES[@]}" >&2
    mv "$WORK/rootfs.tar" "$OUT.tmp"
    mv -f "$OUT.tmp" "$OUT"
    log "done: $OUT ($(du -h "$OUT" | cut -f1))"
    exit 0
fi

for t in mke2fs mkfs.vfat mcopy syslinux sfdisk qemu-img; do
    command -v "$t" >/dev/null || die "$t not found (scripts/install-deps.sh installs it)"
done
MBR=/usr/lib/syslinux/mbr/mbr.bin
[[ -s $MBR ]] || die "$MBR missing (package syslinux-common)"

PACKAGES=(
    # Debian's cloud kernel: virtio built for QEMU guests, smaller initramfs, faster under TCG than the generic one.
    linux-image-cloud-amd64 initramfs-tools
    systemd-sysv udev dbus systemd-resolved
    cloud-init cloud-guest-utils openssh-server sudo
    iproute2 iputils-ping netbase ca-certificates procps less
)

# Runs inside mmdebstrap's customize phase with the rootfs as $1.
cat >"$WORK/customize.sh" <<'HOOK'
#!/bin/sh
set -eu
R=$1
echo debian >"$R/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$R/etc/hosts"
cat >"$R/etc/fstab" <<'EOF'
LABEL=kumo-root / ext4 errors=remount-ro 0 1
EOF
# Every VM is a new machine: a machine-id and SSH host keys made at its first boot, not shared by all of them.
: >"$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id" "$R"/etc/ssh/ssh_host_*

mkdir -p "$R/etc/systemd/network"
cat >"$R/etc/systemd/network/80-kumo-dhcp.network" <<'EOF'
[Match]
Type=ether

[Network]
DHCP=yes
EOF

mkdir -p "$R/etc/cloud/cloud.cfg.d"
cat >"$R/etc/cloud/cloud.cfg.d/90-kumo.cfg" <<'EOF'
# Kumo attaches a NoCloud seed (a disk labelled cidata); no network metadata service is probed.
datasource_list: [ NoCloud, None ]
# systemd-networkd does DHCP on every NIC (/etc/systemd/network/80-kumo-dhcp.network).
network: {config: disabled}
# Only C.UTF-8 exists without the locales package (Debian's default en_US.UTF-8 would fail update-locale).
locale: C.UTF-8
EOF

cat >"$R/usr/local/sbin/kumo-ready" <<'EOF'
#!/bin/bash
# Kumo's readiness channel: the virtio-serial port named kumo.ready (same protocol as Kumo's tiny image).
# Writes KUMO_READY once per boot (the write blocks until the agent connects), then answers "ping" with
# KUMO_READY (a restarted agent asks again) and "poweroff" with KUMO_BYE and a clean poweroff.
port=/dev/virtio-ports/kumo.ready
for _ in $(seq 300); do [[ -c $port ]] && break; sleep 0.1; done
[[ -c $port ]] || { echo "kumo-ready: no kumo.ready port"; exit 0; }
exec 3<>"$port"
echo KUMO_READY >&3
echo "kumo debian: ready"
idle=0
while :; do
    line=
    if IFS= read -r line <&3 || [[ -n $line ]]; then
        idle=0
        case ${line%$'\r'} in
            ping) echo KUMO_READY >&3 ;;
            poweroff) echo KUMO_BYE >&3; systemctl --no-block poweroff; exit 0 ;;
        esac
    else
        # EOF: the agent is not connected, and the port reads EOF at once until it reconnects: poll.
        if ((idle < 50)); then idle=$((idle + 1)); sleep 0.1; else sleep 0.5; fi
    fi
done
EOF
chmod 755 "$R/usr/local/sbin/kumo-ready"

cat >"$R/etc/systemd/system/kumo-ready.service" <<'EOF'
[Unit]
Description=Tell Kumo's agent that the guest is ready
After=cloud-init.service ssh.service systemd-networkd.service

[Service]
Type=simple
ExecStart=/usr/local/sbin/kumo-ready
StandardOutput=journal+console
Restart=on-failure
RestartSec=1

[Install]
WantedBy=multi-user.target
EOF
chroot "$R" systemctl enable kumo-ready.service systemd-networkd.service systemd-resolved.service serial-getty@ttyS0.service >/dev/null 2>&1
ln -sf ../run/systemd/resolve/stub-resolv.conf "$R/etc/resolv.conf"
rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/*_Packages
HOOK
chmod 755 "$WORK/customize.sh"

log "step 1/4: mmdebstrap rootfs with kernel, cloud-init and ssh from $MIRROR"
mkdir "$WORK/rootfs"
mmdebstrap --variant=minbase --format=directory --aptopt='APT::Install-Recommends "false"' \
    --include="$(IFS=,; echo "${PACKAGES[*]}")" \
    --customize-hook="sh $WORK/customize.sh \"\$1\"" \
    "$SUITE" "$WORK/rootfs" "${SOURCES[@]}" >&2

KERNEL=$(ls "$WORK"/rootfs/boot/vmlinuz-* | head -n1)
INITRD=$(ls "$WORK"/rootfs/boot/initrd.img-* | head -n1)
[[ -s $KERNEL && -s $INITRD ]] || die "no kernel or initramfs in the rootfs"
log "kernel $(basename "$KERNEL"), initramfs $(du -h "$INITRD" | cut -f1)"

# Disk layout (MiB): 1 MiB gap | p1 FAT16 /boot-like, 128 MiB, active, SYSLINUX | p2 ext4 root to the end.
DISK_MIB=${DEBIAN_DISK_MIB:-3072}
P1_START=1; P1_MIB=128
P2_START=$((P1_START + P1_MIB)); P2_MIB=$((DISK_MIB - P2_START))

log "step 2/4: boot partition (SYSLINUX)"
truncate -s "${P1_MIB}M" "$WORK/p1.img"
mkfs.vfat -F 16 -h $((P1_START * 2048)) -n KUMOBOOT "$WORK/p1.img" >/dev/null
syslinux --install "$WORK/p1.img"
cat >"$WORK/syslinux.cfg" <<CFG
SERIAL 0 115200
PROMPT 0
TIMEOUT 1
DEFAULT debian
LABEL debian
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND root=LABEL=kumo-root ro console=tty0 console=ttyS0,115200n8
CFG
mcopy -i "$WORK/p1.img" "$KERNEL" ::/vmlinuz
mcopy -i "$WORK/p1.img" "$INITRD" ::/initrd.img
mcopy -i "$WORK/p1.img" "$WORK/syslinux.cfg" ::/syslinux.cfg

log "step 3/4: root filesystem ($(du -sh "$WORK/rootfs" | cut -f1) of files, ${P2_MIB} MiB partition)"
mke2fs -q -t ext4 -L kumo-root -d "$WORK/rootfs" "$WORK/p2.img" "${P2_MIB}M"
rm -rf "$WORK/rootfs"

log "step 4/4: partitioned disk to qcow2"
truncate -s "${DISK_MIB}M" "$WORK/disk.raw"
sfdisk -q "$WORK/disk.raw" <<EOF
label: dos
start=$((P1_START * 2048)), size=$((P1_MIB * 2048)), type=6, bootable
start=$((P2_START * 2048)), type=83
EOF
dd if="$MBR" of="$WORK/disk.raw" bs=440 count=1 conv=notrunc status=none
dd if="$WORK/p1.img" of="$WORK/disk.raw" bs=1M seek="$P1_START" conv=notrunc,sparse status=none
dd if="$WORK/p2.img" of="$WORK/disk.raw" bs=1M seek="$P2_START" conv=notrunc,sparse status=none
rm -f "$WORK/p1.img" "$WORK/p2.img"
qemu-img convert -f raw -O qcow2 "$WORK/disk.raw" "$OUT.tmp"
mv -f "$OUT.tmp" "$OUT"
log "done: $OUT ($(du -h "$OUT" | cut -f1) stored, ${DISK_MIB} MiB disk)"
