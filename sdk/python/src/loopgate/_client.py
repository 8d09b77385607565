from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx

from ._errors import LoopgateError, Rejected
from ._models import Proposal

MAX_WAIT = 60.0
"""The longest single long-poll the server holds (seconds)."""


def _proposal_body(action: str, output: Any, *, subject: dict[str, Any] | None, input: Any, confidence: float | None,
                   explanation: Any, context: dict[str, Any] | None, idempotency_key: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "action": action,
        "subject": subject or {"type": "Unknown", "id": "-"},
        "input": input if input is not None else {},
        "output": output,
        "idempotency_key": idempotency_key or f"py-{uuid.uuid4()}",
    }
    if confidence is not None:
        body["confidence"] = confidence
    if explanation is not None:
        body["explanation"] = explanation
    if context:
        body["context"] = context
    return body


def _decision_body(verdict: str, seen_digest: str, rationale: str | None, output: Any,
                   message: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"verdict": verdict, "seen_digest": seen_digest}
    if rationale is not None:
        body["rationale"] = rationale
    if output is not None:
        body["output"] = output
    if message is not None:
        body["message"] = message
    return body


def _check(response: httpx.Response) -> Any:
    if response.is_success:
        return response.json() if response.content else None
    try:
        problem = response.json()
    except ValueError:
        raise LoopgateError(f"{response.request.url} answered {response.status_code}", status=response.status_code) from None
    detail = problem.get("detail") or problem.get("title") or str(response.status_code)
    if problem.get("help"):
        detail = f"{detail} ({problem['help']})"
    raise LoopgateError(detail, status=response.status_code, code=problem.get("code"), problem=problem)


def _trace_headers(traceparent: str | None) -> dict[str, str]:
    """The caller's W3C trace context: `traceparent` when given, else the
    current OpenTelemetry context when `opentelemetry-api` is installed, so
    that loopgate's spans of the call join the caller's trace."""
    if traceparent:
        return {"traceparent": traceparent}
    try:
        from opentelemetry import propagate
    except ImportError:
        return {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {key: value for key, value in carrier.items() if key in ("traceparent", "tracestate")}


def _wait_param(seconds: float | None) -> dict[str, str]:
    return {} if not seconds else {"wait": f"{int(min(seconds, MAX_WAIT) * 1000)}ms"}


class Client:
    """A synchronous client with one credential (a system API key or a user token).

    Submissions carry an idempotency key (one is made when you give none), and
    are retried on connection errors: a retry never makes a second proposal.
    """

    def __init__(self, base_url: str, token: str, *, timeout: float = MAX_WAIT + 30, retries: int = 3,
                 transport: httpx.BaseTransport | None = None):
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers={"Authorization": f"Bearer {token}"},
                                  timeout=timeout, transport=transport)
        self._retries = retries

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, *, retry: bool = True, **kwargs) -> Any:
        """One call; connection errors are retried when `retry` (reads, and
        submissions, which carry an idempotency key)."""
        kwargs["headers"] = {**_trace_headers(kwargs.pop("traceparent", None)), **kwargs.get("headers", {})}
        for attempt in range(self._retries + 1):
            try:
                return _check(self._http.request(method, path, **kwargs))
            except httpx.TransportError as error:
                if attempt == self._retries or not retry:
                    raise LoopgateError(f"cannot reach {self._http.base_url}: {error}") from error
                time.sleep(0.1 * (attempt + 1))
        raise AssertionError("unreachable")

    def submit(self, action: str, output: Any, *, subject: dict[str, Any] | None = None, input: Any = None,
               confidence: float | None = None, explanation: Any = None, context: dict[str, Any] | None = None,
               idempotency_key: str | None = None, wait: float | None = None,
               traceparent: str | None = None) -> Proposal:
        """Submits a proposal; with `wait` (seconds, at most 60), returns as soon as it is resolved.

        `traceparent` (W3C Trace Context) puts loopgate's spans of this proposal
        in the caller's trace; without it, the current OpenTelemetry context is
        sent when `opentelemetry-api` is installed."""
        body = _proposal_body(action, output, subject=subject, input=input, confidence=confidence,
                              explanation=explanation, context=context, idempotency_key=idempotency_key)
        return Proposal.from_json(self._request("POST", "/v1/proposals", json=body, params=_wait_param(wait),
                                                traceparent=traceparent))

    def get(self, proposal_id: str, *, wait: float | None = None) -> Proposal:
        """Reads a proposal; with `wait`, long-polls until it is resolved or the wait runs out."""
        return Proposal.from_json(self._request("GET", f"/v1/proposals/{proposal_id}", params=_wait_param(wait)))

    def wait(self, proposal_id: str, *, timeout: float | None = None) -> Proposal:
        """Long-polls until the proposal is resolved (or `timeout` seconds pass: then it is still pending)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = MAX_WAIT if deadline is None else deadline - time.monotonic()
            proposal = self.get(proposal_id, wait=max(left, 0.001))
            if proposal.resolved or (deadline is not None and time.monotonic() >= deadline):
                return proposal

    def wait_approved(self, proposal_id: str, *, timeout: float | None = None) -> Any:
        """The approved output (a reviewer's edit included); raises `Rejected` otherwise."""
        proposal = self.wait(proposal_id, timeout=timeout)
        if proposal.resolution is None:
            raise TimeoutError(f"{proposal_id} is still pending")
        if not proposal.approved:
            raise Rejected(proposal)
        return proposal.resolution.output

    def cancel(self, proposal_id: str) -> Proposal:
        """Withdraws a pending proposal."""
        return Proposal.from_json(self._request("POST", f"/v1/proposals/{proposal_id}/cancel", retry=False))

    def decide(self, task_id: str, verdict: str, *, seen_digest: str, rationale: str | None = None,
               output: Any = None, message: str | None = None) -> dict[str, Any]:
        """Decides a review task (a reviewer's token): approve, reject, modify (with `output`),
        escalate, or respond (with `message`: words for the AI instead of a yes or no)."""
        body = _decision_body(verdict, seen_digest, rationale, output, message)
        return self._request("POST", f"/v1/tasks/{task_id}/decision", json=body, retry=False)

    def tasks(self, **filters: str) -> list[dict[str, Any]]:
        """The caller's review queue (filters: state, group, system)."""
        return self._request("GET", "/v1/tasks", params=filters)["items"]


class AsyncClient:
    """The asynchronous twin of `Client`."""

    def __init__(self, base_url: str, token: str, *, timeout: float = MAX_WAIT + 30, retries: int = 3,
                 transport: httpx.AsyncBaseTransport | None = None):
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), headers={"Authorization": f"Bearer {token}"},
                                       timeout=timeout, transport=transport)
        self._retries = retries

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, *, retry: bool = True, **kwargs) -> Any:
        kwargs["headers"] = {**_trace_headers(kwargs.pop("traceparent", None)), **kwargs.get("headers", {})}
        for attempt in range(self._retries + 1):
            try:
                return _check(await self._http.request(method, path, **kwargs))
            except httpx.TransportError as error:
                if attempt == self._retries or not retry:
                    raise LoopgateError(f"cannot reach {self._http.base_url}: {error}") from error
                await asyncio.sleep(0.1 * (attempt + 1))
        raise AssertionError("unreachable")

    async def submit(self, action: str, output: Any, *, subject: dict[str, Any] | None = None, input: Any = None,
                     confidence: float | None = None, explanation: Any = None, context: dict[str, Any] | None = None,
                     idempotency_key: str | None = None, wait: float | None = None,
                     traceparent: str | None = None) -> Proposal:
        body = _proposal_body(action, output, subject=subject, input=input, confidence=confidence,
                              explanation=explanation, context=context, idempotency_key=idempotency_key)
        return Proposal.from_json(await self._request("POST", "/v1/proposals", json=body, params=_wait_param(wait),
                                                      traceparent=traceparent))

    async def get(self, proposal_id: str, *, wait: float | None = None) -> Proposal:
        return Proposal.from_json(await self._request("GET", f"/v1/proposals/{proposal_id}", params=_wait_param(wait)))

    async def wait(self, proposal_id: str, *, timeout: float | None = None) -> Proposal:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            left = MAX_WAIT if deadline is None else deadline - loop.time()
            proposal = await self.get(proposal_id, wait=max(left, 0.001))
            if proposal.resolved or (deadline is not None and loop.time() >= deadline):
                return proposal

    async def wait_approved(self, proposal_id: str, *, timeout: float | None = None) -> Any:
        proposal = await self.wait(proposal_id, timeout=timeout)
        if proposal.resolution is None:
            raise TimeoutError(f"{proposal_id} is still pending")
        if not proposal.approved:
            raise Rejected(proposal)
        return proposal.resolution.output

    async def cancel(self, proposal_id: str) -> Proposal:
        return Proposal.from_json(await self._request("POST", f"/v1/proposals/{proposal_id}/cancel", retry=False))

    async def decide(self, task_id: str, verdict: str, *, seen_digest: str, rationale: str | None = None,
                     output: Any = None, message: str | None = None) -> dict[str, Any]:
        body = _decision_body(verdict, seen_digest, rationale, output, message)
        return await self._request("POST", f"/v1/tasks/{task_id}/decision", json=body, retry=False)

    async def tasks(self, **filters: str) -> list[dict[str, Any]]:
        return (await self._request("GET", "/v1/tasks", params=filters))["items"]
