"""Flow factories: each returns a TaskFlow flow (never an engine)."""

from rescue_flow.flows.rescue import get_rescue_flow
from rescue_flow.flows.unrescue import get_cleanup_flow, get_unrescue_flow

__all__ = ["get_cleanup_flow", "get_rescue_flow", "get_unrescue_flow"]
