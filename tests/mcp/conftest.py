"""Fixtures: a real loopgate server (the binary of this checkout, through the
Python SDK's `loopgate.testing.LocalServer`) with a system key, a reviewer,
and the gateway policy."""

import json
import sys
from pathlib import Path

import pytest
from loopgate.testing import LocalServer

POLICY = """
@id("read-freely") @route("allow")
permit (principal, action == Action::"mcp:files/read", resource);
@id("never-delete")
forbid (principal, action == Action::"mcp:files/delete", resource);
@id("writes-need-a-person") @reviewers("ops")
permit (principal, action == Action::"mcp:files/write", resource);
"""


def start(server: LocalServer) -> LocalServer:
    server.key = server.system_key("agent")
    server.reviewer_token = server.reviewer("rita", ["ops"])
    server.publish(POLICY)
    return server


@pytest.fixture
def loopgate():
    with LocalServer() as server:
        yield start(server)


@pytest.fixture
def upstream_log(tmp_path):
    path = tmp_path / "upstream.jsonl"
    path.touch()
    return path


def upstream_calls(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def gateway_command(loopgate: LocalServer, *extra: str) -> tuple[str, list[str]]:
    """The command an MCP client runs: `loopgate mcp` in front of upstream.py."""
    return loopgate.binary, [
        "mcp", "--name", "files", "--server", loopgate.base, "--token", loopgate.key, *extra,
        "--", sys.executable, str(Path(__file__).parent / "upstream.py"),
    ]
