//! Server configuration, already merged from `loopgate.toml`, `LOOPGATE_*`
//! and flags by the binary.

use std::path::{Path, PathBuf};
use std::time::Duration;

use loopgate_core::Route;

/// Everything the server needs to start. Its `Debug` shows no secret (the
/// bootstrap token, the admin password, a database URL's password).
#[derive(Clone)]
pub struct Config {
    /// Where the database and the audit signing key live.
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://…`; `None` means `<data_dir>/loopgate.db`.
    pub database_url: Option<String>,
    /// PostgreSQL: connections for reads per replica.
    pub database_readers: usize,
    /// PostgreSQL: connections for writes per replica, each running one
    /// transaction at a time (plus one watch connection).
    pub database_writers: usize,
    /// PostgreSQL: longest a statement (or the wait for the writers' lock)
    /// may take before the request fails with 503.
    pub database_statement_timeout: Duration,
    /// A Cedar file or a directory of `*.cedar` files, published at start when changed.
    pub policies: Option<PathBuf>,
    /// The route when no policy matches.
    pub default_route: Route,
    /// How long a claim lasts.
    pub lease: Duration,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Longest long-poll.
    pub max_wait: Duration,
    /// How often deadlines are checked.
    pub timer_interval: Duration,
    /// On first start, the admin's API token.
    pub bootstrap_token: Option<String>,
    /// On first start, the admin's password.
    pub admin_password: Option<String>,
    /// Longest time between a change and a checkpoint that covers it.
    pub audit_checkpoint_interval: Duration,
    /// Serve `/v1/audit/*` without a token (the public key always is).
    pub audit_public: bool,
    /// The log's origin (and key name), used when the key is generated.
    pub audit_origin: Option<String>,
    /// Publishing a policy version requires a case file that passes.
    pub require_policy_tests: bool,
    /// Refuse proposals for actions without a declared shape (a system's
    /// shape may also ask this of its own actions).
    pub require_shapes: bool,
    /// Longest policy text (and case file) accepted.
    pub max_policy_bytes: usize,
    /// A web session ends this long after login, whatever the activity.
    pub session_ttl: Duration,
    /// A web session ends after this long without a request.
    pub session_idle: Duration,
    /// Mark session cookies `Secure` (set when loopgate is served over TLS,
    /// directly or behind a proxy). Requests with `X-Forwarded-Proto: https`
    /// get `Secure` cookies either way.
    pub secure_cookies: bool,
    /// How long a webhook endpoint has to answer.
    pub webhook_timeout: Duration,
    /// The first retry of a failed delivery waits this long; each next one
    /// twice as long as the one before.
    pub webhook_retry_base: Duration,
    /// The longest wait between two attempts.
    pub webhook_retry_max: Duration,
    /// A delivery that has not succeeded this long after it was queued (or
    /// redelivered) fails.
    pub webhook_give_up: Duration,
    /// Behind a proxy: the header that names the client's address (e.g.
    /// `x-forwarded-for`; its last address is used). Without it, the peer's
    /// address is the client's.
    pub trusted_proxy_header: Option<String>,
    /// Entries of the failed-login table (per address, and per username at
    /// an address); when it is full of live entries, logins that would need
    /// a new one are refused until entries expire.
    pub login_table_entries: usize,
    /// Networks outbound requests (webhooks) may reach although they are
    /// loopback, link-local, private or otherwise internal.
    pub webhook_allow_private: Vec<ipnet::IpNet>,
    /// A client must send a request's headers within this long, or its
    /// connection is closed (slow clients cannot hold connections).
    pub header_read_timeout: Duration,
    /// A request not answered within this long gets 503 (longer than
    /// `max_wait`, so that long-polls end by themselves first).
    pub request_timeout: Duration,
    /// Open connections at most; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// After SIGTERM, running requests have this long to finish.
    pub shutdown_grace: Duration,
    /// Event streams open at once per credential.
    pub max_streams_per_credential: usize,
    /// Long-polls waiting at once per credential.
    pub max_waits_per_credential: usize,
    /// Proposals a second each system may submit (per replica); none: no limit.
    pub submit_rate: Option<u32>,
    /// When set, `/metrics` needs `Authorization: Bearer <metrics_token>`.
    pub metrics_token: Option<String>,
    /// Password hashes computed at once (argon2id, 19 MiB each); more wait
    /// up to two seconds, then 503.
    pub password_workers: usize,
    /// The base of links in messages to people (`https://loopgate.example`).
    pub public_url: Option<String>,
    /// `smtp://[user:pass@]host:port` (STARTTLS when the server offers it is
    /// not assumed: `?tls=required` asks for it) or `smtps://…` (TLS).
    pub smtp_url: Option<String>,
    /// The `From` of emails.
    pub email_from: Option<String>,
    /// Whether emails to members carry single-use decision links.
    pub email_decision_links: bool,
    /// How long a decision link works.
    pub decision_link_ttl: Duration,
    /// Slack bot token (`xoxb-…`).
    pub slack_bot_token: Option<String>,
    /// Slack signing secret (interactions are refused without it).
    pub slack_signing_secret: Option<String>,
    /// Slack's Web API (tests point it at loopback).
    pub slack_api_url: String,
    /// The share of a task's deadline after which its group is warned.
    pub sla_warning_share: f64,
    /// Single sign-on through an OpenID Provider (docs/sso.md); `None`: off.
    pub oidc: Option<OidcConfig>,
    /// Whether people may log in with a password. When off, only the first
    /// admin may, as break-glass (`/ui/login?break_glass=1`, audited).
    pub password_login: bool,
    /// OpenTelemetry trace export (docs/operations.md, "Traces"); `None`: off.
    pub traces: Option<crate::otel::TraceExport>,
}

/// An OpenID Provider and what its groups claim maps to.
#[derive(Clone)]
pub struct OidcConfig {
    /// The issuer URL (discovery at `{issuer}/.well-known/openid-configuration`).
    pub issuer: String,
    /// The client loopgate is at the provider.
    pub client_id: String,
    /// The client's secret (`None`: a public client, PKCE only).
    pub client_secret: Option<String>,
    /// Scopes asked for besides `openid`.
    pub scopes: Vec<String>,
    /// The claim that lists a user's groups.
    pub groups_claim: String,
    /// Claim values to roles and reviewer groups.
    pub mapping: loopgate_core::sso::Mapping,
    /// Shown as "Sign in with {name}".
    pub name: String,
}

impl OidcConfig {
    /// A provider with the default scopes (`profile email groups`), claim
    /// (`groups`) and name (the issuer's host), and no mapping.
    pub fn new(issuer: &str, client_id: &str, client_secret: Option<&str>) -> OidcConfig {
        let name = issuer
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split(['/', ':']).next())
            .unwrap_or(issuer)
            .to_owned();
        OidcConfig {
            issuer: issuer.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.map(str::to_owned),
            scopes: ["profile", "email", "groups"].map(str::to_owned).to_vec(),
            groups_claim: "groups".to_owned(),
            mapping: loopgate_core::sso::Mapping::default(),
            name,
        }
    }
}

impl std::fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("scopes", &self.scopes)
            .field("groups_claim", &self.groups_claim)
            .field("mapping", &self.mapping)
            .field("name", &self.name)
            .finish()
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |set: bool| if set { Some("[redacted]") } else { None };
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .field("database_readers", &self.database_readers)
            .field("database_writers", &self.database_writers)
            .field("policies", &self.policies)
            .field("default_route", &self.default_route)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("bootstrap_token", &hidden(self.bootstrap_token.is_some()))
            .field("admin_password", &hidden(self.admin_password.is_some()))
            .field("metrics_token", &hidden(self.metrics_token.is_some()))
            .field("audit_public", &self.audit_public)
            .field("require_shapes", &self.require_shapes)
            .field("secure_cookies", &self.secure_cookies)
            .field("trusted_proxy_header", &self.trusted_proxy_header)
            .field("webhook_allow_private", &self.webhook_allow_private)
            .field("public_url", &self.public_url)
            .field("smtp_url", &self.smtp_url.as_deref().map(redact_url))
            .field("email_from", &self.email_from)
            .field("slack_bot_token", &hidden(self.slack_bot_token.is_some()))
            .field(
                "slack_signing_secret",
                &hidden(self.slack_signing_secret.is_some()),
            )
            .field("slack_api_url", &self.slack_api_url)
            .field("oidc", &self.oidc)
            .field("password_login", &self.password_login)
            .field("traces", &self.traces)
            .finish_non_exhaustive()
    }
}

/// A URL with its password replaced: `postgres://user:[redacted]@host/db`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:[redacted]@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

impl Config {
    /// Defaults for a data directory.
    pub fn new(data_dir: PathBuf) -> Config {
        Config {
            data_dir,
            database_url: None,
            database_readers: 8,
            database_writers: 8,
            database_statement_timeout: Duration::from_secs(30),
            policies: None,
            default_route: Route::Review,
            lease: Duration::from_secs(300),
            max_body_bytes: 1024 * 1024,
            max_wait: Duration::from_secs(60),
            timer_interval: Duration::from_secs(1),
            bootstrap_token: None,
            admin_password: None,
            audit_checkpoint_interval: Duration::from_secs(1),
            audit_public: false,
            audit_origin: None,
            require_policy_tests: false,
            require_shapes: false,
            max_policy_bytes: loopgate_core::routing::bounds::MAX_BYTES,
            session_ttl: Duration::from_secs(12 * 3600),
            session_idle: Duration::from_secs(3600),
            secure_cookies: false,
            webhook_timeout: Duration::from_secs(10),
            webhook_retry_base: Duration::from_secs(5),
            webhook_retry_max: Duration::from_secs(3600),
            webhook_give_up: Duration::from_secs(24 * 3600),
            trusted_proxy_header: None,
            webhook_allow_private: Vec::new(),
            metrics_token: None,
            max_streams_per_credential: 16,
            max_waits_per_credential: 256,
            submit_rate: None,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(90),
            max_connections: 4096,
            shutdown_grace: Duration::from_secs(30),
            login_table_entries: 50_000,
            password_workers: 2,
            public_url: None,
            smtp_url: None,
            email_from: None,
            email_decision_links: true,
            decision_link_ttl: Duration::from_secs(24 * 3600),
            slack_bot_token: None,
            slack_signing_secret: None,
            slack_api_url: "https://slack.com/api".to_owned(),
            sla_warning_share: 0.75,
            oidc: None,
            password_login: true,
            traces: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// A database URL's password never survives redaction, whatever
        /// else the URL holds.
        #[test]
        fn redaction_drops_the_password(
            user in "[a-z]{1,8}",
            password in "[A-Za-z0-9]{6,16}",
            rest in "[a-z0-9./?=@:-]{0,30}",
        ) {
            let url = format!("postgres://{user}:{password}@db{rest}");
            let shown = redact_url(&url);
            proptest::prop_assert!(!shown.contains(&format!(":{password}@")), "{}", shown);
        }
    }

    #[test]
    fn debug_shows_no_secret() {
        let mut config = Config::new(PathBuf::from("/data"));
        config.bootstrap_token = Some("lgt_secret_bootstrap".into());
        config.admin_password = Some("hunter2hunter2".into());
        config.database_url = Some("postgres://loopgate:pa55word@db:5432/loopgate".into());
        config.smtp_url = Some("smtps://mailer:sm7pass@mail.example:465".into());
        config.slack_bot_token = Some("xoxb-sl4ck-token".into());
        config.slack_signing_secret = Some("s1gning-secret".into());
        config.oidc = Some(OidcConfig::new(
            "https://idp.example",
            "loopgate",
            Some("0idc-secret"),
        ));
        let shown = format!("{config:?}");
        for secret in [
            "lgt_secret_bootstrap",
            "hunter2hunter2",
            "pa55word",
            "sm7pass",
            "xoxb-sl4ck-token",
            "s1gning-secret",
            "0idc-secret",
        ] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(
            shown.contains("postgres://loopgate:[redacted]@db:5432/loopgate"),
            "{shown}"
        );
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory or database could not be opened.
    #[error("cannot open the database: {0}")]
    Store(#[from] loopgate_store::StoreError),
    /// The database URL is not supported.
    #[error("{0}")]
    DatabaseUrl(String),
    /// The policy files could not be read or parsed.
    #[error("policies in `{path}`: {problem}")]
    Policies { path: String, problem: String },
    /// The first admin or the sampling secret could not be made.
    #[error("cannot set up secrets: {0}")]
    Secrets(String),
    /// A setting cannot be used (it says which and why).
    #[error("{0}")]
    Config(String),
    /// A bootstrap token that could never be used.
    #[error("LOOPGATE_BOOTSTRAP_TOKEN must be at least 16 characters")]
    WeakBootstrapToken,
}

/// Reads a Cedar file, or every `*.cedar` file of a directory in name order.
pub fn read_policies(path: &Path) -> Result<String, StartError> {
    let problem = |e: std::io::Error| StartError::Policies {
        path: path.display().to_string(),
        problem: e.to_string(),
    };
    if !path.is_dir() {
        return std::fs::read_to_string(path).map_err(problem);
    }
    let mut files: Vec<_> = std::fs::read_dir(path)
        .map_err(problem)?
        .filter_map(|entry| entry.ok().map(|it| it.path()))
        .filter(|it| it.extension().is_some_and(|ext| ext == "cedar"))
        .collect();
    files.sort();
    let mut text = String::new();
    for file in files {
        text.push_str(&std::fs::read_to_string(&file).map_err(problem)?);
        text.push('\n');
    }
    Ok(text)
}
