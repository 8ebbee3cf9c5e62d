"""Fixtures shared by every test folder.

Broker tests: mark a test ``@pytest.mark.rabbitmq`` or ask for the
``rabbit_url`` fixture (either implies the other). Without a reachable broker
such tests are skipped, unless the ``CI`` environment variable is set, where
they fail: CI (``.ci/run``) starts RabbitMQ and exports its URL in
``RESCUE_FLOW_RABBIT_URL``.

TLS broker tests: ask for ``rabbit_tls`` (the ``rabbitmq`` marker comes with
it); the same rule, for the broker at ``RESCUE_FLOW_RABBIT_TLS_URL`` whose
certificate the CA file ``RESCUE_FLOW_RABBIT_TLS_CA`` signed (``.ci/run``
starts one).

Database tests: ask for ``db_url`` to run once on SQLite and once on
PostgreSQL, each time on an empty database of the test's own. PostgreSQL
follows the broker's rule (skipped without a server, required under CI); CI
starts a private cluster and exports its URL in ``RESCUE_FLOW_DB_URL``.
``-m "not postgresql"`` leaves the PostgreSQL runs out.

Add new fixtures below, one block per service or concern.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

# --------------------------------------------------------------------------
# Simulated host: check that every call marks the entries it changes
# --------------------------------------------------------------------------

# Set before rescue_flow is imported, and inherited by the processes tests
# start: each change is then compared with a full comparison of the host
# (rescue_flow.simhost.model.HostState explains why).
os.environ["RESCUE_FLOW_SIMHOST_VERIFY"] = "1"

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


def probe_rabbit(transport_url: str, timeout: float,
                 ssl: Any = False) -> tuple[str | None, str]:
    """Connect to each host of ``transport_url`` (with kombu's ``ssl``
    argument) until one accepts.

    Returns ``(kombu URL of that host, "")``, or ``(None, last error)`` once
    ``timeout`` seconds have passed (one round when it is 0).
    """
    import kombu

    deadline = time.monotonic() + timeout
    while True:
        error = "no host in URL"
        for url in _amqp_urls(transport_url):
            conn = kombu.Connection(url, connect_timeout=2, ssl=ssl)
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


RABBIT_TLS_URL_ENV = "RESCUE_FLOW_RABBIT_TLS_URL"
RABBIT_TLS_CA_ENV = "RESCUE_FLOW_RABBIT_TLS_CA"


@pytest.fixture(scope="session")
def rabbit_tls() -> tuple[str, str]:
    """``(oslo.messaging URL, CA file)`` of a reachable RabbitMQ that speaks
    only TLS: ``RESCUE_FLOW_RABBIT_TLS_URL`` (``...?ssl=1``) and
    ``RESCUE_FLOW_RABBIT_TLS_CA``; no default."""
    import ssl

    url, ca = os.environ.get(RABBIT_TLS_URL_ENV), os.environ.get(RABBIT_TLS_CA_ENV)
    if not (url and ca):
        skip_or_fail(f"no RabbitMQ with TLS: {RABBIT_TLS_URL_ENV} and {RABBIT_TLS_CA_ENV} "
                     "are unset (.ci/run sets them)")
    amqp_url, error = probe_rabbit(url, timeout=15.0 if in_ci() else 0.0,
                                   ssl={"ca_certs": ca, "cert_reqs": ssl.CERT_REQUIRED})
    if amqp_url is None:
        skip_or_fail(f"no RabbitMQ with TLS at {url} ({RABBIT_TLS_URL_ENV}, CA {ca}): {error}")
    return url, ca


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A name no other test (or earlier run) uses: for exchanges, topics,
    pools and queues on a shared broker. Starts with the test's name."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    return f"rf-{stem}-{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------
# Databases: SQLite and PostgreSQL
# --------------------------------------------------------------------------

DB_URL_ENV = "RESCUE_FLOW_DB_URL"
# What .ci/run creates; a laptop can match it to run the PostgreSQL tests.
DEFAULT_DB_URL = "postgresql+psycopg2://rescue_flow:rescue_flow@127.0.0.1:5433/rescue_flow"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "postgresql: needs a PostgreSQL server (skipped without one, "
        "required when CI is set)")


def probe_postgres(url: str, timeout: float) -> str:
    """Connect to ``url`` until it answers: ``""``, or the last error once
    ``timeout`` seconds have passed (one try when it is 0)."""
    import sqlalchemy as sa

    deadline = time.monotonic() + timeout
    while True:
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool,
                                  connect_args={"connect_timeout": 2})
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
            return ""
        except Exception as exc:  # any failure means "not reachable"
            error = f"{type(exc).__name__}: {str(exc).strip()}"
        finally:
            engine.dispose()
        if time.monotonic() >= deadline:
            return error
        time.sleep(0.5)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """SQLAlchemy URL of a reachable PostgreSQL database whose role may create
    databases: ``RESCUE_FLOW_DB_URL``, else :data:`DEFAULT_DB_URL`. Tests
    should not write here: ``postgres_db_url`` gives each its own database."""
    url = os.environ.get(DB_URL_ENV) or DEFAULT_DB_URL
    source = DB_URL_ENV if os.environ.get(DB_URL_ENV) else "the default"
    try:
        import psycopg2  # noqa: F401 - the driver the URL names
    except ImportError:
        skip_or_fail("psycopg2 is not installed (pip install -r test-requirements.txt)")
    error = probe_postgres(url, timeout=15.0 if in_ci() else 0.0)
    if error:
        import sqlalchemy as sa

        shown = sa.engine.make_url(url).render_as_string(hide_password=True)
        skip_or_fail(f"no PostgreSQL at {shown} ({source}): {error}")
    return url


@pytest.fixture
def postgres_db_url(postgres_url: str, unique_name: str) -> Iterator[str]:
    """URL of a new, empty PostgreSQL database for this test only; dropped
    afterwards, with any connection the test left open."""
    import sqlalchemy as sa

    name = unique_name.replace("-", "_")
    admin = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool,
                             isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield sa.engine.make_url(postgres_url).set(database=name).render_as_string(
            hide_password=False)
        with admin.connect() as connection:
            # FORCE (PostgreSQL 13+) ends sessions a test forgot to close.
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """SQLAlchemy URL of an empty history database: a SQLite file in
    ``tmp_path``, then a PostgreSQL database of the test's own."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/history.sqlite"
    return request.getfixturevalue("postgres_db_url")


# --------------------------------------------------------------------------
# Markers from fixtures
# --------------------------------------------------------------------------

_POSTGRES_FIXTURES = {"postgres_url", "postgres_db_url"}


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test marked ``rabbitmq`` gets the broker fixture (so it skips or
    # fails as above), and a test using the fixture gets the marker (so
    # ``-m "not rabbitmq"`` leaves it out). The same for PostgreSQL, except
    # ``db_url``, whose PostgreSQL run carries the marker as a parameter.
    for item in items:
        fixturenames = getattr(item, "fixturenames", None)
        if fixturenames is None:
            continue
        if item.get_closest_marker("rabbitmq") is not None:
            if "rabbit_url" not in fixturenames:
                fixturenames.insert(0, "rabbit_url")
        elif {"rabbit_url", "rabbit_amqp_url", "rabbit_tls"} & set(fixturenames):
            item.add_marker(pytest.mark.rabbitmq)
        if item.get_closest_marker("postgresql") is not None:
            if "db_url" not in fixturenames and not _POSTGRES_FIXTURES & set(fixturenames):
                fixturenames.insert(0, "postgres_url")
        elif _POSTGRES_FIXTURES & set(fixturenames):
            item.add_marker(pytest.mark.postgresql)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """cli.main() sets oslo.log up on the root logger; put it back after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in ("rescue_flow", "taskflow")}
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
    for name, saved in levels.items():
        logging.getLogger(name).setLevel(saved)
