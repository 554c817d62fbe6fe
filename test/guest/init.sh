#!/bin/sh
# /init of the DWCP test guest: holds a known mix of memory contents and keeps part of it dirty, so a
# live migration has realistic work to do and its correctness can be checked from the serial console.
# Console protocol (see README.md): DWCP-READY, DWCP-HEARTBEAT, DWCP-INTEGRITY, and with a disk
# DWCP-DISK-READY and DWCP-DISK.

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

fill_mib=64            # memory the workload holds, in MiB
dirty_kib_per_s=2048   # rewritten every second inside the dirty quarter, in 64 KiB steps
check_s=10             # seconds between integrity checks
disk_mib=0             # with a disk (/dev/vda): MiB of it the workload writes once and keeps checking
disk_dirty_kib_per_s=256 # ... and rewrites every second after that, in 64 KiB steps
read -r cmdline </proc/cmdline
for arg in $cmdline; do
    val=${arg#*=}
    case $val in '' | *[!0-9]*) continue ;; esac
    case $arg in
        dwcp.fill_mib=*) fill_mib=$val ;;
        dwcp.dirty_kib_per_s=*) dirty_kib_per_s=$val ;;
        dwcp.check_s=*) check_s=$val ;;
        dwcp.disk_mib=*) disk_mib=$val ;;
        dwcp.disk_dirty_kib_per_s=*) disk_dirty_kib_per_s=$val ;;
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

# The disk workload, on /dev/vda in 64 KiB blocks: block 0 a header naming the fixed region's md5,
# blocks 1..F random data written once (on the disk's first boot) and checked ever after, block F+1
# a log of the writer's sequence number, then a dirty region the writer keeps rewriting. Reads and
# writes are O_DIRECT, so the checks see the device and not the guest's page cache (which would
# travel with RAM in a live migration).
disk=/dev/vda
disk_fixed=$((disk_mib * 16))
disk_log=$((disk_fixed + 1))
disk_dirty=$((disk_fixed / 4 + 1))
disk_fixed_md5() { dd if=$disk bs=64k skip=1 count=$disk_fixed iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1; }
disk_header() { dd if=$disk bs=64k count=1 iflag=direct 2>/dev/null | head -c 80 | tr -d '\0'; }
disk_write_block() { # $1: block, $2: text at its start (the rest zeros)
    { printf '%s\n' "$2"; head -c 65536 /dev/zero; } | head -c 65536 |
        dd of=$disk bs=64k seek="$1" count=1 oflag=direct conv=notrunc,fsync 2>/dev/null
}
if [ "$disk_mib" -gt 0 ]; then
    while read -r module; do insmod /lib/modules/"$module".ko 2>/dev/null; done </lib/modules/load-order
    tries=0
    while [ ! -b $disk ] && [ $tries -lt 50 ]; do sleep 0.1; tries=$((tries + 1)); done
fi
if [ "$disk_mib" -gt 0 ] && [ -b $disk ]; then
    header=$(disk_header)
    case $header in
        "DWCP-DISK v1 fixed_mib=$disk_mib md5="*)
            disk_reference=${header##*md5=}
            disk_reference=${disk_reference%% *}
            now=$(disk_fixed_md5)
            state=existing
            [ "$now" = "$disk_reference" ] || state="existing-CHANGED md5=$now"
            ;;
        *)
            dd if=/dev/urandom of=$disk bs=64k seek=1 count=$disk_fixed oflag=direct conv=notrunc,fsync 2>/dev/null
            disk_reference=$(disk_fixed_md5)
            disk_write_block 0 "DWCP-DISK v1 fixed_mib=$disk_mib md5=$disk_reference"
            state=new
            ;;
    esac
    log_seq=$(dd if=$disk bs=64k skip=$disk_log count=1 iflag=direct 2>/dev/null | head -c 40 | tr -dc '0-9')
    echo "DWCP-DISK-READY $state fixed_mib=$disk_mib md5=$disk_reference log_seq=${log_seq:-0}"
    mkdir -p /run
    echo "${log_seq:-0}" >/run/disk-seq
    (
        # Each second: rewrite the next blocks of the dirty region, then log the sequence number,
        # and only once that write is on the device record it as the one the checker may expect.
        seq=${log_seq:-0}
        blocks=$((disk_dirty_kib_per_s / 64))
        [ $blocks -ge 1 ] || blocks=1
        [ $blocks -le $disk_dirty ] || blocks=$disk_dirty
        off=0
        while :; do
            [ $((off + blocks)) -le $disk_dirty ] || off=0
            dd if=/dev/urandom of=$disk bs=64k seek=$((disk_log + 1 + off)) count=$blocks oflag=direct conv=notrunc,fsync 2>/dev/null
            off=$((off + blocks))
            seq=$((seq + 1))
            disk_write_block $disk_log "$seq" && echo "$seq" >/run/disk-seq
            sleep 1
        done
    ) &
    (
        # The device must hold the fixed region as written, and a log at least as new as the last
        # write the writer saw complete: a write acknowledged to the guest was not lost.
        while sleep "$check_s"; do
            expected=$(cat /run/disk-seq)
            sum=$(disk_fixed_md5)
            logged=$(dd if=$disk bs=64k skip=$disk_log count=1 iflag=direct 2>/dev/null | head -c 40 | tr -dc '0-9')
            if [ "$sum" = "$disk_reference" ] && [ "${logged:-0}" -ge "$expected" ]; then
                echo "DWCP-DISK ok md5=$sum log_seq=$logged"
            else
                echo "DWCP-DISK FAIL md5=$sum expected=$disk_reference log_seq=${logged:-0} expected_seq=$expected"
            fi
        done
    ) &
elif [ "$disk_mib" -gt 0 ]; then
    echo "DWCP-DISK-READY none (no $disk)"
fi

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
