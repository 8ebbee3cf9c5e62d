"""rescue-flow's own messages: what they carry and where they go.

- A request for host H: event type ``rescue_flow.request`` (INFO) on
  ``<[worker] requests_topic>.H``, so it waits in H's durable queue
  ``<requests_topic>.H.info``. Payload: ``Request.to_dict()`` plus
  ``progress`` (true when a client waits for the steps).
- A result: ``rescue_flow.<action>.end`` (INFO) or ``.error`` (ERROR) on
  ``[worker] results_topic``, payload ``Result.to_dict()``; bad input gets an
  error of the same shape (``rescue_flow.request.error`` when even the action
  is unknown).
- A step: ``rescue_flow.step`` (INFO) on the results topic, only for requests
  sent with ``progress``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import cachetools

from rescue_flow import exceptions, requests
from rescue_flow.engine.progress import StepEvent
from rescue_flow.messaging.bus import (
    HANDLED,
    REQUEST_EVENT,
    REQUEUE,
    STEP_EVENT,
    Publisher,
    check_host_name,
)
from rescue_flow.outcome import Outcome, Result

LOG = logging.getLogger(__name__)


def request_topic(requests_topic: str, host: str) -> str:
    return f"{requests_topic}.{check_host_name(host)}"


class Router:
    """Puts requests in their host's queue."""

    def __init__(self, publisher: Publisher, requests_topic: str) -> None:
        self.publisher = publisher
        self.requests_topic = requests_topic

    def send(self, request: requests.Request, progress: bool = False,
             retry: int | None = None) -> None:
        if request.host is None:
            raise exceptions.InvalidRequest("a request needs the instance's host")
        payload = dict(request.to_dict(), progress=progress)
        self.publisher.send(request_topic(self.requests_topic, request.host),
                            REQUEST_EVENT, payload, retry=retry)


def request_from_message(message: Mapping[str, Any], host: str) -> tuple[requests.Request, bool]:
    """The request in a message taken from ``host``'s queue, and its progress flag.

    Raises InvalidRequest for anything else.
    """
    if message.get("event_type") != REQUEST_EVENT:
        raise exceptions.InvalidRequest(
            f"not a request: event type {message.get('event_type')!r}")
    payload = message.get("payload")
    if not isinstance(payload, dict):
        raise exceptions.InvalidRequest(
            f"request payload must be an object, got {type(payload).__name__}")
    try:
        request = requests.Request.from_dict(payload)
    except TypeError as exc:  # a field of the wrong type deep in Request
        raise exceptions.InvalidRequest(f"malformed request: {exc}") from None
    if request.host is not None and request.host != host:
        raise exceptions.InvalidRequest(
            f"request is for host {request.host!r}, this worker serves {host!r}")
    if isinstance(payload.get("image_generation"), bool):
        raise exceptions.InvalidRequest("image generation must be 1 or 2, got a boolean")
    progress = payload.get("progress", False)
    if not isinstance(progress, bool):
        raise exceptions.InvalidRequest(f"progress must be true or false, got {progress!r}")
    return dataclasses.replace(request, host=host), progress


def instance_key(message: Mapping[str, Any]) -> Hashable | None:
    """Ordering key of a request message: its instance uuid as sent."""
    payload = message.get("payload")
    value = payload.get("instance_uuid") if isinstance(payload, dict) else None
    return value.lower() if isinstance(value, str) else None


def result_event_type(action: str | None, ok: bool) -> str:
    return f"rescue_flow.{action or 'request'}.{'end' if ok else 'error'}"


class Results:
    """Sends results, errors and steps as notifications from this worker."""

    def __init__(self, publisher: Publisher, results_topic: str) -> None:
        self.publisher = publisher
        self.topic = results_topic

    def result(self, result: Result) -> None:
        ok = result.outcome.ok
        self.publisher.send(self.topic, result_event_type(result.action, ok),
                            result.to_dict(), priority="info" if ok else "error")

    def invalid(self, reason: str, host: str, action: str | None = None,
                request_id: Any = None, instance_uuid: Any = None) -> None:
        """An error for input that never became a request."""
        # A Result's shape, with what could be read of the input (or None).
        payload = dict(
            Result("", "", "", host, Outcome.REFUSED,
                   reason=f"invalid request: {reason}").to_dict(),
            request_id=request_id if isinstance(request_id, str) else None,
            action=action if action in requests.ACTIONS else None,
            instance_uuid=instance_uuid if isinstance(instance_uuid, str) else None)
        self.publisher.send(self.topic, result_event_type(payload["action"], False),
                            payload, priority="error")

    def step(self, request: requests.Request, event: StepEvent) -> None:
        """Best effort: a step lost while the broker is away must not stall the flow."""
        payload = {"request_id": request.request_id, "instance_uuid": request.instance_uuid,
                   "host": request.host, "flow": event.flow, "step": event.step,
                   "state": event.state, "seconds": event.seconds}
        try:
            self.publisher.send(self.topic, STEP_EVENT, payload, retry=0)
        except Exception as exc:
            LOG.warning("Could not send step %s %s of request %s: %s", event.step,
                        event.state, request.request_id, exc)


def bounded_attempts(attempts: BoundedRecord, key: str, max_attempts: int,
                     work: Callable[[], Any], give_up: Callable[[str], None],
                     what: str) -> Any:
    """Run ``work``; on an unexpected exception ask for a requeue, until the
    ``max_attempts``-th delivery of ``key``, which ``give_up(reason)`` answers
    (an error notification) before the message is acknowledged and dropped."""
    try:
        result = work()
    except Exception as exc:
        attempt = attempts.increment(key)
        if attempt < max_attempts:
            LOG.warning("%s failed (attempt %d of %d), requeueing it: %s", what, attempt,
                        max_attempts, exc, exc_info=True)
            return REQUEUE
        LOG.exception("%s failed %d times, dropping it: %s", what, attempt, exc)
        try:
            give_up(f"gave up after {attempt} attempts: {exc}")
        except Exception:
            LOG.exception("Could not send the error notification for %s either", what)
        result = HANDLED
    attempts.pop(key)
    return result


class BoundedRecord:
    """The last ``size`` keys used, with a value each, least recently used
    forgotten first (a cachetools LRUCache behind a lock: it is not
    thread-safe by itself)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: cachetools.LRUCache[str, Any] = cachetools.LRUCache(maxsize=size)
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        with self._lock:
            return self._items.get(key)

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._items[key] = value

    def pop(self, key: str) -> Any:
        with self._lock:
            return self._items.pop(key, None)

    def increment(self, key: str) -> int:
        """Add one to the count kept under ``key``; return the new count."""
        with self._lock:
            count = self._items.get(key, 0) + 1
            self._items[key] = count
            return count
