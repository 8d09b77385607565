import asyncio
import threading
import time

import httpx
import pytest
import standardwebhooks

from loopgate import AsyncClient, Client, LoopgateError, Rejected, verify_webhook
from loopgate.webhooks import WebhookVerificationError, sign


def approve_soon(server, verdict="approve", **extra):
    """A reviewer decides the first task that appears, from another thread."""

    def run():
        with Client(server.base, server.rita) as rita:
            for _ in range(200):
                tasks = rita.tasks()
                if tasks:
                    task = tasks[0]
                    rita.decide(task["id"], verdict, seen_digest=task["digest"], rationale="looked at it", **extra)
                    return
                time.sleep(0.05)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_allowed_and_denied_proposals_resolve_at_once(server):
    with Client(server.base, server.key) as lg:
        small = lg.submit("refund", {"amount": 20}, context={"amount": 20}, subject={"type": "Order", "id": "o-1"})
        assert small.approved and small.resolution.decided_by == "policy"
        assert small.resolution.matched_policies == ["small-refunds"]
        denied = lg.submit("delete_account", {}, wait=5)
        assert denied.status == "rejected"
        with pytest.raises(Rejected):
            lg.wait_approved(denied.id)


def test_wait_returns_the_reviewers_edit(server):
    with Client(server.base, server.key) as lg:
        big = lg.submit("refund", {"amount": 500}, context={"amount": 500})
        assert big.status == "pending" and big.route == "review"
        thread = approve_soon(server, "modify", output={"amount": 250})
        assert lg.wait_approved(big.id, timeout=30) == {"amount": 250}
        thread.join()
        final = lg.get(big.id)
        assert final.resolution.modified
        assert [d.verdict for d in final.resolution.decisions] == ["modify"]


def test_a_wait_that_runs_out_returns_the_pending_proposal(server):
    with Client(server.base, server.key) as lg:
        big = lg.submit("refund", {"amount": 500}, context={"amount": 500})
        started = time.monotonic()
        still = lg.wait(big.id, timeout=0.3)
        assert still.status == "pending" and 0.25 < time.monotonic() - started < 5
        with pytest.raises(TimeoutError):
            lg.wait_approved(big.id, timeout=0.2)
        assert lg.cancel(big.id).status == "cancelled"


def test_an_idempotency_key_makes_one_proposal(server):
    with Client(server.base, server.key) as lg:
        first = lg.submit("refund", {"amount": 500}, context={"amount": 500}, idempotency_key="order-7")
        again = lg.submit("refund", {"amount": 500}, context={"amount": 500}, idempotency_key="order-7")
        assert first.id == again.id


def test_problems_are_exceptions_with_the_servers_code(server):
    with Client(server.base, server.key) as lg:
        with pytest.raises(LoopgateError) as error:
            lg.get("prp_nothing")
        assert error.value.status == 404 and error.value.code == "not_found"
    with Client("http://127.0.0.1:9", "x", retries=0) as nowhere:
        with pytest.raises(LoopgateError, match="cannot reach"):
            nowhere.get("prp_x")


def test_the_async_client_waits_too(server):
    async def main():
        async with AsyncClient(server.base, server.key) as lg:
            big = await lg.submit("refund", {"amount": 900}, context={"amount": 900})
            thread = approve_soon(server, "reject")
            with pytest.raises(Rejected) as rejected:
                await lg.wait_approved(big.id, timeout=30)
            thread.join()
            assert rejected.value.proposal.resolution.decisions[0].rationale == "looked at it"

    asyncio.run(main())


def test_webhook_signatures_verify_like_the_reference_library():
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"type": "proposal.resolved", "data": {}}'
    now = int(time.time())
    headers = {"Webhook-Id": "msg_7", "Webhook-Timestamp": str(now), "Webhook-Signature": sign(secret, "msg_7", now, body)}
    assert verify_webhook(secret, headers, body)["type"] == "proposal.resolved"
    standardwebhooks.Webhook(secret).verify(body, {k.lower(): v for k, v in headers.items()})
    with pytest.raises(WebhookVerificationError):
        verify_webhook(secret, headers, body + b" ")
    with pytest.raises(WebhookVerificationError):
        verify_webhook(secret, headers, body, now=now + 3600)


class _Recording(httpx.HTTPTransport):
    """A real transport that remembers the headers it sent."""

    def __init__(self):
        super().__init__()
        self.sent = []

    def handle_request(self, request):
        self.sent.append(dict(request.headers))
        return super().handle_request(request)


def test_the_callers_trace_context_is_sent(server):
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    transport = _Recording()
    with Client(server.base, server.key, transport=transport) as lg:
        lg.submit("refund", {"amount": 20}, context={"amount": 20}, traceparent=given)
        assert transport.sent[-1]["traceparent"] == given
        # Without one: the current OpenTelemetry span's context.
        current = SpanContext(trace_id=0x0AF7651916CD43DD8448EB211C80319C, span_id=0xB7AD6B7169203331,
                              is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
        with trace.use_span(NonRecordingSpan(current)):
            lg.submit("refund", {"amount": 20}, context={"amount": 20})
        assert transport.sent[-1]["traceparent"] == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        # And none outside a span.
        lg.submit("refund", {"amount": 20}, context={"amount": 20})
        assert "traceparent" not in transport.sent[-1]
