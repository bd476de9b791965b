#!/usr/bin/env bash
# Install the Debian tools the tests need when they are missing: promtool and prometheus
# (package prometheus) for the metrics tests, kcat as an independent Kafka client.
set -euo pipefail

missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v prometheus >/dev/null || missing+=(prometheus)
command -v kcat >/dev/null || missing+=(kcat)
if ((${#missing[@]} == 0)); then
    exit 0
fi

packages=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [[ $(id -u) != 0 ]] && ! command -v sudo >/dev/null; then
    echo "tools.sh: please install: $packages (Debian packages)" >&2
    exit 1
fi
sudo_or_root=""
[[ $(id -u) == 0 ]] || sudo_or_root=sudo
echo "tools.sh: installing $packages"
$sudo_or_root apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo_or_root apt-get install -y -qq $packages >/dev/null
