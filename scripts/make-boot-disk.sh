#!/usr/bin/env bash
# Builds a disk image that boots with its OWN bootloader (no -kernel): a FAT filesystem holding SYSLINUX, the tiny
# image's kernel and initramfs. Tests export it to VMDK/box/OVA and import it, so "an imported image boots from its
# own disk" is checked without downloading anything.
#
#   scripts/make-boot-disk.sh TINY_DIR OUT.qcow2
#
# TINY_DIR is a built tiny image (scripts/build-tiny-image.sh). Needs syslinux, mtools, dosfstools, qemu-utils
# (scripts/install-deps.sh --test installs them).
set -euo pipefail

die() { echo "make-boot-disk: $*" >&2; exit 1; }
[[ $# -eq 2 ]] || die "usage: $0 TINY_DIR OUT.qcow2"
TINY=$1
OUT=$2
for f in vmlinuz initrd.img image.json; do [[ -s $TINY/$f ]] || die "$TINY/$f missing: build the tiny image first"; done
for t in syslinux mcopy mkfs.vfat qemu-img; do command -v "$t" >/dev/null || die "$t not found (scripts/install-deps.sh --test)"; done

WORK=$(mktemp -d /tmp/kumo-boot-disk.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
CMDLINE=$(sed -n 's/.*"cmdline": *"\([^"]*\)".*/\1/p' "$TINY/image.json")
[[ -n $CMDLINE ]] || CMDLINE="console=ttyS0 quiet panic=-1"

truncate -s 48M "$WORK/disk.raw"
mkfs.vfat -n KUMOBOOT "$WORK/disk.raw" >/dev/null
# Installed into the filesystem's boot sector: with no partition table BIOS runs it directly ("superfloppy").
syslinux --install "$WORK/disk.raw"
cat >"$WORK/syslinux.cfg" <<CFG
SERIAL 0 115200
PROMPT 0
TIMEOUT 1
DEFAULT kumo
LABEL kumo
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND $CMDLINE
CFG
mcopy -i "$WORK/disk.raw" "$TINY/vmlinuz" ::/vmlinuz
mcopy -i "$WORK/disk.raw" "$TINY/initrd.img" ::/initrd.img
mcopy -i "$WORK/disk.raw" "$WORK/syslinux.cfg" ::/syslinux.cfg
qemu-img convert -f raw -O qcow2 "$WORK/disk.raw" "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
