"""A real loopgate server for tests: the `loopgate` binary on a loopback port
with a fresh data directory, stopped on exit.

    with LocalServer() as server:
        admin = server.admin()          # an httpx.Client with the admin token
        ...
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import httpx

ADMIN_TOKEN = "lgt_python_test_admin_token_000"


class LocalServer:
    def __init__(self, binary: str | None = None, data_dir: str | Path | None = None):
        self.binary = binary or os.environ.get("LOOPGATE_BIN") or shutil.which("loopgate")
        if not self.binary or not Path(self.binary).exists():
            raise RuntimeError("no loopgate binary: set LOOPGATE_BIN or put `loopgate` on PATH")
        self._tmp = None if data_dir else tempfile.TemporaryDirectory()
        self.data_dir = Path(data_dir) if data_dir else Path(self._tmp.name) / "data"
        self.base = ""
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> LocalServer:
        self._proc = subprocess.Popen(
            [self.binary, "serve", "--bind", "127.0.0.1:0", "--data-dir", str(self.data_dir)],
            env={**os.environ, "LOOPGATE_BOOTSTRAP_TOKEN": ADMIN_TOKEN, "RUST_LOG": "warn"},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            if line.startswith("loopgate listening on "):
                self.base = line.removeprefix("loopgate listening on ").strip()
                return self
        self._proc.wait(timeout=10)
        raise RuntimeError(f"loopgate did not start (exit {self._proc.returncode})")

    def __exit__(self, *exc) -> None:
        if self._proc:
            self._proc.terminate()
            self._proc.wait(timeout=10)
        if self._tmp:
            self._tmp.cleanup()

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """An admin call that must succeed; its JSON."""
        with self.admin() as http:
            response = http.request(method, path, **kwargs)
        if response.status_code >= 300:
            raise AssertionError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    def system_key(self, system: str, oversight: str = "in_the_loop") -> str:
        """Registers a system and returns a new API key for it."""
        self.call("POST", "/v1/systems", json={"id": system, "name": system, "risk_tier": "high", "oversight": oversight})
        return self.call("POST", f"/v1/systems/{system}/keys")["secret"]

    def reviewer(self, username: str, groups: list[str]) -> str:
        """Creates a reviewer and returns their token."""
        user = self.call("POST", "/v1/users", json={"username": username, "roles": ["reviewer"], "groups": groups})
        return self.call("POST", f"/v1/users/{user['id']}/tokens")["secret"]

    def publish(self, policy: str) -> None:
        self.call("POST", "/v1/policies", json={"text": policy, "description": "test"})
