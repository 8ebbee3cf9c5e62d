"""Fixtures shared by every test folder.

Broker tests: mark a test ``@pytest.mark.rabbitmq`` or ask for the
``rabbit_url`` fixture (either implies the other). Without a reachable broker
such tests are skipped, unless the ``CI`` environment variable is set, where
they fail: CI (``.ci/run``) starts RabbitMQ and exports its URL in
``RESCUE_FLOW_RABBIT_URL``.

Add new fixtures below, one block per service or concern.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from urllib.parse import quote

import pytest

# --------------------------------------------------------------------------
# RabbitMQ
# --------------------------------------------------------------------------

RABBIT_URL_ENV = "RESCUE_FLOW_RABBIT_URL"
DEFAULT_RABBIT_URL = "rabbit://guest:guest@127.0.0.1:5672/"


def in_ci() -> bool:
    """True when the CI environment variable is set and not empty."""
    return bool(os.environ.get("CI"))


def skip_or_fail(reason: str) -> None:
    """Skip on a laptop; fail under CI, where every service must be there."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set, so this is an error)", pytrace=False)
    pytest.skip(reason)


def _amqp_urls(transport_url: str) -> list[str]:
    """kombu URLs for the hosts of an oslo.messaging ``rabbit://`` URL."""
    from oslo_config import cfg
    from oslo_messaging import TransportURL

    parsed = TransportURL.parse(cfg.ConfigOpts(), transport_url)
    vhost = quote(parsed.virtual_host or "/", safe="")
    urls = []
    for host in parsed.hosts:
        auth = ""
        if host.username:
            auth = quote(host.username, safe="")
            if host.password:
                auth += ":" + quote(host.password, safe="")
            auth += "@"
        urls.append(f"amqp://{auth}{host.hostname}:{host.port or 5672}/{vhost}")
    return urls


def probe_rabbit(transport_url: str, timeout: float) -> tuple[str | None, str]:
    """Connect to each host of ``transport_url`` until one accepts.

    Returns ``(kombu URL of that host, "")``, or ``(None, last error)`` once
    ``timeout`` seconds have passed (one round when it is 0).
    """
    import kombu

    deadline = time.monotonic() + timeout
    while True:
        error = "no host in URL"
        for url in _amqp_urls(transport_url):
            conn = kombu.Connection(url, connect_timeout=2)
            try:
                conn.connect()
                return url, ""
            except Exception as exc:  # any failure means "not reachable"
                error = f"{type(exc).__name__}: {exc}"
            finally:
                conn.release()
        if time.monotonic() >= deadline:
            return None, error
        time.sleep(0.5)


@pytest.fixture(scope="session")
def _rabbit_broker() -> tuple[str, str]:
    url = os.environ.get(RABBIT_URL_ENV) or DEFAULT_RABBIT_URL
    # Under CI, retry a little: the broker may still be finishing its boot.
    amqp_url, error = probe_rabbit(url, timeout=15.0 if in_ci() else 0.0)
    if amqp_url is None:
        source = RABBIT_URL_ENV if os.environ.get(RABBIT_URL_ENV) else "the default"
        skip_or_fail(f"no RabbitMQ broker at {url} ({source}): {error}")
    return url, amqp_url


@pytest.fixture(scope="session")
def rabbit_url(_rabbit_broker: tuple[str, str]) -> str:
    """oslo.messaging transport URL (``rabbit://...``) of a reachable broker:
    ``RESCUE_FLOW_RABBIT_URL``, else ``rabbit://guest:guest@127.0.0.1:5672/``."""
    return _rabbit_broker[0]


@pytest.fixture(scope="session")
def rabbit_amqp_url(_rabbit_broker: tuple[str, str]) -> str:
    """The same broker as a kombu URL (``amqp://...``), to inspect or delete
    queues and exchanges directly."""
    return _rabbit_broker[1]


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A name no other test (or earlier run) uses: for exchanges, topics,
    pools and queues on a shared broker. Starts with the test's name."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    return f"rf-{stem}-{uuid.uuid4().hex[:10]}"


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test marked ``rabbitmq`` gets the broker fixture (so it skips or
    # fails as above), and a test using the fixture gets the marker (so
    # ``-m "not rabbitmq"`` leaves it out).
    for item in items:
        fixturenames = getattr(item, "fixturenames", None)
        if fixturenames is None:
            continue
        if item.get_closest_marker("rabbitmq") is not None:
            if "rabbit_url" not in fixturenames:
                fixturenames.insert(0, "rabbit_url")
        elif {"rabbit_url", "rabbit_amqp_url"} & set(fixturenames):
            item.add_marker(pytest.mark.rabbitmq)
