//! Fuzz harnesses over loopgate's parsers of outside input. Each takes
//! arbitrary bytes, must not panic or overflow a stack, and checks an oracle
//! where one exists. cargo-fuzz runs them from `fuzz/` (nightly); the test
//! suite replays the committed corpora through them on stable
//! (`tests/corpora.rs`), so every finding stays a regression test.
//!
//! This crate is a test tool: it has no users but `fuzz/` and its tests.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use loopgate_core::audit::{Checkpoint, Signer, Verifier, entry, merkle, tile};
use loopgate_core::digest::DigestParts;
use loopgate_core::routing::lint::{Deployment, lint};
use loopgate_core::routing::schema::{Shape, generate};
use loopgate_core::routing::value::check_exact;
use loopgate_core::routing::{
    Defaults, Policies, ReviewPlan, RoutingRequest, ShapeRule, cases, route, typed_input,
};
use loopgate_core::{Digest, Oversight, RiskTier, Route};
use loopgate_proto as proto;
use serde_json::{Map, Value, json};

/// A harness: arbitrary bytes in, a panic when an oracle fails.
pub type Harness = fn(&[u8]);

/// The names of the harnesses, as cargo-fuzz targets and corpus folders.
pub const TARGETS: &[(&str, Harness)] = &[
    ("policy_text", policy_text),
    ("proposal_body", proposal_body),
    ("routing", routing),
    ("audit_tiles", audit_tiles),
    ("signed_note", signed_note),
    ("cursors", cursors),
];

/// The stack of a tokio blocking-pool thread, where the server parses
/// policy text: a text that overflows it would abort the server.
const SERVER_STACK: usize = 2 * 1024 * 1024;

/// Policy text (and the same text as a case file) through the validate and
/// publish path: bounds, Cedar's parser, the schema check and lint, on a
/// thread with the server's stack.
pub fn policy_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if loopgate_core::routing::bounds::MAX_BYTES < text.len() {
        return;
    }
    let text = text.to_owned();
    let worker = std::thread::Builder::new()
        .stack_size(SERVER_STACK)
        .spawn(move || {
            if let Ok(policies) = Policies::parse(&text) {
                let schema = generate([&*SHAPE]);
                let _ = schema.validate(&policies);
                let deployment = Deployment {
                    schema: Some(schema),
                    ..Deployment::default()
                };
                let _ = lint(&policies, &deployment);
                let _ = policies.ids().len();
            }
            if let Ok(file) = cases::parse(&text) {
                let policies = &*ROUTING_POLICIES;
                let _ = cases::run(policies, &file, &defaults(), |_| None);
            }
        });
    // A panic in the worker is a finding: resume it here.
    if let Ok(worker) = worker
        && let Err(panic) = worker.join()
    {
        std::panic::resume_unwind(panic);
    }
}

/// A proposal body through what `POST /v1/proposals` does before the
/// store: the depth and NUL checks, parsing, the digest, and the routing input by
/// the number rule and a declared shape.
pub fn proposal_body(data: &[u8]) {
    let shape = loopgate_server::http::extract::json_shape(data);
    if loopgate_server::http::extract::MAX_DEPTH < shape.depth || shape.nul {
        return;
    }
    let Ok(body) = serde_json::from_slice::<proto::SubmitProposal>(data) else {
        return;
    };
    let subject = json!({"type": body.subject.type_, "id": body.subject.id, "attributes": body.subject.attributes});
    let parts = DigestParts {
        system: "fuzz",
        action: &body.action,
        subject: &subject,
        input: &body.input,
        output: &body.output,
        salt: b"salt",
    };
    let _ = Digest::of(parts);
    let text = std::str::from_utf8(data).unwrap_or_default();
    for (shape, rule) in [
        (None, ShapeRule::WhenDeclared),
        (Some(&*SHAPE), ShapeRule::WhenDeclared),
        (Some(&*SHAPE), ShapeRule::Required),
    ] {
        let read = typed_input(
            shape,
            &body.action,
            &body.context,
            &body.subject.attributes,
            rule,
        );
        if let Ok(input) = read
            && input.has_float
        {
            let _ = check_exact("context", text);
        }
    }
}

/// Routing of an arbitrary JSON context against a fixed set with forbids of
/// every type. The oracle: when any forbid, evaluated alone by Cedar, holds
/// or fails to evaluate on the request, the route is `deny`.
pub fn routing(data: &[u8]) {
    let Ok(Value::Object(context)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(input) = typed_input(None, "act", &context, &Map::new(), ShapeRule::WhenDeclared) else {
        return;
    };
    let request = RoutingRequest {
        system: "s",
        action: "act",
        subject_type: "Account",
        subject_id: "a",
        input: &input,
        confidence: Some(0.5),
        risk_tier: RiskTier::High,
        oversight: Oversight::InTheLoop,
        model_version: None,
    };
    let routing = route(&ROUTING_POLICIES, &request, &defaults());
    let forbids_fire = FORBIDS.iter().any(|forbid| {
        let alone = route(forbid, &request, &defaults());
        alone.route == Route::Deny || !alone.errors.is_empty()
    });
    assert!(
        !forbids_fire || routing.route == Route::Deny,
        "a forbid held or failed, and the route is {}: {routing:?}",
        routing.route
    );
    let whole =
        loopgate_core::routing::route_with_whole_set(&ROUTING_POLICIES, &request, &defaults());
    assert_eq!(routing, whole, "the index and the whole set disagree");
}

/// Tile paths as `GET /v1/audit/tile/...` reads them, and entry bundles as
/// the offline verifier reads them.
pub fn audit_tiles(data: &[u8]) {
    if let Ok(path) = std::str::from_utf8(data)
        && let Some(id) = tile::TileId::parse(path)
    {
        assert_eq!(tile::TileId::parse(&id.path()), Some(id), "{path}");
    }
    if let Some(entries) = tile::split_bundle(data) {
        let mut bundle = Vec::new();
        for it in &entries {
            let _ = entry::parse_head(it);
            let _ = entry::index_of(it);
            if tile::push_bundle_entry(&mut bundle, it).is_err() {
                return;
            }
        }
        assert_eq!(bundle, data, "a bundle re-encodes to itself");
    }
}

/// Signed notes and checkpoints as `loopgate audit verify` and
/// `verify-receipt` read them, and inclusion proofs of a receipt.
pub fn signed_note(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Verifier::parse(text);
    let _ = Signer::parse(text);
    let _ = Checkpoint::parse_body(text);
    if let Some(verifier) = VERIFIER.as_ref()
        && let Ok(checkpoint) = Checkpoint::open(text, verifier)
    {
        // Only the key's own signatures open.
        assert_eq!(checkpoint.origin, verifier.name());
    }
    // A receipt's proof: hashes from the bytes, checked against a root.
    let hashes: Vec<&[u8]> = data.chunks(32).collect();
    if let Some((leaf, proof)) = hashes.split_first() {
        let index = u64::from(data.first().copied().unwrap_or(0));
        let size = index + u64::from(data.last().copied().unwrap_or(0)) + 1;
        let _ = merkle::verify_inclusion(index, size, leaf, proof, &[0; 32]);
        let _ = merkle::verify_consistency(index, size, leaf, &[0; 32], proof);
    }
}

/// Page cursors and `Last-Event-ID`.
pub fn cursors(data: &[u8]) {
    use loopgate_server::http::cursor;
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(Some(seq)) = cursor::decode(Some(text))
    {
        assert_eq!(
            cursor::decode(Some(&cursor::encode(seq))).ok(),
            Some(Some(seq))
        );
    }
    if let Some(id) = loopgate_server::http::events::last_event_id(data) {
        assert!(0 <= id);
    }
}

fn defaults() -> Defaults {
    Defaults {
        route: Route::Review,
        review: ReviewPlan::default_review(),
    }
}

/// A shape with every type, required and optional.
static SHAPE: LazyLock<Shape> = LazyLock::new(|| {
    serde_json::from_value(json!({
        "actions": {"act": {"context": {
            "amount": {"type": "Long", "required": true},
            "rate": "decimal",
            "country": "String",
            "flag": "Bool",
            "tags": "Set<String>",
            "codes": "Set<Long>"
        }}},
        "subject_attributes": {"country": "String"}
    }))
    .unwrap_or_default()
});

/// Forbids over every type, guarded and not, beside review and allow permits.
const FORBID_TEXTS: &[&str] = &[
    r#"@id("long") forbid(principal, action, resource) when { context.amount > 100000 };"#,
    r#"@id("long-guarded") forbid(principal, action, resource) when { context has amount && context.amount > 100000 };"#,
    r#"@id("decimal") forbid(principal, action, resource) when { context has rate && context.rate.greaterThan(decimal("0.5")) };"#,
    r#"@id("string") forbid(principal, action, resource) when { context has country && context.country == "XX" };"#,
    r#"@id("bool") forbid(principal, action, resource) when { context has flag && context.flag };"#,
    r#"@id("set") forbid(principal, action, resource) when { context has tags && context.tags.contains("bad") };"#,
    r#"@id("sum") forbid(principal, action, resource) when { context has a && context has b && context.a + context.b > 10 };"#,
];

const PERMIT_TEXTS: &str = r#"
@id("review") @reviewers("leads") @approvals("2") permit(principal, action, resource) when { context has amount && context.amount > 50 };
@id("allow") @route("allow") permit(principal, action, resource) when { context.confidence.greaterThan(decimal("0.1")) };
"#;

static ROUTING_POLICIES: LazyLock<Policies> = LazyLock::new(|| {
    let text = format!("{}\n{PERMIT_TEXTS}", FORBID_TEXTS.join("\n"));
    Policies::parse(&text).unwrap_or_else(|_| Policies::empty())
});

static FORBIDS: LazyLock<Vec<Policies>> = LazyLock::new(|| {
    FORBID_TEXTS
        .iter()
        .filter_map(|text| Policies::parse(text).ok())
        .collect()
});

/// A fixed key, so that a corpus may hold notes it signed.
static VERIFIER: LazyLock<Option<Verifier>> = LazyLock::new(|| {
    Signer::new("fuzz.example/log", [7; 32])
        .ok()
        .map(|signer| signer.verifier())
});

/// Every harness by name, for the corpus replay.
pub fn targets() -> BTreeMap<&'static str, Harness> {
    TARGETS.iter().copied().collect()
}
