"""OpenAI Agents SDK adapter: loopgate decides which tool calls need a
person, and people decide them in loopgate's queue.

    from agents import Agent, Runner, function_tool
    from loopgate import AsyncClient
    from loopgate.openai_agents import LoopgateApprovals

    gate = LoopgateApprovals(AsyncClient(url, key))
    agent = Agent(name="support", tools=[function_tool(refund, needs_approval=gate.needs_approval("refund"))])
    result = await Runner.run(agent, "Refund order 17")
    while result.interruptions:                  # calls loopgate routed to review (or denied)
        state = await gate.resolve(result)       # waits for the decisions in loopgate
        result = await Runner.run(agent, state)

Each tool call is a proposal (`action = "<prefix><tool>"`, `output` = the
arguments, idempotency key from the call id). Policy `allow` lets the call run
at once; `review` interrupts the run until people decide; `deny` interrupts
and `resolve` rejects it with the reason; a reviewer's `respond` rejects it with
the reviewer's message, which the model reads. A reviewer's edit cannot be applied
to the SDK's pending call, so `modify` rejects it with a message that gives
the model the approved arguments to call again with.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from ._client import AsyncClient
from ._models import Proposal, refusal


class LoopgateApprovals:
    def __init__(self, client: AsyncClient, *, action_prefix: str = "tool:", subject: dict[str, Any] | None = None,
                 timeout: float | None = None):
        self._client = client
        self._prefix = action_prefix
        self._subject = subject or {"type": "Agent", "id": "openai-agents"}
        self._timeout = timeout
        self._proposals: dict[str, Proposal] = {}

    async def _submit(self, tool: str, arguments: dict[str, Any], call_id: str) -> Proposal:
        if call_id in self._proposals:
            return self._proposals[call_id]
        proposal = await self._client.submit(
            f"{self._prefix}{tool}", arguments, subject=self._subject, input={"tool": tool},
            idempotency_key=f"openai-agents-{call_id}",
        )
        self._proposals[call_id] = proposal
        return proposal

    def needs_approval(self, tool: str) -> Callable[[Any, dict[str, Any], str], Awaitable[bool]]:
        """The `needs_approval` of `function_tool(…)` for `tool`: true unless policy allowed the call."""

        async def check(_context: Any, arguments: dict[str, Any], call_id: str) -> bool:
            return not (await self._submit(tool, arguments, call_id)).approved

        return check

    async def resolve(self, result: Any) -> Any:
        """Waits in loopgate for every interruption of `result` and returns the
        run state with each approved or rejected, to pass to `Runner.run`."""
        state = result.to_state()
        for item in result.interruptions:
            call_id = item.call_id or ""
            arguments = json.loads(item.arguments or "{}")
            proposal = await self._submit(item.tool_name or "", arguments, call_id)
            proposal = await self._client.wait(proposal.id, timeout=self._timeout)
            resolution = proposal.resolution
            if resolution is None:
                state.reject(item, rejection_message=f"still waiting for approval ({proposal.id}); try again later")
            elif proposal.approved and resolution.output == arguments:
                state.approve(item)
            elif proposal.approved:
                state.reject(item, rejection_message=(
                    f"a reviewer approved this call with changed arguments: {json.dumps(resolution.output)}; "
                    f"call the tool again with exactly these ({proposal.id})"))
            else:
                state.reject(item, rejection_message=refusal(proposal))
        return state

