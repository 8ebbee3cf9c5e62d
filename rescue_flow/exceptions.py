"""The project's own exceptions.

Flows, tasks, the CLI and the listener see only these; os-win's exceptions
are translated at the Hyper-V boundary (``rescue_flow.hyperv.errors``).
"Nothing to do" (already rescued, not rescued) is not an exception: it is an
outcome (``rescue_flow.outcome.Outcome.NOTHING_TO_DO``).
"""

from __future__ import annotations


class RescueFlowError(Exception):
    """Base class of every error rescue-flow raises on purpose."""


class InvalidRequest(RescueFlowError):
    """The request itself is malformed: retrying it can never succeed."""


class InvalidIdentifier(InvalidRequest):
    """An instance or image id is not a UUID."""


class PathEscapesInstancesDir(InvalidRequest):
    """A name or image id would resolve to a path outside ``instances_path``."""


class ValidationError(RescueFlowError):
    """The host is not in a state where the request can run (a permanent refusal)."""


class InstanceNotFound(ValidationError):
    """No VM on this host carries the instance uuid in its notes."""


class BootFromVolumeNotSupported(ValidationError):
    """The instance boots from a volume: there is no local root disk to move."""


class RescueImageNotCached(ValidationError):
    """The rescue image is not in the host's image cache (``_base``)."""


class GenerationMismatch(ValidationError):
    """The rescue image's VM generation differs from the instance's."""


class UnsupportedImageFormat(ValidationError):
    """The rescue image's format cannot boot this VM (a VHD for a Gen2 VM)."""


class InstanceHasCheckpoints(ValidationError):
    """The instance runs on a checkpoint's .avhd(x) chain, whose parents no
    other VM may open: its checkpoints must be deleted (merged) first."""


class SecureBootUnavailable(ValidationError):
    """The rescue image requires Secure Boot, which this rescue cannot give
    (a Gen1 instance, or no ``os_type`` to choose the certificate template)."""


class InstanceQuarantined(ValidationError):
    """An earlier revert failed; the instance waits for ``rescue-flow reset``."""

    def __init__(self, instance_uuid: str, reason: str) -> None:
        super().__init__(
            f"instance {instance_uuid} is quarantined: {reason}; "
            f"inspect the host, then run 'rescue-flow reset {instance_uuid}'"
        )
        self.instance_uuid = instance_uuid
        self.reason = reason


class RequestRefused(ValidationError):
    """The instance's current state does not allow this request."""


class HyperVError(RescueFlowError):
    """A Hyper-V operation failed (translated from os-win)."""

    def __init__(self, operation: str, detail: str) -> None:
        super().__init__(f"{operation} failed: {detail}")
        self.operation = operation
        self.detail = detail


class TransientHyperVError(HyperVError):
    """A Hyper-V operation failed in a way that may succeed when retried."""


class PermanentHyperVError(HyperVError):
    """A Hyper-V operation failed in a way that retrying will not change."""


class HyperVObjectNotFound(PermanentHyperVError):
    """A VM, disk, NIC or switch that the operation names does not exist."""


class DeadlineExceeded(RescueFlowError):
    """The caller's deadline passed before this step could start: the flow
    reverts instead, so the caller (Nova's driver) and the host agree."""


class QuarantineFileCorrupt(RescueFlowError):
    """An earlier release's quarantine.json cannot be read, so it cannot be imported."""


class StorageUnavailable(RescueFlowError):
    """The history database did not answer within ``[persistence]
    storage_retry_timeout``: the request is left, unfinished, for a resume.

    Not a step failure: nothing is reverted and nothing is quarantined
    because of it; the host operation in progress ended as its flow decided.
    """

    # False when the request itself could not be recorded: nothing was done.
    recorded = True

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"history storage unavailable: {_first_line(cause)}")
        self.cause = cause


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
