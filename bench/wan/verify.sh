#!/usr/bin/env bash
# Measures the emulator for real: ping RTT and loss, iperf3 TCP throughput (bbr and cubic) per
# scenario, and the emulator's own ceiling (UDP at 1 Gbit/s through an unimpaired path) with its
# CPU use. Prints a summary; the numbers in README.md come from this script.
#
#   verify.sh [SECONDS_PER_IPERF]     (default 10; needs root, iperf3 and ping)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
secs=${1:-10}
ns_a=dwcp-a
ns_b=dwcp-b
addr_b=10.77.0.2
work=$(mktemp -d)
bin=$here/emulator/target/release/dwcp-wanem
emu_pid=

for tool in iperf3 ping ip; do
  command -v "$tool" >/dev/null || { echo "$0: $tool is required (apt-get install iperf3 iputils-ping iproute2)" >&2; exit 1; }
done

cleanup() {
  stop_emulator
  "$here/netns.sh" down "$ns_a" "$ns_b" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# start_emulator NAME FLAGS...: runs the emulator in the background and waits for its start line.
start_emulator() {
  local name=$1
  shift
  "$bin" --ns-a "$ns_a" --ns-b "$ns_b" "$@" >"$work/$name.jsonl" 2>"$work/$name.log" &
  emu_pid=$!
  for _ in $(seq 100); do
    grep -q '"event":"start"' "$work/$name.jsonl" 2>/dev/null && return 0
    kill -0 "$emu_pid" 2>/dev/null || break
    sleep 0.1
  done
  cat "$work/$name.log" >&2
  echo "$0: emulator did not start" >&2
  exit 1
}

stop_emulator() {
  [[ -n $emu_pid ]] || return 0
  kill -TERM "$emu_pid" 2>/dev/null || true
  wait "$emu_pid" 2>/dev/null || true
  emu_pid=
}

# CPU seconds (user + system, all threads) the emulator has used so far.
cpu_seconds() {
  local -a f
  read -r -a f <"/proc/$emu_pid/stat"
  # Fields 14 and 15 (utime, stime) in clock ticks; the name field has no spaces here.
  echo "scale=3; (${f[13]} + ${f[14]}) / $(getconf CLK_TCK)" | bc
}

# iperf3_run ARGS...: one test against a fresh one-shot server (a long-lived iperf3 server keeps
# the previous client's -C setting); prints the sender's and receiver's summary lines.
iperf3_run() {
  ip netns exec "$ns_b" iperf3 -s -1 >/dev/null 2>&1 &
  local server=$!
  for _ in $(seq 50); do
    ip netns exec "$ns_b" ss -ltn 2>/dev/null | grep -q ':5201 ' && break
    sleep 0.1
  done
  # The sender's line shows what was offered (it matters for UDP), the receiver's what arrived.
  ip netns exec "$ns_a" iperf3 -c "$addr_b" -t "$secs" -f m "$@" 2>&1 |
    awk '/(sender|receiver)$/ { sub(/^\[ *[0-9]+\] +/, ""); gsub(/ +/, " "); out = out (out ? " | " : "") $0 } END { print out }'
  wait "$server" 2>/dev/null || true
}

ping_summary() {
  ip netns exec "$ns_a" ping "$@" "$addr_b" | grep -E 'packet loss|rtt' | tr '\n' ' '
  echo
}

# tun_drops NS: packets the TUN's ring dropped because the emulator did not read them in time.
tun_drops() { ip -n "$1" -s link show wan0 | awk '/TX:/ { getline; print $4 }'; }

final_stats() {
  grep '"event":"final"' "$work/$1.jsonl" || echo "(no final stats line)"
}

command -v bc >/dev/null || { echo "$0: bc is required (apt-get install bc)" >&2; exit 1; }
echo "== build" >&2
cargo build --release --quiet --manifest-path "$here/emulator/Cargo.toml"
"$here/netns.sh" down "$ns_a" "$ns_b" >/dev/null
"$here/netns.sh" up "$ns_a" "$ns_b" >/dev/null
echo "kernel $(uname -r), $(nproc) cores, default congestion control $(ip netns exec $ns_a sysctl -n net.ipv4.tcp_congestion_control)"

for scenario in ${SCENARIOS:-internet datacenter regional bad-internet}; do
  echo
  echo "== scenario $scenario"
  start_emulator "$scenario" --scenario "$scenario" --seed 1
  echo "ping -c 20:            $(ping_summary -c 20 -i 0.2 -q)"
  echo "ping -c 2000 -i 0.005: $(ping_summary -c 2000 -i 0.005 -q)"
  echo "iperf3 TCP bbr:        $(iperf3_run)"
  echo "iperf3 TCP cubic:      $(iperf3_run -C cubic)"
  echo "iperf3 TCP bbr -R:     $(iperf3_run -R)"
  stop_emulator
  echo "emulator: $(final_stats "$scenario")"
done

echo
echo "== ceiling: --delay-ms 0 --loss 0 --rate-mbit 100000 (MTU 1500)"
start_emulator ceiling --delay-ms 0 --loss 0 --rate-mbit 100000 --seed 1
echo "ping -c 20:            $(ping_summary -c 20 -i 0.05 -q)"
for test in "UDP -b 1G:-u -b 1G -w 4M" "UDP -b 2G:-u -b 2G -w 4M" "TCP bbr:" "TCP cubic:-C cubic"; do
  label=${test%%:*}
  read -r -a iperf_args <<<"${test#*:}"
  drops_before=$(tun_drops "$ns_a")
  ip netns exec "$ns_b" nstat -n >/dev/null
  cpu_before=$(cpu_seconds)
  start=$(date +%s.%N)
  result=$(iperf3_run "${iperf_args[@]}")
  cpu=$(echo "scale=1; 100 * ($(cpu_seconds) - $cpu_before) / ($(date +%s.%N) - $start)" | bc)
  rcvbuf=$(ip netns exec "$ns_b" nstat 2>/dev/null | awk '$1 == "UdpRcvbufErrors" { print $2 }')
  printf '%-22s %s\n%22s emulator CPU %s%% of one core; TUN ring drops %s; receiver socket overflows %s\n' \
    "iperf3 $label:" "$result" "" "$cpu" "$(($(tun_drops "$ns_a") - drops_before))" "${rcvbuf:-0}"
done
stop_emulator
echo "emulator: $(final_stats ceiling)"

echo
echo "== large MTU: --delay-ms 0 --loss 0 --rate-mbit 0 --mtu 65535"
start_emulator mtu64k --delay-ms 0 --loss 0 --rate-mbit 0 --mtu 65535 --seed 1
cpu_before=$(cpu_seconds)
start=$(date +%s.%N)
result=$(iperf3_run)
cpu=$(echo "scale=1; 100 * ($(cpu_seconds) - $cpu_before) / ($(date +%s.%N) - $start)" | bc)
echo "iperf3 TCP bbr:        $result   emulator CPU ${cpu}% of one core"
stop_emulator
