"""MCP gateway overhead: the same allowed tool call, N times in a row, made by
the official Python MCP client directly to an upstream (official Python MCP
server over stdio) and through `loopgate mcp` in front of it, against a real
loopgate server. Prints p50/p90/p99 of both and the difference.

    target/pyvenv/bin/python scripts/mcp-bench.py [N] [LOOPGATE_BIN]

(after `./scripts/test` made target/pyvenv; LOOPGATE_BIN defaults to $LOOPGATE_BIN)

(Use a release build for figures: `cargo build --release -p loopgate` and pass
target/release/loopgate.)
"""

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "mcp"))

import conftest  # noqa: E402
from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402

UPSTREAM = str(Path(conftest.__file__).parent / "upstream.py")


async def timings(params: StdioServerParameters, n: int) -> list[float]:
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            for i in range(50):  # warm-up
                await session.call_tool("read", {"path": f"w{i}"})
            out = []
            for i in range(n):
                started = time.perf_counter()
                result = await session.call_tool("read", {"path": f"f{i}"})
                out.append((time.perf_counter() - started) * 1000)
                assert not result.is_error, result
            return out


def summary(name: str, ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=100)
    return f"{name:<22} p50 {q[49]:7.3f} ms   p90 {q[89]:7.3f} ms   p99 {q[98]:7.3f} ms   (n={len(ms)})"


async def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    if len(sys.argv) > 2:
        os.environ["LOOPGATE_BIN"] = sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with conftest.LocalServer() as server:
            conftest.start(server)
            env = {**os.environ, "UPSTREAM_LOG": os.devnull, "RUST_LOG": "warn"}
            direct = await timings(StdioServerParameters(command=sys.executable, args=[UPSTREAM], env=env), n)
            command, args = conftest.gateway_command(server, "--state", str(tmp / "state.json"))
            gated = await timings(StdioServerParameters(command=command, args=args, env=env), n)
    print(summary("direct", direct))
    print(summary("through loopgate mcp", gated))
    print(f"overhead p50 {statistics.median(gated) - statistics.median(direct):.3f} ms")


asyncio.run(main())
