"""``compute_driver = rescue_flow_nova.nova_hyperv.HyperVDriver``"""

from rescue_flow_nova.nova_hyperv import HyperVDriver

__all__ = ["HyperVDriver"]
