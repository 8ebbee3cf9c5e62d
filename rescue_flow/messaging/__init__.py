"""The message bus side: what comes in, what goes out, and how.

- :mod:`.bus`: oslo.messaging transports, the wire envelope, publishing.
- :mod:`.nova`: Nova's rescue/unrescue notifications parsed into Requests.
- :mod:`.nova_intake`: one Nova notification, recognised, parsed, routed.
- :mod:`.protocol`: rescue-flow's own messages: requests, results, steps.
- :mod:`.ordered_listener`: a notification listener that keeps per-instance
  order and acknowledges late.
- :mod:`.client`: the sending side of ``rescue-flow rescue|unrescue``.

How these fit into a worker, and when each message is acknowledged:
:mod:`rescue_flow.listener`.
"""
