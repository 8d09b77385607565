"""LangGraph / LangChain helper: a tool whose every call is approved, edited
or rejected in loopgate (the decisions of LangChain's human-in-the-loop
middleware), instead of an in-process interrupt.

    from langgraph.prebuilt import ToolNode
    from loopgate import Client
    from loopgate.langgraph import gated

    refund_tool = gated(refund_tool, Client(url, key))      # any LangChain BaseTool
    tools = ToolNode([refund_tool, lookup_tool])

A call submits a proposal (`action = "<prefix><tool name>"`, `output` = the
arguments) and waits: **approve** runs the tool with the arguments,
**edit** (a reviewer's `modify`) runs it with the edited arguments, **reject**
(or a policy deny) returns a message to the model saying who refused and why,
without running it, and **respond** returns the reviewer's message as the
tool's result (a tool message back to the model), without running it. The graph blocks while people decide; the wait is a
long-poll, so it survives network hiccups and server restarts.
"""

from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool, StructuredTool

from ._client import Client
from ._models import refusal


def gated(tool: BaseTool, client: Client, *, action_prefix: str = "tool:",
          subject: dict[str, Any] | None = None, timeout: float | None = None) -> BaseTool:
    """A tool with the same name, description and arguments whose calls loopgate decides."""

    def run(**arguments: Any) -> Any:
        proposal = client.submit(
            f"{action_prefix}{tool.name}", arguments,
            subject=subject or {"type": "Agent", "id": "langgraph"}, input={"tool": tool.name},
        )
        proposal = client.wait(proposal.id, timeout=timeout)
        if proposal.resolution is None:
            return f"still waiting for approval ({proposal.id}); try again later"
        if not proposal.approved:
            return refusal(proposal)
        return tool.invoke(proposal.resolution.output)

    return StructuredTool.from_function(
        func=run, name=tool.name, description=tool.description, args_schema=tool.args_schema,
    )
