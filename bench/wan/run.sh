#!/usr/bin/env bash
# Builds the WAN emulator, brings the namespaces up and starts the emulator in the background.
#
#   run.sh SCENARIO [EMULATOR_FLAGS...] [-- CMD...]
#
#   run.sh internet                        leave it running; prints how to use and stop it
#   run.sh internet --loss 0 -- ip netns exec dwcp-a ping -c 5 10.77.0.2
#                                          run CMD, then stop the emulator and print its stats
#
# SCENARIO is a built-in name (datacenter, regional, internet, bad-internet) or "none".
# Environment: NS_A, NS_B (namespace names, default dwcp-a dwcp-b); WANEM_MODE=relay forces the
# loopback TCP relay, which is also used when namespaces cannot be made (not root, no netns);
# RELAY_LISTEN / RELAY_CONNECT (default 127.0.0.1:15201 -> 127.0.0.1:5201) for that mode.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly STATE_DIR=/run/dwcp-wanem
ns_a=${NS_A:-dwcp-a}
ns_b=${NS_B:-dwcp-b}

[[ $# -ge 1 ]] || { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
scenario=$1
shift
emu_flags=()
while [[ $# -gt 0 && $1 != -- ]]; do
  emu_flags+=("$1")
  shift
done
[[ ${1:-} == -- ]] && shift
cmd=("$@")
[[ $scenario == none ]] || emu_flags=(--scenario "$scenario" "${emu_flags[@]}")

echo "== building dwcp-wanem (release)" >&2
cargo build --release --quiet --manifest-path "$here/emulator/Cargo.toml"
bin=$here/emulator/target/release/dwcp-wanem

mode=${WANEM_MODE:-netns}
if [[ $mode == netns ]] && ! "$here/netns.sh" up "$ns_a" "$ns_b" >&2; then
  echo "== network namespaces unavailable: falling back to the loopback TCP relay" >&2
  mode=relay
fi

mkdir -p "$STATE_DIR" 2>/dev/null || true
[[ -w $STATE_DIR ]] || STATE_DIR_FALLBACK=$(mktemp -d)
state=${STATE_DIR_FALLBACK:-$STATE_DIR}
# netns.sh finds the emulator of a namespace pair by this pid file.
tag=$([[ $mode == netns ]] && echo "$ns_a+$ns_b" || echo relay)
log=$state/$tag.log
stats=$state/$tag.stats.json

if [[ $mode == netns ]]; then
  # Only one emulator per namespace pair: the TUN names would collide.
  "$here/netns.sh" status "$ns_a" "$ns_b" | grep -q '^emulator pids: none$' || {
    echo "== an emulator is already running for $ns_a/$ns_b; stop it with: $here/netns.sh down $ns_a $ns_b" >&2
    exit 1
  }
  args=(--ns-a "$ns_a" --ns-b "$ns_b" --stats-file "$stats" "${emu_flags[@]}")
else
  listen=${RELAY_LISTEN:-127.0.0.1:15201}
  connect=${RELAY_CONNECT:-127.0.0.1:5201}
  args=(relay --listen "$listen" --connect "$connect" --stats-file "$stats" "${emu_flags[@]}")
fi

echo "== starting: $bin ${args[*]}" >&2
"$bin" "${args[@]}" >"$log" 2>&1 &
pid=$!
echo "$pid" >"$state/$tag.pid"

# The emulator prints its "start" JSON line once the path is ready.
for _ in $(seq 100); do
  grep -q '"event":"start"' "$log" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "== dwcp-wanem failed to start" >&2; exit 1; }
  sleep 0.1
done
grep -v '^{' "$log" >&2 || true

if [[ ${#cmd[@]} -eq 0 ]]; then
  cat >&2 <<EOF
== dwcp-wanem running (pid $pid, mode $mode); log $log, live stats $stats
EOF
  if [[ $mode == netns ]]; then
    cat >&2 <<EOF
   ip netns exec $ns_b iperf3 -s -D
   ip netns exec $ns_a ping -c 20 10.77.0.2
   ip netns exec $ns_a iperf3 -c 10.77.0.2 -t 10
   stop: $here/netns.sh down $ns_a $ns_b
EOF
  else
    cat >&2 <<EOF
   server on $connect, clients connect to $listen
   stop: kill $pid
EOF
  fi
  exit 0
fi

status=0
"${cmd[@]}" || status=$?
kill -TERM "$pid"
wait "$pid" 2>/dev/null || true
echo "== emulator final stats:" >&2
grep '"event":"final"' "$log" || true
rm -f "$state/$tag.pid"
exit "$status"
