#!/usr/bin/env bash
# Installs rolegrid's build and test dependencies from Debian's packages
# (Debian 12), then configures and builds the project in build/.
# Idempotent: prints nothing when everything is installed and built.
#
#   tools/setup.sh            from any directory
#
# Installing needs root (apt-get); a machine that has every package needs no
# root and no network.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=(
  g++ meson ninja-build pkg-config
  libboost-dev libboost-serialization-dev libfmt-dev libspdlog-dev libcli11-dev nlohmann-json3-dev libsodium-dev
  doctest-dev
  iproute2 util-linux python3 procps nftables
  spin
  haproxy
  iputils-arping
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: installing packages needs root: run tools/setup.sh as root, or: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -f build/build.ninja ]]; then
  echo "setup: configuring build/"
  if ! out=$(meson setup build 2>&1); then
    printf '%s\n' "$out" >&2
    exit 1
  fi
fi

# Build only when something changed, so a no-op run stays silent.
if ! plan=$(ninja -C build -n 2>&1); then
  printf '%s\n' "$plan" >&2
  exit 1
fi
if [[ "$plan" != *"no work to do"* ]]; then
  echo "setup: building"
  ninja -C build
fi
