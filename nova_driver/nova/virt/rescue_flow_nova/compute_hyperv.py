"""``compute_driver = rescue_flow_nova.compute_hyperv.HyperVDriver``"""

from rescue_flow_nova.compute_hyperv import HyperVDriver

__all__ = ["HyperVDriver"]
