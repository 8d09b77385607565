//! The application state shared by handlers and workers, and start-up:
//! open the store, create the first admin, load policies.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use loopgate_core::routing::Policies;
use loopgate_core::{Role, SystemId, UserId};
use loopgate_store::sql::PgOptions;
use loopgate_store::sql::admin::Database;
use loopgate_store::{
    ActivationMode, Authenticated, CredentialOwner, NewCredential, NewPolicy, NewUser, Store,
    StoreError, SystemRecord,
};
use tokio_util::sync::CancellationToken;

use crate::cache::TtlCache;
use crate::metrics::Metrics;
use crate::secrets::{hash_password, hash_secret, new_secret};
use crate::waiters::Waiters;
use crate::{Clock, Config, StartError};

/// Everything a handler needs. Cloning it is one reference count: axum
/// clones the state for each extractor of each request.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What the handlers of one server share (through [`AppState`]).
pub struct Shared {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The configuration.
    pub config: Arc<Config>,
    pub(crate) waiters: Waiters,
    /// The live and shadow policy sets, as the store's activations say.
    pub(crate) policies: Arc<RwLock<Active>>,
    /// Serializes publishing and activation with reloading `policies`.
    pub(crate) policy_lock: Arc<tokio::sync::Mutex<()>>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) sampling_secret: Arc<Vec<u8>>,
    /// Credential hash → credential (`None`: unknown or revoked).
    pub(crate) principals: Arc<TtlCache<String, Option<Authenticated>>>,
    /// Counts changes to credentials, users and sessions seen by this
    /// process (its own and, through the event tail, other replicas');
    /// open streams and long-polls check their caller again on each.
    pub(crate) credentials: tokio::sync::watch::Sender<u64>,
    /// System id → system, for routing.
    pub(crate) systems: Arc<TtlCache<SystemId, SystemRecord>>,
    /// The audit log's signer and last checkpoint.
    pub(crate) audit: Arc<crate::audit::Audit>,
    /// The event stream's wake-up and fan-out (`GET /v1/events`).
    pub(crate) bus: crate::events::Bus,
    /// Failed logins by address and by username at an address.
    pub(crate) logins: Arc<crate::limits::LoginThrottle>,
    /// Password hashing and checks, bounded.
    pub(crate) passwords: Arc<crate::limits::Passwords>,
    /// Open event streams per credential.
    pub(crate) streams: Arc<crate::limits::PerCredential>,
    /// Waiting long-polls per credential.
    pub(crate) waits: Arc<crate::limits::PerCredential>,
    /// Which addresses outbound requests (webhooks) may reach.
    pub(crate) fence: crate::outbound::Fence,
    /// The SMTP transport, when `smtp_url` is set.
    pub(crate) mailer: Option<Arc<crate::notify::email::Mailer>>,
    /// Slack's Web API, when a bot token is set.
    pub(crate) slack: Option<Arc<crate::notify::slack::SlackApi>>,
    /// Slack request signatures already taken (against replays).
    pub(crate) slack_seen: crate::notify::slack::Seen,
    /// The identity provider for single sign-on, when configured.
    pub(crate) oidc: Option<Arc<crate::auth::oidc::Oidc>>,
    /// Submissions a second per system, when limited.
    pub(crate) submit_rate: Option<crate::limits::SubmitRate>,
    /// OpenTelemetry traces (off unless `traces` is configured).
    pub(crate) traces: crate::otel::Traces,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
}

/// A started application and what the operator must see once.
pub struct Started {
    /// The state to serve.
    pub app: AppState,
    /// On first start without `LOOPGATE_BOOTSTRAP_TOKEN`: the admin's new token.
    pub generated_admin_token: Option<String>,
    /// On first start without `LOOPGATE_ADMIN_PASSWORD`: the admin's new
    /// password for the web UI.
    pub generated_admin_password: Option<String>,
}

/// Opens the store, creates the first admin and publishes `--policies`.
pub async fn start(config: Config, clock: Arc<dyn Clock>) -> Result<Started, StartError> {
    // The data directory holds the audit key and (SQLite) every payload.
    loopgate_store::files::private_dir(&config.data_dir).map_err(|e| {
        StartError::Secrets(format!(
            "cannot create the data directory `{}` (mode 0700): {e}",
            config.data_dir.display()
        ))
    })?;
    let store = open_store(&config).await?;
    let audit = crate::audit::Audit::open(&config.data_dir, config.audit_origin.as_deref())?;
    // Checkpoints must all be signed by one key: a replica (or a restored
    // install) with another key would fork the log's signatures.
    if let Some(latest) = store.latest_checkpoint().await?
        && audit.signer.verifier().open(&latest.note).is_err()
    {
        return Err(StartError::Secrets(format!(
            "the audit log's checkpoints were signed with another key than `{}`; \
             give every replica the key file of the server that started the log (docs/operations.md)",
            config.data_dir.join(crate::audit::KEY_FILE).display()
        )));
    }
    let now = clock.now();

    let candidate =
        new_secret("").map_err(|e| StartError::Secrets(format!("no random source: {e}")))?;
    let sampling_secret = store.sampling_secret(candidate).await?.into_bytes();

    let (generated_admin_token, generated_admin_password) =
        bootstrap(store.as_ref(), &config, now).await?;

    let mut active = load_active(store.as_ref()).await?;
    if let Some(path) = &config.policies {
        let text = crate::config::read_policies(path)?;
        let bad = |problem: String| StartError::Policies {
            path: path.display().to_string(),
            problem,
        };
        let parsed = Policies::parse(&text).map_err(|e| bad(e.to_string()))?;
        if parsed.version() != active.live.version() {
            let systems = store.systems().await?;
            let schema = loopgate_store::SystemRecord::schema_of(&systems).map_err(bad)?;
            if let Some(error) = schema.validate(&parsed).errors.first() {
                return Err(bad(format!("policy `{}`: {}", error.policy, error.message)));
            }
            let new = NewPolicy {
                version: parsed.version().to_owned(),
                text,
                description: format!("loaded from {}", path.display()),
                policy_ids: parsed.ids().to_vec(),
            };
            store
                .publish_policy(new, ActivationMode::Live, "loopgate", now)
                .await?;
            active = load_active(store.as_ref()).await?;
        }
    }

    let logins = Arc::new(crate::limits::LoginThrottle::new(
        config.login_table_entries,
    ));
    let passwords = Arc::new(crate::limits::Passwords::new(
        config.password_workers,
        Duration::from_secs(2),
    ));
    let streams = Arc::new(crate::limits::PerCredential::new(
        "event streams",
        config.max_streams_per_credential,
    ));
    let waits = Arc::new(crate::limits::PerCredential::new(
        "long-polls",
        config.max_waits_per_credential,
    ));
    let submit_rate = config.submit_rate.map(crate::limits::SubmitRate::new);
    let fence = crate::outbound::Fence::new(config.webhook_allow_private.clone());
    let mailer = match &config.smtp_url {
        Some(url) => Some(Arc::new(
            crate::notify::email::Mailer::new(url, config.email_from.as_deref())
                .map_err(StartError::Config)?,
        )),
        None => None,
    };
    let slack = match &config.slack_bot_token {
        Some(token) => Some(Arc::new(
            crate::notify::slack::SlackApi::new(&config.slack_api_url, token)
                .map_err(StartError::Config)?,
        )),
        None => None,
    };
    let oidc = match &config.oidc {
        Some(oidc) => {
            let public_url = config.public_url.as_deref().ok_or_else(|| {
                StartError::Config(
                    "single sign-on needs `public_url`: the provider sends people back to `{public_url}/ui/oidc/callback`".to_owned(),
                )
            })?;
            Some(Arc::new(
                crate::auth::oidc::Oidc::new(oidc.clone(), public_url)
                    .map_err(StartError::Config)?,
            ))
        }
        None => None,
    };
    let traces = match &config.traces {
        Some(export) => {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| StartError::Config(format!("no HTTP client for traces: {e}")))?;
            crate::otel::Traces::start(export, http).map_err(StartError::Config)?
        }
        None => crate::otel::Traces::default(),
    };
    let app = AppState(Arc::new(Shared {
        store,
        clock,
        config: Arc::new(config),
        waiters: Waiters::default(),
        policies: Arc::new(RwLock::new(active)),
        policy_lock: Arc::new(tokio::sync::Mutex::new(())),
        metrics: Arc::new(Metrics::default()),
        sampling_secret: Arc::new(sampling_secret),
        principals: Arc::new(TtlCache::new(Duration::from_secs(5))),
        credentials: tokio::sync::watch::Sender::new(0),
        systems: Arc::new(TtlCache::new(Duration::from_secs(2))),
        audit: Arc::new(audit),
        bus: crate::events::Bus::default(),
        logins,
        passwords,
        streams,
        waits,
        submit_rate,
        fence,
        mailer,
        slack,
        slack_seen: crate::notify::slack::Seen::default(),
        oidc,
        traces,
        shutdown: CancellationToken::new(),
    }));
    // Other replicas' commits (PostgreSQL): the tail reads them at once.
    let bus = app.bus.clone();
    app.store
        .watch_commits(Box::new(move || bus.foreign_commit()));
    let sequencer = Arc::clone(&app.bus.sequencer);
    app.store
        .watch_queued(Box::new(move || sequencer.notify_one()));
    // A proposal settled on another replica: its waiters here read it now.
    let waiters = app.waiters.clone();
    app.store
        .watch_settled(Box::new(move |id| waiters.resolved(id, None)));
    Ok(Started {
        app,
        generated_admin_token,
        generated_admin_password,
    })
}

impl AppState {
    /// Sends every finished span to the OTLP endpoint now (when traces are
    /// on), without waiting for the exporter's next batch.
    pub async fn flush_traces(&self) {
        let traces = self.traces.clone();
        let _ = tokio::task::spawn_blocking(move || traces.flush()).await;
    }

    /// A credential, user or session changed (here or on another replica):
    /// forget cached credentials and make open streams and long-polls check
    /// their caller again.
    pub(crate) fn credentials_changed(&self) {
        self.principals.clear();
        self.credentials
            .send_modify(|count| *count = count.wrapping_add(1));
    }

    /// The live policy set.
    pub(crate) fn live_policies(&self) -> Arc<Policies> {
        Arc::clone(&self.active_policies().live)
    }

    /// The live and shadow sets.
    pub(crate) fn active_policies(&self) -> Active {
        match self.policies.read() {
            Ok(active) => active.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// A system, from the cache when fresh.
    pub(crate) async fn system(&self, id: &SystemId) -> Result<Option<SystemRecord>, StoreError> {
        if let Some(system) = self.systems.get(id) {
            return Ok(Some(system));
        }
        let system = self.store.system(id).await?;
        if let Some(system) = &system {
            self.systems.insert(id.clone(), system.clone());
        }
        Ok(system)
    }

    /// Reloads the live and shadow sets from the store; callers hold
    /// `policy_lock` around their write and this reload.
    pub(crate) async fn reload_policies(&self) -> Result<(), StartError> {
        let current = self.active_policies();
        let state = self.store.policy_state().await?;
        let reuse = |record: &loopgate_store::PolicyRecord| -> Option<Arc<Policies>> {
            [Some(&current.live), current.shadow.as_ref()]
                .into_iter()
                .flatten()
                .find(|it| it.version() == record.version)
                .cloned()
        };
        let parse = |record: &loopgate_store::PolicyRecord| -> Result<Arc<Policies>, StartError> {
            match reuse(record) {
                Some(it) => Ok(it),
                None => parse_stored(record).map(Arc::new),
            }
        };
        let live = match &state.live {
            Some(record) => parse(record)?,
            None => Arc::new(Policies::empty()),
        };
        let shadow = match &state.shadow {
            Some((record, _)) => Some(parse(record)?),
            None => None,
        };
        let active = Active { live, shadow };
        match self.policies.write() {
            Ok(mut slot) => *slot = active,
            Err(poisoned) => *poisoned.into_inner() = active,
        }
        Ok(())
    }
}

/// The live set and the shadow set, if one runs.
#[derive(Clone)]
pub(crate) struct Active {
    pub(crate) live: Arc<Policies>,
    pub(crate) shadow: Option<Arc<Policies>>,
}

fn parse_stored(record: &loopgate_store::PolicyRecord) -> Result<Policies, StartError> {
    Policies::parse(&record.text).map_err(|e| StartError::Policies {
        path: format!("stored version {}", record.version),
        problem: e.to_string(),
    })
}

async fn load_active(store: &dyn Store) -> Result<Active, StartError> {
    let state = store.policy_state().await?;
    let live = match &state.live {
        Some(record) => parse_stored(record)?,
        None => Policies::empty(),
    };
    let shadow = match &state.shadow {
        Some((record, _)) => Some(Arc::new(parse_stored(record)?)),
        None => None,
    };
    Ok(Active {
        live: Arc::new(live),
        shadow,
    })
}

async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    let database = match config.database_url.as_deref() {
        None => Database::Sqlite(config.data_dir.join("loopgate.db")),
        Some(url) => Database::parse(url).map_err(|e| StartError::DatabaseUrl(e.to_string()))?,
    };
    let options = PgOptions {
        readers: config.database_readers.max(1),
        writers: config.database_writers.max(1),
        statement_timeout: config.database_statement_timeout,
        ..PgOptions::default()
    };
    Ok(Arc::new(database.open(options).await?))
}

async fn bootstrap(
    store: &dyn Store,
    config: &Config,
    now: loopgate_core::Timestamp,
) -> Result<(Option<String>, Option<String>), StartError> {
    // Only the first start makes an admin: skip the password hashing after.
    if !store.users().await?.is_empty() {
        return Ok((None, None));
    }
    let (token, generated) = match &config.bootstrap_token {
        Some(token) if token.len() < 16 => return Err(StartError::WeakBootstrapToken),
        Some(token) => (token.clone(), false),
        None => (
            new_secret("lgt_")
                .map_err(|e| StartError::Secrets(format!("no random source: {e}")))?,
            true,
        ),
    };
    let (password, generated_password) = match &config.admin_password {
        Some(password) => (password.clone(), false),
        None => (
            new_secret("").map_err(|e| StartError::Secrets(format!("no random source: {e}")))?
                [..20]
                .to_owned(),
            true,
        ),
    };
    let password_hash = Some(hash_password(&password).map_err(StartError::Secrets)?);
    let id = UserId::from_unique(&ulid::Ulid::new().to_string());
    let admin = NewUser {
        id: id.clone(),
        username: "admin".to_owned(),
        roles: vec![Role::Admin],
        groups: Vec::new(),
        password_hash,
        email: None,
        slack_user_id: None,
        source: loopgate_core::UserSource::Bootstrap,
    };
    let credential = NewCredential {
        id: format!("tok_{}", ulid::Ulid::new()),
        hash: hash_secret(&token),
        owner: CredentialOwner::User(id),
        name: "bootstrap".to_owned(),
        expires_at: None,
    };
    let created = store.bootstrap_admin(admin, Some(credential), now).await?;
    Ok((
        (created && generated).then_some(token),
        (created && generated_password).then_some(password),
    ))
}
