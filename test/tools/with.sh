#!/usr/bin/env bash
# Runs a command that needs system tools, or says why it cannot:
#
#   with.sh TOOL... -- COMMAND [ARG...]
#
# When a TOOL is missing: as a non-root user it prints "skipped: ..." and exits 0 (npm test goes
# on); as root it fails, since test/tools/install.sh should have installed it.
set -euo pipefail

declare -A HOW=(
  [go]="apt-get install golang-go"
  [cargo-clippy]="rustup component add clippy"
  [cargo-fmt]="rustup component add rustfmt"
)

tools=()
while (($#)) && [[ $1 != -- ]]; do
  tools+=("$1")
  shift
done
[[ ${1:-} == -- && $# -ge 2 ]] || { echo "usage: with.sh TOOL... -- COMMAND [ARG...]" >&2; exit 2; }
shift

has() {
  case $1 in
    cargo-clippy) cargo clippy --version >/dev/null 2>&1 ;;
    cargo-fmt) cargo fmt --version >/dev/null 2>&1 ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

for t in "${tools[@]}"; do
  has "$t" && continue
  how=${HOW[$t]:-apt-get install $t}
  if [[ $(id -u) -eq 0 ]]; then
    echo "failed: $t is not installed, and as root test/tools/install.sh should have installed it ($how)" >&2
    exit 1
  fi
  # npm names the script it runs; say which step skipped.
  echo "${npm_lifecycle_event:+$npm_lifecycle_event }skipped: $t is not installed (run as root or $how)"
  exit 0
done
exec "$@"
