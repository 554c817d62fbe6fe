#!/bin/sh
# /init of the DWCP test guest: holds a known mix of memory contents and keeps part of it dirty, so a
# live migration has realistic work to do and its correctness can be checked from the serial console.
# Console protocol (see README.md): DWCP-READY, DWCP-HEARTBEAT, DWCP-INTEGRITY.

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

fill_mib=64            # memory the workload holds, in MiB
dirty_kib_per_s=2048   # rewritten every second inside the dirty quarter, in 64 KiB steps
check_s=10             # seconds between integrity checks
read -r cmdline </proc/cmdline
for arg in $cmdline; do
    val=${arg#*=}
    case $val in '' | *[!0-9]*) continue ;; esac
    case $arg in
        dwcp.fill_mib=*) fill_mib=$val ;;
        dwcp.dirty_kib_per_s=*) dirty_kib_per_s=$val ;;
        dwcp.check_s=*) check_s=$val ;;
    esac
done
[ "$fill_mib" -ge 4 ] || fill_mib=4
[ "$check_s" -ge 1 ] || check_s=1

# tmpfs pages are ordinary guest RAM, so what we write here is what the migration stream carries.
mkdir -p /mnt/fill
mount -t tmpfs -o size=$((fill_mib + 8))m tmpfs /mnt/fill
fixed=/mnt/fill/fixed
dirty=/mnt/fill/dirty.bin
mkdir -p $fixed
# Sizes are counted in 64 KiB blocks: busybox reads /dev/urandom far faster in big blocks under TCG.
quarter_blocks=$((fill_mib * 4))

echo "DWCP-FILL start fill_mib=$fill_mib dirty_kib_per_s=$dirty_kib_per_s"
# Quarters: program text (copies of busybox and this script: compressible and repetitive, like page
# cache), random bytes (incompressible, like encrypted or compressed data), zeros (like freed pages),
# and a dirty quarter that keeps changing. Only the first three are covered by the integrity check.
copies=$((quarter_blocks * 65536 / $(wc -c </bin/busybox) + 1))
i=0
while [ $i -lt $copies ]; do cat /bin/busybox /init; i=$((i + 1)); done >$fixed/text.bin
truncate -s $((quarter_blocks * 65536)) $fixed/text.bin
dd if=/dev/urandom of=$fixed/random.bin bs=64k count=$quarter_blocks 2>/dev/null
dd if=/dev/zero of=$fixed/zero.bin bs=64k count=$quarter_blocks 2>/dev/null
dd if=/dev/urandom of=$dirty bs=64k count=$quarter_blocks 2>/dev/null

fixed_md5() { md5sum $fixed/text.bin $fixed/random.bin $fixed/zero.bin | md5sum | cut -d' ' -f1; }
reference=$(fixed_md5)
echo "DWCP-READY fill_mib=$fill_mib md5=$reference"

blocks_per_s=$((dirty_kib_per_s / 64))
[ $blocks_per_s -le $quarter_blocks ] || blocks_per_s=$quarter_blocks
(
    # Walks through the dirty quarter so successive precopy rounds see different pages.
    off=0
    while [ $blocks_per_s -gt 0 ]; do
        [ $((off + blocks_per_s)) -le $quarter_blocks ] || off=0
        dd if=/dev/urandom of=$dirty bs=64k count=$blocks_per_s seek=$off conv=notrunc 2>/dev/null
        off=$((off + blocks_per_s))
        sleep 1
    done
) &
(
    while sleep "$check_s"; do
        sum=$(fixed_md5)
        if [ "$sum" = "$reference" ]; then
            echo "DWCP-INTEGRITY ok md5=$sum"
        else
            echo "DWCP-INTEGRITY FAIL md5=$sum expected=$reference"
        fi
    done
) &

# The heartbeat runs in init itself: if init ever exited the kernel would panic, which QEMU
# (-no-reboot, panic=-1) turns into an exit that the harness notices.
seq=0
while :; do
    read -r up _ </proc/uptime
    echo "DWCP-HEARTBEAT seq=$seq uptime=$up"
    seq=$((seq + 1))
    sleep 1
done
