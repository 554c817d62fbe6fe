#!/usr/bin/env bash
# Installs Schemathesis (the OpenAPI fuzzer test/api-fuzz runs) into a venv under the repo's ignored
# .build/, pinned, and prints the path of its `schemathesis` command. Quick and silent when it is
# already there. Debian's python3 may lack venv (python3-venv, which brings ensurepip): as root it is
# installed with apt-get; otherwise the script exits 3 with the reason, and the test skips.
# Usage: install.sh [VENV]   (default: .build/schemathesis-venv). Needs python3 >= 3.10 and PyPI.
set -euo pipefail

version=4.32.5
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
venv=$(realpath -m "${1:-$root/.build/schemathesis-venv}")
stamp=$venv/.schemathesis-$version

if [[ -f $stamp && -x $venv/bin/schemathesis ]]; then
    echo "$venv/bin/schemathesis"
    exit 0
fi

cannot() {
    echo "api-fuzz install: $*" >&2
    exit 3
}

mkdir -p "$(dirname "$venv")"
# The test's setup and .ci/run may both call this; one installs, the other waits and finds it done.
exec 9>"$venv.lock"
flock 9
if [[ -f $stamp && -x $venv/bin/schemathesis ]]; then
    echo "$venv/bin/schemathesis"
    exit 0
fi

python=${PYTHON:-python3}
command -v "$python" >/dev/null || python=/usr/bin/python3
[[ -x $(command -v "$python" || true) ]] || cannot "no python3 on PATH"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
    cannot "$("$python" --version 2>&1) is too old for Schemathesis $version (needs 3.10+)"

# Debian splits ensurepip (which `python3 -m venv` needs for pip) into python3-venv.
if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
    if [[ $(id -u) -ne 0 ]]; then
        cannot "$python cannot create a venv (no ensurepip); as root: apt-get install python3-venv"
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt_opts=(-q -o APT::Sandbox::User=root)
    apt-get "${apt_opts[@]}" update >&2
    apt-get "${apt_opts[@]}" install -y --no-install-recommends python3-venv >&2
    # The package fixes Debian's python3, which may not be the first python3 on PATH.
    python=/usr/bin/python3
    "$python" -c 'import ensurepip, venv' || cannot "python3-venv is installed but $python still has no ensurepip"
fi

rm -rf "$venv" "$stamp"
"$python" -m venv "$venv" >&2
"$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q "schemathesis==$version" >&2
"$venv/bin/schemathesis" --version >&2
touch "$stamp"
echo "$venv/bin/schemathesis"
