//! `loopgate bench`: load over real HTTP. By default it starts its own
//! server on a fresh data directory (same binary, loopback port 0); with
//! `--server` it drives a running one (`--token` of an admin).
//!
//! Two workloads:
//! - `cycle`: N simulated AI systems submit with `?wait=` (long-poll) and R
//!   reviewers approve from their queue; a cycle is submit → task →
//!   decision → waiting client unblocked.
//! - `ingest`: N systems submit proposals that policy allows at once.
//! - `granted`: N systems submit proposals that a review policy sends to
//!   review and a standing grant approves at once (the grant path of
//!   admission: its lookup and its counted use).
//! - `queued`: N systems submit proposals that wait for review (a task
//!   each, in a group that pools), nobody deciding.
//! - `assigned` and `least-loaded`: the same, with the group assigning
//!   `round_robin` or `least_loaded` (the assignment path of admission:
//!   settings, members, and for `least_loaded` their open tasks).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use hdrhistogram::Histogram;
use loopgate_client::{Client, TaskQuery};
use loopgate_proto as proto;
use loopgate_server::{Config, SystemClock};
use serde_json::json;
use tokio::net::TcpListener;

const POLICY: &str = r#"
@id("bench-auto") @route("allow") permit (principal == System::"bench-auto", action, resource);
@id("bench-review") @reviewers("bench") permit (principal == System::"bench-hitl", action, resource);
@id("bench-granted") @reviewers("bench") @grantable("P1D") @grantable_risk("unacceptable")
permit (principal == System::"bench-granted", action, resource);
"#;

/// The one subject every `granted` proposal is about (its grant covers it).
const GRANTED_SUBJECT: &str = "item-granted";

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// `cycle` (human in the loop), `ingest` (auto-allowed proposals),
    /// `granted` (proposals a standing grant approves), `queued` (tasks in a
    /// pooling group), `assigned` (tasks in a `round_robin` group) or
    /// `least-loaded` (tasks in a `least_loaded` group).
    #[arg(long, default_value = "cycle")]
    workload: String,
    /// Concurrent simulated AI systems.
    #[arg(long, default_value_t = 64)]
    systems: usize,
    /// Concurrent reviewers (cycle only).
    #[arg(long, default_value_t = 8)]
    reviewers: usize,
    /// Reviewers learn of new tasks from their own event stream (`GET
    /// /v1/events`: `proposal.submitted` gives the digest, `task.created`
    /// the task) instead of listing the queue: no polling, so the run
    /// measures the server's writes rather than the reviewers' reads.
    #[arg(long)]
    review_from_stream: bool,
    /// Hold the submissions to this many per second in all (spread evenly
    /// over the systems) instead of as fast as answers come: latencies at a
    /// given load, e.g. half of the peak a run without it reached.
    #[arg(long)]
    rate: Option<f64>,
    /// How long to run.
    #[arg(long, default_value = "10s")]
    duration: String,
    /// Event-stream subscribers (`GET /v1/events` as admin: every event)
    /// listening during the run.
    #[arg(long, default_value_t = 0)]
    subscribers: usize,
    /// Spread the cycle over this many AI systems (`bench-agent-<n>`, each
    /// with its own key) instead of one.
    #[arg(long, default_value_t = 0)]
    agents: usize,
    /// Each agent also follows its own event stream (`GET /v1/events` with
    /// its key) during the run.
    #[arg(long, requires = "agents")]
    agent_streams: bool,
    /// Deliver webhooks of these event types (comma list, e.g.
    /// `proposal.submitted,proposal.resolved`) to a receiver on a loopback
    /// port during the run, and report the delivery rate.
    #[arg(long)]
    webhook: Option<String>,
    /// A running server to drive instead of starting one; several
    /// (comma-separated replicas of one database) spread the systems over
    /// them and have each reviewer decide on another replica than the
    /// waiters it unblocks, so `unblock` measures the wake-up across replicas.
    #[arg(long)]
    server: Option<String>,
    /// Admin token of `--server`.
    #[arg(long, env = "LOOPGATE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

struct Shared {
    decided_at: Mutex<HashMap<String, Instant>>,
    cycle: Mutex<Histogram<u64>>,
    /// A reviewer's decision: request to answer.
    decide: Mutex<Histogram<u64>>,
    unblock: Mutex<Histogram<u64>>,
    errors: Mutex<u64>,
}

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let duration = loopgate_core::duration::parse(&args.duration)
        .context("--duration must look like `10s`")?;
    let (base, admin_token, _data_dir) = match (&args.server, &args.token) {
        (Some(server), Some(token)) => (server.clone(), token.clone(), None),
        (Some(_), None) => anyhow::bail!("--server needs --token of an admin"),
        (None, _) => {
            let dir = std::env::temp_dir().join(format!("loopgate-bench-{}", ulid::Ulid::new()));
            let token = format!("lgt_bench_{}", ulid::Ulid::new());
            let mut config = Config::new(dir.clone());
            config.bootstrap_token = Some(token.clone());
            // The load comes from this process: its webhook receiver is on
            // loopback, and its subscribers all use the admin's token.
            config.webhook_allow_private =
                vec![ipnet::IpNet::from(std::net::IpAddr::from([127, 0, 0, 1]))];
            config.max_streams_per_credential = usize::MAX;
            config.max_waits_per_credential = usize::MAX;
            let started = loopgate_server::start(config, Arc::new(SystemClock)).await?;
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            tokio::spawn(loopgate_server::serve(
                listener,
                started.app,
                std::future::pending(),
            ));
            (format!("http://{addr}"), token, Some(TempDir(dir)))
        }
    };
    let bases: Vec<String> = base.split(',').map(str::to_owned).collect();
    let base = bases[0].clone();
    let admin = Client::new(&base, &admin_token)?;
    let keys = setup(&admin, args.agents, args.reviewers.max(1)).await?;
    if 1 < bases.len() {
        // The other replicas pick the published policy up from its event.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let shared = Arc::new(Shared {
        decided_at: Mutex::new(HashMap::new()),
        cycle: Mutex::new(Histogram::new(3)?),
        decide: Mutex::new(Histogram::new(3)?),
        unblock: Mutex::new(Histogram::new(3)?),
        errors: Mutex::new(0),
    });
    let receiver = match &args.webhook {
        Some(types) => Some(webhook_receiver(&admin, &keys, types).await?),
        None => None,
    };
    // Subscribers connect first, so every event of the run is theirs.
    let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut listeners = Vec::new();
    let streams = match args.agent_streams {
        true => keys.agents.as_slice(),
        false => &[],
    };
    let listener_tokens = std::iter::repeat_n(&admin_token, args.subscribers).chain(streams);
    for (index, token) in listener_tokens.enumerate() {
        let url = format!("{}/v1/events", bases[index % bases.len()]);
        listeners.push(listen(url, token, Arc::clone(&received)).await?);
    }
    // Streaming reviewers connect before anything is submitted.
    let mut streams = Vec::new();
    if args.review_from_stream && args.workload == "cycle" {
        let n = keys.reviewers.len();
        for (index, token) in keys.reviewers.iter().enumerate() {
            let url = format!("{}/v1/events", bases[(index + 1) % bases.len()]);
            streams.push(follow_tasks(url, token, (index, n)).await?);
        }
    }
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut submitters = Vec::new();
    let keys_used = match args.workload.as_str() {
        "cycle" if keys.agents.is_empty() => vec![keys.hitl.clone()],
        "cycle" => keys.agents.clone(),
        "ingest" => vec![keys.auto.clone()],
        "granted" => vec![grant(&base, &keys).await?],
        "queued" => vec![keys.hitl.clone()],
        "assigned" | "least-loaded" => {
            let settings = proto::SetGroup {
                assignment: match args.workload.as_str() {
                    "assigned" => proto::Assignment::RoundRobin,
                    _ => proto::Assignment::LeastLoaded,
                },
                return_after: Some("1d".into()),
            };
            admin.set_group("bench", &settings).await?;
            vec![keys.hitl.clone()]
        }
        other => anyhow::bail!(
            "--workload must be `cycle`, `ingest`, `granted`, `queued`, `assigned` or `least-loaded`, not `{other}`"
        ),
    };
    let subject = (args.workload == "granted").then_some(GRANTED_SUBJECT);
    let wait = args.workload == "cycle";
    // Each submitter's share of `--rate`: one submission per `every`.
    let every = match args.rate {
        Some(rate) if rate > 0.0 && rate.is_finite() => {
            Some(Duration::from_secs_f64(args.systems.max(1) as f64 / rate))
        }
        Some(rate) => anyhow::bail!("--rate must be a positive number, not {rate}"),
        None => None,
    };
    for worker in 0..args.systems {
        // Worker w submits as systems w, w + systems, w + 2·systems, … in turn.
        let base = &bases[worker % bases.len()];
        let clients = (worker % keys_used.len()..keys_used.len())
            .step_by(args.systems.max(1))
            .map(|k| Client::new(base, &keys_used[k]))
            .collect::<Result<Vec<_>, _>>()?;
        submitters.push(tokio::spawn(submitter(
            clients,
            worker,
            (wait, subject, every),
            deadline,
            Arc::clone(&shared),
        )));
    }
    let mut reviewers = Vec::new();
    if wait {
        // One reviewer per token: a task whose id hashes to nobody's index
        // would never be decided.
        let n = keys.reviewers.len();
        let mut streams = streams.into_iter();
        for (index, token) in keys.reviewers.iter().enumerate() {
            let client = Client::new(&bases[(index + 1) % bases.len()], token)?;
            // Reviewers decide until every submitter is done (they are
            // stopped then): a proposal submitted just before the deadline
            // still ends its cycle, instead of holding its submitter for
            // the whole wait and stretching the run.
            let shared = Arc::clone(&shared);
            reviewers.push(match streams.next() {
                Some(tasks) => tokio::spawn(stream_reviewer(client, tasks, shared)),
                None => tokio::spawn(reviewer(client, index, n, shared)),
            });
        }
    }
    let mut n_done = 0_u64;
    for handle in submitters {
        n_done += handle.await.unwrap_or(0);
    }
    let elapsed = started.elapsed().as_secs_f64();
    for handle in reviewers {
        handle.abort();
    }
    // Let the streams drain what was committed before counting.
    if !listeners.is_empty() {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    for handle in &listeners {
        handle.abort();
    }
    let report = |name: &str, histogram: &Histogram<u64>| {
        out!(
            "{name:<28} p50 {:>8.2} ms   p90 {:>8.2} ms   p99 {:>8.2} ms   max {:>8.2} ms   (n={})",
            histogram.value_at_quantile(0.5) as f64 / 1000.0,
            histogram.value_at_quantile(0.9) as f64 / 1000.0,
            histogram.value_at_quantile(0.99) as f64 / 1000.0,
            histogram.max() as f64 / 1000.0,
            histogram.len()
        );
    };
    out!(
        "workload {}: {} submitters{}, {} reviewers, {:.1} s",
        args.workload,
        args.systems,
        match args.agents {
            0 => String::new(),
            n => format!(" as {n} agents"),
        },
        if wait { args.reviewers } else { 0 },
        elapsed
    );
    out!(
        "throughput                   {:.0} {}/s",
        n_done as f64 / elapsed,
        if wait { "cycles" } else { "proposals" }
    );
    if let Ok(cycle) = shared.cycle.lock() {
        report(
            if wait {
                "cycle (submit → resolved)"
            } else {
                "submit (durable 201)"
            },
            &cycle,
        );
    }
    if let (true, Ok(unblock)) = (wait, shared.unblock.lock()) {
        report("decision → client unblocked", &unblock);
    }
    if let (true, Ok(decide)) = (wait, shared.decide.lock()) {
        report("decision (request → 200)", &decide);
    }
    if !listeners.is_empty() {
        let total = received.load(std::sync::atomic::Ordering::Relaxed);
        out!(
            "event stream                 {} subscribers received {} events ({:.0} each)",
            listeners.len(),
            total,
            total as f64 / listeners.len() as f64
        );
    }
    if let Some(receiver) = receiver {
        let at_end = receiver.count();
        // Drain: wait until nothing arrives for two seconds.
        let mut last = at_end;
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let now = receiver.count();
            if now == last {
                break;
            }
            last = now;
        }
        let span = receiver.span().as_secs_f64();
        out!(
            "webhooks                     {} delivered in {:.1} s: {:.0}/s ({} during the load, {} after)",
            last,
            span,
            last as f64 / span.max(1e-9),
            at_end,
            last - at_end
        );
    }
    out!(
        "errors                       {}",
        shared.errors.lock().map(|it| *it).unwrap_or(0)
    );
    Ok(())
}

/// A loopback webhook receiver that counts what it takes.
#[derive(Clone)]
struct Receiver {
    count: Arc<std::sync::atomic::AtomicU64>,
    first_last: Arc<Mutex<Option<(Instant, Instant)>>>,
}

impl Receiver {
    fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// From the first delivery to the last.
    fn span(&self) -> Duration {
        match self.first_last.lock().ok().and_then(|it| *it) {
            Some((first, last)) => last - first,
            None => Duration::ZERO,
        }
    }
}

async fn webhook_receiver(admin: &Client, keys: &Keys, types: &str) -> anyhow::Result<Receiver> {
    let receiver = Receiver {
        count: Arc::default(),
        first_last: Arc::default(),
    };
    let taker = receiver.clone();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let taker = taker.clone();
            async move {
                let now = Instant::now();
                if let Ok(mut span) = taker.first_last.lock() {
                    let first = span.map_or(now, |(first, _)| first);
                    *span = Some((first, now));
                }
                taker
                    .count
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    let types = types.split(',').map(|t| t.trim().to_owned()).collect();
    let set = proto::SetWebhook {
        url,
        types: Some(types),
        secret: None,
    };
    for system in [&keys.auto_id, &keys.hitl_id] {
        admin.set_webhook(system, &set).await?;
    }
    Ok(receiver)
}

/// `GET /v1/events` with `token`, once connected (its events from then on).
async fn open_stream(url: String, token: &str) -> anyhow::Result<reqwest::Response> {
    Ok(reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?)
}

/// Follows `GET /v1/events` (connected before it returns), counting events.
async fn listen(
    url: String,
    token: &str,
    received: Arc<std::sync::atomic::AtomicU64>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut response = open_stream(url, token).await?;
    Ok(tokio::spawn(async move {
        while let Ok(Some(chunk)) = response.chunk().await {
            let events = chunk.windows(3).filter(|w| w == b"id:").count() as u64;
            received.fetch_add(events, std::sync::atomic::Ordering::Relaxed);
        }
    }))
}

struct Keys {
    auto_id: String,
    hitl_id: String,
    auto: String,
    hitl: String,
    /// The key of `bench-granted`.
    granted: String,
    /// The keys of `bench-agent-<n>`.
    agents: Vec<String>,
    reviewers: Vec<String>,
}

/// Systems, keys, the bench's policy and `n_reviewers` reviewers of group
/// `bench` with a token each.
async fn setup(admin: &Client, agents: usize, n_reviewers: usize) -> anyhow::Result<Keys> {
    use futures::{StreamExt as _, TryStreamExt as _};

    let run = ulid::Ulid::new().to_string().to_lowercase();
    for id in ["bench-auto", "bench-hitl", "bench-granted"] {
        create_system(admin, id).await?;
    }
    let agent_ids: Vec<String> = (0..agents).map(|n| format!("bench-agent-{n}")).collect();
    let agent_keys: Vec<String> = futures::stream::iter(&agent_ids)
        .map(|id| async move {
            create_system(admin, id).await?;
            anyhow::Ok(admin.create_key(id).await?.secret)
        })
        .buffered(16)
        .try_collect()
        .await?;
    let mut policy = POLICY.to_owned();
    for id in &agent_ids {
        policy.push_str(&format!(
            "@id(\"{id}\") @reviewers(\"bench\") permit (principal == System::\"{id}\", action, resource);\n"
        ));
    }
    admin
        .publish_policy(&proto::PublishPolicy {
            text: policy,
            description: "loopgate bench".into(),
            mode: None,
            cases: None,
        })
        .await?;
    let auto = admin.create_key("bench-auto").await?.secret;
    let hitl = admin.create_key("bench-hitl").await?.secret;
    let granted = admin.create_key("bench-granted").await?.secret;
    let mut reviewers = Vec::new();
    for i in 0..n_reviewers {
        let user = proto::CreateUser {
            password: None,
            username: format!("bench-{run}-{i}"),
            roles: vec![proto::Role::Reviewer],
            groups: vec!["bench".into()],
            email: None,
            slack_user_id: None,
        };
        let user = admin.create_user(&user).await?;
        reviewers.push(admin.create_token(&user.id).await?.secret);
    }
    Ok(Keys {
        auto_id: "bench-auto".into(),
        hitl_id: "bench-hitl".into(),
        auto,
        hitl,
        granted,
        agents: agent_keys,
        reviewers,
    })
}

/// Creates the system `id` unless it exists (a second run on one server).
async fn create_system(admin: &Client, id: &str) -> anyhow::Result<()> {
    let system = proto::CreateSystem {
        id: id.into(),
        name: id.into(),
        owner: "bench".into(),
        purpose: "load test".into(),
        risk_tier: proto::RiskTier::Minimal,
        oversight: proto::Oversight::InTheLoop,
        shape: None,
    };
    match admin.create_system(&system).await {
        Ok(_) => Ok(()),
        Err(error) if error.code() == Some("already_exists") => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// `bench-granted`'s key, after a reviewer approved its first proposal
/// with a standing grant for [`GRANTED_SUBJECT`], any output.
async fn grant(base: &str, keys: &Keys) -> anyhow::Result<String> {
    let system = Client::new(base, &keys.granted)?;
    let first = system
        .submit(&proposal(GRANTED_SUBJECT.to_owned(), 0), None)
        .await?;
    let token = keys
        .reviewers
        .first()
        .context("the bench has no reviewer")?;
    let reviewer = Client::new(base, token)?;
    let task = reviewer
        .tasks(&TaskQuery {
            limit: Some(500),
            ..Default::default()
        })
        .await?
        .items
        .into_iter()
        .find(|task| task.proposal_id == first.id)
        .context("the granted system's first proposal has no task")?;
    let grant = proto::GrantOffer {
        for_: "1d".into(),
        uses: None,
        scope: proto::GrantScope::SameSubject,
    };
    let decision = approval(task.digest, Some(grant));
    reviewer.decide(&task.id, &decision).await?;
    Ok(keys.granted.clone())
}

/// A plain approval of what `digest` shows, with `grant` if any.
fn approval(digest: String, grant: Option<proto::GrantOffer>) -> proto::DecisionRequest {
    proto::DecisionRequest {
        verdict: proto::Verdict::Approve,
        rationale: None,
        output: None,
        labels: None,
        message: None,
        grant,
        seen_digest: digest,
    }
}

/// The proposal a submitter sends as its `n`th.
fn proposal(subject: String, n: u64) -> proto::SubmitProposal {
    proto::SubmitProposal {
        system: None,
        action: "act".into(),
        subject: proto::Subject {
            type_: "Item".into(),
            id: subject,
            attributes: Default::default(),
        },
        input: json!({"n": n}),
        output: json!({"ok": true}),
        confidence: Some(0.9),
        explanation: None,
        model: None,
        context: Default::default(),
        idempotency_key: None,
        batch: None,
    }
}

async fn submitter(
    clients: Vec<Client>,
    worker: usize,
    (wait, subject, every): (bool, Option<&'static str>, Option<Duration>),
    deadline: Instant,
    shared: Arc<Shared>,
) -> u64 {
    let mut n = 0;
    let wait_for = wait.then_some(Duration::from_secs(30));
    // Submitters start spread over one interval, not all at once.
    let mut next =
        Instant::now() + every.map_or(Duration::ZERO, |every| every.mul_f64(fraction(worker)));
    while Instant::now() < deadline {
        if let Some(every) = every {
            tokio::time::sleep_until(next.into()).await;
            next += every;
        }
        let id = subject.map_or_else(|| format!("item-{worker}-{n}"), str::to_owned);
        let proposal = proposal(id, n);
        let started = Instant::now();
        let client = &clients[n as usize % clients.len()];
        let res = client.submit(&proposal, wait_for).await;
        let finished = Instant::now();
        match res {
            // Without a wait, a proposal left pending for review counts too.
            Ok(done) if done.resolution.is_some() || !wait => {
                n += 1;
                record(&shared.cycle, finished - started);
                let decided = shared
                    .decided_at
                    .lock()
                    .ok()
                    .and_then(|mut map| map.remove(&done.id));
                if let Some(decided) = decided {
                    record(&shared.unblock, finished.saturating_duration_since(decided));
                }
            }
            _ => {
                if let Ok(mut errors) = shared.errors.lock() {
                    *errors += 1;
                }
            }
        }
    }
    n
}

async fn reviewer(client: Client, index: usize, n_reviewers: usize, shared: Arc<Shared>) {
    loop {
        let page = match client
            .tasks(&TaskQuery {
                limit: Some(200),
                ..Default::default()
            })
            .await
        {
            Ok(page) => page,
            Err(_) => continue,
        };
        let mine: Vec<_> = page
            .items
            .into_iter()
            .filter(|task| hash(&task.id) % n_reviewers == index)
            .collect();
        if mine.is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        for task in mine {
            approve(&client, (task.id, task.proposal_id, task.digest), &shared).await;
        }
    }
}

/// Approves a task as shown, noting when the decision was sent (so that
/// "decision → client unblocked" includes its durable write) and how long
/// its answer took.
async fn approve(client: &Client, (task, proposal, digest): Assigned, shared: &Shared) {
    let decision = approval(digest, None);
    if let Ok(mut map) = shared.decided_at.lock() {
        map.insert(proposal, Instant::now());
    }
    let sent = Instant::now();
    if client.decide(&task, &decision).await.is_ok() {
        record(&shared.decide, sent.elapsed());
    }
}

/// A task to decide: its id, its proposal's id and the digest to approve.
type Assigned = (String, String, String);

/// Follows a reviewer's `GET /v1/events` (connected before it returns) and
/// hands over the new tasks whose id hashes to `index` of `n`, each with
/// the digest its proposal was submitted with.
async fn follow_tasks(
    url: String,
    token: &str,
    (index, n): (usize, usize),
) -> anyhow::Result<tokio::sync::mpsc::UnboundedReceiver<Assigned>> {
    let mut response = open_stream(url, token).await?;
    let (send, receive) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut digests: HashMap<String, String> = HashMap::new();
        let mut pending: Vec<u8> = Vec::new();
        let text = |event: &serde_json::Value, name: &str| {
            event[name]
                .as_str()
                .or_else(|| event["data"][name].as_str())
                .map(str::to_owned)
        };
        while let Ok(Some(chunk)) = response.chunk().await {
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let Some(json) = line.strip_prefix(b"data: ") else {
                    continue;
                };
                let Ok(event) = serde_json::from_slice::<serde_json::Value>(json) else {
                    continue;
                };
                let Some(proposal) = text(&event, "proposal") else {
                    continue;
                };
                match event["type"].as_str() {
                    Some("proposal.submitted") => {
                        if let Some(digest) = event["data"]["digest"].as_str() {
                            digests.insert(proposal, digest.to_owned());
                        }
                    }
                    Some("task.created") => {
                        let (Some(task), Some(digest)) =
                            (text(&event, "task"), digests.remove(&proposal))
                        else {
                            continue;
                        };
                        if hash(&task) % n == index && send.send((task, proposal, digest)).is_err()
                        {
                            return;
                        }
                    }
                    _ => (),
                }
            }
        }
    });
    Ok(receive)
}

/// A reviewer that approves the tasks its event stream hands over, one
/// after another.
async fn stream_reviewer(
    client: Client,
    mut tasks: tokio::sync::mpsc::UnboundedReceiver<Assigned>,
    shared: Arc<Shared>,
) {
    while let Some(assigned) = tasks.recv().await {
        approve(&client, assigned, &shared).await;
    }
}

fn record(histogram: &Mutex<Histogram<u64>>, elapsed: Duration) {
    if let Ok(mut histogram) = histogram.lock() {
        let _ = histogram.record(
            u64::try_from(elapsed.as_micros())
                .unwrap_or(u64::MAX)
                .max(1),
        );
    }
}

/// A number in [0, 1) that spreads workers 0, 1, 2, … evenly (the
/// golden-ratio sequence).
fn fraction(worker: usize) -> f64 {
    (worker as f64 * 0.618_033_988_749_895).fract()
}

fn hash(text: &str) -> usize {
    text.bytes().fold(0_usize, |h, b| {
        h.wrapping_mul(31).wrapping_add(usize::from(b))
    })
}

/// Removes the bench's data directory at the end.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
