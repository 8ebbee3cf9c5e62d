"""Fixtures for functional tests: real TaskFlow engines on a simulated host."""

from __future__ import annotations

import pytest
from simsite import GEN1_IMAGE, GEN1_UUID, GEN2_IMAGE, GEN2_UUID, make_site


@pytest.fixture
def site(tmp_path):
    return make_site(str(tmp_path))


@pytest.fixture
def seeded(site):
    """A host with a Gen1 instance (2 NICs, config drive) and a Gen2 one (1 NIC)."""
    site.sim.add_vm("instance-00000001", GEN1_UUID, GEN1_IMAGE, nics=2, config_drive=True)
    site.sim.add_vm("instance-00000002", GEN2_UUID, GEN2_IMAGE, nics=1)
    site.sim.clear_calls()
    return site


@pytest.fixture
def config_file(seeded, tmp_path):
    """A config file for the ``seeded`` host, for tests that run the CLI."""
    conf = seeded.conf
    path = tmp_path / "rescue-flow.conf"
    path.write_text(
        f"[DEFAULT]\nhost = hv-test\nstate_path = {conf.state_path}\n"
        f"[hyperv]\ndriver = simulated\ninstances_path = {conf.hyperv.instances_path}\n"
        "soft_shutdown_timeout = 1\npower_state_poll_interval = 0.01\n"
        "[retry]\ninitial_backoff = 0\nmax_backoff = 0\n"
        f"[simulated]\nstate_file = {conf.simulated.state_file}\n")
    return str(path)
