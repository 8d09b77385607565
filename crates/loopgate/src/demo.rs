//! `loopgate demo`: the server on an embedded SQLite data directory, seeded
//! with five scenarios (systems, policies, reviewers) and a month of their
//! history (`history`), and a simulator that keeps submitting realistic
//! synthetic proposals.

mod history;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use loopgate_client::Client;
use loopgate_proto as proto;
use loopgate_server::Config;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

const POLICIES: &str = include_str!("../demo/policies.cedar");
/// What each demo system declares: its actions and attribute types.
const SHAPES: &str = include_str!("../demo/shapes.json");
/// The tests the demo policies must pass to be published.
const CASES: &str = include_str!("../demo/cases.yaml");

/// The five scenarios' systems: id, name, owner, purpose, risk tier, oversight.
const SYSTEMS: [(&str, &str, &str, &str, proto::RiskTier, proto::Oversight); 5] = [
    (
        "fraud-detector",
        "Card fraud detector",
        "payments-risk",
        "Flags and blocks card transactions that look fraudulent",
        proto::RiskTier::High,
        proto::Oversight::InTheLoop,
    ),
    (
        "diagnosis-assistant",
        "Diagnosis assistant",
        "clinical-ai",
        "Suggests diagnoses from radiology reports",
        proto::RiskTier::High,
        proto::Oversight::InTheLoop,
    ),
    (
        "content-moderator",
        "Content moderator",
        "trust-and-safety",
        "Removes posts that break community rules",
        proto::RiskTier::Limited,
        proto::Oversight::OnTheLoop,
    ),
    (
        "lead-scorer",
        "Sales lead scorer",
        "sales-ops",
        "Scores inbound leads for the sales team",
        proto::RiskTier::Minimal,
        proto::Oversight::Automated,
    ),
    (
        "support-agent",
        "Support agent",
        "customer-support",
        "An LLM agent that answers customers and calls CRM tools",
        proto::RiskTier::Limited,
        proto::Oversight::InTheLoop,
    ),
];

/// Demo accounts: username, roles, groups.
const USERS: [(&str, &[proto::Role], &[&str]); 4] = [
    (
        "rita",
        &[proto::Role::Reviewer],
        &[
            "fraud-analysts",
            "clinicians",
            "moderators",
            "sales-ops",
            "support-leads",
        ],
    ),
    (
        "sam",
        &[proto::Role::Reviewer],
        &[
            "fraud-analysts",
            "fraud-leads",
            "clinicians",
            "senior-clinicians",
            "support-leads",
        ],
    ),
    (
        "ana",
        &[proto::Role::PolicyAuthor, proto::Role::Auditor],
        &[],
    ),
    ("audrey", &[proto::Role::Auditor], &[]),
];

/// Runs the demo; `history` is the proposals per scenario and the seed of
/// the month made on the first start (none: start empty).
pub(crate) async fn run(
    mut config: Config,
    bind: SocketAddr,
    rate: f64,
    history: Option<(u64, u64)>,
) -> anyhow::Result<()> {
    let admin_token = demo_admin_token(&config)?;
    config.bootstrap_token = Some(admin_token.clone());
    // Every demo action has a declared shape: a context of the wrong type is refused.
    config.require_shapes = true;
    let listener = TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    // The address bound (`--bind 127.0.0.1:0` picks a free port).
    let bound = listener.local_addr().unwrap_or(bind);
    // A new SQLite data directory gets a past: the server starts 30 days
    // ago and its clock walks to now while the history is made.
    let new = config.database_url.is_none() && !config.data_dir.join("loopgate.db").exists();
    let history = history.filter(|_| new);
    let clock = Arc::new(match history {
        Some(_) => history::DemoClock::days_ago(history::DAYS),
        None => history::DemoClock::default(),
    });
    let started = loopgate_server::start(config, clock.clone()).await?;
    let first_start =
        started.generated_admin_token.is_none() && started.app.store.systems().await?.is_empty();
    let server = tokio::spawn(loopgate_server::serve(
        listener,
        started.app,
        crate::commands::shutdown_signal(),
    ));

    let base = format!("http://{bound}");
    let admin = Client::new(&base, &admin_token)?;
    if first_start {
        seed(&admin).await.context("seeding the demo failed")?;
    }
    // The simulator's keys, which the history submits with too.
    let keys = system_keys(&admin).await?;
    if let Some((size, seed)) = history {
        if first_start {
            let began = std::time::Instant::now();
            out!(
                "Making {} days of history ({size} proposals per scenario)…",
                history::DAYS
            );
            let made = history::make(&base, &admin, &keys, &clock, size, seed)
                .await
                .context("making the demo's history failed")?;
            out!(
                "History: {} proposals and {} decisions in {:.1} s.",
                made.proposals,
                made.decisions,
                began.elapsed().as_secs_f64()
            );
        }
        clock.live();
    }
    let accounts = accounts(&admin).await?;

    out!("\nloopgate demo is running: open {base}/ui and log in");
    out!("(API reference: {base}/openapi.json)\n");
    out!("Demo accounts (passwords and tokens are new on every start):");
    out!(
        "  {:<8} {:<24} {:<22} API token",
        "user",
        "role",
        "password"
    );
    for account in &accounts {
        out!(
            "  {:<8} {:<24} {:<22} {}",
            account.username,
            account.role,
            account.password,
            account.token
        );
    }
    let token = |name: &str| {
        accounts
            .iter()
            .find(|it| it.username == name)
            .map(|it| it.token.as_str())
            .unwrap_or_default()
    };
    out!(
        "\nTry:\n  {base}/ui/analytics?system=fraud-detector&attribute=country\n      the last 30 days as audrey (auditor) sees them: overrides, calibration, fairness, agreement\n  {base}/ui/queue           the review queue as rita or sam\n  LOOPGATE_TOKEN={} loopgate review list\n  LOOPGATE_TOKEN={} loopgate report overview --system fraud-detector\n  LOOPGATE_TOKEN={} loopgate report fairness --system fraud-detector --attribute country\n",
        token("rita"),
        token("audrey"),
        token("audrey"),
    );
    if 0.0 < rate {
        let noun = if rate == 1.0 { "proposal" } else { "proposals" };
        out!("The simulator submits {rate} {noun} per second. Stop with Ctrl-C.");
        tokio::spawn(simulate(base.clone(), keys, rate));
    }
    server
        .await
        .context("the server task failed")?
        .context("the server stopped")?;
    Ok(())
}

/// The demo's admin token: `LOOPGATE_BOOTSTRAP_TOKEN`, or one kept in the
/// data directory so that a second `loopgate demo` can still seed and print.
fn demo_admin_token(config: &Config) -> anyhow::Result<String> {
    if let Some(token) = &config.bootstrap_token {
        return Ok(token.clone());
    }
    let path = config.data_dir.join("demo-admin-token");
    if let Ok(token) = std::fs::read_to_string(&path) {
        return Ok(token.trim().to_owned());
    }
    loopgate_store::files::private_dir(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory `{}`",
            config.data_dir.display()
        )
    })?;
    let token = format!("lgt_demo_admin_{}", ulid::Ulid::new());
    loopgate_store::files::write_private(&path, token.as_bytes())
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(token)
}

async fn seed(admin: &Client) -> anyhow::Result<()> {
    let shapes: serde_json::Map<String, Value> = serde_json::from_str(SHAPES)?;
    for (id, name, owner, purpose, risk_tier, oversight) in SYSTEMS {
        let system = proto::CreateSystem {
            id: id.into(),
            name: name.into(),
            owner: owner.into(),
            purpose: purpose.into(),
            risk_tier,
            oversight,
            shape: shapes.get(id).cloned(),
        };
        admin.create_system(&system).await?;
    }
    for (username, roles, groups) in USERS {
        let user = proto::CreateUser {
            password: None,
            username: username.into(),
            roles: roles.to_vec(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            email: None,
            slack_user_id: None,
        };
        admin.create_user(&user).await?;
    }
    // The support leads take the agent's calls in turn: each is reserved
    // for one of them (assignment and delegation, docs/api.md).
    let turns = proto::SetGroup {
        assignment: proto::Assignment::RoundRobin,
        return_after: Some("15m".into()),
    };
    admin.set_group("support-leads", &turns).await?;
    let policy = proto::PublishPolicy {
        text: POLICIES.to_owned(),
        description: "demo scenarios".to_owned(),
        mode: None,
        cases: Some(CASES.to_owned()),
    };
    admin.publish_policy(&policy).await?;
    Ok(())
}

/// A demo account as printed.
struct Account {
    username: String,
    role: &'static str,
    password: String,
    token: String,
}

/// Fresh passwords and tokens for the demo accounts and the admin.
async fn accounts(admin: &Client) -> anyhow::Result<Vec<Account>> {
    let mut out = Vec::new();
    let users = admin.users().await?.items;
    let admin_row: (&str, &[proto::Role], &[&str]) = ("admin", &[proto::Role::Admin], &[]);
    for (username, roles, _) in USERS.iter().chain([admin_row].iter()) {
        let Some(user) = users.iter().find(|u| u.username == *username) else {
            continue;
        };
        let password = format!(
            "demo-{}",
            ulid::Ulid::new()
                .to_string()
                .to_lowercase()
                .get(14..)
                .unwrap_or("password")
        );
        let patch = proto::UpdateUser {
            password: Some(password.clone()),
            ..Default::default()
        };
        admin.update_user(&user.id, &patch).await?;
        let role = match roles.first() {
            Some(proto::Role::Admin) => "admin",
            Some(proto::Role::PolicyAuthor) => "analyst (policy author)",
            Some(proto::Role::Auditor) => "auditor",
            _ => "reviewer",
        };
        out.push(Account {
            username: user.username.clone(),
            role,
            password,
            token: admin.create_token(&user.id).await?.secret,
        });
    }
    Ok(out)
}

async fn system_keys(admin: &Client) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (id, ..) in SYSTEMS {
        out.push((id.to_owned(), admin.create_key(id).await?.secret));
    }
    Ok(out)
}

/// Submits synthetic proposals at `rate` per second, round the scenarios.
async fn simulate(base: String, keys: Vec<(String, String)>, rate: f64) {
    let mut clients = Vec::new();
    for (system, key) in &keys {
        if let Ok(client) = Client::new(&base, key) {
            clients.push((system.clone(), client));
        }
    }
    let mut rng = Rng((ulid::Ulid::new().random() as u64) | 1);
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.min(1000.0)));
    let mut n: u64 = 0;
    loop {
        interval.tick().await;
        n += 1;
        let Some((system, client)) = clients.get(rng.below(clients.len() as u64) as usize) else {
            return;
        };
        let proposal = synthetic(system, n, &mut rng);
        if let Err(error) = client.submit(&proposal, None).await {
            tracing::warn!(%error, "simulator submission failed");
        }
    }
}

/// A realistic proposal of one scenario.
pub(crate) fn synthetic(system: &str, n: u64, rng: &mut Rng) -> proto::SubmitProposal {
    let countries = ["DE", "FR", "NL", "PL", "ES", "IT"];
    let age_bands = ["18-24", "25-34", "35-44", "45-54", "55-64", "65+"];
    let genders = ["female", "male", "nonbinary"];
    let mut attributes = Map::new();
    attributes.insert("country".into(), json!(rng.pick(&countries)));
    attributes.insert("age_band".into(), json!(rng.pick(&age_bands)));
    let confidence = (0.55 + 0.45 * rng.unit()).min(0.999);
    let confidence = (confidence * 1000.0).round() / 1000.0;
    let (action, subject_type, input, output, context, explanation) = match system {
        "fraud-detector" => {
            let amount = [1_999, 4_990, 12_900, 45_000, 129_900, 249_000][rng.below(6) as usize];
            let velocity = 1 + rng.below(8);
            let reason = rng.pick(&["velocity", "geo_mismatch", "merchant_risk", "card_testing"]);
            (
                "block_card".to_owned(),
                "Account",
                json!({"transaction_id": format!("tx-{n}"), "amount_minor": amount, "currency": "EUR", "merchant": rng.pick(&["electronics", "travel", "grocery", "gaming"])}),
                json!({"block": true, "reason_code": reason}),
                json!({"amount_minor": amount, "channel": rng.pick(&["online", "pos", "atm"])}),
                json!({"summary": format!("{velocity} transactions in 3 minutes"), "features": {"velocity_5m": velocity, "geo_distance_km": rng.below(3000), "merchant_risk": rng.unit()}}),
            )
        }
        "diagnosis-assistant" => {
            attributes.insert("sex".into(), json!(rng.pick(&["female", "male"])));
            let (finding, severity) = rng.pick(&[
                ("pneumonia", "high"),
                ("pleural effusion", "high"),
                ("no acute findings", "low"),
                ("rib fracture", "medium"),
                ("cardiomegaly", "medium"),
            ]);
            (
                "suggest_diagnosis".to_owned(),
                "Patient",
                json!({"study_id": format!("cxr-{n}"), "modality": "chest x-ray", "report_excerpt": "opacity in the right lower lobe"}),
                json!({"finding": finding, "icd10": "J18.9", "recommendation": "clinical correlation"}),
                json!({"severity": severity}),
                json!({"summary": format!("{finding} suggested from image features"), "features": {"opacity_score": rng.unit(), "heart_size_ratio": 0.4 + 0.2 * rng.unit()}}),
            )
        }
        "content-moderator" => {
            attributes.insert(
                "language".into(),
                json!(rng.pick(&["en", "de", "es", "ar"])),
            );
            let label = rng.pick(&["hate_speech", "spam", "harassment", "nudity", "violence"]);
            (
                "remove_post".to_owned(),
                "Post",
                json!({"post_id": format!("post-{n}"), "text_sha256": format!("{:016x}", rng.next())}),
                json!({"remove": true, "label": label}),
                json!({"surface": rng.pick(&["feed", "comments", "messages"])}),
                json!({"summary": format!("classified as {label}"), "features": {"toxicity": rng.unit(), "reports": rng.below(20)}}),
            )
        }
        "lead-scorer" => {
            attributes.insert(
                "company_size".into(),
                json!(rng.pick(&["1-10", "11-50", "51-200", "201-1000", "1000+"])),
            );
            let score = rng.below(100);
            (
                "score_lead".to_owned(),
                "Lead",
                json!({"lead_id": format!("lead-{n}"), "source": rng.pick(&["webinar", "website", "referral", "trade_show"])}),
                json!({"score": score, "tier": if 70 <= score { "hot" } else if 40 <= score { "warm" } else { "cold" }}),
                json!({"region": rng.pick(&["emea", "amer", "apac"])}),
                json!({"summary": "engagement and firmographics", "features": {"pages_viewed": rng.below(40), "email_opens": rng.below(10)}}),
            )
        }
        _ => {
            attributes.insert("gender".into(), json!(rng.pick(&genders)));
            let tool = rng.pick(&[
                "lookup_order",
                "send_email",
                "send_email",
                "issue_refund",
                "issue_refund",
            ]);
            let amount = [500, 2_500, 9_900, 49_900, 150_000][rng.below(5) as usize];
            let output = match tool {
                "issue_refund" => {
                    json!({"order_id": format!("ord-{n}"), "amount_minor": amount, "currency": "EUR", "reason": "damaged item"})
                }
                "send_email" => {
                    json!({"to": format!("customer{n}@example.com"), "subject": "About your order", "body": "Hello, we are sorry for the trouble; a replacement is on its way."})
                }
                _ => json!({"order_id": format!("ord-{n}")}),
            };
            // The MCP gateway's context is the tool's arguments.
            let context = output.clone();
            (
                format!("mcp:crm/{tool}"),
                "Customer",
                json!({"conversation_id": format!("conv-{n}"), "last_message": "my parcel arrived broken"}),
                output,
                context,
                json!({"summary": format!("agent wants to call {tool}")}),
            )
        }
    };
    let context = match context {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    proto::SubmitProposal {
        system: None,
        action,
        subject: proto::Subject {
            type_: subject_type.to_owned(),
            id: format!("{}-{}", subject_type.to_lowercase(), rng.below(5000)),
            attributes,
        },
        input,
        output,
        confidence: Some(confidence),
        explanation: Some(explanation),
        model: Some(proto::Model {
            name: format!("{system}-model"),
            version: Some("2026.11.1".to_owned()),
        }),
        context,
        idempotency_key: Some(format!("sim-{}-{n}", ulid::Ulid::new())),
        batch: None,
    }
}

/// A small xorshift generator: the simulator needs variety, not security.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1_u64 << 53) as f64
    }

    /// One of a non-empty array's items (an empty array does not compile: `% N`).
    pub(crate) fn pick<T: Copy, const N: usize>(&mut self, items: &[T; N]) -> T {
        const { assert!(0 < N) };
        items[self.below(N as u64) as usize % N]
    }
}
