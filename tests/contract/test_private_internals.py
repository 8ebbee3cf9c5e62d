"""The private internals rescue-flow relies on, checked against the installed
libraries: when one moves, this fails naming the internal and our code that
uses it, rather than a worker misbehaving silently. requirements.txt bounds
these libraries to the versions tested; raise a bound only with this green.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import Any

import pytest
from oslo_context import context as oslo_context
from oslo_messaging import transport as om_transport
from oslo_messaging._drivers import amqpdriver
from oslo_messaging.notify import dispatcher as om_dispatcher
from oslo_messaging.notify import listener as om_listener
from taskflow import exceptions as tf_exc
from taskflow.persistence.backends import impl_sqlalchemy


def _params(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


def _source(function: Callable[..., Any]) -> str:
    return inspect.getsource(function)


# (library internal, who relies on it, check)
INTERNALS: list[tuple[str, str, Callable[[], bool]]] = [
    ("oslo.messaging Transport._send_notification(target, ctxt, message, version, retry)",
     "rescue_flow/messaging/bus.py Publisher.send (Notifier.info would swallow errors)",
     lambda: _params(om_transport.Transport._send_notification)[1:6] ==
     ["target", "ctxt", "message", "version", "retry"]),
    ("oslo.messaging NotificationServer._create_listener() and "
     "MessageHandlingServer._on_incoming(incoming)",
     "rescue_flow/messaging/ordered_listener.py OrderedListener (per-instance order, late acks)",
     lambda: _params(om_listener.NotificationServer._create_listener) == ["self"] and
     _params(om_listener.NotificationServer._on_incoming) == ["self", "incoming"]),
    ("oslo.messaging NotificationDispatcher(endpoints, serializer)",
     "rescue_flow/messaging/ordered_listener.py OrderedListener",
     lambda: _params(om_dispatcher.NotificationDispatcher.__init__)[1:] ==
     ["endpoints", "serializer"]),
    ("oslo.messaging rabbit driver (Notification)AMQPIncomingMessage"
     "._message_operations_handler"
     ".do(task), and acks through the kombu message (message.message.acknowledge)",
     "rescue_flow/messaging/ordered_listener.py _Settlements "
     "(acks skipping the driver's 16-id cache)",
     lambda: "self._message_operations_handler = message_operations_handler" in
     _source(amqpdriver.AMQPIncomingMessage.__init__) and
     _params(amqpdriver.MessageOperationsHandler.do) == ["self", "task"] and
     "self.message.acknowledge()" in
     _source(amqpdriver.NotificationAMQPIncomingMessage.acknowledge)
     and "self.message.requeue()" in
     _source(amqpdriver.NotificationAMQPIncomingMessage.requeue)),
    ("TaskFlow impl_sqlalchemy.Connection(backend, upgrade_lock) with _tables, _engine",
     "rescue_flow/persistence/backend.py FastConnection, RememberingConnection",
     lambda: _params(impl_sqlalchemy.Connection.__init__)[1:] == ["backend",
                                                                  "upgrade_lock"] and
     "self._tables = " in _source(impl_sqlalchemy.Connection.__init__) and
     "self._engine = " in _source(impl_sqlalchemy.Connection.__init__)),
    ("TaskFlow Connection._insert_atom_details/_insert_flow_details(conn, detail, "
     "parent_uuid) and _update_atom_details/_update_flow_details(conn, new, existing)",
     "rescue_flow/persistence/backend.py FastConnection (writes only what changed)",
     lambda: _params(impl_sqlalchemy.Connection._insert_atom_details)[1:] ==
     ["conn", "ad", "parent_uuid"] and
     _params(impl_sqlalchemy.Connection._insert_flow_details)[1:] ==
     ["conn", "fd", "parent_uuid"] and
     _params(impl_sqlalchemy.Connection._update_atom_details)[1:] ==
     ["conn", "ad", "e_ad"] and
     _params(impl_sqlalchemy.Connection._update_flow_details)[1:] ==
     ["conn", "fd", "e_fd"]),
    ("TaskFlow SQLAlchemyBackend(conf, engine=) with _upgrade_lock, _validated, "
     "_max_retries",
     "rescue_flow/persistence/backend.py FastSQLAlchemyBackend.get_connection",
     lambda: _params(impl_sqlalchemy.SQLAlchemyBackend.__init__)[1:3] ==
     ["conf", "engine"] and all(
         f"self.{name} = " in _source(impl_sqlalchemy.SQLAlchemyBackend.__init__)
         for name in ("_upgrade_lock", "_validated", "_max_retries"))),
    ("TaskFlow wraps SQLAlchemy errors of a save in StorageFailure with the cause",
     "rescue_flow/persistence/retrying.py storage_error (follows __cause__)",
     lambda: "StorageFailure" in _source(impl_sqlalchemy.Connection.update_atom_details)),
    ("TaskFlow WrappedFailure keeps its failures in _causes",
     "rescue_flow/persistence/retrying.py storage_unavailable",
     lambda: "self._causes" in _source(tf_exc.WrappedFailure.__init__)),
    ("oslo.context _request_store: a threading.local holding 'context'",
     "rescue_flow/engine/logs.py _clear_context (no public call removes the context)",
     lambda: isinstance(oslo_context._request_store, threading.local) and
     "_request_store.context = self" in _source(oslo_context.RequestContext.update_store)),
]


@pytest.mark.parametrize("internal, user, check", INTERNALS,
                         ids=[internal.split("(")[0] for internal, _, _ in INTERNALS])
def test_a_private_internal_we_rely_on_is_still_there(internal, user, check) -> None:
    try:
        ok = check()
    except Exception as exc:  # moved, renamed, or no longer inspectable
        pytest.fail(f"private internal changed: {internal} ({type(exc).__name__}: {exc});"
                    f" used by {user}")
    assert ok, f"private internal changed: {internal}; used by {user}"
