"""An upstream MCP server for the gateway tests (official `mcp` package, stdio).

Every call it receives is appended, as one JSON line, to the file named by
UPSTREAM_LOG, so tests can check what reached it and how often.
"""

import json
import os

from mcp.server.mcpserver import MCPServer

server = MCPServer("files")


def _log(tool: str, arguments: dict) -> None:
    with open(os.environ["UPSTREAM_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps({"tool": tool, "arguments": arguments}) + "\n")


@server.tool()
def read(path: str) -> str:
    """Read a file."""
    _log("read", {"path": path})
    return f"contents of {path}"


@server.tool()
def write(path: str, text: str) -> str:
    """Write a file."""
    _log("write", {"path": path, "text": text})
    return f"wrote {len(text)} characters to {path}"


@server.tool()
def delete(path: str) -> str:
    """Delete a file."""
    _log("delete", {"path": path})
    return f"deleted {path}"


if __name__ == "__main__":
    server.run()
