"""A client generated from the served OpenAPI document with
openapi-python-client (as an API user would make one) submits a proposal, a
reviewer decides it through the same client, and the system reads the
resolution: the document describes the real contract closely enough to call
it."""

import subprocess
import sys
from pathlib import Path

import httpx
from loopgate.testing import LocalServer

POLICY = '@id("everything-reviewed") @reviewers("ops") permit(principal, action, resource);'


def generate(server: LocalServer, into: Path) -> None:
    spec = into / "openapi.json"
    spec.write_text(httpx.get(f"{server.base}/openapi.json").text)
    generator = Path(sys.executable).parent / "openapi-python-client"
    subprocess.run(
        [str(generator), "generate", "--path", str(spec), "--meta", "none", "--output-path", str(into / "lg_generated")],
        check=True,
        capture_output=True,
    )
    sys.path.insert(0, str(into))


def test_a_generated_client_submits_decides_and_reads_the_resolution(tmp_path):
    with LocalServer() as server:
        key = server.system_key("fraud-detector")
        rita = server.reviewer("rita", ["ops"])
        server.publish(POLICY)
        generate(server, tmp_path)
        from lg_generated.api.proposals import proposals_get, proposals_submit
        from lg_generated.api.tasks import tasks_decide, tasks_list
        from lg_generated.client import AuthenticatedClient
        from lg_generated.models import DecisionRequest, Problem, Proposal, SubmitProposal

        system = AuthenticatedClient(base_url=server.base, token=key)
        reviewer = AuthenticatedClient(base_url=server.base, token=rita)
        submitted = proposals_submit.sync(
            client=system,
            body=SubmitProposal.from_dict({
                "action": "refund",
                "subject": {"type": "Order", "id": "o-1", "attributes": {}},
                "output": {"amount": 500},
                "confidence": 0.9,
            }),
        )
        assert isinstance(submitted, Proposal), submitted
        assert (submitted.status.value, submitted.route.value) == ("pending", "review")

        page = tasks_list.sync(client=reviewer)
        [task] = [t for t in page.items if t.proposal_id == submitted.id]
        decided = tasks_decide.sync(
            task.id,
            client=reviewer,
            body=DecisionRequest.from_dict({"verdict": "approve", "seen_digest": task.digest, "rationale": "fine"}),
        )
        assert not isinstance(decided, Problem), decided

        resolved = proposals_get.sync(submitted.id, client=system, wait="5s")
        assert isinstance(resolved, Proposal), resolved
        assert resolved.status.value == "approved"
        assert resolved.resolution.decided_by.value == "reviewers"

        # A refusal is the problem document, typed.
        refused = tasks_decide.sync(
            task.id,
            client=reviewer,
            body=DecisionRequest.from_dict({"verdict": "approve", "seen_digest": task.digest, "rationale": "again"}),
        )
        assert isinstance(refused, Problem), refused
        assert refused.status == 409
