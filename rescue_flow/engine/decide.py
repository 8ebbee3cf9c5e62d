"""Decide: the state an instance is in, as the state machine knows it.

The quarantine list comes first (a quarantined instance is not even read:
an operator must look at it first, and a crash's resume stops there too),
then the host itself (:mod:`.observe`). While another process holds the
instance's lock, the state is the one of the flow it runs, read from the
history.
"""

from __future__ import annotations

from typing import Any

from rescue_flow import requests
from rescue_flow.engine import states
from rescue_flow.engine.quarantine import MemoryQuarantine, QuarantineList
from rescue_flow.hyperv.host import HyperVHost
from rescue_flow.persistence import schema
from rescue_flow.persistence.history import History
from rescue_flow.tasks import observe


def quarantined(quarantine: QuarantineList | MemoryQuarantine, instance_uuid: str
                ) -> tuple[states.InstanceMachine, dict[str, Any]] | None:
    """The machine of a quarantined instance and its quarantine entry; None
    if it is not quarantined."""
    entry = quarantine.get(instance_uuid)
    if entry is None:
        return None
    return states.InstanceMachine(states.QUARANTINED), entry


def read_host(host: HyperVHost, instance_uuid: str) -> tuple[states.InstanceMachine,
                                                             observe.Observation]:
    """The instance's machine in the state the host shows, and what it showed."""
    seen = observe.observe(host, instance_uuid)
    return states.InstanceMachine(seen.state), seen


def in_flight_state(history: History | None, request: requests.Request) -> str | None:
    """The state of the flow another request runs on this instance, if the
    history shows one (a flow that has started, not merely been accepted)."""
    if history is None:
        return None
    for record in history.recent(request.instance_uuid, limit=5):
        if record.state != schema.RUNNING or \
                record.request.request_id == request.request_id:
            continue
        last = history.last_flow(record)
        if last is not None:
            return states.FLOW_STATES.get(last[1].meta.get("kind"))
    return None
