//! OpenTelemetry traces of a proposal's life: its submission (with routing),
//! the wait for a human (one span per review task, from its creation to its
//! end), each decision and escalation, and the delivery of the resolution
//! (long-poll answer, webhook attempt, event stream).
//!
//! A proposal's spans happen in different requests and on different
//! replicas, so the submission's context (a W3C `traceparent`) is stored
//! with the proposal and every later span is made under it. A review task's
//! span has an id derived from the task id, so that decisions and
//! escalations made before it ends can name it as their parent.
//!
//! Spans hold ids, digests and closed vocabularies, never payloads: no
//! subject, input, output, rationale, or a reviewer's name (their user id).
//! Export is OTLP over HTTP/protobuf from a bounded queue on the SDK's own
//! thread, sent by the server's HTTP client on its runtime: a request never
//! waits for the exporter, and a full queue drops spans. When export is not
//! configured, every function here returns at its first line.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use axum::http::{self, HeaderMap, HeaderValue};
use bytes::Bytes;
use loopgate_core::review::{Effect, Task};
use loopgate_core::routing::Routing;
use loopgate_core::{Timestamp, Verdict};
use loopgate_store::ProposalRecord;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceId, Tracer as _,
};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_http::{HeaderExtractor, HeaderInjector, HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, IdGenerator, RandomIdGenerator, SdkTracer,
    SdkTracerProvider,
};
use sha2::{Digest as _, Sha256};

/// Where spans go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceExport {
    /// The OTLP/HTTP traces URL (`…/v1/traces`); `None` reads
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// (with `/v1/traces` added), as the OpenTelemetry specification says.
    pub endpoint: Option<String>,
    /// `service.name` (`OTEL_SERVICE_NAME`, `loopgate` when unset).
    pub service_name: String,
}

/// The largest answer read from the collector.
const MAX_ANSWER: usize = 64 * 1024;

/// The traces of this process: off, or a tracer and its exporter.
#[derive(Clone, Default)]
pub(crate) struct Traces {
    on: Option<Arc<On>>,
}

struct On {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl Traces {
    /// Starts the exporter. Must run inside the tokio runtime that will
    /// send the spans.
    pub(crate) fn start(export: &TraceExport, http: reqwest::Client) -> Result<Self, String> {
        let sender = Sender {
            http,
            runtime: tokio::runtime::Handle::current(),
        };
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_http_client(sender);
        if let Some(endpoint) = &export.endpoint {
            exporter = exporter.with_endpoint(endpoint.clone());
        }
        let exporter = exporter
            .build()
            .map_err(|e| format!("the OTLP exporter cannot start: {e}"))?;
        // The queue and batch sizes read `OTEL_BSP_*`; a full queue drops.
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(BatchConfigBuilder::default().build())
            .build();
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(export.service_name.clone())
            .build();
        // The sampler reads `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`
        // (default: parent-based, always on).
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_id_generator(Ids::default())
            .with_resource(resource)
            .build();
        let tracer = opentelemetry::trace::TracerProvider::tracer_with_scope(
            &provider,
            opentelemetry::InstrumentationScope::builder("loopgate")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        );
        Ok(Self {
            on: Some(Arc::new(On { provider, tracer })),
        })
    }

    /// Whether spans are made.
    pub(crate) fn is_on(&self) -> bool {
        self.on.is_some()
    }

    /// Sends every finished span now (blocking: call off the runtime).
    pub(crate) fn flush(&self) {
        if let Some(on) = &self.on
            && let Err(error) = on.provider.force_flush()
        {
            tracing::warn!(%error, "traces could not be flushed");
        }
    }

    /// Flushes and stops the exporter (blocking: call off the runtime).
    pub(crate) fn shutdown(&self) {
        if let Some(on) = &self.on
            && let Err(error) = on.provider.shutdown()
        {
            tracing::warn!(%error, "the trace exporter did not stop cleanly");
        }
    }

    /// Starts the span of a submission, under the caller's `traceparent`.
    pub(crate) fn submit(&self, headers: &HeaderMap, now: Timestamp) -> Submit {
        let caller = caller_context(headers);
        let Some(on) = &self.on else {
            return Submit {
                span: None,
                caller,
                started: Instant::now(),
                start: now,
            };
        };
        let parent = caller
            .clone()
            .map(|caller| Context::new().with_remote_span_context(caller))
            .unwrap_or_default();
        let span = on
            .tracer
            .span_builder("loopgate.submit")
            .with_kind(SpanKind::Server)
            .with_start_time(system_time(now))
            .start_with_context(&on.tracer, &parent);
        Submit {
            span: Some((on.tracer.clone(), span)),
            caller,
            started: Instant::now(),
            start: now,
        }
    }

    /// The span of a review task, from its creation to `now`: `outcome` is
    /// how it ended (`done`, `expired`, `cancelled`).
    pub(crate) fn review_ended(&self, trace: Option<&str>, task: &Task, now: Timestamp) {
        let Some((on, parent)) = self.under(trace) else {
            return;
        };
        NEXT_SPAN_ID.with(|next| next.set(Some(review_span_id(task))));
        let mut span = on
            .tracer
            .span_builder("loopgate.review")
            .with_start_time(system_time(task.created_at))
            .with_attributes(task_attributes(task))
            .start_with_context(&on.tracer, &parent);
        NEXT_SPAN_ID.with(|next| next.set(None));
        span.set_attribute(KeyValue::new("loopgate.task.outcome", task.state.as_str()));
        span.end_with_timestamp(system_time(now));
    }

    /// The span of one decision, a child of its task's review span.
    pub(crate) fn decided(&self, decision: DecisionSpan<'_>) {
        let Some((on, parent)) = self.under_review(decision.trace, decision.task) else {
            return;
        };
        let mut attributes = task_attributes(decision.task);
        attributes.extend([
            KeyValue::new("loopgate.verdict", decision.verdict.as_str()),
            KeyValue::new("loopgate.reviewer.id", decision.reviewer.to_owned()),
            KeyValue::new("loopgate.effect", decision.effect),
        ]);
        let mut span = on
            .tracer
            .span_builder("loopgate.decision")
            .with_kind(SpanKind::Server)
            .with_start_time(system_time(decision.start))
            .with_attributes(attributes)
            .start_with_context(&on.tracer, &parent);
        span.end_with_timestamp(system_time(decision.start) + decision.took);
    }

    /// An escalation of a task up its chain (by a `reviewer` or the
    /// `deadline`), a child of its review span.
    pub(crate) fn escalated(
        &self,
        trace: Option<&str>,
        before: Option<&Task>,
        after: &Task,
        by: &'static str,
        now: Timestamp,
    ) {
        let Some((on, parent)) = self.under_review(trace, after) else {
            return;
        };
        let mut attributes = task_attributes(after);
        attributes.push(KeyValue::new("loopgate.escalation.by", by));
        if let Some(before) = before {
            attributes.extend([
                KeyValue::new("loopgate.escalation.from_group", before.group.clone()),
                KeyValue::new("loopgate.escalation.from_level", i64::from(before.level)),
            ]);
        }
        let mut span = on
            .tracer
            .span_builder("loopgate.escalation")
            .with_start_time(system_time(now))
            .with_attributes(attributes)
            .start_with_context(&on.tracer, &parent);
        span.end_with_timestamp(system_time(now));
    }

    /// The delivery of a resolution, a child of the submission's span.
    /// `attributes` say more (a webhook attempt's number and answer).
    pub(crate) fn delivered(&self, delivery: Delivery<'_>) {
        let Some((on, parent)) = self.under(delivery.trace) else {
            return;
        };
        let mut attributes = vec![
            KeyValue::new("loopgate.delivery", delivery.how),
            KeyValue::new("loopgate.proposal.id", delivery.proposal.to_owned()),
        ];
        attributes.extend(delivery.attributes);
        let mut span = on
            .tracer
            .span_builder("loopgate.deliver")
            .with_kind(match delivery.how {
                "webhook" => SpanKind::Client,
                _ => SpanKind::Server,
            })
            .with_start_time(system_time(delivery.start))
            .with_attributes(attributes)
            .start_with_context(&on.tracer, &parent);
        if let Some(error) = delivery.error {
            span.set_status(Status::error(error.to_owned()));
        }
        span.end_with_timestamp(system_time(delivery.start) + delivery.took);
    }

    /// The tracer and the context of a proposal's submission.
    fn under(&self, trace: Option<&str>) -> Option<(&On, Context)> {
        let on = self.on.as_deref()?;
        let submitted = parse_traceparent(trace?)?;
        Some((on, Context::new().with_remote_span_context(submitted)))
    }

    /// The tracer and the context of a task's review span.
    fn under_review(&self, trace: Option<&str>, task: &Task) -> Option<(&On, Context)> {
        let on = self.on.as_deref()?;
        let submitted = parse_traceparent(trace?)?;
        let review = SpanContext::new(
            submitted.trace_id(),
            review_span_id(task),
            submitted.trace_flags(),
            true,
            submitted.trace_state().clone(),
        );
        Some((on, Context::new().with_remote_span_context(review)))
    }
}

/// What a decision span says.
pub(crate) struct DecisionSpan<'a> {
    pub(crate) trace: Option<&'a str>,
    pub(crate) task: &'a Task,
    pub(crate) verdict: Verdict,
    /// `recorded`, `resolved`, `overridden`, `confirmed`, `escalated`.
    pub(crate) effect: &'static str,
    /// The reviewer's user id.
    pub(crate) reviewer: &'a str,
    pub(crate) start: Timestamp,
    pub(crate) took: Duration,
}

/// An effect as spans name it.
pub(crate) fn effect_name(effect: Effect) -> &'static str {
    match effect {
        Effect::Recorded => "recorded",
        Effect::Resolved => "resolved",
        Effect::Overridden => "overridden",
        Effect::Confirmed => "confirmed",
        Effect::Escalated => "escalated",
        Effect::Expired => "expired",
    }
}

/// What a delivery span says.
pub(crate) struct Delivery<'a> {
    pub(crate) trace: Option<&'a str>,
    pub(crate) proposal: &'a str,
    /// `long_poll`, `webhook`, `event_stream`.
    pub(crate) how: &'static str,
    pub(crate) start: Timestamp,
    pub(crate) took: Duration,
    pub(crate) attributes: Vec<KeyValue>,
    pub(crate) error: Option<&'a str>,
}

/// A submission's span while the request runs.
pub(crate) struct Submit {
    /// The tracer and the span (traces on).
    span: Option<(SdkTracer, opentelemetry_sdk::trace::Span)>,
    /// The caller's own context, when the request carried one.
    caller: Option<SpanContext>,
    started: Instant,
    start: Timestamp,
}

impl Submit {
    /// What the proposal stores: this span's context, or (traces off) the
    /// caller's, so that a replica with traces on continues their trace.
    pub(crate) fn stored_context(&self) -> Option<String> {
        match &self.span {
            Some((_, span)) => Some(traceparent(span.span_context())),
            None => self.caller.as_ref().map(traceparent),
        }
    }

    /// Records the routing, which started at `started`, as a child span.
    pub(crate) fn routed(&self, routing: &Routing, started: Instant, shadow: Option<&str>) {
        let Some((tracer, span)) = &self.span else {
            return;
        };
        let start = system_time(self.start) + started.saturating_duration_since(self.started);
        let mut attributes = vec![
            KeyValue::new("loopgate.policy.version", routing.policy_version.clone()),
            KeyValue::new("loopgate.route", routing.route.as_str()),
            KeyValue::new(
                "loopgate.policy.matched",
                strings(routing.matched.iter().cloned()),
            ),
            KeyValue::new(
                "loopgate.policy.errors",
                strings(
                    routing
                        .errors
                        .iter()
                        .map(|e| format!("{}: {}", e.policy, e.kind)),
                ),
            ),
        ];
        if routing.route == loopgate_core::Route::Review {
            attributes.push(KeyValue::new(
                "loopgate.review.group",
                routing.review.group.clone(),
            ));
        }
        if let Some(shadow) = shadow {
            attributes.push(KeyValue::new(
                "loopgate.policy.shadow_version",
                shadow.to_owned(),
            ));
        }
        let parent = Context::new().with_remote_span_context(span.span_context().clone());
        let mut child = tracer
            .span_builder("loopgate.route")
            .with_start_time(start)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        if !routing.errors.is_empty() {
            child.set_status(Status::error("a policy failed to evaluate"));
        }
        child.end_with_timestamp(start + started.elapsed());
    }

    /// Ends the span with what was stored and whether it was a replay, or
    /// with the problem's code.
    pub(crate) fn finish(self, outcome: Result<(&ProposalRecord, bool), &str>) {
        let Some((_, mut span)) = self.span else {
            return;
        };
        match outcome {
            Ok((record, replay)) => {
                span.set_attributes([
                    KeyValue::new("loopgate.proposal.id", record.id.as_str().to_owned()),
                    KeyValue::new("loopgate.system.id", record.system.as_str().to_owned()),
                    KeyValue::new("loopgate.action", record.action.clone()),
                    KeyValue::new("loopgate.route", record.route.as_str()),
                    KeyValue::new("loopgate.status", record.status.as_str()),
                    KeyValue::new("loopgate.digest", record.digest.as_str().to_owned()),
                    KeyValue::new("loopgate.replay", replay),
                ]);
                // A replay answers with a proposal another request stored
                // (and traced): link to it.
                if replay
                    && let Some(stored) =
                        record.trace_context.as_deref().and_then(parse_traceparent)
                {
                    span.add_link(stored, Vec::new());
                }
            }
            Err(code) => span.set_status(Status::error(code.to_owned())),
        }
        span.end_with_timestamp(system_time(self.start) + self.started.elapsed());
    }
}

/// The caller's context from `traceparent` (and `tracestate`), if valid.
pub(crate) fn caller_context(headers: &HeaderMap) -> Option<SpanContext> {
    if !headers.contains_key("traceparent") {
        return None;
    }
    let context = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let span = context.span().span_context().clone();
    span.is_valid().then_some(span)
}

/// A stored `traceparent` as a remote context, if valid.
pub(crate) fn parse_traceparent(text: &str) -> Option<SpanContext> {
    let mut headers = HeaderMap::new();
    headers.insert("traceparent", HeaderValue::from_str(text).ok()?);
    caller_context(&headers)
}

/// `00-<trace id>-<span id>-<flags>`.
pub(crate) fn traceparent(context: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8()
    )
}

/// Adds `traceparent` for `context` to outgoing `headers`.
pub(crate) fn inject(context: &str, headers: &mut HeaderMap) {
    if let Some(span) = parse_traceparent(context) {
        let cx = Context::new().with_remote_span_context(span);
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
    }
}

fn system_time(at: Timestamp) -> SystemTime {
    let millis = u64::try_from(at.millis()).unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_millis(millis)
}

/// The span id of a task's review span: the first eight bytes of
/// SHA-256 over `review:<task id>` (never zero).
fn review_span_id(task: &Task) -> SpanId {
    let hash = Sha256::digest(format!("review:{}", task.id.as_str()));
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&hash[..8]);
    match u64::from_be_bytes(bytes) {
        0 => SpanId::from(1),
        id => SpanId::from(id),
    }
}

fn task_attributes(task: &Task) -> Vec<KeyValue> {
    vec![
        KeyValue::new("loopgate.proposal.id", task.proposal_id.as_str().to_owned()),
        KeyValue::new("loopgate.task.id", task.id.as_str().to_owned()),
        KeyValue::new("loopgate.task.kind", task.kind.as_str()),
        KeyValue::new("loopgate.task.group", task.group.clone()),
        KeyValue::new("loopgate.task.level", i64::from(task.level)),
    ]
}

fn strings(items: impl Iterator<Item = String>) -> Value {
    Value::Array(opentelemetry::Array::String(
        items.map(Into::into).collect(),
    ))
}

thread_local! {
    /// The id the next span started on this thread takes (a review span's
    /// derived id); the SDK's builder does not take one.
    static NEXT_SPAN_ID: Cell<Option<SpanId>> = const { Cell::new(None) };
}

/// Random ids, except a span id set in `NEXT_SPAN_ID` just before a span
/// starts on the same thread.
#[derive(Debug, Default)]
struct Ids(RandomIdGenerator);

impl IdGenerator for Ids {
    fn new_trace_id(&self) -> TraceId {
        self.0.new_trace_id()
    }

    fn new_span_id(&self) -> SpanId {
        NEXT_SPAN_ID
            .with(Cell::take)
            .unwrap_or_else(|| self.0.new_span_id())
    }
}

/// The exporter's HTTP client: the server's async client, run on the
/// server's runtime, awaited from the exporter's own thread.
#[derive(Debug)]
struct Sender {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait]
impl HttpClient for Sender {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let request = self
            .http
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body);
        let sent = self.runtime.spawn(async move {
            let mut response = request.send().await?;
            let status = response.status();
            let mut answer = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if MAX_ANSWER < answer.len() + chunk.len() {
                    break;
                }
                answer.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>((status, answer))
        });
        let (status, answer) = sent.await??;
        Ok(http::Response::builder()
            .status(status)
            .body(Bytes::from(answer))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_bad_ones_are_ignored() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = parse_traceparent(text).map(|it| traceparent(&it));
        assert_eq!(parsed.as_deref(), Some(text));
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\u{7f}",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?}");
        }
    }
}
