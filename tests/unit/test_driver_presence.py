"""A Nova driver's announcement: what is accepted, and for how long it holds."""

from __future__ import annotations

from typing import Any

import pytest

from rescue_flow import exceptions
from rescue_flow.service.driver_presence import MAX_VALID_FOR, DriverHello

HOST = "hv-01"


def hello(**payload: Any) -> dict[str, Any]:
    body = {"host": HOST, "driver": "rescue_flow_nova.compute_hyperv.HyperVDriver",
            "protocol": 1, "valid_for": 3600}
    body.update(payload)
    return {"event_type": "rescue_flow.driver.hello", "payload": body}


def test_a_well_formed_announcement_parses() -> None:
    assert DriverHello.from_message(hello(), HOST) == DriverHello(
        HOST, "rescue_flow_nova.compute_hyperv.HyperVDriver", 1, 3600)


def test_an_announcement_longer_than_a_week_holds_for_a_week() -> None:
    assert DriverHello.from_message(hello(valid_for=10**9), HOST).valid_for == MAX_VALID_FOR


@pytest.mark.parametrize("message, says", [
    (hello(host="hv-02"), "is for host 'hv-02'"),
    (hello(host="bad host"), "host must be a host name"),
    (hello(driver=""), "has no driver name"),
    (hello(protocol=0), "protocol must be a positive whole number"),
    (hello(valid_for=True), "valid_for must be a positive whole number"),
    (hello(valid_for="3600"), "valid_for must be a positive whole number"),
    ({"event_type": "rescue_flow.driver.hello", "payload": []}, "payload must be an object"),
    ({"event_type": "rescue_flow.request", "payload": {}}, "not a driver announcement"),
])
def test_a_malformed_announcement_is_refused_with_the_reason(message: dict[str, Any],
                                                             says: str) -> None:
    with pytest.raises(exceptions.InvalidRequest, match=says):
        DriverHello.from_message(message, HOST)
