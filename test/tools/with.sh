#!/usr/bin/env bash
# Runs a command that needs system tools, or says why it cannot:
#
#   with.sh TOOL... -- COMMAND [ARG...]
#
# When a TOOL is missing: as a non-root user it prints "skipped: ..." and exits 0 (npm test goes
# on); as root it fails, since test/tools/install.sh should have installed it.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

tools=()
while (($#)) && [[ $1 != -- ]]; do
  tools+=("$1")
  shift
done
[[ ${1:-} == -- && $# -ge 2 ]] || { echo "usage: with.sh TOOL... -- COMMAND [ARG...]" >&2; exit 2; }
shift

# The first missing tool and how to install it, as install.sh knows them.
missing=$("$here/install.sh" --missing "${tools[@]}")
IFS=$'\t' read -r tool how <<<"$missing" || true
if [[ -n ${tool:-} ]]; then
  if [[ $(id -u) -eq 0 ]]; then
    echo "failed: $tool is not installed, and as root test/tools/install.sh should have installed it ($how)" >&2
    exit 1
  fi
  # npm names the script it runs; say which step skipped.
  echo "${npm_lifecycle_event:+$npm_lifecycle_event }skipped: $tool is not installed (run as root or $how)"
  exit 0
fi
exec "$@"
