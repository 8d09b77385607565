"""Python client for loopgate, the human-in-the-loop control plane for AI.

    from loopgate import Client

    with Client("http://127.0.0.1:8460", "lgk_…") as lg:
        proposal = lg.submit("block_card", {"block": True}, subject={"type": "Card", "id": "c-42"}, wait=30)
        if proposal.approved:
            act(proposal.resolution.output)
"""

from ._client import MAX_WAIT, AsyncClient, Client
from ._errors import LoopgateError, Rejected
from ._models import Decision, Proposal, Resolution
from .webhooks import WebhookVerificationError, verify_webhook

__all__ = [
    "MAX_WAIT",
    "AsyncClient",
    "Client",
    "Decision",
    "LoopgateError",
    "Proposal",
    "Rejected",
    "Resolution",
    "WebhookVerificationError",
    "verify_webhook",
]
