"""Nova's in-tree Hyper-V driver with rescue and unrescue carried out by rescue-flow.

nova.conf: ``compute_driver = rescue_flow_nova.nova_hyperv.HyperVDriver``
(nova loads it as ``nova.virt.rescue_flow_nova.nova_hyperv``).
"""

from nova.virt.hyperv import driver as nova_hyperv_driver

from rescue_flow_nova.driver import RescueFlowMixin


class HyperVDriver(RescueFlowMixin, nova_hyperv_driver.HyperVDriver):
    """Nova's HyperVDriver; rescue and unrescue by the rescue-flow worker."""
