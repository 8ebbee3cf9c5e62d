"""nova-compute finds rescue-flow's drivers the only way Nova 27.5.1 looks:
``nova.virt.<compute_driver>`` (load_compute_driver has no other path)."""

from __future__ import annotations

from unittest import mock

import pytest
from nova.virt import driver as virt_driver
from os_win import utilsfactory
from oslo_utils import importutils

from rescue_flow_nova.driver import RescueFlowMixin


def _mock_get_class(class_type, *args, **kwargs):  # type: ignore[no-untyped-def]
    # compute-hyperv's own unit-test trick: os-win classes without WMI.
    class_info = utilsfactory.utils_map[class_type][0]
    return mock.Mock(autospec=importutils.import_class(class_info["path"]))


@pytest.mark.parametrize("compute_driver, base", [
    ("rescue_flow_nova.compute_hyperv.HyperVDriver",
     "compute_hyperv.nova.driver.HyperVDriver"),
    ("rescue_flow_nova.nova_hyperv.HyperVDriver", "nova.virt.hyperv.driver.HyperVDriver"),
])
def test_load_compute_driver_loads_the_mixed_hyperv_drivers(compute_driver: str,
                                                            base: str) -> None:
    # compute-hyperv's operations build RPC clients; no transport in a unit test.
    with mock.patch.object(utilsfactory, "_get_class", _mock_get_class), \
            mock.patch("nova.rpc.get_client"), mock.patch("nova.rpc.get_notifier"):
        loaded = virt_driver.load_compute_driver(mock.sentinel.virtapi, compute_driver)
    assert isinstance(loaded, RescueFlowMixin)
    assert isinstance(loaded, importutils.import_class(base))
    # The mixin comes first: its rescue is the one Nova calls.
    assert type(loaded).rescue is RescueFlowMixin.rescue
    assert type(loaded).unrescue is RescueFlowMixin.unrescue
