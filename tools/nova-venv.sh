#!/usr/bin/env bash
# Build .venv-nova: a nova-compute-like environment of OpenStack 2023.1 for the
# functional tests of the compute driver (nova_driver/, `make test-nova`).
#
#   tools/nova-venv.sh VENV_DIR            everything (venv, Nova and friends, driver)
#   tools/nova-venv.sh VENV_DIR --deps     the venv with Nova and friends, no driver
#   tools/nova-venv.sh VENV_DIR --driver   only (re-)install the driver
# Each ends with `pip check`.
#
# Everything comes from PyPI under the 2023.1 upper constraints kept in the
# repository (nova_driver/upper-constraints-2023.1.txt, a copy of
# openstack/requirements stable/2023.1): nova 27.5.1 with what its own
# functional tests need, compute-hyperv 16.0.0, os-win 5.9.0, pytest. Then the
# driver distribution goes in as nova-compute would get it: `pip install
# --no-deps` of a built copy (not editable: it puts a shim package into
# nova/virt/), and `pip check` must be clean. The Makefile calls this only when
# an input changed (stamp files VENV_DIR/.installed-nova for the environment,
# VENV_DIR/.installed for the driver).
#
# It never touches the main .venv: the worker's pins (oslo.messaging,
# taskflow...) conflict with Nova's, so the two environments stay apart.
set -euo pipefail

cd "$(dirname "$0")/.."
venv="${1:-.venv-nova}"
deps=true driver=true
case "${2:-}" in
    "") ;;
    --deps) driver=false ;;
    --driver) deps=false ;;
    *) echo "usage: $0 VENV_DIR [--deps|--driver]" >&2; exit 2 ;;
esac
python="${PYTHON:-python3}"
constraints="nova_driver/upper-constraints-2023.1.txt"
started=$SECONDS

log() { echo "nova-venv: $*" >&2; }

[[ -f "$constraints" ]] || { log "missing $constraints"; exit 1; }
if [[ ! -x "$venv/bin/python" ]]; then
    log "creating $venv with $("$python" --version 2>&1)"
    "$python" -m venv "$venv"
fi
# Keep the environment out of git without touching the repository's .gitignore.
echo '*' >"$venv/.gitignore"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)

# nova's functional test base (nova.tests.functional) imports placement's
# fixtures, oslotest, wsgi-intercept, barbicanclient and the testing-cabal
# libraries; none of them is in nova's install_requires.
if $deps; then
    log "installing nova 27.5.1 and its functional-test needs under $constraints"
    "${pip[@]}" install -c "$constraints" \
        nova==27.5.1 \
        openstack-placement==9.0.0 \
        compute-hyperv==16.0.0 \
        os-win==5.9.0 \
        oslotest fixtures testtools testscenarios testresources wsgi-intercept \
        python-barbicanclient \
        pytest
fi

if ! $driver; then
    :
elif [[ -f nova_driver/setup.cfg || -f nova_driver/pyproject.toml || -f nova_driver/setup.py ]]; then
    log "installing the driver distribution (nova_driver/, --no-deps, not editable)"
    # setuptools builds in the source folder and would pack whatever an
    # earlier build left in build/ (a module since deleted, for one).
    rm -rf nova_driver/build nova_driver/*.egg-info
    "${pip[@]}" install --no-deps --force-reinstall ./nova_driver
else
    log "nova_driver/ has no packaging metadata yet: driver not installed"
fi

log "pip check"
"$venv/bin/python" -m pip --disable-pip-version-check check
log "done in $((SECONDS - started))s"
