#!/usr/bin/env bash
# The system tools the tests and benches need, in one place: `npm test` and .ci/run start with it.
# As root it installs what is missing (apt-get update first, then apt-get; rustup for clippy and
# rustfmt) and fails if something cannot be had. As another user it installs nothing: it names
# what is missing, and the tests that need it skip, each saying why (test/tools/with.sh, test/tools.ts).
# bench:wan calls it for iperf3.
#
#   install.sh [TOOL...]            TOOL is a command (see PACKAGE below); default: all `npm test` uses
#   install.sh --missing TOOL...    installs nothing; prints "TOOL<tab>how to install it" per missing one
#
# Without arguments it also sets up test/api-fuzz's Schemathesis venv (its own installer).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

# command -> Debian package that provides it
declare -A PACKAGE=(
  [qemu-system-x86_64]=qemu-system-x86 # the QEMU tests (test/migration, test/demo, ...)
  [qemu-img]=qemu-utils                # VM disks: qcow2 overlays (libs/hypervisor, libs/host)
  [busybox]=busybox-static             # test/guest/build.sh: the guest's userland
  [cpio]=cpio                          # test/guest/build.sh: the initramfs
  [xz]=xz-utils                        # test/guest/build.sh: unpacks the kernel
  [ip]=iproute2                        # test/wan and the benches: network namespaces
  [ss]=iproute2                        # bench:wan: waits for iperf3's listener
  [go]=golang-go                       # test:go and test/linearizability: the checker
  [python3]=python3                    # test/api-fuzz: Schemathesis
  [pgrep]=procps                       # test/migration/cluster-migration: finds QEMU processes
  [sysctl]=procps                      # bench/wan/netns.sh: TCP buffer caps inside the namespaces
  [openssl]=openssl                    # libs/transport's TLS spec: makes its test certificates
  [iperf3]=iperf3                      # bench:wan's TCP baselines (not needed by npm test)
  [zstd]=zstd                          # bench:hde: zstd -3 --patch-from baselines for stream pairs
)
# Cargo subcommands, from rustup components (or Debian's packages when cargo is not rustup's).
declare -A COMPONENT=([cargo-clippy]=clippy [cargo-fmt]=rustfmt)
declare -A DEBIAN_COMPONENT=([cargo-clippy]=rust-clippy [cargo-fmt]=rustfmt)

# QEMU 7.2 (Debian 12's own) loses guest writes in live migration under TCG: docs/migration.md,
# docs/benchmarks/tcg-integrity-*.md. 10.0 (Debian 13, and bookworm-backports) does not. Older
# ones count as missing, so the QEMU tests install a good one as root and skip otherwise.
QEMU_MIN_MAJOR=10

qemu_major() {
  qemu-system-x86_64 --version 2>/dev/null | sed -n 's/^QEMU emulator version \([0-9]*\)\..*/\1/p'
}

# Debian 12 has QEMU 10 only in bookworm-backports.
on_bookworm() {
  [[ -r /etc/os-release ]] && grep -qx 'VERSION_CODENAME=bookworm' /etc/os-release
}

default_tools=(qemu-system-x86_64 qemu-img busybox cpio xz ip ss pgrep sysctl openssl go python3 cargo-clippy cargo-fmt)
list_only=false
if [[ ${1:-} == --missing ]]; then
  list_only=true
  shift
fi
tools=("$@")
((${#tools[@]})) || tools=("${default_tools[@]}")

has() {
  case $1 in
    cargo-clippy) cargo clippy --version >/dev/null 2>&1 ;;
    cargo-fmt) cargo fmt --version >/dev/null 2>&1 ;;
    qemu-system-x86_64) local v; v=$(qemu_major); [[ -n $v ]] && ((v >= QEMU_MIN_MAJOR)) ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

how() {
  if [[ $1 == qemu-system-x86_64 ]] && on_bookworm; then
    echo "apt-get install -t bookworm-backports ${PACKAGE[$1]} (QEMU >= $QEMU_MIN_MAJOR; found: $(qemu_major || true))"
  elif [[ $1 == qemu-img ]] && on_bookworm; then
    echo "apt-get install -t bookworm-backports ${PACKAGE[$1]}"
  elif [[ -z ${COMPONENT[$1]:-} ]]; then
    echo "apt-get install ${PACKAGE[$1]}"
  elif command -v rustup >/dev/null; then
    echo "rustup component add ${COMPONENT[$1]}"
  else
    echo "apt-get install ${DEBIAN_COMPONENT[$1]}"
  fi
}

missing=()
for t in "${tools[@]}"; do
  [[ -n ${PACKAGE[$t]:-} || -n ${COMPONENT[$t]:-} ]] || { echo "install.sh: unknown tool $t" >&2; exit 2; }
  has "$t" || missing+=("$t")
done

if $list_only; then
  for t in "${missing[@]}"; do printf '%s\t%s\n' "$t" "$(how "$t")"; done
  exit 0
elif ((${#missing[@]})) && [[ $(id -u) -ne 0 ]]; then
  for t in "${missing[@]}"; do
    echo "tools: $t is missing (as root this runs: $(how "$t")); what needs it will skip" >&2
  done
elif ((${#missing[@]})); then
  apt=() comps=()
  for t in "${missing[@]}"; do
    if [[ -n ${COMPONENT[$t]:-} ]] && command -v rustup >/dev/null; then
      comps+=("${COMPONENT[$t]}")
    elif [[ -n ${COMPONENT[$t]:-} ]]; then
      apt+=("${DEBIAN_COMPONENT[$t]}")
    else
      apt+=("${PACKAGE[$t]}")
    fi
  done
  if ((${#comps[@]})); then
    echo "tools: rustup component add ${comps[*]}" >&2
    rustup component add "${comps[@]}" >&2
  fi
  if ((${#apt[@]})); then
    mapfile -t apt < <(printf '%s\n' "${apt[@]}" | sort -u)
    echo "tools: apt-get install ${apt[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # QEMU and its qemu-img come from the same release: on Debian 12, bookworm-backports.
    backports=()
    if on_bookworm; then
      for pkg in "${PACKAGE[qemu-system-x86_64]}" "${PACKAGE[qemu-img]}"; do
        printf '%s\n' "${apt[@]}" | grep -qx "$pkg" && backports+=("$pkg")
      done
    fi
    if ((${#backports[@]})); then
      echo 'deb http://deb.debian.org/debian bookworm-backports main' >/etc/apt/sources.list.d/dwcp-bookworm-backports.list
      mapfile -t apt < <(printf '%s\n' "${apt[@]}" | grep -vxF -f <(printf '%s\n' "${backports[@]}"))
    fi
    apt-get -q -o APT::Sandbox::User=root update >&2
    if ((${#apt[@]})); then
      apt-get -q -o APT::Sandbox::User=root install -y --no-install-recommends "${apt[@]}" >&2
    fi
    if ((${#backports[@]})); then
      echo "tools: apt-get install -t bookworm-backports ${backports[*]}" >&2
      apt-get -q -o APT::Sandbox::User=root install -y --no-install-recommends -t bookworm-backports "${backports[@]}" >&2
    fi
  fi
  still=()
  for t in "${missing[@]}"; do has "$t" || still+=("$t"); done
  if ((${#still[@]})); then
    echo "tools: still missing after installing: ${still[*]}" >&2
    exit 1
  fi
fi

if (($# == 0)); then
  # Exit 3: this machine cannot have Schemathesis (install.sh said why); the api-fuzz test skips.
  # As root, install.sh itself brings python3-venv.
  status=0
  "$root/test/api-fuzz/install.sh" >/dev/null || status=$?
  if ((status == 3)) && [[ $(id -u) -eq 0 ]]; then
    exit 1
  elif ((status != 0 && status != 3)); then
    exit "$status"
  fi
fi
