"""`loopgate mcp` between the official Python MCP client and an upstream MCP
server (official Python package), with a real loopgate server deciding."""

import asyncio
import os
import threading
import time
from contextlib import asynccontextmanager

import httpx
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from conftest import gateway_command, start, upstream_calls
from loopgate.testing import LocalServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def launch(loopgate, upstream_log, tmp_path, *extra):
    """Command, arguments and environment of a gateway with its own state file."""
    command, args = gateway_command(loopgate, "--state", str(tmp_path / "gateway.json"), *extra)
    return command, args, {**os.environ, "UPSTREAM_LOG": str(upstream_log), "RUST_LOG": "warn"}


@asynccontextmanager
async def gateway(loopgate, upstream_log, tmp_path, *extra):
    command, args, env = launch(loopgate, upstream_log, tmp_path, *extra)
    params = StdioServerParameters(command=command, args=args, env=env)
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session


def text(result) -> str:
    return "".join(block.text for block in result.content if block.type == "text")


async def open_task(loopgate, token):
    """Waits for the review task of the call in flight."""
    async with httpx.AsyncClient(base_url=loopgate.base, headers={"Authorization": f"Bearer {token}"}) as http:
        for _ in range(200):
            tasks = (await http.get("/v1/tasks")).json()["items"]
            if tasks:
                return tasks[0]
            await asyncio.sleep(0.05)
    raise AssertionError("no review task appeared")


async def decide(loopgate, task, verdict, **extra):
    async with httpx.AsyncClient(base_url=loopgate.base, headers={"Authorization": f"Bearer {loopgate.reviewer_token}"}) as http:
        body = {"verdict": verdict, "rationale": "checked", "seen_digest": task["digest"], **extra}
        response = await http.post(f"/v1/tasks/{task['id']}/decision", json=body)
        assert response.status_code == 200, response.text


async def test_tools_list_passes_through_and_an_allowed_call_is_forwarded(loopgate, upstream_log, tmp_path):
    async with gateway(loopgate, upstream_log, tmp_path) as session:
        tools = await session.list_tools()
        assert sorted(tool.name for tool in tools.tools) == ["delete", "read", "write"]
        result = await session.call_tool("read", {"path": "a.txt"})
        assert not result.is_error, text(result)
        assert text(result) == "contents of a.txt"
    assert upstream_calls(upstream_log) == [{"tool": "read", "arguments": {"path": "a.txt"}}]
    proposals = loopgate.call("GET", "/v1/proposals")["items"]
    assert [(p["action"], p["status"], p["output"]) for p in proposals] == [
        ("mcp:files/read", "approved", {"path": "a.txt"})
    ]


async def test_a_denied_call_is_a_tool_error_that_says_why(loopgate, upstream_log, tmp_path):
    async with gateway(loopgate, upstream_log, tmp_path) as session:
        result = await session.call_tool("delete", {"path": "a.txt"})
    assert result.is_error
    assert text(result).startswith("denied by loopgate policy (never-delete) (prp_"), text(result)
    assert upstream_calls(upstream_log) == []


async def test_review_approve_waits_with_progress_then_forwards(loopgate, upstream_log, tmp_path):
    progress = []

    async def on_progress(value, total, message):
        progress.append(message)

    async with gateway(loopgate, upstream_log, tmp_path) as session:
        call = asyncio.create_task(
            session.call_tool("write", {"path": "a.txt", "text": "hello"}, progress_callback=on_progress)
        )
        task = await open_task(loopgate, loopgate.reviewer_token)
        assert task["group"] == "ops"
        assert not call.done()
        await decide(loopgate, task, "approve")
        result = await asyncio.wait_for(call, 30)
    assert not result.is_error, text(result)
    assert text(result) == "wrote 5 characters to a.txt"
    assert progress and "waiting for a person to approve (prp_" in progress[0]
    assert upstream_calls(upstream_log) == [{"tool": "write", "arguments": {"path": "a.txt", "text": "hello"}}]


async def test_review_modify_forwards_the_edited_arguments(loopgate, upstream_log, tmp_path):
    async with gateway(loopgate, upstream_log, tmp_path) as session:
        call = asyncio.create_task(session.call_tool("write", {"path": "/etc/passwd", "text": "x"}))
        task = await open_task(loopgate, loopgate.reviewer_token)
        await decide(loopgate, task, "modify", output={"path": "/tmp/safe.txt", "text": "x"})
        result = await asyncio.wait_for(call, 30)
    assert text(result) == "wrote 1 characters to /tmp/safe.txt"
    assert upstream_calls(upstream_log) == [{"tool": "write", "arguments": {"path": "/tmp/safe.txt", "text": "x"}}]


async def test_review_reject_is_a_tool_error_with_the_rationale(loopgate, upstream_log, tmp_path):
    async with gateway(loopgate, upstream_log, tmp_path) as session:
        call = asyncio.create_task(session.call_tool("write", {"path": "a.txt", "text": "no"}))
        task = await open_task(loopgate, loopgate.reviewer_token)
        await decide(loopgate, task, "reject")
        result = await asyncio.wait_for(call, 30)
    assert result.is_error
    assert text(result).startswith("rejected by rita: checked (prp_"), text(result)
    assert upstream_calls(upstream_log) == []


async def test_review_respond_is_the_tools_text_result_and_upstream_is_not_called(loopgate, upstream_log, tmp_path):
    async with gateway(loopgate, upstream_log, tmp_path) as session:
        call = asyncio.create_task(session.call_tool("write", {"path": "/etc/hosts", "text": "x"}))
        task = await open_task(loopgate, loopgate.reviewer_token)
        await decide(loopgate, task, "respond", message="write under /tmp instead, and say why you need it")
        result = await asyncio.wait_for(call, 30)
    # The tool did not run: the reviewer's words are its whole text.
    assert result.is_error
    assert text(result) == "write under /tmp instead, and say why you need it"
    assert result.structured_content["status"] == "returned"
    assert upstream_calls(upstream_log) == []


async def test_a_client_that_leaves_and_repeats_the_call_gets_it_run_once(loopgate, upstream_log, tmp_path):
    arguments = {"path": "b.txt", "text": "once"}
    # Past the gateway's patience the client gets "pending approval", and leaves.
    async with gateway(loopgate, upstream_log, tmp_path, "--patience", "1s") as session:
        result = await session.call_tool("write", arguments)
    assert result.is_error
    assert text(result).startswith("pending approval prp_"), text(result)
    proposal = result.structured_content["proposal"]

    task = await open_task(loopgate, loopgate.reviewer_token)
    assert task["proposal_id"] == proposal
    await decide(loopgate, task, "approve")

    # A new gateway process (the client reconnected): the identical call picks
    # up the approved proposal and runs it once; no second proposal is made.
    async with gateway(loopgate, upstream_log, tmp_path, "--patience", "5s") as session:
        result = await session.call_tool("write", arguments)
        assert text(result) == "wrote 4 characters to b.txt"
        # Answered: the same call again is a new call, with a new proposal.
        again = await session.call_tool("write", arguments)
        assert text(again).startswith("pending approval prp_"), text(again)
        assert again.structured_content["proposal"] != proposal
    assert upstream_calls(upstream_log) == [{"tool": "write", "arguments": arguments}]
    proposals = loopgate.call("GET", "/v1/proposals")["items"]
    assert len(proposals) == 2


async def test_the_gateway_serves_streamable_http_too(loopgate, upstream_log, tmp_path):
    command, args, env = launch(loopgate, upstream_log, tmp_path, "--listen", "127.0.0.1:0")
    process = await asyncio.create_subprocess_exec(command, *args, env=env, stdout=asyncio.subprocess.PIPE)
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line.startswith("loopgate mcp listening on http://127.0.0.1:"), line
        url = line.split()[-1]
        async with streamable_http_client(url) as (read, write, *_):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = await session.list_tools()
                assert sorted(tool.name for tool in tools.tools) == ["delete", "read", "write"]
                allowed = await session.call_tool("read", {"path": "a.txt"})
                assert text(allowed) == "contents of a.txt"
                call = asyncio.create_task(session.call_tool("write", {"path": "a.txt", "text": "hi"}))
                await decide(loopgate, await open_task(loopgate, loopgate.reviewer_token), "approve")
                reviewed = await asyncio.wait_for(call, 30)
                assert text(reviewed) == "wrote 2 characters to a.txt"
    finally:
        process.terminate()
        await process.wait()
    assert upstream_calls(upstream_log) == [
        {"tool": "read", "arguments": {"path": "a.txt"}},
        {"tool": "write", "arguments": {"path": "a.txt", "text": "hi"}},
    ]


async def test_parallel_calls_are_one_batch_in_the_queue(loopgate, upstream_log, tmp_path):
    async with gateway(loopgate, upstream_log, tmp_path) as session:
        calls = [
            asyncio.create_task(session.call_tool("write", {"path": f"{n}.txt", "text": "x"}))
            for n in range(3)
        ]
        async with httpx.AsyncClient(
            base_url=loopgate.base, headers={"Authorization": f"Bearer {loopgate.reviewer_token}"}
        ) as http:
            for _ in range(200):
                tasks = (await http.get("/v1/tasks")).json()["items"]
                if len(tasks) == 3:
                    break
                await asyncio.sleep(0.05)
        assert len(tasks) == 3, tasks
        batches = {task.get("batch") for task in tasks}
        assert len(batches) == 1, batches
        assert next(iter(batches)).startswith("mcp-")
        for task in tasks:
            await decide(loopgate, task, "approve")
        results = await asyncio.wait_for(asyncio.gather(*calls), 30)
    assert all(not result.is_error for result in results), [text(r) for r in results]
    assert len(upstream_calls(upstream_log)) == 3


class OtlpCollector:
    """An OTLP/HTTP traces receiver on loopback: the spans loopgate exports,
    decoded with the OpenTelemetry protobuf types."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        spans = self.spans = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource in request.resource_spans:
                    service = next(a.value.string_value for a in resource.resource.attributes if a.key == "service.name")
                    for scope in resource.scope_spans:
                        spans.extend((service, span) for span in scope.spans)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def named(self, name):
        for _ in range(200):
            found = [(service, span) for service, span in self.spans if span.name == name]
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no `{name}` span arrived: {[span.name for _, span in self.spans]}")


async def test_the_agents_trace_context_in_meta_reaches_loopgates_spans(upstream_log, tmp_path, monkeypatch):
    collector = OtlpCollector()
    # loopgate reads the standard OpenTelemetry variables.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "loopgate-under-test")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    trace_id, span_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    with LocalServer() as server:
        loopgate = start(server)
        async with gateway(loopgate, upstream_log, tmp_path) as session:
            result = await session.call_tool("read", {"path": "a.txt"}, meta={"traceparent": f"00-{trace_id}-{span_id}-01"})
            assert not result.is_error, text(result)
        [(service, submit)] = collector.named("loopgate.submit")
    assert service == "loopgate-under-test"
    assert (submit.trace_id.hex(), submit.parent_span_id.hex()) == (trace_id, span_id)
    [(_, route)] = collector.named("loopgate.route")
    assert route.parent_span_id == submit.span_id
