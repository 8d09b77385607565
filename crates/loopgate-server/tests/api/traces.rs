//! OpenTelemetry traces: a real OTLP/HTTP receiver on loopback decodes the
//! exported protobuf, and the spans of one proposal form one tree under the
//! caller's `traceparent`, from the submission through the review to the
//! long-poll's answer and the webhook's attempt.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use loopgate_server::otel::TraceExport;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use reqwest::StatusCode;
use serde_json::json;
use tokio::net::TcpListener;

use crate::harness::{TestApp, proposal, spawn_with};

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// A webhook receiver that keeps each request's `traceparent`.
async fn hooks() -> (Arc<Mutex<Vec<String>>>, String) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let router =
        axum::Router::new()
            .route(
                "/hook",
                axum::routing::post(
                    |State(seen): State<Arc<Mutex<Vec<String>>>>,
                     headers: axum::http::HeaderMap| async move {
                        let traceparent = headers
                            .get("traceparent")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default();
                        seen.lock().unwrap().push(traceparent.to_owned());
                        StatusCode::NO_CONTENT
                    },
                ),
            )
            .with_state(Arc::clone(&seen));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (seen, url)
}

/// An OTLP/HTTP traces receiver: every span it was sent, with its
/// resource's `service.name`.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

impl Collector {
    async fn start() -> (Self, String) {
        let collector = Self::default();
        let router = axum::Router::new()
            .route("/v1/traces", axum::routing::post(receive))
            .with_state(collector.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        (collector, url)
    }

    fn spans(&self) -> Vec<(String, Span)> {
        self.spans.lock().unwrap().clone()
    }
}

async fn receive(State(collector): State<Collector>, body: Bytes) -> Vec<u8> {
    let request = ExportTraceServiceRequest::decode(body).unwrap();
    let mut spans = collector.spans.lock().unwrap();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find(|kv| kv.key == "service.name")
            .map(|kv| text(kv.value.as_ref().and_then(|v| v.value.as_ref())))
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                spans.push((service.clone(), span));
            }
        }
    }
    // An empty ExportTraceServiceResponse.
    Vec::new()
}

fn text(value: Option<&Any>) -> String {
    match value {
        Some(Any::StringValue(text)) => text.clone(),
        Some(Any::IntValue(n)) => n.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::ArrayValue(items)) => items
            .values
            .iter()
            .map(|v| text(v.value.as_ref()))
            .collect::<Vec<_>>()
            .join(","),
        other => format!("{other:?}"),
    }
}

fn attributes(span: &Span) -> HashMap<String, String> {
    span.attributes
        .iter()
        .map(|kv| {
            (
                kv.key.clone(),
                text(kv.value.as_ref().and_then(|v| v.value.as_ref())),
            )
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn traced() -> (TestApp, Collector) {
    let (collector, url) = Collector::start().await;
    let app = spawn_with(|config| {
        config.traces = Some(TraceExport {
            endpoint: Some(url),
            service_name: "loopgate-under-test".into(),
        });
        // The webhook receiver listens on loopback.
        config.webhook_allow_private = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    (app, collector)
}

/// The spans sent so far, once every name in `names` is among them.
async fn spans_named(app: &TestApp, collector: &Collector, names: &[&str]) -> Vec<Span> {
    for _ in 0..100 {
        app.app.flush_traces().await;
        let spans = collector.spans();
        if names
            .iter()
            .all(|name| spans.iter().any(|(_, span)| span.name == *name))
        {
            assert!(
                spans
                    .iter()
                    .all(|(service, _)| service == "loopgate-under-test")
            );
            return spans.into_iter().map(|(_, span)| span).collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "not every span of {names:?} arrived: {:?}",
        collector.spans()
    );
}

fn one<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    let found: Vec<&Span> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "{name}: {found:?}");
    found[0]
}

#[tokio::test]
async fn a_proposal_s_spans_form_one_tree_from_the_caller_s_traceparent_to_the_long_poll_answer() {
    let (app, collector) = traced().await;
    let (key, ann) = app.ops_review().await;
    let (hooked, hook) = hooks().await;
    let set = app
        .call(
            reqwest::Method::PUT,
            "/v1/systems/fraud-detector/webhook",
            Some(crate::harness::ADMIN_TOKEN),
            Some(json!({"url": hook, "types": ["proposal.resolved"]})),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    // An event stream is open, so resolutions are published on it.
    let stream = app
        .http
        .get(format!("{}/v1/events", app.base))
        .bearer_auth(crate::harness::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let submitted = app
        .http
        .post(format!("{}/v1/proposals", app.base))
        .bearer_auth(&key)
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .json(&proposal("refund", json!({"amount": 4242}), json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(submitted.status(), StatusCode::CREATED);
    let submitted = submitted.json::<serde_json::Value>().await.unwrap();
    let id = submitted["id"].as_str().unwrap().to_owned();
    let waiting = {
        let request = app
            .http
            .get(format!("{}/v1/proposals/{id}?wait=30s", app.base))
            .bearer_auth(&key)
            .send();
        tokio::spawn(request)
    };
    let task = app.task_of(&ann, &id).await;
    let decided = app.decide(&ann, &task, "approve").await;
    assert_eq!(decided.status, StatusCode::OK, "{}", decided.body);
    let answered = waiting.await.unwrap().unwrap();
    assert_eq!(answered.status(), StatusCode::OK);

    let names = [
        "loopgate.submit",
        "loopgate.route",
        "loopgate.review",
        "loopgate.decision",
        "loopgate.deliver",
    ];
    let mut spans = spans_named(&app, &collector, &names).await;
    for _ in 0..100 {
        let deliveries = spans
            .iter()
            .filter(|s| s.name == "loopgate.deliver")
            .count();
        if deliveries == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        spans = spans_named(&app, &collector, &names).await;
    }
    drop(stream);
    for span in &spans {
        assert_eq!(hex(&span.trace_id), CALLER_TRACE, "{span:?}");
    }
    let submit = one(&spans, "loopgate.submit");
    assert_eq!(hex(&submit.parent_span_id), CALLER_SPAN);
    let submit_attributes = attributes(submit);
    assert_eq!(submit_attributes["loopgate.proposal.id"], id);
    assert_eq!(submit_attributes["loopgate.route"], "review");
    assert_eq!(submit_attributes["loopgate.status"], "pending");
    let route = one(&spans, "loopgate.route");
    assert_eq!(route.parent_span_id, submit.span_id);
    let route_attributes = attributes(route);
    assert_eq!(
        route_attributes["loopgate.policy.version"],
        submitted["policy_version"].as_str().unwrap()
    );
    assert_eq!(route_attributes["loopgate.review.group"], "ops");
    assert!(route_attributes.contains_key("loopgate.policy.matched"));
    let review = one(&spans, "loopgate.review");
    assert_eq!(review.parent_span_id, submit.span_id);
    let review_attributes = attributes(review);
    assert_eq!(review_attributes["loopgate.task.group"], "ops");
    assert_eq!(review_attributes["loopgate.task.level"], "0");
    assert_eq!(review_attributes["loopgate.task.kind"], "gate");
    assert_eq!(review_attributes["loopgate.task.outcome"], "done");
    assert!(review.start_time_unix_nano <= review.end_time_unix_nano);
    let decision = one(&spans, "loopgate.decision");
    assert_eq!(decision.parent_span_id, review.span_id);
    let decision_attributes = attributes(decision);
    assert_eq!(decision_attributes["loopgate.verdict"], "approve");
    assert_eq!(decision_attributes["loopgate.effect"], "resolved");
    assert_eq!(
        decision_attributes["loopgate.reviewer.id"],
        app.user_id("ann").await
    );
    let deliveries: HashMap<String, &Span> = spans
        .iter()
        .filter(|s| s.name == "loopgate.deliver")
        .map(|s| (attributes(s)["loopgate.delivery"].clone(), s))
        .collect();
    let mut how: Vec<&str> = deliveries.keys().map(String::as_str).collect();
    how.sort_unstable();
    assert_eq!(how, ["event_stream", "long_poll", "webhook"]);
    for deliver in deliveries.values() {
        assert_eq!(deliver.parent_span_id, submit.span_id);
    }
    assert_eq!(
        attributes(deliveries["long_poll"])["loopgate.status"],
        "approved"
    );
    let webhook = attributes(deliveries["webhook"]);
    assert_eq!(webhook["loopgate.webhook.attempt"], "1");
    assert_eq!(webhook["http.response.status_code"], "204");
    assert_eq!(webhook["loopgate.event.kind"], "proposal.resolved");
    // The webhook request carried the proposal's context: its receiver's
    // spans join the trace, under the submission.
    assert_eq!(
        hooked.lock().unwrap().clone(),
        [format!("00-{CALLER_TRACE}-{}-01", hex(&submit.span_id))]
    );
    // Ids, digests and enums only: no payload, no reviewer's name.
    for span in &spans {
        for (key, value) in attributes(span) {
            for secret in ["4242", "acct-1", "tx-1", "DE", "ann", "test"] {
                assert!(
                    !value.split(',').any(|part| part == secret),
                    "{} carries `{secret}` in {key}",
                    span.name
                );
            }
        }
    }
}

#[tokio::test]
async fn escalations_by_deadline_are_children_of_the_review_and_a_bad_traceparent_starts_a_new_trace()
 {
    let (app, collector) = traced().await;
    app.system("fraud-detector", "in_the_loop").await;
    let key = app.system("lead-scorer", "in_the_loop").await;
    let published = app
        .publish(
            r#"@reviewers("ops") @sla("PT1H") @escalate_to("risk") permit(principal, action, resource);"#,
        )
        .await;
    assert_eq!(published.status, StatusCode::CREATED, "{}", published.body);
    app.user("ann", &["reviewer"], &["ops"]).await;
    let submitted = app
        .http
        .post(format!("{}/v1/proposals", app.base))
        .bearer_auth(&key)
        .header("traceparent", "00-not-a-trace-01")
        .json(&proposal("score", json!({"score": 7}), json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(submitted.status(), StatusCode::CREATED);
    app.advance(Duration::from_secs(3601)).await;
    let spans = spans_named(
        &app,
        &collector,
        &["loopgate.submit", "loopgate.escalation"],
    )
    .await;
    let submit = one(&spans, "loopgate.submit");
    assert!(submit.parent_span_id.is_empty(), "a new root: {submit:?}");
    let escalation = one(&spans, "loopgate.escalation");
    assert_eq!(escalation.trace_id, submit.trace_id);
    let escalated = attributes(escalation);
    assert_eq!(escalated["loopgate.escalation.by"], "deadline");
    assert_eq!(escalated["loopgate.escalation.from_group"], "ops");
    assert_eq!(escalated["loopgate.task.group"], "risk");
    assert_eq!(escalated["loopgate.task.level"], "1");
    // Its parent is the task's review span, which is still open.
    assert!(spans.iter().all(|s| s.span_id != escalation.parent_span_id));
    assert_ne!(escalation.parent_span_id, submit.span_id);
}
