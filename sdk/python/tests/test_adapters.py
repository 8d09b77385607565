"""The LangGraph helper and the OpenAI Agents adapter with the real packages;
the model is each library's own fake (no network)."""

import asyncio
import os
import threading
import time

import pytest

from loopgate import AsyncClient, Client

# No tracing export: these tests never touch the network.
os.environ["OPENAI_AGENTS_DISABLE_TRACING"] = "1"

POLICY = """
@id("lookups") @route("allow")
permit (principal, action == Action::"tool:lookup", resource);
@id("refunds-need-a-person") @reviewers("ops")
permit (principal, action == Action::"tool:refund", resource);
@id("never-delete")
forbid (principal, action == Action::"tool:delete_account", resource);
"""


@pytest.fixture
def tools_server(server):
    server.publish(POLICY)
    return server


def decide_next(server, verdict, **extra):
    def run():
        with Client(server.base, server.rita) as rita:
            for _ in range(400):
                tasks = rita.tasks()
                if tasks:
                    rita.decide(tasks[0]["id"], verdict, seen_digest=tasks[0]["digest"], rationale="policy says no", **extra)
                    return
                time.sleep(0.05)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


# --- LangGraph -------------------------------------------------------------

def langgraph_run(server, tool_calls, *verdicts):
    from langchain_core.messages import AIMessage
    from langchain_core.tools import tool
    from langgraph.graph import END, START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode

    from loopgate.langgraph import gated

    ran = []

    @tool
    def refund(order: str, amount: int) -> str:
        """Refund an order."""
        ran.append({"order": order, "amount": amount})
        return f"refunded {amount} on {order}"

    @tool
    def delete_account(account: str) -> str:
        """Delete an account."""
        ran.append({"account": account})
        return "deleted"

    lg = Client(server.base, server.key)
    graph = StateGraph(MessagesState)
    graph.add_node("tools", ToolNode([gated(refund, lg), gated(delete_account, lg)]))
    graph.add_edge(START, "tools")
    graph.add_edge("tools", END)
    threads = [decide_next(server, v[0], **v[1]) if isinstance(v, tuple) else decide_next(server, v) for v in verdicts]
    out = graph.compile().invoke({"messages": [AIMessage(content="", tool_calls=tool_calls)]})
    for thread in threads:
        thread.join()
    return ran, [m.content for m in out["messages"][1:]]


def test_langgraph_approve_edit_reject_and_deny(tools_server):
    call = {"name": "refund", "args": {"order": "o-1", "amount": 500}, "id": "c1", "type": "tool_call"}
    ran, said = langgraph_run(tools_server, [call], "approve")
    assert ran == [{"order": "o-1", "amount": 500}] and said == ["refunded 500 on o-1"]

    ran, said = langgraph_run(tools_server, [{**call, "id": "c2"}], ("modify", {"output": {"order": "o-1", "amount": 200}}))
    assert ran == [{"order": "o-1", "amount": 200}] and said == ["refunded 200 on o-1"]

    ran, said = langgraph_run(tools_server, [{**call, "id": "c3"}], "reject")
    assert ran == [] and said[0].startswith("rejected by rita: policy says no (prp_")

    ran, said = langgraph_run(tools_server, [{**call, "id": "c5"}], ("respond", {"message": "refunds over 300 need the order's invoice first"}))
    assert ran == [] and said == ["refunds over 300 need the order's invoice first"]

    deny = {"name": "delete_account", "args": {"account": "a-9"}, "id": "c4", "type": "tool_call"}
    ran, said = langgraph_run(tools_server, [deny])
    assert ran == [] and said[0].startswith("denied by policy (never-delete)")


# --- OpenAI Agents SDK -----------------------------------------------------

def test_openai_agents_allowed_calls_run_and_reviewed_ones_wait_for_loopgate(tools_server):
    from agents import Agent, Runner, function_tool
    from agents.testing import ScriptedModel, assistant_message, function_call

    from loopgate.openai_agents import LoopgateApprovals

    ran = []

    async def main():
        async with AsyncClient(tools_server.base, tools_server.key) as lg:
            gate = LoopgateApprovals(lg)

            @function_tool(needs_approval=gate.needs_approval("lookup"))
            def lookup(order: str) -> str:
                """Look an order up."""
                ran.append(("lookup", order))
                return "order o-1: 500 EUR"

            @function_tool(needs_approval=gate.needs_approval("refund"))
            def refund(order: str, amount: int) -> str:
                """Refund an order."""
                ran.append(("refund", order, amount))
                return f"refunded {amount}"

            model = ScriptedModel([
                [function_call("lookup", {"order": "o-1"}, call_id="call-1")],
                [function_call("refund", {"order": "o-1", "amount": 500}, call_id="call-2")],
                [assistant_message("done")],
            ])
            agent = Agent(name="support", tools=[lookup, refund], model=model)
            result = await Runner.run(agent, "refund o-1")
            assert ran == [("lookup", "o-1")], "allowed by policy: no interruption"
            assert [i.tool_name for i in result.interruptions] == ["refund"]
            thread = decide_next(tools_server, "approve")
            state = await gate.resolve(result)
            thread.join()
            result = await Runner.run(agent, state)
            assert result.final_output == "done"
            assert ran == [("lookup", "o-1"), ("refund", "o-1", 500)]

    asyncio.run(main())


@pytest.mark.parametrize(("verdict", "extra", "reaches_the_model"), [
    ("reject", {}, "rejected by rita: policy says no"),
    ("respond", {"message": "ask the customer for the invoice first"}, "ask the customer for the invoice first"),
])
def test_openai_agents_a_refusal_or_a_reviewers_message_reaches_the_model(tools_server, verdict, extra, reaches_the_model):
    from agents import Agent, Runner, function_tool
    from agents.testing import ScriptedModel, assistant_message, function_call

    from loopgate.openai_agents import LoopgateApprovals

    async def main():
        async with AsyncClient(tools_server.base, tools_server.key) as lg:
            gate = LoopgateApprovals(lg)

            @function_tool(needs_approval=gate.needs_approval("refund"))
            def refund(order: str, amount: int) -> str:
                """Refund an order."""
                raise AssertionError("a refused call must not run")

            model = ScriptedModel([
                [function_call("refund", {"order": "o-2", "amount": 900}, call_id=f"call-{verdict}")],
                [assistant_message("understood")],
            ])
            agent = Agent(name="support", tools=[refund], model=model)
            result = await Runner.run(agent, "refund o-2")
            thread = decide_next(tools_server, verdict, **extra)
            state = await gate.resolve(result)
            thread.join()
            result = await Runner.run(agent, state)
            assert result.final_output == "understood"
            seen = str(model.calls[-1].input)
            assert reaches_the_model in seen, seen

    asyncio.run(main())
