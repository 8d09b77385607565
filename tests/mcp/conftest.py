"""Fixtures: a real loopgate server (the binary of this checkout) on a
loopback port with a fresh data directory, a system key, a reviewer, and
the gateway policy."""

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "lgt_mcp_test_admin_token_0123456"
POLICY = """
@id("read-freely") @route("allow")
permit (principal, action == Action::"mcp:files/read", resource);
@id("never-delete")
forbid (principal, action == Action::"mcp:files/delete", resource);
@id("writes-need-a-person") @reviewers("ops")
permit (principal, action == Action::"mcp:files/write", resource);
"""


def loopgate_bin() -> str:
    binary = os.environ.get("LOOPGATE_BIN", str(ROOT / "target" / "debug" / "loopgate"))
    if not Path(binary).exists():
        raise RuntimeError(f"{binary} does not exist: run `cargo build -p loopgate` or set LOOPGATE_BIN")
    return binary


class Loopgate:
    def __init__(self, tmp: Path):
        self.proc = subprocess.Popen(
            [loopgate_bin(), "serve", "--bind", "127.0.0.1:0", "--data-dir", str(tmp / "data")],
            env={**os.environ, "LOOPGATE_BOOTSTRAP_TOKEN": ADMIN, "RUST_LOG": "warn"},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("loopgate listening on "):
                self.base = line.removeprefix("loopgate listening on ").strip()
                break
        else:
            raise RuntimeError("loopgate did not start")
        self.admin = httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {ADMIN}"})

    def call(self, method: str, path: str, token: str | None = None, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = self.admin.request(method, path, headers=headers, **kwargs)
        assert response.status_code < 300, response.text
        return response

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def loopgate(tmp_path):
    server = Loopgate(tmp_path)
    try:
        server.call("POST", "/v1/systems", json={"id": "agent", "name": "agent", "risk_tier": "high", "oversight": "in_the_loop"})
        server.key = server.call("POST", "/v1/systems/agent/keys").json()["secret"]
        server.call("POST", "/v1/policies", json={"text": POLICY, "description": "mcp tests"})
        user = server.call("POST", "/v1/users", json={"username": "rita", "roles": ["reviewer"], "groups": ["ops"]}).json()
        server.reviewer = server.call("POST", f"/v1/users/{user['id']}/tokens").json()["secret"]
        yield server
    finally:
        server.stop()


@pytest.fixture
def upstream_log(tmp_path):
    path = tmp_path / "upstream.jsonl"
    path.touch()
    return path


def upstream_calls(path: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def gateway_command(loopgate: Loopgate, *extra: str) -> tuple[str, list[str]]:
    """The command an MCP client runs: `loopgate mcp` in front of upstream.py."""
    return loopgate_bin(), [
        "mcp", "--name", "files", "--server", loopgate.base, "--token", loopgate.key, *extra,
        "--", sys.executable, str(Path(__file__).parent / "upstream.py"),
    ]
