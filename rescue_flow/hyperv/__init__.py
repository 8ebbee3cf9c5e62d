"""The Hyper-V boundary: build a :class:`HyperVHost` for the configured driver."""

from __future__ import annotations

from typing import Any

from rescue_flow.hyperv.calls import OsWinCaller, RetryPolicy
from rescue_flow.hyperv.host import HyperVHost


def utils_for(conf: Any) -> dict[str, Any]:
    """os-win's utility objects, real or simulated, as ``[hyperv] driver`` says."""
    if conf.hyperv.driver == "simulated":
        from rescue_flow.simhost import SimulatedHost

        sim = SimulatedHost(conf.simulated.state_file)
        return {"vmutils": sim.vmutils, "vhdutils": sim.vhdutils,
                "pathutils": sim.pathutils, "netutils": sim.netutils}
    from rescue_flow.hyperv.oswin import real_utils

    return real_utils()


def get_host(conf: Any, utils: dict[str, Any] | None = None,
             policy: RetryPolicy | None = None) -> HyperVHost:
    """The configured host; ``utils`` and ``policy`` let tests pass their own."""
    return HyperVHost(
        utils if utils is not None else utils_for(conf),
        OsWinCaller(policy or RetryPolicy.from_conf(conf)),
        instances_path=conf.hyperv.instances_path,
        vswitch_names=conf.hyperv.vswitch_names,
        soft_shutdown_timeout=conf.hyperv.soft_shutdown_timeout,
        poll_interval=conf.hyperv.power_state_poll_interval,
    )


__all__ = ["HyperVHost", "get_host", "utils_for"]
