//! The application state shared by handlers and workers, and start-up:
//! open the store, create the first admin, load policies.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use loopgate_core::routing::Policies;
use loopgate_core::{Role, SystemId, UserId};
use loopgate_store::sqlite::SqliteStore;
use loopgate_store::{
    CredentialOwner, NewCredential, NewPolicy, NewUser, Principal, Store, StoreError, SystemRecord,
};
use tokio_util::sync::CancellationToken;

use crate::cache::TtlCache;
use crate::metrics::Metrics;
use crate::secrets::{hash_password, hash_secret, new_secret};
use crate::waiters::Waiters;
use crate::{Clock, Config, StartError};

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The configuration.
    pub config: Arc<Config>,
    pub(crate) waiters: Waiters,
    /// The live policy set and its publication number (newest wins).
    pub(crate) policies: Arc<RwLock<(i64, Arc<Policies>)>>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) sampling_secret: Arc<Vec<u8>>,
    /// Credential hash → principal (`None`: unknown credential).
    pub(crate) principals: Arc<TtlCache<String, Option<Principal>>>,
    /// System id → system, for routing.
    pub(crate) systems: Arc<TtlCache<SystemId, SystemRecord>>,
    /// The audit log's signer and last checkpoint.
    pub(crate) audit: Arc<crate::audit::Audit>,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
}

/// A started application and what the operator must see once.
pub struct Started {
    /// The state to serve.
    pub app: AppState,
    /// On first start without `LOOPGATE_BOOTSTRAP_TOKEN`: the admin's new token.
    pub generated_admin_token: Option<String>,
}

/// Opens the store, creates the first admin and publishes `--policies`.
pub async fn start(config: Config, clock: Arc<dyn Clock>) -> Result<Started, StartError> {
    let store = open_store(&config)?;
    let audit = crate::audit::Audit::open(&config.data_dir, config.audit_origin.as_deref())?;
    let now = clock.now();

    let candidate =
        new_secret("").map_err(|e| StartError::Secrets(format!("no random source: {e}")))?;
    let sampling_secret = store.sampling_secret(candidate).await?.into_bytes();

    let generated_admin_token = bootstrap(store.as_ref(), &config, now).await?;

    let (mut live_seq, mut live) = match store.policies().await?.into_iter().next() {
        Some(record) => {
            let parsed = Policies::parse(&record.text).map_err(|e| StartError::Policies {
                path: format!("stored version {}", record.version),
                problem: e.to_string(),
            })?;
            (record.seq, parsed)
        }
        None => (0, Policies::empty()),
    };
    if let Some(path) = &config.policies {
        let text = crate::config::read_policies(path)?;
        let parsed = Policies::parse(&text).map_err(|e| StartError::Policies {
            path: path.display().to_string(),
            problem: e.to_string(),
        })?;
        if parsed.version() != live.version() {
            let new = NewPolicy {
                version: parsed.version().to_owned(),
                text,
                description: format!("loaded from {}", path.display()),
                policy_ids: parsed.ids().to_vec(),
            };
            live_seq = store.publish_policy(new, "loopgate", now).await?.seq;
            live = parsed;
        }
    }

    let app = AppState {
        store,
        clock,
        config: Arc::new(config),
        waiters: Waiters::default(),
        policies: Arc::new(RwLock::new((live_seq, Arc::new(live)))),
        metrics: Arc::new(Metrics::default()),
        sampling_secret: Arc::new(sampling_secret),
        principals: Arc::new(TtlCache::new(Duration::from_secs(5))),
        systems: Arc::new(TtlCache::new(Duration::from_secs(2))),
        audit: Arc::new(audit),
        shutdown: CancellationToken::new(),
    };
    Ok(Started {
        app,
        generated_admin_token,
    })
}

impl AppState {
    /// The live policy set.
    pub(crate) fn live_policies(&self) -> Arc<Policies> {
        match self.policies.read() {
            Ok(live) => Arc::clone(&live.1),
            Err(poisoned) => Arc::clone(&poisoned.into_inner().1),
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

    /// Makes `policies` live unless a newer publication already is: two
    /// concurrent publishes end with the newest row live, as a restart would.
    pub(crate) fn set_live_policies(&self, seq: i64, policies: Policies) {
        let mut live = match self.policies.write() {
            Ok(live) => live,
            Err(poisoned) => poisoned.into_inner(),
        };
        if live.0 < seq {
            *live = (seq, Arc::new(policies));
        }
    }
}

fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    let path = match config.database_url.as_deref() {
        None => config.data_dir.join("loopgate.db"),
        Some(url) => match url.strip_prefix("sqlite://") {
            Some(path) => Path::new(path).to_path_buf(),
            None if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                return Err(StartError::DatabaseUrl(
                    "PostgreSQL is not supported by this build yet; use sqlite://PATH or leave --database-url unset".to_owned(),
                ));
            }
            None => {
                return Err(StartError::DatabaseUrl(format!(
                    "database URL must start with sqlite://, got `{url}`"
                )));
            }
        },
    };
    if let Some(parent) = path.parent().filter(|it| !it.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| StartError::DataDir {
            path: parent.display().to_string(),
            problem: e.to_string(),
        })?;
    }
    Ok(Arc::new(SqliteStore::open(&path)?))
}

async fn bootstrap(
    store: &dyn Store,
    config: &Config,
    now: loopgate_core::Timestamp,
) -> Result<Option<String>, StartError> {
    let (token, generated) = match &config.bootstrap_token {
        Some(token) if token.len() < 16 => return Err(StartError::WeakBootstrapToken),
        Some(token) => (token.clone(), false),
        None => (
            new_secret("lgt_")
                .map_err(|e| StartError::Secrets(format!("no random source: {e}")))?,
            true,
        ),
    };
    let password_hash = match &config.admin_password {
        Some(password) => Some(hash_password(password).map_err(StartError::Secrets)?),
        None => None,
    };
    let id = UserId::from_unique(&ulid::Ulid::new().to_string());
    let admin = NewUser {
        id: id.clone(),
        username: "admin".to_owned(),
        roles: vec![Role::Admin],
        groups: Vec::new(),
        password_hash,
    };
    let credential = NewCredential {
        id: format!("tok_{}", ulid::Ulid::new()),
        hash: hash_secret(&token),
        owner: CredentialOwner::User(id),
    };
    let created = store.bootstrap_admin(admin, Some(credential), now).await?;
    Ok((created && generated).then_some(token))
}
