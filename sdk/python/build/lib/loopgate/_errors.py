from __future__ import annotations

from typing import Any


class LoopgateError(Exception):
    """The server answered with a problem (RFC 9457), or could not be reached."""

    def __init__(self, detail: str, *, status: int | None = None, code: str | None = None, problem: dict[str, Any] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.code = code
        """The stable problem code, e.g. `validation_failed`, `not_found`."""
        self.problem = problem or {}


class Rejected(LoopgateError):
    """`wait_approved` found the proposal rejected (or cancelled)."""

    def __init__(self, proposal):
        why = proposal.resolution.decided_by if proposal.resolution else "unknown"
        super().__init__(f"{proposal.id} was {proposal.status} ({why})")
        self.proposal = proposal
