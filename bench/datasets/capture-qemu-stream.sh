#!/usr/bin/env bash
# Captures a real QEMU live-migration stream from the DWCP test guest, as a benchmark dataset.
# Usage: capture-qemu-stream.sh OUTFILE [MEM_MIB]
# Environment: DWCP_ACCEL=kvm|tcg (default: probe), DWCP_BOOT_TIMEOUT=seconds (default 180),
#              DWCP_GUEST_ARGS='dwcp.fill_mib=64 dwcp.dirty_kib_per_s=2048' (see test/guest/README.md).
set -euo pipefail

die() { echo "capture-qemu-stream: $*" >&2; exit 1; }
(($# >= 1 && $# <= 2)) || die "usage: $0 OUTFILE [MEM_MIB]"
out=$(realpath -m "$1")
mem=${2:-256}
[[ $mem =~ ^[0-9]+$ ]] || die "MEM_MIB must be a number of MiB, got '$mem'"
# QEMU runs the exec: URI through /bin/sh, so the path is single-quoted there.
[[ $out != *\'* ]] || die "OUTFILE must not contain a single quote"
[[ ${DWCP_ACCEL:-tcg} =~ ^(kvm|tcg)$ ]] || die "DWCP_ACCEL must be kvm or tcg, got '$DWCP_ACCEL'"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
guest_src=$(cd "$here/../../test/guest" && pwd)
guest=$guest_src/out
if [[ ! -s $guest/vmlinux || ! -s $guest/initramfs.cpio.gz || $guest_src/init.sh -nt $guest/initramfs.cpio.gz ]]; then
    "$guest_src/build.sh" "$guest"
fi

tmp=$(mktemp -d)
part=$out.part
qemu_pid=
cleanup() {
    if [[ -n $qemu_pid ]] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill "$qemu_pid"
        wait "$qemu_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp" "$part"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# /dev/kvm can work for real-mode code while guests hang as soon as the kernel leaves real mode (seen
# under nested virtualization), so boot the guest kernel itself under KVM and wait for its first line.
kvm_works() {
    [[ -r /dev/kvm && -w /dev/kvm ]] || return 1
    qemu-system-x86_64 -accel kvm -m 128 -nodefaults -display none -no-reboot -kernel "$guest/vmlinux" \
        -append 'earlyprintk=ttyS0 panic=-1' -serial "file:$tmp/kvm-probe.log" >/dev/null 2>&1 &
    qemu_pid=$!
    for _ in {1..25}; do
        grep -q 'Linux version' "$tmp/kvm-probe.log" 2>/dev/null && break
        sleep 0.2
    done
    kill -9 "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
    qemu_pid=
    grep -q 'Linux version' "$tmp/kvm-probe.log"
}
accel=${DWCP_ACCEL:-}
if [[ -z $accel ]]; then
    accel=tcg
    if kvm_works; then accel=kvm; fi
fi
echo "accelerator: $accel"

serial=$tmp/serial.log
qmp_sock=$tmp/qmp.sock
qmp() { python3 "$here/qmp.py" "$qmp_sock" "$@"; }

# A stream loads only into a QEMU with the same machine, so the destination must reuse these options.
vm=(qemu-system-x86_64 -accel "$accel" -m "$mem" -smp 1 -nodefaults -display none -no-reboot
    -kernel "$guest/vmlinux" -initrd "$guest/initramfs.cpio.gz"
    -append "console=ttyS0 quiet panic=-1${DWCP_GUEST_ARGS:+ $DWCP_GUEST_ARGS}")
start=$EPOCHREALTIME
"${vm[@]}" -serial "file:$serial" -qmp "unix:$qmp_sock,server=on,wait=off" &
qemu_pid=$!

timeout_s=${DWCP_BOOT_TIMEOUT:-180}
deadline=$((SECONDS + timeout_s))
until grep -q DWCP-READY "$serial" 2>/dev/null; do
    problem=
    kill -0 "$qemu_pid" 2>/dev/null || problem="QEMU exited before the guest printed DWCP-READY"
    ((SECONDS <= deadline)) || problem="the guest did not print DWCP-READY within ${timeout_s}s"
    if [[ -n $problem ]]; then
        echo "--- last lines of the guest console:" >&2
        tail -n 20 "$serial" >&2 2>/dev/null || true
        die "$problem"
    fi
    sleep 0.2
done
printf 'guest ready after %.1fs: %s\n' "$(awk -v t0="$start" -v t1="$EPOCHREALTIME" 'BEGIN { print t1 - t0 }')" "$(grep -m1 -a DWCP-READY "$serial" | tr -d '\r')"

mkdir -p "$(dirname "$out")"
qmp migrate "exec:cat > '$part'" >"$tmp/migration.json"
python3 - "$tmp/migration.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
ram = m.get("ram", {})
print(f"migration completed: total {m.get('total-time')} ms, downtime {m.get('downtime')} ms, "
      f"{ram.get('dirty-sync-count')} dirty syncs, {ram.get('normal')} normal pages, "
      f"{ram.get('duplicate')} zero pages, {ram.get('transferred')} bytes transferred")
PY
qmp quit >/dev/null
wait "$qemu_pid" || true
qemu_pid=
mv "$part" "$out"
echo "stream: $out, $(stat -c %s "$out") bytes ($(du -h --apparent-size "$out" | cut -f1))"
echo "replay: $(printf '%q ' "${vm[@]}")-serial stdio -incoming $(printf '%q' "exec:cat '$out'")"
