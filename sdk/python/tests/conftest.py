import pytest

from loopgate.testing import LocalServer

POLICY = """
@id("small-refunds") @route("allow")
permit (principal, action == Action::"refund", resource) when { context.amount < 100 };
@id("big-refunds") @reviewers("ops")
permit (principal, action == Action::"refund", resource) when { context.amount >= 100 };
@id("no-deletes")
forbid (principal, action == Action::"delete_account", resource);
"""


@pytest.fixture
def server():
    with LocalServer() as server:
        server.key = server.system_key("agent")
        server.rita = server.reviewer("rita", ["ops"])
        server.publish(POLICY)
        yield server
