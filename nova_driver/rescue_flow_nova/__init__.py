"""rescue-flow's compute driver package for nova-compute.

Installed into nova-compute's own Python environment (``pip install
--no-deps``), it mixes into the host's Hyper-V driver and hands every rescue
and unrescue to the host's rescue-flow worker over RabbitMQ, then waits for
the outcome, so that Nova's vm_state is always what the host shows
(docs/nova-driver.md). It imports only what nova-compute has (nova, oslo.*,
kombu, os-win), never the worker package ``rescue_flow``: they talk through
rescue-flow's protocol (docs/protocol.md, :mod:`rescue_flow_nova.protocol`).
"""

__version__ = "0.1.0"
