//! `loopgate mcp`: an MCP gateway in front of one upstream MCP server.
//!
//! The gateway is an MCP server (stdio, or streamable HTTP with `--listen`)
//! and an MCP client of the upstream (a command it runs over stdio, or a
//! streamable HTTP URL). `tools/list` passes through. Each `tools/call`
//! becomes a loopgate proposal of the system whose key the gateway holds
//! (`action = "mcp:<name>/<tool>"`, `output` = the arguments) and goes where
//! policy routes it: allowed calls are forwarded at once, denied ones answer
//! a tool error that says why, reviewed ones wait (with progress
//! notifications) and forward the approved, possibly edited, arguments.
//!
//! Exactly once: calls are remembered by their fingerprint (tool and
//! arguments) until a result reaches a client. A client that gave up (or
//! got "pending approval") and repeats the identical call picks up the same
//! proposal; the upstream call runs in its own task, once per proposal, so
//! a client leaving mid-call does not cancel or repeat it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsFd as _;
use std::os::unix::fs::FileTypeExt as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use loopgate_client::Client;
use loopgate_proto as proto;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ProgressNotificationParam,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, Peer, RoleClient, RoleServer, ServerHandler, ServiceExt as _};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::net::unix::pipe;
use tokio::sync::OnceCell;
use tokio_util::task::TaskTracker;

use crate::cli::Remote;
use crate::config::FileConfig;

/// How long one long-poll of the proposal lasts (a progress notification
/// goes out after each).
const POLL: Duration = Duration::from_secs(10);
/// Calls that arrive within this long of a batch's first call are one batch:
/// an agent's parallel tool calls, shown as one group in the queue.
const BURST: Duration = Duration::from_secs(2);

#[derive(Debug, Args)]
pub(crate) struct McpArgs {
    /// The upstream's name in action names: `mcp:<name>/<tool>`.
    #[arg(long)]
    name: String,
    /// A streamable HTTP upstream, instead of a command.
    #[arg(long, value_name = "URL")]
    upstream_url: Option<String>,
    /// Serve streamable HTTP at `http://ADDR/mcp` instead of stdio.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// With `--listen`: the bearer token clients must send (required on an
    /// address other than loopback; at least 16 characters).
    #[arg(
        long,
        env = "LOOPGATE_MCP_LISTEN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    listen_token: Option<String>,
    /// With `--listen`: a browser origin allowed to call the gateway (e.g.
    /// `https://agents.example.com`); repeat for more. Requests with another
    /// `Origin` are refused (loopback origins are allowed on loopback).
    #[arg(long, value_name = "ORIGIN")]
    allow_origin: Vec<String>,
    /// How long a call waits for people before it answers "pending
    /// approval" (stay under your MCP client's request timeout).
    #[arg(long, default_value = "50s")]
    patience: String,
    /// Where pending and forwarded calls are remembered across gateway
    /// restarts [default: ~/.local/state/loopgate/mcp-<name>.json].
    #[arg(long, env = "LOOPGATE_MCP_STATE", value_name = "FILE")]
    state: Option<PathBuf>,
    #[command(flatten)]
    remote: Remote,
    /// The upstream command and its arguments, after `--` (stdio upstream).
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

pub(crate) async fn run(file: &FileConfig, args: McpArgs) -> anyhow::Result<()> {
    crate::commands::init_logging();
    let patience = loopgate_core::duration::parse(&args.patience)
        .context("--patience must look like `50s` or `2m`")?;
    // Checked before anything starts: a gateway open to the network needs a token.
    let guard = match args.listen {
        Some(addr) => Some(ListenGuard::new(
            addr,
            args.listen_token.clone(),
            args.allow_origin.clone(),
        )?),
        None => None,
    };
    if !args
        .name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        anyhow::bail!(
            "--name must be letters, digits, `-` or `_`, not `{}`",
            args.name
        );
    }
    let client = file.client(&args.remote)?;
    let state = args.state.clone().or_else(|| {
        std::env::var_os("HOME").map(|home| {
            PathBuf::from(home)
                .join(".local/state/loopgate")
                .join(format!("mcp-{}.json", args.name))
        })
    });
    let ledger = Ledger::open(state)?;
    let upstream = match (&args.upstream_url, args.command.split_first()) {
        (Some(url), None) => {
            let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(url.as_str());
            ().serve(transport)
                .await
                .with_context(|| format!("cannot connect to the upstream MCP server at {url}"))?
        }
        (None, Some((program, rest))) => {
            let mut command = tokio::process::Command::new(program);
            command.args(rest);
            let transport = rmcp::transport::TokioChildProcess::new(command)
                .with_context(|| format!("cannot start the upstream `{program}`"))?;
            ().serve(transport)
                .await
                .with_context(|| format!("the upstream `{program}` did not start an MCP session"))?
        }
        (Some(_), Some(_)) => {
            anyhow::bail!("give --upstream-url or a command after `--`, not both")
        }
        (None, None) => anyhow::bail!(
            "no upstream: give --upstream-url URL or a command after `--` (e.g. `-- npx @modelcontextprotocol/server-filesystem /tmp`)"
        ),
    };
    let gateway = Gateway {
        inner: Arc::new(Inner {
            upstream: upstream.peer().clone(),
            client,
            name: args.name,
            patience,
            calls: Mutex::default(),
            ledger,
            forwarding: TaskTracker::new(),
            burst: Mutex::default(),
        }),
    };
    let forwarding = gateway.inner.forwarding.clone();
    let result = match (args.listen, guard) {
        (Some(addr), Some(guard)) => serve_http(gateway, addr, guard).await,
        _ => serve_stdio(gateway).await,
    };
    // Calls already forwarded finish (and are remembered) before the upstream goes.
    forwarding.close();
    let _ = tokio::time::timeout(Duration::from_secs(30), forwarding.wait()).await;
    let _ = upstream.cancel().await;
    result
}

async fn serve_stdio(gateway: Gateway) -> anyhow::Result<()> {
    let service = match pipes() {
        Some(pipes) => gateway.serve(pipes).await,
        None => gateway.serve(rmcp::transport::stdio()).await,
    }
    .context("the MCP client did not start a session on stdin")?;
    service.waiting().await?;
    Ok(())
}

/// Stdin and stdout as pipes on the event loop, when both are pipes (as
/// MCP clients start servers). tokio's `stdin()` and `stdout()` hand every
/// read and write to a blocking thread: two thread hand-offs more per message.
fn pipes() -> Option<(pipe::Receiver, pipe::Sender)> {
    let stdin = std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned().ok()?);
    let stdout = std::fs::File::from(std::io::stdout().as_fd().try_clone_to_owned().ok()?);
    // Checked before either is made non-blocking, so that the fallback
    // reads and writes blocking descriptors.
    let fifo = |file: &std::fs::File| file.metadata().is_ok_and(|it| it.file_type().is_fifo());
    if !fifo(&stdin) || !fifo(&stdout) {
        return None;
    }
    Some((
        pipe::Receiver::from_file(stdin).ok()?,
        pipe::Sender::from_file(stdout).ok()?,
    ))
}

/// Who may call the gateway over HTTP: a bearer token (required off
/// loopback) and the browser origins allowed (MCP's defence against DNS
/// rebinding: a web page must not reach a local gateway).
#[derive(Clone)]
struct ListenGuard {
    token: Option<Arc<str>>,
    origins: Arc<Vec<String>>,
    loopback: bool,
}

impl ListenGuard {
    fn new(
        addr: SocketAddr,
        token: Option<String>,
        origins: Vec<String>,
    ) -> anyhow::Result<ListenGuard> {
        let loopback = addr.ip().is_loopback();
        match &token {
            None if !loopback => anyhow::bail!(
                "`--listen {addr}` is reachable from other machines: set `--listen-token` (or LOOPGATE_MCP_LISTEN_TOKEN) so that only your clients can call the gateway"
            ),
            Some(token) if token.len() < 16 => {
                anyhow::bail!("`--listen-token` must be at least 16 characters")
            }
            _ => (),
        }
        Ok(ListenGuard {
            token: token.map(Arc::from),
            origins: Arc::new(
                origins
                    .into_iter()
                    .map(|it| it.trim_end_matches('/').to_ascii_lowercase())
                    .collect(),
            ),
            loopback,
        })
    }

    /// Why a request is refused, if it is.
    fn refuses(
        &self,
        headers: &axum::http::HeaderMap,
    ) -> Option<(axum::http::StatusCode, &'static str)> {
        use axum::http::{StatusCode, header};
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or_default().to_ascii_lowercase();
            let local = self.loopback
                && ["http://localhost", "http://127.0.0.1", "http://[::1]"]
                    .iter()
                    .any(|it| origin == *it || origin.starts_with(&format!("{it}:")));
            if !local && !self.origins.contains(&origin) {
                return Some((
                    StatusCode::FORBIDDEN,
                    "this Origin may not call the gateway",
                ));
            }
        }
        if let Some(token) = &self.token {
            let sent = headers
                .get(header::AUTHORIZATION)
                .and_then(|it| it.to_str().ok())
                .and_then(|it| it.strip_prefix("Bearer "))
                .map(str::trim)
                .unwrap_or_default();
            let same = sent.len() == token.len()
                && sent
                    .bytes()
                    .zip(token.bytes())
                    .fold(0_u8, |acc, (a, b)| acc | (a ^ b))
                    == 0;
            if !same {
                return Some((
                    StatusCode::UNAUTHORIZED,
                    "send `Authorization: Bearer <listen token>`",
                ));
            }
        }
        None
    }
}

async fn serve_http(gateway: Gateway, addr: SocketAddr, guard: ListenGuard) -> anyhow::Result<()> {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let service = StreamableHttpService::new(
        move || Ok(gateway.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let router =
        axum::Router::new()
            .nest_service("/mcp", service)
            .layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    let guard = guard.clone();
                    async move {
                        use axum::response::IntoResponse as _;
                        match guard.refuses(request.headers()) {
                            Some(refusal) => refusal.into_response(),
                            None => next.run(request).await,
                        }
                    }
                },
            ));
    tracing::info!("loopgate mcp listening on http://{local}/mcp");
    out!("loopgate mcp listening on http://{local}/mcp");
    axum::serve(listener, router)
        .with_graceful_shutdown(crate::commands::shutdown_signal())
        .await?;
    Ok(())
}

#[derive(Clone)]
struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    upstream: Peer<RoleClient>,
    client: Client,
    name: String,
    patience: Duration,
    /// Calls not yet answered with a result, by fingerprint.
    calls: Mutex<HashMap<String, Arc<Call>>>,
    /// The same, on disk.
    ledger: Ledger,
    /// Upstream calls in flight.
    forwarding: TaskTracker,
    /// The current batch: when its first call came, and its id.
    burst: Mutex<Option<(Instant, String)>>,
}

/// One gated tool call, shared by identical repeats.
struct Call {
    /// The submission's idempotency key (a repeat submits the same proposal).
    key: String,
    proposal: OnceCell<String>,
    /// The upstream's answer, filled once by the task that forwards.
    result: OnceCell<CallToolResult>,
    /// A gateway stopped while forwarding it: it may have run.
    interrupted: bool,
}

impl Call {
    fn from_entry(entry: Option<Entry>) -> Call {
        let entry = entry.unwrap_or_else(|| Entry {
            key: format!("mcp-{}", ulid::Ulid::new()),
            proposal: None,
            phase: Phase::Waiting,
        });
        let result = match &entry.phase {
            Phase::Done { result } => serde_json::from_value(result.clone()).ok(),
            _ => None,
        };
        Call {
            key: entry.key,
            proposal: OnceCell::new_with(entry.proposal),
            result: OnceCell::new_with(result),
            interrupted: matches!(entry.phase, Phase::Forwarding),
        }
    }

    fn entry(&self, phase: Phase) -> Entry {
        Entry {
            key: self.key.clone(),
            proposal: self.proposal.get().cloned(),
            phase,
        }
    }
}

/// A remembered call.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    key: String,
    proposal: Option<String>,
    #[serde(flatten)]
    phase: Phase,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum Phase {
    /// Submitted; waiting for a decision (or for the client to come back).
    Waiting,
    /// Sent to the upstream; no answer recorded yet.
    Forwarding,
    /// The upstream answered; the client has not received it yet.
    Done { result: Value },
}

/// Calls not yet answered, by fingerprint, in a JSON file (rewritten whole
/// on each change: a handful of entries).
struct Ledger {
    path: Option<PathBuf>,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Ledger {
    fn open(path: Option<PathBuf>) -> anyhow::Result<Ledger> {
        let entries = match &path {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("cannot read the gateway state `{}`", path.display())
                })?;
                serde_json::from_str(&text).with_context(|| {
                    format!(
                        "the gateway state `{}` is not valid; move it away to start afresh",
                        path.display()
                    )
                })?
            }
            Some(path) => {
                if let Some(dir) = path.parent() {
                    loopgate_store::files::private_dir(dir).with_context(|| {
                        format!("cannot create `{}` for the gateway state", dir.display())
                    })?;
                }
                HashMap::new()
            }
            None => HashMap::new(),
        };
        Ok(Ledger {
            path,
            entries: Mutex::new(entries),
        })
    }

    fn get(&self, fingerprint: &str) -> Option<Entry> {
        self.entries.lock().ok()?.get(fingerprint).cloned()
    }

    fn put(&self, fingerprint: &str, entry: Option<Entry>) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let changed = match entry {
            Some(entry) => {
                entries.insert(fingerprint.to_owned(), entry);
                true
            }
            None => entries.remove(fingerprint).is_some(),
        };
        if !changed {
            return;
        }
        let Some(path) = &self.path else { return };
        // The ledger holds tool arguments: the owner's only.
        let written = serde_json::to_vec_pretty(&*entries)
            .map_err(std::io::Error::other)
            .and_then(|bytes| loopgate_store::files::write_private(path, &bytes));
        if let Err(error) = written {
            tracing::warn!(%error, path = %path.display(), "cannot save the gateway state");
        }
    }
}

impl ServerHandler for Gateway {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "loopgate-mcp",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(format!(
                "Tool calls to `{}` are checked by loopgate policy and may wait for a person's approval.",
                self.inner.name
            ))
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.inner
            .upstream
            .list_tools(request)
            .await
            .map_err(|e| ErrorData::internal_error(format!("the upstream failed: {e}"), None))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let tool = request.name.to_string();
        let arguments = request.arguments.unwrap_or_default();
        let result = tokio::select! {
            result = self.gate(&tool, arguments, &context) => result,
            () = context.ct.cancelled() => {
                return Err(ErrorData::internal_error("the call was cancelled", None));
            }
        };
        Ok(CallToolResponse::Complete(result?))
    }
}

impl Gateway {
    /// The call's proposal, routed and waited for; the upstream's result
    /// when it may go ahead.
    async fn gate(
        &self,
        tool: &str,
        arguments: JsonObject,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let inner = &self.inner;
        let fingerprint = fingerprint(tool, &arguments);
        let call = {
            let mut calls = inner
                .calls
                .lock()
                .map_err(|_| ErrorData::internal_error("the gateway's state is poisoned", None))?;
            Arc::clone(
                calls
                    .entry(fingerprint.clone())
                    .or_insert_with(|| Arc::new(Call::from_entry(inner.ledger.get(&fingerprint)))),
            )
        };
        if call.interrupted {
            self.forget(&fingerprint, &call);
            let id = call.proposal.get().cloned().unwrap_or_default();
            return Ok(refused(
                &id,
                "the gateway stopped while forwarding this call, so it may have run; \
                 check the upstream before calling again"
                    .to_owned(),
            ));
        }
        if let Some(result) = call.result.get() {
            self.forget(&fingerprint, &call);
            return Ok(result.clone());
        }
        let mut submitted = None;
        let id = call
            .proposal
            .get_or_try_init(|| async {
                let proposal = self
                    .submit(tool, &arguments, &call.key, traceparent(context))
                    .await?;
                let id = proposal.id.clone();
                submitted = Some(proposal);
                Ok::<_, ErrorData>(id)
            })
            .await?
            .clone();
        let mut proposal = match submitted {
            Some(proposal) => proposal,
            None => self.read(&id, None).await?,
        };
        // Only a call that waits for people is remembered (a repeat must find it).
        if proposal.resolution.is_none() && inner.ledger.get(&fingerprint).is_none() {
            inner
                .ledger
                .put(&fingerprint, Some(call.entry(Phase::Waiting)));
        }
        let started = Instant::now();
        let mut rounds = 0_u32;
        while proposal.resolution.is_none() {
            let left = inner.patience.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Ok(pending(&id));
            }
            if let Some(token) = context.meta.get_progress_token() {
                rounds += 1;
                let mut progress = ProgressNotificationParam::new(token, f64::from(rounds));
                progress.message = Some(format!("waiting for a person to approve ({id})"));
                let _ = context.peer.notify_progress(progress).await;
            }
            proposal = self.read(&id, Some(left.min(POLL))).await?;
        }
        let Some(resolution) = proposal.resolution else {
            return Ok(pending(&id));
        };
        let result = match resolution.outcome {
            proto::ProposalStatus::Approved => match resolution.output {
                Value::Object(approved) => {
                    // The upstream call runs in its own task: if this client
                    // leaves, it still finishes, once, for a repeat to pick up.
                    let (forward, tool) = (Arc::clone(&call), tool.to_owned());
                    let (gateway, fingerprint) = (self.clone(), fingerprint.clone());
                    let task = inner.forwarding.spawn(async move {
                        forward
                            .result
                            .get_or_init(|| async {
                                let ledger = &gateway.inner.ledger;
                                let remembered = ledger.get(&fingerprint).is_some();
                                if remembered {
                                    let entry = forward.entry(Phase::Forwarding);
                                    ledger.put(&fingerprint, Some(entry));
                                }
                                let upstream = gateway.inner.upstream.clone();
                                let result = call_upstream(upstream, tool, approved).await;
                                if remembered {
                                    let result =
                                        serde_json::to_value(&result).unwrap_or(Value::Null);
                                    let entry = forward.entry(Phase::Done { result });
                                    ledger.put(&fingerprint, Some(entry));
                                }
                                result
                            })
                            .await
                            .clone()
                    });
                    task.await.map_err(|e| {
                        ErrorData::internal_error(format!("the forwarding task failed: {e}"), None)
                    })?
                }
                other => refused(
                    &id,
                    format!("the approved arguments are not a JSON object: {other}"),
                ),
            },
            // A reviewer answered with words: they are the tool's result,
            // and the upstream tool is not called.
            proto::ProposalStatus::Returned => {
                returned(&id, resolution.message.unwrap_or_default())
            }
            outcome => refused(&id, why_not(outcome, &resolution)),
        };
        self.forget(&fingerprint, &call);
        Ok(result)
    }

    /// Answered: the next identical call is a new call.
    fn forget(&self, fingerprint: &str, call: &Arc<Call>) {
        if let Ok(mut calls) = self.inner.calls.lock()
            && calls.get(fingerprint).is_some_and(|c| Arc::ptr_eq(c, call))
        {
            calls.remove(fingerprint);
        }
        self.inner.ledger.put(fingerprint, None);
    }

    async fn submit(
        &self,
        tool: &str,
        arguments: &JsonObject,
        key: &str,
        traceparent: Option<&str>,
    ) -> Result<proto::Proposal, ErrorData> {
        let name = &self.inner.name;
        let proposal = proto::SubmitProposal {
            system: None,
            action: format!("mcp:{name}/{tool}"),
            subject: proto::Subject {
                type_: "McpTool".into(),
                id: format!("{name}/{tool}"),
                attributes: serde_json::Map::new(),
            },
            input: json!({"upstream": name, "tool": tool}),
            output: Value::Object(arguments.clone()),
            confidence: None,
            explanation: None,
            model: None,
            // Policies read the arguments as `context.<name>`, by the number
            // rule and the action's declared shape, like any proposal's context.
            context: arguments.clone(),
            idempotency_key: Some(key.to_owned()),
            batch: Some(self.batch()),
        };
        let client = match traceparent {
            Some(traceparent) => &self.inner.client.with_traceparent(traceparent),
            None => &self.inner.client,
        };
        client
            .submit(&proposal, None)
            .await
            .map_err(|e| ErrorData::internal_error(format!("loopgate refused the call: {e}"), None))
    }

    /// The batch of a call made now: the current one while it is young
    /// (the agent's parallel calls), else a new one.
    fn batch(&self) -> String {
        let now = Instant::now();
        let Ok(mut burst) = self.inner.burst.lock() else {
            return format!("mcp-{}", ulid::Ulid::new());
        };
        match &*burst {
            Some((started, id)) if now.duration_since(*started) < BURST => id.clone(),
            _ => {
                let id = format!("mcp-{}", ulid::Ulid::new());
                *burst = Some((now, id.clone()));
                id
            }
        }
    }

    async fn read(&self, id: &str, wait: Option<Duration>) -> Result<proto::Proposal, ErrorData> {
        self.inner.client.proposal(id, wait).await.map_err(|e| {
            ErrorData::internal_error(format!("cannot read {id} from loopgate: {e}"), None)
        })
    }
}

async fn call_upstream(
    upstream: Peer<RoleClient>,
    tool: String,
    arguments: JsonObject,
) -> CallToolResult {
    let mut request = CallToolRequestParams::new(tool);
    request.arguments = Some(arguments);
    match upstream.call_tool(request).await {
        Ok(result) => result,
        Err(error) => CallToolResult::error(vec![ContentBlock::text(format!(
            "the upstream MCP server failed: {error}"
        ))]),
    }
}

/// Tool and arguments, hashed (arguments with sorted keys).
/// The agent's trace context, sent in the call's `_meta.traceparent` (as
/// MCP clients instrumented with OpenTelemetry do): the proposal's spans
/// join the agent's trace.
fn traceparent(context: &RequestContext<RoleServer>) -> Option<&str> {
    context.meta.get("traceparent").and_then(Value::as_str)
}

fn fingerprint(tool: &str, arguments: &JsonObject) -> String {
    let mut hasher = Sha256::new();
    hasher.update(tool.as_bytes());
    hasher.update([0]);
    hasher.update(serde_json::to_vec(arguments).unwrap_or_default());
    hex::encode(hasher.finalize())
}

fn pending(id: &str) -> CallToolResult {
    let mut result = CallToolResult::error(vec![ContentBlock::text(format!(
        "pending approval {id}: a person must approve this call before it runs. \
         Call the tool again with the same arguments to pick up the decision."
    ))]);
    result.structured_content = Some(json!({"status": "pending_approval", "proposal": id}));
    result
}

/// A reviewer's words as the tool's result: the text is the message alone.
/// It is marked `isError` (the tool did not run): a successful result of a
/// tool with an output schema must carry structured content of that schema,
/// which MCP clients check, and a message is not that.
fn returned(id: &str, message: String) -> CallToolResult {
    let mut result = CallToolResult::error(vec![ContentBlock::text(message.clone())]);
    result.structured_content =
        Some(json!({"status": "returned", "proposal": id, "message": message}));
    result
}

fn refused(id: &str, why: String) -> CallToolResult {
    let mut result = CallToolResult::error(vec![ContentBlock::text(format!("{why} ({id})"))]);
    result.structured_content = Some(json!({"status": "refused", "proposal": id, "reason": why}));
    result
}

fn why_not(outcome: proto::ProposalStatus, resolution: &proto::Resolution) -> String {
    let policies = resolution.matched_policies.join(", ");
    match (outcome, resolution.decided_by) {
        (_, proto::DecidedBy::Policy) => match policies.is_empty() {
            true => "denied by loopgate policy".to_owned(),
            false => format!("denied by loopgate policy ({policies})"),
        },
        (_, proto::DecidedBy::Reviewers) => {
            let rejection = resolution
                .decisions
                .iter()
                .rev()
                .find(|d| d.verdict == proto::Verdict::Reject);
            match rejection {
                Some(d) => match &d.rationale {
                    Some(why) => format!("rejected by {}: {why}", d.reviewer),
                    None => format!("rejected by {}", d.reviewer),
                },
                None => "rejected by reviewers".to_owned(),
            }
        }
        (_, proto::DecidedBy::Timeout) => "rejected: no one decided before the deadline".to_owned(),
        (_, proto::DecidedBy::KillSwitch) => {
            "refused: the system is paused (kill switch)".to_owned()
        }
        (_, proto::DecidedBy::System) => "cancelled".to_owned(),
        (_, proto::DecidedBy::Grant) => "settled by a standing grant".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue, StatusCode};

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn a_gateway_open_to_the_network_needs_a_token_and_checks_origins() {
        let public: SocketAddr = "0.0.0.0:8470".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8470".parse().unwrap();
        assert!(ListenGuard::new(public, None, vec![]).is_err());
        assert!(ListenGuard::new(public, Some("short".into()), vec![]).is_err());

        let token = "a-long-enough-listen-token";
        let guard = ListenGuard::new(
            public,
            Some(token.into()),
            vec!["https://agents.example.com/".into()],
        )
        .unwrap();
        let bearer = format!("Bearer {token}");
        assert_eq!(guard.refuses(&headers(&[("authorization", &bearer)])), None);
        assert_eq!(
            guard.refuses(&headers(&[])).map(|it| it.0),
            Some(StatusCode::UNAUTHORIZED)
        );
        let allowed = [
            ("authorization", bearer.as_str()),
            ("origin", "https://agents.example.com"),
        ];
        assert_eq!(guard.refuses(&headers(&allowed)), None);
        let evil = [
            ("authorization", bearer.as_str()),
            ("origin", "https://evil.example"),
        ];
        assert_eq!(
            guard.refuses(&headers(&evil)).map(|it| it.0),
            Some(StatusCode::FORBIDDEN)
        );
        let local_origin = [
            ("authorization", bearer.as_str()),
            ("origin", "http://localhost:3000"),
        ];
        assert!(
            guard.refuses(&headers(&local_origin)).is_some(),
            "not on loopback"
        );

        let on_loopback = ListenGuard::new(local, None, vec![]).unwrap();
        assert_eq!(on_loopback.refuses(&headers(&[])), None);
        assert_eq!(
            on_loopback.refuses(&headers(&[("origin", "http://localhost:3000")])),
            None
        );
        assert_eq!(
            on_loopback
                .refuses(&headers(&[("origin", "http://localhost.evil.example")]))
                .map(|it| it.0),
            Some(StatusCode::FORBIDDEN),
            "a rebinding page is refused"
        );
    }
}
