#!/usr/bin/env bash
# Captures two migration streams of one running test guest, some seconds apart: what a destination
# holds from the last migration of a VM, and what the next migration of that VM sends.
# After a precopy to a file QEMU leaves the VM paused (postmigrate); `cont` resumes it, so the second
# stream is the same guest after GAP_S seconds more of its workload.
# Usage: capture-qemu-stream-pair.sh FIRST SECOND [MEM_MIB] [GAP_S]
# Environment: DWCP_ACCEL=kvm|tcg (default tcg), DWCP_BOOT_TIMEOUT (default 180),
#              DWCP_GUEST_ARGS (see test/guest/README.md).
set -euo pipefail

die() { echo "capture-qemu-stream-pair: $*" >&2; exit 1; }
(($# >= 2 && $# <= 4)) || die "usage: $0 FIRST SECOND [MEM_MIB] [GAP_S]"
first=$(realpath -m "$1")
second=$(realpath -m "$2")
mem=${3:-256}
gap=${4:-10}
[[ $mem =~ ^[0-9]+$ ]] || die "MEM_MIB must be a number of MiB, got '$mem'"
[[ $gap =~ ^[0-9]+$ ]] || die "GAP_S must be a number of seconds, got '$gap'"
[[ $first != *\'* && $second != *\'* ]] || die "paths must not contain a single quote"
accel=${DWCP_ACCEL:-tcg}
[[ $accel =~ ^(kvm|tcg)$ ]] || die "DWCP_ACCEL must be kvm or tcg, got '$accel'"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
guest_src=$(cd "$here/../../test/guest" && pwd)
guest=$guest_src/out
if [[ ! -s $guest/vmlinux || ! -s $guest/initramfs.cpio.gz ]]; then
    "$guest_src/build.sh" "$guest"
fi

tmp=$(mktemp -d)
qemu_pid=
cleanup() {
    if [[ -n $qemu_pid ]] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill "$qemu_pid"
        wait "$qemu_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp" "$first.part" "$second.part"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

serial=$tmp/serial.log
qmp_sock=$tmp/qmp.sock
qmp() { python3 "$here/qmp.py" "$qmp_sock" "$@"; }

"qemu-system-x86_64" -accel "$accel" -m "$mem" -smp 1 -nodefaults -display none -no-reboot \
    -kernel "$guest/vmlinux" -initrd "$guest/initramfs.cpio.gz" \
    -append "console=ttyS0 quiet panic=-1${DWCP_GUEST_ARGS:+ $DWCP_GUEST_ARGS}" \
    -serial "file:$serial" -qmp "unix:$qmp_sock,server=on,wait=off" &
qemu_pid=$!

deadline=$((SECONDS + ${DWCP_BOOT_TIMEOUT:-180}))
until grep -q DWCP-READY "$serial" 2>/dev/null; do
    kill -0 "$qemu_pid" 2>/dev/null || die "QEMU exited before the guest printed DWCP-READY"
    ((SECONDS <= deadline)) || die "the guest did not print DWCP-READY in time"
    sleep 0.2
done
echo "guest ready: $(grep -m1 -a DWCP-READY "$serial" | tr -d '\r')"

mkdir -p "$(dirname "$first")" "$(dirname "$second")"
qmp migrate "exec:cat > '$first.part'" >/dev/null
qmp cont >/dev/null
sleep "$gap"
qmp migrate "exec:cat > '$second.part'" >/dev/null
qmp quit >/dev/null
wait "$qemu_pid" || true
qemu_pid=
mv "$first.part" "$first"
mv "$second.part" "$second"
echo "streams: $first $(stat -c %s "$first") bytes, $second $(stat -c %s "$second") bytes"
