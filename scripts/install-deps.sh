#!/usr/bin/env bash
# Installs the Debian packages Kumo needs and checks for the .NET 10 SDK.
# Idempotent: installs only what dpkg reports missing, and runs apt-get update only then.
#   scripts/install-deps.sh          what ./kumo up needs
#   scripts/install-deps.sh --test   plus what ./kumo test needs
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# What kumod, the agent and the guest image build need at run time.
RUNTIME_PACKAGES=(
    qemu-system-x86 qemu-utils busybox-static socat sqlite3 ca-certificates curl procps iproute2
    jq          # ./kumo reads the REST API's JSON
    openssl     # kumod hashes guest passwords (openssl passwd -6) for cloud-init seeds
    gdb         # kumo vm debug --attach runs it against a VM's gdb stub (the debug tests too)
    # Containers: the agent runs `podman system service` with runc (crun refuses hybrid cgroups); CNI plugins give
    # podman's bridge network and -p publishing; base images are built from busybox-static and with mmdebstrap.
    podman runc conmon containernetworking-plugins iptables mmdebstrap uidmap
    # kumo image build-base debian (scripts/build-debian-image.sh, run by kumod): mmdebstrap above builds the rootfs;
    # an ext4 root made with mke2fs -d, a FAT boot partition with SYSLINUX and an MBR, all without mounting anything.
    e2fsprogs dosfstools mtools syslinux syslinux-common fdisk
    cloud-image-utils   # the agent writes cloud-init NoCloud seeds (cloud-localds) for --ssh-key/--password-file
    # Tenant networks: a bridge and taps per network (iproute2), dnsmasq per network for DHCP/DNS (the -base package:
    # no system-wide dnsmasq service), nftables for isolation and NAT.
    dnsmasq-base nftables
    # The libvirt driver (kumo-agent --libvirt): libvirtd with its QEMU driver, and virsh, which the agent calls
    # (no maintained .NET binding of libvirt exists on NuGet).
    libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
)

# What the test suites need on top. Add a package here when a test starts needing it.
TEST_PACKAGES=(
    python3     # scripts/run-tests.sh reads the TRX result files
    slapd ldap-utils  # the LDAP tests start a real OpenLDAP slapd; slappasswd hashes its passwords
    openssh-client  # the Debian image test makes an SSH key (ssh-keygen) for the guest's user
    prometheus  # promtool check metrics parses GET /metrics (the monitoring tests)
    docker-registry  # the registry pull test starts its own CNCF distribution registry on a loopback port
)

# Debconf answers given before installing. The LDAP tests run their own slapd; Debian's slapd would
# otherwise create a default directory and start it on port 389.
DEBCONF_PRESEED=(
    "slapd slapd/no_configuration boolean true"
)

usage() { sed -n '2,5s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

is_installed() {
    dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed$'
}

# Runs a command as root, through sudo when we are not root.
as_root() {
    if ((EUID == 0)); then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo -n "$@" || kumo_die "need root to run '$*' (sudo -n refused); run as root"
    else
        kumo_die "need root to run '$*'; run as root"
    fi
}

install_packages() {
    local pkg missing=()
    for pkg in "$@"; do
        is_installed "$pkg" || missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    kumo_log "installing ${missing[*]}"
    printf '%s\n' "${DEBCONF_PRESEED[@]}" | as_root debconf-set-selections \
        || kumo_die "debconf-set-selections failed"
    as_root apt-get update -q || kumo_die "apt-get update failed"
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null \
        || kumo_die "apt-get install ${missing[*]} failed"
}

# A root libvirtd refuses to start its QEMU driver without the libvirt-qemu user and group, which Debian creates in
# libvirt-daemon-system; that package also brings services and a default network Kumo does not want.
ensure_libvirt_qemu_user() {
    getent group libvirt-qemu >/dev/null || as_root groupadd --system libvirt-qemu \
        || kumo_die "groupadd libvirt-qemu failed"
    getent passwd libvirt-qemu >/dev/null || as_root useradd --system --no-create-home --home-dir /var/lib/libvirt \
        --shell /usr/sbin/nologin -g libvirt-qemu libvirt-qemu || kumo_die "useradd libvirt-qemu failed"
}

main() {
    local packages=("${RUNTIME_PACKAGES[@]}")
    case "${1:-}" in
        "") ;;
        --test) packages+=("${TEST_PACKAGES[@]}") ;;
        -h|--help) usage; return 0 ;;
        *) usage >&2; kumo_die "unknown option: $1" ;;
    esac
    install_packages "${packages[@]}"
    ensure_libvirt_qemu_user
    kumo_require_dotnet
}

main "$@"
