"""The worker service: its parts assembled, its health, its metrics.

- :mod:`.worker`: the daemon: its parts assembled, started and stopped.
- :mod:`.request_intake`: each request recorded before it is acknowledged.
- :mod:`.flow_queue`: recorded requests run, per instance in order.
- :mod:`.health`: ``rescue-flow worker --check``.
- :mod:`.metrics`: Prometheus metrics and their HTTP endpoint.
- :mod:`.storage_watch`: waits out a history database that went away.
- :mod:`.driver_presence`: whether this host's nova-compute runs the driver.
"""
