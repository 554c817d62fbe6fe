#!/usr/bin/env bash
# Builds the DWCP test guest: a stock Debian kernel plus a busybox initramfs whose /init is init.sh.
# Outputs in OUTDIR: vmlinuz, vmlinux (the same kernel, uncompressed), initramfs.cpio.gz, kernel-version.
# Usage: build.sh [OUTDIR]   (default: test/guest/out). Needs root for apt-get and mknod.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=$(realpath -m "${1:-$here/out}")
export DEBIAN_FRONTEND=noninteractive
# apt-get download as root otherwise warns that _apt cannot write into our private temp dir.
apt_opts=(-q -o APT::Sandbox::User=root)

apt_updated=false
apt_update() {
    $apt_updated || apt-get "${apt_opts[@]}" update
    apt_updated=true
}

missing=()
for pkg in busybox-static cpio qemu-system-x86 xz-utils; do
    [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) == *' ok installed' ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
    apt_update
    apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"

# The kernel is only unpacked, never installed, so the host's /boot and bootloader stay untouched.
if [[ ! -s $out/vmlinuz ]]; then
    apt_update
    (cd "$tmp" && apt-get "${apt_opts[@]}" download linux-image-amd64)
    kpkg=$(dpkg-deb -f "$tmp"/linux-image-amd64_*.deb Depends | grep -o 'linux-image-[^ ,]*-amd64')
    (cd "$tmp" && apt-get "${apt_opts[@]}" download "$kpkg")
    dpkg -x "$tmp/$kpkg"_*.deb "$tmp/kernel"
    cp "$tmp"/kernel/boot/vmlinuz-* "$out/vmlinuz.tmp"
    mv "$out/vmlinuz.tmp" "$out/vmlinuz"
    echo "${kpkg#linux-image-}" >"$out/kernel-version"
fi

# Under TCG, decompressing the bzImage takes about 5 s of a 13 s boot to DWCP-READY. QEMU can boot the
# uncompressed ELF inside it directly, through the PVH entry point that Debian kernels have.
if [[ ! -s $out/vmlinux ]]; then
    offset=$(LC_ALL=C grep -m1 -aobP '\xfd7zXZ\x00' "$out/vmlinuz" | cut -d: -f1)
    [[ -n $offset ]] || { echo "build.sh: $out/vmlinuz holds no xz-compressed kernel" >&2; exit 1; }
    # xz stops reading at the end of its stream, so tail may die of SIGPIPE; that is not an error.
    xz -dc --single-stream < <(tail -c +$((${offset%%$'\n'*} + 1)) "$out/vmlinuz") >"$out/vmlinux.tmp"
    mv "$out/vmlinux.tmp" "$out/vmlinux"
fi

# The Debian kernel has virtio as modules. The disk workload needs virtio-blk on virtio-pci, so the
# initramfs carries those modules and what they depend on (each module's `depends=`), deepest first.
if [[ ! -s $out/modules/load-order ]]; then
    kver=$(cat "$out/kernel-version")
    apt_update
    (cd "$tmp" && apt-get "${apt_opts[@]}" download "linux-image-$kver")
    dpkg -x "$tmp/linux-image-$kver"_*.deb "$tmp/kmod"
    mkdir -p "$out/modules.tmp"
    add_module() { # $1: a module name; writes it and its dependencies to modules.tmp, deps first
        local name=$1 file dep
        [[ -s $out/modules.tmp/$name.ko ]] && return
        file=$(find "$tmp/kmod/lib/modules/$kver" -name "$name.ko*" -print -quit)
        [[ -n $file ]] || { echo "build.sh: no module $name in linux-image-$kver" >&2; exit 1; }
        case $file in
            *.xz) xz -dc "$file" >"$tmp/$name.ko" ;;
            *.zst) zstd -qdc "$file" >"$tmp/$name.ko" ;;
            *) cp "$file" "$tmp/$name.ko" ;;
        esac
        for dep in $(tr '\0' '\n' <"$tmp/$name.ko" | sed -n 's/^depends=//p' | tr ',' ' '); do
            add_module "${dep//-/_}"
        done
        mv "$tmp/$name.ko" "$out/modules.tmp/$name.ko"
        echo "$name" >>"$out/modules.tmp/load-order"
    }
    add_module virtio_pci
    add_module virtio_blk
    rm -rf "$out/modules"
    mv "$out/modules.tmp" "$out/modules"
fi

# The initramfs is cheap, so it is always rebuilt and picks up every change to init.sh.
root=$tmp/root
mkdir -p "$root"/{bin,dev,proc,sys,mnt}
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
    [[ -e $root/bin/$applet ]] || ln -s busybox "$root/bin/$applet"
done
install -m 0755 "$here/init.sh" "$root/init"
mkdir -p "$root/lib/modules"
cp "$out"/modules/* "$root/lib/modules/"
# The kernel opens /dev/console before /init can mount devtmpfs; without it init has no stdout.
mknod -m 0600 "$root/dev/console" c 5 1
mknod -m 0666 "$root/dev/null" c 1 3
(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --owner=0:0 --quiet) |
    gzip -9n >"$out/initramfs.cpio.gz.tmp"
mv "$out/initramfs.cpio.gz.tmp" "$out/initramfs.cpio.gz"

echo "guest in $out (kernel $(cat "$out/kernel-version")):"
du -h --apparent-size "$out/vmlinuz" "$out/vmlinux" "$out/initramfs.cpio.gz"
echo "modules: $(tr '\n' ' ' <"$out/modules/load-order")"
