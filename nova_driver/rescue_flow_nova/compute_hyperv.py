"""compute-hyperv's driver with rescue and unrescue carried out by rescue-flow.

nova.conf: ``compute_driver = rescue_flow_nova.compute_hyperv.HyperVDriver``
(nova loads it as ``nova.virt.rescue_flow_nova.compute_hyperv``).
"""

from compute_hyperv.nova import driver as compute_hyperv_driver

from rescue_flow_nova.driver import RescueFlowMixin


class HyperVDriver(RescueFlowMixin, compute_hyperv_driver.HyperVDriver):
    """compute-hyperv's HyperVDriver; rescue and unrescue by the rescue-flow worker."""
