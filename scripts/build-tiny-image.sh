#!/usr/bin/env bash
# Build Kumo's built-in "tiny" VM image:
#   OUTDIR/vmlinuz     Debian cloud kernel (from linux-image-cloud-amd64's current dependency)
#   OUTDIR/initrd.img  busybox-static initramfs (gzip'ed newc cpio) with virtio modules and /init
#   OUTDIR/image.json  image descriptor (written last; its presence marks a complete build)
#
# Usage: scripts/build-tiny-image.sh OUTDIR
# Idempotent: exits 0 at once if OUTDIR already holds a complete build made by this
# version of the script (set FORCE=1 to rebuild anyway).
#
# Guest contract (the host agent depends on it) - see the /init below:
#   * serial console ttyS0; cmdline "console=ttyS0 quiet panic=-1"; prints "kumo tiny: booted".
#   * /dev/vda (first virtio disk): formatted ext2 if blank, mounted at /data.
#   * every ethN: up, udhcpc in the background (never delays readiness).
#   * virtio-serial port named "kumo.ready": guest writes "KUMO_READY\n" once after boot
#     (blocks until the host connects); then per line received: "ping" -> "KUMO_READY",
#     "poweroff" -> "KUMO_BYE", sync, umount /data, poweroff -f.
#   * a root shell on ttyS0 (respawned).
set -euo pipefail

MODULES=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
         virtio_blk failover net_failover virtio_net virtio_console)
CMDLINE="console=ttyS0 quiet panic=-1"

die() { echo "build-tiny-image: $*" >&2; exit 1; }
log() { echo "build-tiny-image: $*" >&2; }

[[ $# -eq 1 ]] || die "usage: $0 OUTDIR"
OUTDIR=$1
SELF_HASH=$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)

image_complete() {
    local j="$OUTDIR/image.json"
    [[ -s $j && -s $OUTDIR/vmlinuz && -s $OUTDIR/initrd.img ]] || return 1
    [[ -f $OUTDIR/.build-stamp && $(cat "$OUTDIR/.build-stamp") == "$SELF_HASH" ]] || return 1
    local k
    for k in name kernel initrd cmdline readiness kernelVersion osType; do
        grep -q "\"$k\"" "$j" || return 1
    done
}

if [[ ${FORCE:-0} != 1 ]] && image_complete; then
    exit 0
fi

# --- tools -------------------------------------------------------------------------------
need_pkgs=()
dpkg -s busybox-static >/dev/null 2>&1 || need_pkgs+=(busybox-static)
command -v gzip >/dev/null || need_pkgs+=(gzip)
if ((${#need_pkgs[@]})); then
    [[ $(id -u) == 0 ]] || die "missing ${need_pkgs[*]}; run as root to install them"
    log "installing ${need_pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_pkgs[@]}" >&2
fi
BUSYBOX=/bin/busybox
[[ -x $BUSYBOX ]] || die "$BUSYBOX missing"

# --- resolve the kernel package ----------------------------------------------------------
resolve_kernel_pkg() {
    apt-cache depends linux-image-cloud-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-cloud-amd64\)$/\1/p' | head -n1
}
KPKG=$(resolve_kernel_pkg)
if [[ -z $KPKG ]]; then
    log "linux-image-cloud-amd64 unknown to apt; running apt-get update"
    apt-get update >&2
    KPKG=$(resolve_kernel_pkg)
fi
[[ -n $KPKG ]] || die "cannot resolve linux-image-cloud-amd64"
KVER=${KPKG#linux-image-}; KVER=${KVER%-cloud-amd64}
log "kernel package $KPKG (version $KVER)"

WORK=$(mktemp -d /tmp/kumo-tiny-build.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
chmod 755 "$WORK"
mkdir "$WORK/dl"
chmod 777 "$WORK/dl"   # lets apt's _apt sandbox user write the .deb

first() { [[ -e $1 ]] && echo "$1"; }
(cd "$WORK/dl" && apt-get download "$KPKG" >&2)
DEB=$(first "$WORK"/dl/*.deb) || die "apt-get download $KPKG produced no .deb"
dpkg-deb -x "$DEB" "$WORK/kpkg"
KROOT=$WORK/kpkg
VMLINUZ=$(first "$KROOT"/boot/vmlinuz-*) || die "no vmlinuz in $DEB"
KCONFIG=$(first "$KROOT"/boot/config-*) || die "no kernel config in $DEB"
MODDIR=$(first "$KROOT"/lib/modules/*) || die "no modules in $DEB"
[[ $(basename "$MODDIR") == "$KVER-cloud-amd64" ]] || log "note: module dir $(basename "$MODDIR") != $KVER"

# --- modules -----------------------------------------------------------------------------
# Find a module file by name (module names may use - or _ in file names).
find_module() {
    local n=$1 alt=${1//_/-}
    find "$MODDIR/kernel" \( -name "$n.ko" -o -name "$n.ko.xz" -o -name "$n.ko.zst" -o -name "$n.ko.gz" \
        -o -name "$alt.ko" -o -name "$alt.ko.xz" -o -name "$alt.ko.zst" -o -name "$alt.ko.gz" \) | head -n1
}

# Write an uncompressed copy of module file $1 to $2 (busybox insmod can't load compressed ones).
decompress_module() {
    local src=$1 dst=$2
    case $src in
        *.ko) cp "$src" "$dst" ;;
        *.ko.xz) "$BUSYBOX" xzcat "$src" >"$dst" ;;
        *.ko.gz) gzip -dc "$src" >"$dst" ;;
        *.ko.zst)
            command -v zstd >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends zstd >&2
            zstd -qdc "$src" >"$dst" ;;
        *) die "unknown module format $src" ;;
    esac
}

# depends= from the module's .modinfo section (modinfo -F depends when kmod is installed).
module_deps() {
    local f=$1 d
    if command -v modinfo >/dev/null && modinfo --version 2>/dev/null | grep -q kmod &&
        d=$(modinfo -F depends "$f" 2>/dev/null); then
        :
    else
        d=$(tr '\0' '\n' <"$f" | sed -n 's/^depends=//p' | head -n1)
    fi
    echo "${d//,/ }"
}

declare -A MOD_FILE=() MOD_STATE=()
ORDER=()
add_module() {   # depth-first: dependencies before the module
    local n=${1//-/_} src tmp dep
    [[ ${MOD_STATE[$n]:-} == loaded ]] && return 0
    [[ ${MOD_STATE[$n]:-} == visiting ]] && die "module dependency cycle at $n"
    # built into the kernel? then there is nothing to load
    if grep -qE "/${n}\.ko\$|/${1//_/-}\.ko\$" "$MODDIR/modules.builtin" 2>/dev/null; then
        MOD_STATE[$n]=loaded; return 0
    fi
    src=$(find_module "$n")
    [[ -n $src ]] || die "module $n not found in $KPKG"
    MOD_STATE[$n]=visiting
    mkdir -p "$WORK/mods"
    tmp=$WORK/mods/$n.ko
    decompress_module "$src" "$tmp"
    for dep in $(module_deps "$tmp"); do add_module "$dep"; done
    MOD_FILE[$n]=$tmp
    MOD_STATE[$n]=loaded
    ORDER+=("$n")
}

WANT=("${MODULES[@]}")
# /data is ext2 (made by busybox mke2fs); it needs ext2 or ext4 (EXT4_USE_FOR_EXT2) support.
if grep -q '^CONFIG_EXT4_FS=y' "$KCONFIG" || grep -q '^CONFIG_EXT2_FS=y' "$KCONFIG"; then
    :
elif grep -q '^CONFIG_EXT4_FS=m' "$KCONFIG"; then
    WANT+=(ext4)
elif grep -q '^CONFIG_EXT2_FS=m' "$KCONFIG"; then
    WANT+=(ext2)
else
    die "kernel has no ext2/ext4 support"
fi
for m in "${WANT[@]}"; do add_module "$m"; done
log "module load order: ${ORDER[*]}"

# --- initramfs staging -------------------------------------------------------------------
ST=$WORK/initramfs
mkdir -p "$ST"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,data,root,etc/udhcpc,lib/modules}
chmod 1777 "$ST/tmp"
cp "$BUSYBOX" "$ST/bin/busybox"
# busybox --install -s needs /proc/self/exe to be the staged binary; do it explicitly instead.
for app in $("$BUSYBOX" --list-full); do
    [[ $app == bin/busybox ]] && continue
    mkdir -p "$ST/$(dirname "$app")"
    ln -sf /bin/busybox "$ST/$app"
done
[[ -e $ST/bin/sh ]] || ln -s busybox "$ST/bin/sh"

n=0
: >"$ST/lib/modules/order"
for m in "${ORDER[@]}"; do
    f=$(printf '%02d-%s.ko' "$n" "$m")
    cp "${MOD_FILE[$m]}" "$ST/lib/modules/$f"
    echo "$f" >>"$ST/lib/modules/order"
    n=$((n + 1))
done

echo "kumo-tiny" >"$ST/etc/hostname"
echo "root:x:0:0:root:/root:/bin/sh" >"$ST/etc/passwd"
echo "root:x:0:" >"$ST/etc/group"
: >"$ST/etc/resolv.conf"

cat >"$ST/etc/udhcpc/default.script" <<'EOF'
#!/bin/sh
# busybox udhcpc hook: configure $interface from the lease.
case "$1" in
deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} dev "$interface"
    if [ -n "$router" ]; then
        ip route del default dev "$interface" 2>/dev/null
        for r in $router; do ip route add default via "$r" dev "$interface"; break; done
    fi
    # One file per NIC, merged: each network's dnsmasq knows only its own names.
    : >"/run/resolv.$interface"
    [ -n "$domain" ] && echo "search $domain" >>"/run/resolv.$interface"
    for d in $dns; do echo "nameserver $d" >>"/run/resolv.$interface"; done
    cat /run/resolv.* >/etc/resolv.conf 2>/dev/null
    [ "$1" = bound ] && echo "kumo tiny: $interface $ip/${mask:-24}" >/dev/console
    ;;
esac
exit 0
EOF
chmod 755 "$ST/etc/udhcpc/default.script"

cat >"$ST/init" <<'EOF'
#!/bin/sh
# Kumo tiny image /init (PID 1). Never exits (panic=-1 would reboot the VM).
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TERM=${TERM:-vt100}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || mdev -s
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
exec </dev/console >/dev/console 2>&1
hostname -F /etc/hostname
ip link set lo up 2>/dev/null

while read -r m; do
    insmod "/lib/modules/$m" || echo "kumo tiny: insmod $m failed"
done </lib/modules/order

# --- disk: first virtio disk -> /data ---
setup_data() {
    # virtio_blk probes synchronously in insmod: no bound device means no disk.
    ls -d /sys/bus/virtio/drivers/virtio_blk/virtio* >/dev/null 2>&1 || return 0
    i=0
    while [ ! -b /dev/vda ] && [ $i -lt 40 ]; do sleep 0.05; i=$((i + 1)); done
    [ -b /dev/vda ] || { echo "kumo tiny: virtio disk without /dev/vda"; return 0; }
    if ! mount -t ext4 /dev/vda /data 2>/dev/null && ! mount -t ext2 /dev/vda /data 2>/dev/null; then
        # Format only a blank disk (first 64 KiB all zero): never clobber foreign data.
        if [ "$(dd if=/dev/vda bs=4096 count=16 2>/dev/null | tr -d '\000' | wc -c)" = 0 ]; then
            echo "kumo tiny: formatting /dev/vda (ext2)"
            mke2fs -F -q -m 0 -L kumo-data /dev/vda >/dev/null 2>&1 || mke2fs -F -m 0 -L kumo-data /dev/vda
            mount -t ext4 /dev/vda /data 2>/dev/null || mount -t ext2 /dev/vda /data ||
                echo "kumo tiny: cannot mount /dev/vda"
        else
            echo "kumo tiny: /dev/vda has an unknown filesystem; not mounted"
        fi
    fi
}
setup_data

# --- network: DHCP on every NIC in the background (a cluster frontend has two) ---
for nic in /sys/class/net/eth*; do
    [ -e "$nic" ] || continue
    nic=${nic##*/}
    ip link set "$nic" up
    udhcpc -i "$nic" -b -S -s /etc/udhcpc/default.script >/dev/null 2>&1 &
done

do_poweroff() {
    sync
    umount /data 2>/dev/null || mount -o remount,ro /data 2>/dev/null
    sync
    poweroff -f
}

# --- readiness channel: virtio-serial port named kumo.ready ---
ready_agent() {
    port=
    i=0
    while [ -z "$port" ] && [ $i -lt 400 ]; do
        for n in /sys/class/virtio-ports/*/name; do
            [ -r "$n" ] && [ "$(cat "$n" 2>/dev/null)" = kumo.ready ] || continue
            d=${n%/name}
            port=/dev/${d##*/}
        done
        [ -n "$port" ] && [ -c "$port" ] && break
        port=
        sleep 0.05
        i=$((i + 1))
    done
    [ -n "$port" ] || { echo "kumo tiny: no kumo.ready port"; return 0; }
    exec 3<>"$port"
    # Blocks until the host side is connected; that is fine (we are in the background).
    echo KUMO_READY >&3
    idle=0
    while :; do
        line=
        if IFS= read -r line <&3 || [ -n "$line" ]; then
            idle=0
            line=${line%$'\r'}
            case "$line" in
                ping) echo KUMO_READY >&3 ;;
                poweroff) echo KUMO_BYE >&3; do_poweroff ;;
            esac
        else
            # EOF: the host side is not connected; the port reads EOF at once until it
            # reconnects and nothing can block on that, so poll: every 0.1 s for the first
            # 5 s after a disconnect (agent restarts), then every 0.5 s.
            if [ $idle -lt 50 ]; then idle=$((idle + 1)); sleep 0.1; else sleep 0.5; fi
        fi
    done
}
ready_agent &

echo "kumo tiny: booted"

# --- console shell on ttyS0, respawned ---
while :; do
    setsid cttyhack sh -l
    sleep 1
done
EOF
chmod 755 "$ST/init"

# --- pack -------------------------------------------------------------------------------
mkdir -p "$OUTDIR"
(cd "$ST" && find . -mindepth 1 | LC_ALL=C sort | "$BUSYBOX" cpio -o -H newc 2>/dev/null) | gzip -9n >"$WORK/initrd.img"
[[ -s $WORK/initrd.img ]] || die "empty initramfs"

rm -f "$OUTDIR/image.json" "$OUTDIR/.build-stamp"
cp "$VMLINUZ" "$OUTDIR/vmlinuz.tmp" && mv -f "$OUTDIR/vmlinuz.tmp" "$OUTDIR/vmlinuz"
cp "$WORK/initrd.img" "$OUTDIR/initrd.img.tmp" && mv -f "$OUTDIR/initrd.img.tmp" "$OUTDIR/initrd.img"
cat >"$OUTDIR/image.json.tmp" <<EOF
{"name":"tiny","kernel":"vmlinuz","initrd":"initrd.img","cmdline":"$CMDLINE","readiness":"marker","kernelVersion":"$KVER","osType":"linux"}
EOF
echo "$SELF_HASH" >"$OUTDIR/.build-stamp"
mv -f "$OUTDIR/image.json.tmp" "$OUTDIR/image.json"
log "done: $OUTDIR ($(du -h "$OUTDIR/initrd.img" | cut -f1) initrd, kernel $KVER)"
