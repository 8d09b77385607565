"""Verifying loopgate's webhooks (Standard Webhooks: `webhook-id`,
`webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

TOLERANCE = 5 * 60
"""Messages whose timestamp is further than this from now (seconds) are refused."""


class WebhookVerificationError(Exception):
    """The message is not from loopgate, was altered, or is too old."""


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value loopgate sends for this message."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify_webhook(secret: str, headers: Mapping[str, str], body: bytes | str, *, now: float | None = None) -> dict[str, Any]:
    """Checks a delivery and returns its JSON (`{"type", "timestamp", "data": {"event", "proposal"}}`).

    `headers` may be any mapping (header names are matched without regard to
    case); `body` must be the raw request body. Deduplicate on `webhook-id`:
    delivery is at least once.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id = lower["webhook-id"]
        timestamp = int(lower["webhook-timestamp"])
        signatures = lower["webhook-signature"]
    except (KeyError, ValueError) as error:
        raise WebhookVerificationError("missing or malformed webhook-* headers") from error
    if abs((time.time() if now is None else now) - timestamp) > TOLERANCE:
        raise WebhookVerificationError("the message timestamp is too far from now")
    raw = body.encode() if isinstance(body, str) else body
    expected = sign(secret, msg_id, timestamp, raw).split(",", 1)[1]
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return json.loads(raw)
    raise WebhookVerificationError("no signature matches")
