#!/usr/bin/env bash
# Creates or removes the two network namespaces the WAN emulator forwards between.
#
#   netns.sh up   [NAME_A NAME_B]   make the namespaces (default dwcp-a dwcp-b), loopback up
#   netns.sh down [NAME_A NAME_B]   stop the emulator and anything running inside, remove them
#   netns.sh status [NAME_A NAME_B]
#
# The emulator (dwcp-wanem) creates and addresses the TUN devices itself and they vanish with it,
# so "up" only makes the namespaces (loopback up, TCP buffer caps raised to 32 MB inside).
# Both commands are idempotent. Needs root.
set -euo pipefail

readonly STATE_DIR=/run/dwcp-wanem

usage() {
  echo "usage: $0 up|down|status [NAME_A NAME_B]" >&2
  exit 2
}

[[ $# -ge 1 && $# -le 3 && $# -ne 2 ]] || usage
cmd=$1
ns_a=${2:-dwcp-a}
ns_b=${3:-dwcp-b}
[[ $ns_a != "$ns_b" ]] || { echo "$0: the two namespace names must differ" >&2; exit 2; }

ns_exists() { [[ -e /var/run/netns/$1 ]]; }

# PIDs of emulators serving this pair: the one run.sh recorded, plus any started by hand whose
# command line names either namespace (or relies on the default names). Matched exactly on the
# program name and arguments, never on a loose pattern.
emulator_pids() {
  { recorded_pid; scanned_pids; } | sort -u
}

recorded_pid() {
  local pidfile=$STATE_DIR/$ns_a+$ns_b.pid pid
  if [[ -f $pidfile ]]; then
    pid=$(<"$pidfile")
    [[ -r /proc/$pid/comm && $(<"/proc/$pid/comm") == dwcp-wanem ]] && echo "$pid"
  fi
  return 0
}

scanned_pids() {
  for dir in /proc/[0-9]*; do
    [[ -r $dir/comm && $(<"$dir/comm") == dwcp-wanem ]] || continue
    local -a argv
    mapfile -d '' -t argv <"$dir/cmdline" 2>/dev/null || continue
    # A zombie has an empty command line and holds nothing.
    ((${#argv[@]} > 0)) || continue
    local a=dwcp-a b=dwcp-b i relay=0
    for ((i = 1; i < ${#argv[@]}; i++)); do
      case ${argv[i]} in
        --ns-a) a=${argv[i + 1]:-} ;;
        --ns-a=*) a=${argv[i]#--ns-a=} ;;
        --ns-b) b=${argv[i + 1]:-} ;;
        --ns-b=*) b=${argv[i]#--ns-b=} ;;
        relay | scenarios) relay=1 ;;
      esac
    done
    ((relay == 0)) && [[ $a == "$ns_a" || $b == "$ns_b" || $a == "$ns_b" || $b == "$ns_a" ]] && echo "${dir#/proc/}"
  done
  return 0
}

# TERM, then KILL after 5 s: the emulator prints its final stats line on TERM.
stop_pids() {
  local pid
  [[ $# -gt 0 ]] || return 0
  kill -TERM "$@" 2>/dev/null || true
  for _ in $(seq 50); do
    local alive=0
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || return 0
    sleep 0.1
  done
  kill -KILL "$@" 2>/dev/null || true
}

case $cmd in
  up)
    [[ $EUID -eq 0 ]] || { echo "$0: must run as root (network namespaces)" >&2; exit 1; }
    for ns in "$ns_a" "$ns_b"; do
      ns_exists "$ns" || ip netns add "$ns"
      ip -n "$ns" link set lo up
      # Linux caps TCP send-buffer autotuning at 4 MB, less than BBR keeps in flight at 1 Gbit/s
      # and 20 ms RTT (regional then tops out near 680 Mbit/s); let the emulated path, not a host
      # default, set the limit. These sysctls belong to the namespace: the host is untouched.
      ip netns exec "$ns" sysctl -q -w net.ipv4.tcp_rmem="4096 131072 33554432" net.ipv4.tcp_wmem="4096 16384 33554432"
    done
    echo "namespaces up: $ns_a $ns_b (start dwcp-wanem --ns-a $ns_a --ns-b $ns_b to connect them)"
    ;;
  down)
    [[ $EUID -eq 0 ]] || { echo "$0: must run as root (network namespaces)" >&2; exit 1; }
    mapfile -t pids < <(emulator_pids)
    stop_pids "${pids[@]}"
    for ns in "$ns_a" "$ns_b"; do
      if ns_exists "$ns"; then
        # Servers left inside (iperf3 -s, ...) would keep the namespace alive after "ip netns del".
        mapfile -t inside < <(ip netns pids "$ns")
        stop_pids "${inside[@]}"
        ip netns del "$ns"
      fi
    done
    rm -f "$STATE_DIR/$ns_a+$ns_b.pid"
    echo "namespaces down: $ns_a $ns_b"
    ;;
  status)
    for ns in "$ns_a" "$ns_b"; do
      if ns_exists "$ns"; then
        echo "$ns: present"
        ip -n "$ns" -brief addr 2>/dev/null | sed 's/^/  /'
      else
        echo "$ns: absent"
      fi
    done
    mapfile -t pids < <(emulator_pids)
    echo "emulator pids: ${pids[*]:-none}"
    ;;
  *) usage ;;
esac
