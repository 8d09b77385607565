"""Typed views of the API's JSON (docs/api.md). Unknown fields are kept in
`raw`, so a newer server never breaks an older client."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["pending", "approved", "rejected", "cancelled", "returned"]


@dataclass(frozen=True)
class Decision:
    reviewer: str
    verdict: Literal["approve", "reject", "modify", "escalate", "respond"]
    rationale: str | None
    decided_at: str
    message: str | None = None
    """With `respond`: the reviewer's words for the AI."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Decision:
        return cls(data["reviewer"], data["verdict"], data.get("rationale"), data["decided_at"], data.get("message"))


@dataclass(frozen=True)
class Resolution:
    """How a proposal was settled."""

    outcome: Status
    decided_by: Literal["policy", "reviewers", "timeout", "kill_switch", "system"]
    output: Any
    """What may go ahead: the proposal's output, or the reviewer's edit."""
    modified: bool
    matched_policies: list[str]
    decisions: list[Decision]
    decided_at: str
    message: str | None = None
    """With outcome `returned`: a reviewer's words for the AI, instead of a yes or no."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Resolution:
        return cls(
            message=data.get("message"),
            outcome=data["outcome"],
            decided_by=data["decided_by"],
            output=data.get("output"),
            modified=data.get("modified", False),
            matched_policies=list(data.get("matched_policies", [])),
            decisions=[Decision.from_json(d) for d in data.get("decisions", [])],
            decided_at=data["decided_at"],
        )


@dataclass(frozen=True)
class Proposal:
    """A proposal as the API returns it."""

    id: str
    system: str
    action: str
    status: Status
    route: Literal["allow", "deny", "review"]
    output: Any
    resolution: Resolution | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def resolved(self) -> bool:
        return self.resolution is not None

    @property
    def approved(self) -> bool:
        return self.status == "approved"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Proposal:
        resolution = data.get("resolution")
        return cls(
            id=data["id"],
            system=data["system"],
            action=data["action"],
            status=data["status"],
            route=data["route"],
            output=data.get("output"),
            resolution=Resolution.from_json(resolution) if resolution else None,
            raw=data,
        )


def refusal(proposal: Proposal) -> str:
    """Why a settled proposal may not go ahead, in a sentence for a model or a log.
    A `returned` proposal's answer is the reviewer's message itself."""
    resolution = proposal.resolution
    assert resolution is not None
    if proposal.status == "returned":
        return resolution.message or f"a reviewer answered without words ({proposal.id})"
    if resolution.decided_by == "policy":
        return f"denied by policy ({', '.join(resolution.matched_policies)}) ({proposal.id})"
    rejections = [d for d in resolution.decisions if d.verdict == "reject"]
    if rejections:
        d = rejections[-1]
        return f"rejected by {d.reviewer}: {d.rationale or 'no reason given'} ({proposal.id})"
    return f"{proposal.status} ({resolution.decided_by}) ({proposal.id})"
