"""rescue-flow's own tables, beside TaskFlow's: one row per request, one per
quarantined instance, and a few markers of one-time upgrades.

Created at start with ``metadata.create_all`` (which adds a missing table and
leaves existing ones alone): a history written by an older rescue-flow keeps
working, and gains the tables it lacks.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

ACCEPTED = "accepted"  # durably recorded, not started (or interrupted before)
RUNNING = "running"  # a flow ran for it; finished_at is empty until it ends
FINISHED = "finished"

requests_table = sa.Table(
    "rescue_flow_requests", metadata,
    sa.Column("request_id", sa.String(255), primary_key=True),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("instance_uuid", sa.String(36), nullable=False, index=True),
    sa.Column("host", sa.String(255), nullable=False, index=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("request", sa.Text, nullable=False),  # Request.to_dict() as JSON
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("book_uuid", sa.String(36)),
    sa.Column("outcome", sa.String(32)),
    sa.Column("result", sa.Text),  # Result.to_dict() as JSON
    sa.Column("received_at", sa.DateTime, nullable=False, index=True),
    sa.Column("finished_at", sa.DateTime, index=True),
)

# One row per host whose nova-compute announced rescue-flow's Nova driver
# (docs/protocol.md, rescue_flow.driver.hello): while the announcement is
# valid, that host's worker leaves Nova's notifications to the driver.
nova_drivers_table = sa.Table(
    "rescue_flow_nova_drivers", metadata,
    sa.Column("host", sa.String(255), primary_key=True),
    sa.Column("driver", sa.String(255), nullable=False),
    sa.Column("protocol", sa.Integer, nullable=False),
    sa.Column("announced_at", sa.DateTime, nullable=False),
    sa.Column("valid_until", sa.DateTime, nullable=False),
)

# Instances a failed revert left for an operator. Written in the same
# transaction as the request's final state (History.finish), so "revert
# failed" and "instance quarantined" are recorded together or not at all.
quarantine_table = sa.Table(
    "rescue_flow_quarantine", metadata,
    sa.Column("instance_uuid", sa.String(36), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("request_id", sa.String(255), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("since", sa.DateTime, nullable=False),
)

# One-time upgrade steps done (e.g. the import of a host's quarantine.json).
markers_table = sa.Table(
    "rescue_flow_markers", metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text),
    sa.Column("created_at", sa.DateTime, nullable=False),
)
