#!/usr/bin/env bash
# `make demo`: show rescue-flow working, with no setup.
#
# Runs `rescue-flow demo` once that command exists. Until then, seeds a
# simulated Hyper-V host in a temp folder (one Gen1 instance on a VHD image,
# one Gen2 instance on a VHDX image) through `rescue-flow sim ...`, and shows
# it. Expects rescue-flow on PATH (the Makefile puts .venv/bin first).
set -euo pipefail

rf=(rescue-flow)
if "${rf[@]}" demo --help >/dev/null 2>&1; then
    exec "${rf[@]}" demo "$@"
fi
if ! "${rf[@]}" sim --help >/dev/null 2>&1; then
    echo "demo: neither 'rescue-flow demo' nor 'rescue-flow sim' is available in" \
         "this version" >&2
    exit 1
fi

dir="$(mktemp -d "${TMPDIR:-/tmp}/rescue-flow-demo.XXXXXX")"
conf="$dir/rescue-flow.conf"
mkdir -p "$dir/state"
# [hyperv] instances_path keeps its default, C:\OpenStack\Instances: the
# simulated host speaks Windows paths, as a real Hyper-V host does.
cat >"$conf" <<CONF
[DEFAULT]
state_path = $dir/state

[hyperv]
driver = simulated

[simulated]
state_file = \$state_path/simulated-host.sqlite
CONF

sim() {
    echo "+ rescue-flow sim $*"
    "${rf[@]}" --config-file "$conf" sim "$@"
}

GEN1_IMAGE=5d2a5c1e-0c1b-4f4e-9d3a-6a1f2b3c4d01
GEN2_IMAGE=8e7f6a5b-4c3d-4e2f-8a1b-0c9d8e7f6a02

sim init
sim add-image "$GEN1_IMAGE" --generation 1 --format vhd
sim add-image "$GEN2_IMAGE" --generation 2 --format vhdx
sim add-vm instance-00000001 --uuid 3f1c9a52-7b3e-4d8a-9e21-5a6b7c8d9e01 \
    --image "$GEN1_IMAGE" --generation 1 --nics 1
sim add-vm instance-00000002 --uuid 9b2d4e6f-1a3c-4b5d-8e7f-0a1b2c3d4e02 \
    --image "$GEN2_IMAGE" --generation 2 --nics 2
sim show

echo
echo "The simulated host lives in $dir; look again with:"
echo "  .venv/bin/rescue-flow --config-file $conf sim show"
