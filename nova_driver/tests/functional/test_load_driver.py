"""nova-compute can load the ready-made drivers by the documented names.

Nova 27.5.1's ``nova.virt.driver.load_compute_driver`` imports
``nova.virt.<compute_driver>`` and nothing else, so ``compute_driver =
rescue_flow_nova.compute_hyperv.HyperVDriver`` works only through the shim
package the distribution installs into ``nova/virt/``. This loads both
drivers as nova-compute does, from the installed distribution (not the
source tree). Hyper-V itself is not there: os-win's utilities are stand-ins
(``check_min_windows_version`` says yes), as the drivers build them in their
constructors.
"""

from __future__ import annotations

import os
import sys
from unittest import mock

from nova import test
from nova.virt import driver as virt_driver
from os_win import utilsfactory


def _stand_in(class_type: str, *args: object, **kwargs: object) -> mock.MagicMock:
    utils = mock.MagicMock(name=f"os-win {class_type}")
    utils.check_min_windows_version.return_value = True
    return utils


class LoadComputeDriverTest(test.NoDBTestCase):

    def _clear_attrs(self) -> None:  # see harness.RescueFlowNovaTestCase
        pass

    def _load(self, name: str) -> object:
        with mock.patch.object(utilsfactory, "_get_class", _stand_in):
            return virt_driver.load_compute_driver(mock.Mock(name="virtapi"), name)

    def test_nova_loads_compute_hyperv_with_rescue_flow_by_its_documented_name(self) -> None:
        from compute_hyperv.nova.driver import HyperVDriver as ComputeHyperV

        from rescue_flow_nova.driver import RescueFlowMixin

        driver = self._load("rescue_flow_nova.compute_hyperv.HyperVDriver")

        assert isinstance(driver, RescueFlowMixin)
        assert isinstance(driver, ComputeHyperV)
        assert isinstance(driver, virt_driver.ComputeDriver)
        assert type(driver).rescue is RescueFlowMixin.rescue
        self._assert_installed("nova.virt.rescue_flow_nova.compute_hyperv")

    def test_nova_loads_its_own_hyperv_driver_with_rescue_flow(self) -> None:
        from nova.virt.hyperv.driver import HyperVDriver as NovaHyperV

        from rescue_flow_nova.driver import RescueFlowMixin

        driver = self._load("rescue_flow_nova.nova_hyperv.HyperVDriver")

        assert isinstance(driver, RescueFlowMixin)
        assert isinstance(driver, NovaHyperV)
        assert type(driver).unrescue is RescueFlowMixin.unrescue
        self._assert_installed("nova.virt.rescue_flow_nova.nova_hyperv")

    @staticmethod
    def _assert_installed(module_name: str) -> None:
        # The shim nova-compute finds is the one pip installed into the
        # environment, not the repository's source.
        path = os.path.realpath(sys.modules[module_name].__file__)
        assert path.startswith(os.path.realpath(sys.prefix) + os.sep), path
