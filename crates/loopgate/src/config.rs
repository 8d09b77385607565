//! `loopgate.toml`, merged under environment variables and flags
//! (clap already folds `LOOPGATE_*` into the flags).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use loopgate_core::Route;
use loopgate_server::Config;
use serde::Deserialize;

use crate::cli::{Remote, ServeArgs};

/// An environment variable that is set and not empty.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|it| !it.trim().is_empty())
}

/// OpenTelemetry trace export, from the standard variables
/// (docs/operations.md, "Traces"): on when an OTLP endpoint is set, unless
/// `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`. The exporter
/// itself reads the endpoint, headers, timeout and compression, the SDK the
/// sampler and batch sizes.
fn traces() -> anyhow::Result<Option<loopgate_server::otel::TraceExport>> {
    let endpoint =
        env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"));
    let disabled =
        env("OTEL_SDK_DISABLED").is_some_and(|it| it.trim().eq_ignore_ascii_case("true"));
    let exporter = env("OTEL_TRACES_EXPORTER").unwrap_or_else(|| "otlp".to_owned());
    if endpoint.is_none() || disabled || exporter.trim() == "none" {
        return Ok(None);
    }
    if exporter.trim() != "otlp" {
        anyhow::bail!("`OTEL_TRACES_EXPORTER` may be `otlp` or `none`, not `{exporter}`");
    }
    for name in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(protocol) = env(name)
            && protocol.trim() != "http/protobuf"
        {
            anyhow::bail!(
                "`{name}` must be `http/protobuf` (loopgate exports OTLP over HTTP), not `{protocol}`"
            );
        }
    }
    Ok(Some(loopgate_server::otel::TraceExport {
        endpoint: None,
        service_name: env("OTEL_SERVICE_NAME").unwrap_or_else(|| "loopgate".to_owned()),
    }))
}

/// Whether `name` is a valid header name.
fn axum_header_name(name: &str) -> Option<()> {
    reqwest::header::HeaderName::from_bytes(name.as_bytes())
        .ok()
        .map(|_| ())
}

/// The file's keys; every one optional. `deploy/loopgate.toml` lists them
/// all with their defaults (kept true by the tests below).
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    bind: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    database_readers: Option<usize>,
    database_writers: Option<usize>,
    database_statement_timeout_seconds: Option<u64>,
    policies: Option<PathBuf>,
    default_route: Option<String>,
    lease_seconds: Option<u64>,
    max_body_bytes: Option<usize>,
    server: Option<String>,
    token: Option<String>,
    audit_checkpoint_ms: Option<u64>,
    audit_public: Option<bool>,
    audit_origin: Option<String>,
    require_policy_tests: Option<bool>,
    require_shapes: Option<bool>,
    max_policy_bytes: Option<usize>,
    session_hours: Option<u64>,
    session_idle_minutes: Option<u64>,
    secure_cookies: Option<bool>,
    webhook_timeout_seconds: Option<u64>,
    webhook_retry_seconds: Option<u64>,
    webhook_give_up_hours: Option<u64>,
    trusted_proxy_header: Option<String>,
    webhook_allow_private: Option<Vec<String>>,
    metrics_token: Option<String>,
    header_read_timeout_seconds: Option<u64>,
    max_streams_per_credential: Option<usize>,
    max_waits_per_credential: Option<usize>,
    submit_rate: Option<u32>,
    request_timeout_seconds: Option<u64>,
    max_connections: Option<usize>,
    shutdown_grace_seconds: Option<u64>,
    login_table_entries: Option<usize>,
    password_workers: Option<usize>,
    public_url: Option<String>,
    smtp_url: Option<String>,
    email_from: Option<String>,
    email_decision_links: Option<bool>,
    decision_link_hours: Option<u64>,
    slack_bot_token: Option<String>,
    slack_signing_secret: Option<String>,
    slack_api_url: Option<String>,
    sla_warning_share: Option<f64>,
    oidc_issuer: Option<String>,
    oidc_client_id: Option<String>,
    oidc_client_secret: Option<String>,
    oidc_scopes: Option<Vec<String>>,
    oidc_groups_claim: Option<String>,
    oidc_role_map: Option<BTreeMap<String, Vec<String>>>,
    oidc_group_map: Option<BTreeMap<String, Vec<String>>>,
    oidc_name: Option<String>,
    password_login: Option<bool>,
}

pub(crate) const DEFAULT_BIND: &str = "127.0.0.1:8460";
pub(crate) const DEFAULT_SERVER: &str = "http://127.0.0.1:8460";

impl FileConfig {
    /// Reads `path`, or `./loopgate.toml` when it exists, or nothing.
    pub(crate) fn load(path: Option<&Path>) -> anyhow::Result<FileConfig> {
        let (path, required) = match path {
            Some(path) => (path.to_path_buf(), true),
            None => (PathBuf::from("loopgate.toml"), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if !required && error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(FileConfig::default());
            }
            Err(error) => {
                return Err(error).with_context(|| {
                    format!("cannot read the configuration file `{}`", path.display())
                });
            }
        };
        toml::from_str(&text)
            .with_context(|| format!("the configuration file `{}` is not valid", path.display()))
    }

    /// The server configuration and bind address.
    pub(crate) fn server_config(&self, args: &ServeArgs) -> anyhow::Result<(Config, SocketAddr)> {
        let bind = match (args.bind, self.bind) {
            (Some(bind), _) | (None, Some(bind)) => bind,
            (None, None) => DEFAULT_BIND.parse().context("default bind address")?,
        };
        let data_dir = args
            .data_dir
            .clone()
            .or_else(|| self.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("loopgate-data"));
        let mut config = Config::new(data_dir);
        config.database_url = args
            .database_url
            .clone()
            .or_else(|| self.database_url.clone());
        if let Some(readers) = self.database_readers {
            config.database_readers = readers.max(1);
        }
        if let Some(writers) = self.database_writers {
            config.database_writers = writers.max(1);
        }
        if let Some(seconds) = self.database_statement_timeout_seconds {
            config.database_statement_timeout = Duration::from_secs(seconds.max(1));
        }
        config.policies = args.policies.clone().or_else(|| self.policies.clone());
        if let Some(route) = &self.default_route {
            config.default_route = match Route::parse(route) {
                Some(route) => route,
                None => {
                    anyhow::bail!("`default_route` must be allow, deny or review, not `{route}`")
                }
            };
        }
        if let Some(seconds) = self.lease_seconds {
            config.lease = Duration::from_secs(seconds);
        }
        if let Some(bytes) = self.max_body_bytes {
            config.max_body_bytes = bytes;
        }
        if let Some(ms) = self.audit_checkpoint_ms {
            config.audit_checkpoint_interval = Duration::from_millis(ms.max(1));
        }
        config.audit_public = self.audit_public.unwrap_or(false);
        config.audit_origin = self.audit_origin.clone();
        config.require_policy_tests = self.require_policy_tests.unwrap_or(false);
        config.require_shapes = args.require_shapes.or(self.require_shapes).unwrap_or(false);
        if let Some(bytes) = self.max_policy_bytes {
            config.max_policy_bytes = bytes.max(1);
        }
        if let Some(hours) = self.session_hours {
            config.session_ttl = Duration::from_secs(hours.max(1) * 3600);
        }
        if let Some(minutes) = self.session_idle_minutes {
            config.session_idle = Duration::from_secs(minutes.max(1) * 60);
        }
        config.secure_cookies = self.secure_cookies.unwrap_or(false);
        if let Some(seconds) = self.webhook_timeout_seconds {
            config.webhook_timeout = Duration::from_secs(seconds.max(1));
        }
        if let Some(seconds) = self.webhook_retry_seconds {
            config.webhook_retry_base = Duration::from_secs(seconds.max(1));
        }
        if let Some(hours) = self.webhook_give_up_hours {
            config.webhook_give_up = Duration::from_secs(hours.max(1) * 3600);
        }
        config.trusted_proxy_header = env("LOOPGATE_TRUSTED_PROXY_HEADER")
            .or_else(|| self.trusted_proxy_header.clone())
            .map(|it| it.trim().to_ascii_lowercase());
        if let Some(header) = &config.trusted_proxy_header
            && axum_header_name(header).is_none()
        {
            anyhow::bail!("`trusted_proxy_header` must be an HTTP header name, not `{header}`");
        }
        let allow: Vec<String> = match env("LOOPGATE_WEBHOOK_ALLOW_PRIVATE") {
            Some(list) => list.split(',').map(str::to_owned).collect(),
            None => self.webhook_allow_private.clone().unwrap_or_default(),
        };
        config.webhook_allow_private = loopgate_server::outbound::parse_allowed(&allow)
            .map_err(|e| anyhow::anyhow!("`webhook_allow_private`: {e}"))?;
        config.metrics_token = env("LOOPGATE_METRICS_TOKEN").or_else(|| self.metrics_token.clone());
        if let Some(streams) = self.max_streams_per_credential {
            config.max_streams_per_credential = streams.max(1);
        }
        if let Some(waits) = self.max_waits_per_credential {
            config.max_waits_per_credential = waits.max(1);
        }
        config.submit_rate = self.submit_rate.filter(|rate| 0 < *rate);
        if let Some(seconds) = self.header_read_timeout_seconds {
            config.header_read_timeout = Duration::from_secs(seconds.max(1));
        }
        if let Some(seconds) = self.request_timeout_seconds {
            config.request_timeout = Duration::from_secs(seconds.max(1));
        }
        if let Some(connections) = self.max_connections {
            config.max_connections = connections.max(1);
        }
        if let Some(seconds) = self.shutdown_grace_seconds {
            config.shutdown_grace = Duration::from_secs(seconds);
        }
        if let Some(entries) = self.login_table_entries {
            config.login_table_entries = entries.max(1);
        }
        if let Some(workers) = self.password_workers {
            config.password_workers = workers.max(1);
        }
        self.notifications(&mut config)?;
        self.sso(&mut config)?;
        config.traces = traces()?;
        config.bootstrap_token = std::env::var("LOOPGATE_BOOTSTRAP_TOKEN")
            .ok()
            .filter(|it| !it.is_empty());
        config.admin_password = std::env::var("LOOPGATE_ADMIN_PASSWORD")
            .ok()
            .filter(|it| !it.is_empty());
        Ok((config, bind))
    }

    /// The notification keys (docs/notifications.md), each also
    /// `LOOPGATE_<KEY>`.
    fn notifications(&self, config: &mut Config) -> anyhow::Result<()> {
        let pick = |name: &str, file: &Option<String>| env(name).or_else(|| file.clone());
        config.public_url = pick("LOOPGATE_PUBLIC_URL", &self.public_url);
        if let Some(url) = &config.public_url {
            let ok = reqwest::Url::parse(url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
            if !ok {
                anyhow::bail!("`public_url` must be an absolute http(s) URL, not `{url}`");
            }
        }
        config.smtp_url = pick("LOOPGATE_SMTP_URL", &self.smtp_url);
        config.email_from = pick("LOOPGATE_EMAIL_FROM", &self.email_from);
        if let Some(on) = env("LOOPGATE_EMAIL_DECISION_LINKS") {
            config.email_decision_links = !matches!(on.as_str(), "false" | "0" | "no" | "off");
        } else if let Some(on) = self.email_decision_links {
            config.email_decision_links = on;
        }
        if let Some(hours) = self.decision_link_hours {
            config.decision_link_ttl = Duration::from_secs(hours.clamp(1, 24 * 30) * 3600);
        }
        config.slack_bot_token = pick("LOOPGATE_SLACK_BOT_TOKEN", &self.slack_bot_token);
        config.slack_signing_secret =
            pick("LOOPGATE_SLACK_SIGNING_SECRET", &self.slack_signing_secret);
        if let Some(url) = pick("LOOPGATE_SLACK_API_URL", &self.slack_api_url) {
            config.slack_api_url = url;
        }
        let share = match env("LOOPGATE_SLA_WARNING_SHARE") {
            Some(text) => Some(text.parse::<f64>().map_err(|_| {
                anyhow::anyhow!("`LOOPGATE_SLA_WARNING_SHARE` must be a number, not `{text}`")
            })?),
            None => self.sla_warning_share,
        };
        if let Some(share) = share {
            if !(share > 0.0 && share < 1.0) {
                anyhow::bail!(
                    "`sla_warning_share` must be between 0 and 1 (e.g. 0.75), not {share}"
                );
            }
            config.sla_warning_share = share;
        }
        Ok(())
    }

    /// Single sign-on (docs/sso.md), each key also `LOOPGATE_<KEY>` (the
    /// maps as JSON objects, the scopes separated by spaces or commas).
    fn sso(&self, config: &mut Config) -> anyhow::Result<()> {
        let pick = |name: &str, file: &Option<String>| env(name).or_else(|| file.clone());
        let password_login = match env("LOOPGATE_PASSWORD_LOGIN") {
            Some(on) => !matches!(on.as_str(), "false" | "0" | "no" | "off"),
            None => self.password_login.unwrap_or(true),
        };
        config.password_login = password_login;
        let issuer = pick("LOOPGATE_OIDC_ISSUER", &self.oidc_issuer);
        let client_id = pick("LOOPGATE_OIDC_CLIENT_ID", &self.oidc_client_id);
        let Some(issuer) = issuer else {
            if client_id.is_some() || self.oidc_role_map.is_some() {
                anyhow::bail!(
                    "the `oidc_*` settings need `oidc_issuer`, the provider's issuer URL"
                );
            }
            if !password_login {
                anyhow::bail!(
                    "`password_login = false` needs single sign-on (`oidc_issuer`): otherwise only the first admin could log in"
                );
            }
            return Ok(());
        };
        let url = reqwest::Url::parse(&issuer)
            .map_err(|e| anyhow::anyhow!("`oidc_issuer` must be a URL, not `{issuer}`: {e}"))?;
        let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
        if !(url.scheme() == "https" || (url.scheme() == "http" && loopback)) {
            anyhow::bail!(
                "`oidc_issuer` must be an https URL (http only on loopback), not `{issuer}`"
            );
        }
        let Some(client_id) = client_id else {
            anyhow::bail!(
                "single sign-on needs `oidc_client_id`, loopgate's client id at the provider"
            );
        };
        let secret = pick("LOOPGATE_OIDC_CLIENT_SECRET", &self.oidc_client_secret);
        let mut oidc =
            loopgate_server::config::OidcConfig::new(&issuer, &client_id, secret.as_deref());
        if let Some(scopes) = env("LOOPGATE_OIDC_SCOPES") {
            oidc.scopes = scopes
                .split([' ', ','])
                .filter(|it| !it.is_empty())
                .map(str::to_owned)
                .collect();
        } else if let Some(scopes) = &self.oidc_scopes {
            oidc.scopes = scopes.clone();
        }
        oidc.scopes.retain(|scope| scope != "openid");
        if let Some(claim) = pick("LOOPGATE_OIDC_GROUPS_CLAIM", &self.oidc_groups_claim) {
            oidc.groups_claim = claim;
        }
        if let Some(name) = pick("LOOPGATE_OIDC_NAME", &self.oidc_name) {
            oidc.name = name;
        }
        let table = |name: &str,
                     file: &Option<BTreeMap<String, Vec<String>>>|
         -> anyhow::Result<BTreeMap<String, Vec<String>>> {
            match env(name) {
                Some(json) => serde_json::from_str(&json).map_err(|e| {
                    anyhow::anyhow!("`{name}` must be a JSON object of lists, like {{\"lg-admins\": [\"admin\"]}}: {e}")
                }),
                None => Ok(file.clone().unwrap_or_default()),
            }
        };
        for (value, roles) in table("LOOPGATE_OIDC_ROLE_MAP", &self.oidc_role_map)? {
            let mut parsed = Vec::new();
            for role in &roles {
                let Some(role) = loopgate_core::Role::parse(role) else {
                    anyhow::bail!(
                        "`oidc_role_map` maps `{value}` to `{role}`, which is not a role (admin, policy_author, reviewer, auditor)"
                    );
                };
                parsed.push(role);
            }
            oidc.mapping.roles.insert(value, parsed);
        }
        for (value, groups) in table("LOOPGATE_OIDC_GROUP_MAP", &self.oidc_group_map)? {
            if let Some(bad) = groups
                .iter()
                .find(|g| !loopgate_core::ids::is_group_name(g))
            {
                anyhow::bail!(
                    "`oidc_group_map` maps `{value}` to `{bad}`, which is not a group name (lowercase letters, digits, `-` and `_`)"
                );
            }
            oidc.mapping.groups.insert(value, groups);
        }
        if oidc.mapping.roles.is_empty() {
            anyhow::bail!(
                "single sign-on needs `oidc_role_map`: without it nobody who signs in gets a role"
            );
        }
        // Without `public_url` the server refuses to start, and says why.
        config.oidc = Some(oidc);
        Ok(())
    }

    /// The database URL of `serve` for these flags.
    pub(crate) fn database_url(&self, data_dir: Option<PathBuf>, url: Option<String>) -> String {
        if let Some(url) = url.or_else(|| self.database_url.clone()) {
            return url;
        }
        let dir = data_dir
            .or_else(|| self.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("loopgate-data"));
        format!("sqlite://{}", dir.join("loopgate.db").display())
    }

    /// The client of a remote command.
    pub(crate) fn client(&self, remote: &Remote) -> anyhow::Result<loopgate_client::Client> {
        let server = self.server(remote);
        let Some(token) = self.token(remote) else {
            anyhow::bail!(
                "no token: pass --token, set LOOPGATE_TOKEN, or put `token` in loopgate.toml"
            );
        };
        Ok(loopgate_client::Client::new(&server, &token)?)
    }

    /// A client for public endpoints: the token when there is one, none
    /// otherwise.
    pub(crate) fn public_client(&self, remote: &Remote) -> anyhow::Result<loopgate_client::Client> {
        let server = self.server(remote);
        Ok(match self.token(remote) {
            Some(token) => loopgate_client::Client::new(&server, &token)?,
            None => loopgate_client::Client::anonymous(&server)?,
        })
    }

    /// The token: the flag or `LOOPGATE_TOKEN`, or the file's.
    fn token(&self, remote: &Remote) -> Option<String> {
        remote.token.clone().or_else(|| self.token.clone())
    }

    /// The server URL: the flag or `LOOPGATE_SERVER`, the file, the default.
    fn server(&self, remote: &Remote) -> String {
        remote
            .server
            .clone()
            .or_else(|| self.server.clone())
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../../../deploy/loopgate.toml");

    fn no_flags() -> ServeArgs {
        ServeArgs {
            bind: None,
            data_dir: None,
            database_url: None,
            policies: None,
            require_shapes: None,
        }
    }

    /// A commented-out `# key = example` line of the sample.
    fn example(line: &str) -> Option<&str> {
        let rest = line.strip_prefix("# ")?;
        let (key, _) = rest.split_once(" = ")?;
        let is_key = !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_');
        is_key.then_some(rest)
    }

    /// Every value the sample sets is the default: it configures the server
    /// exactly as no file does (but for the data directory, which it names
    /// for the systemd unit).
    #[test]
    fn the_sample_config_sets_only_defaults() {
        let sample: FileConfig = toml::from_str(SAMPLE).unwrap();
        let (mut from_sample, bind) = sample.server_config(&no_flags()).unwrap();
        let (defaults, default_bind) = FileConfig::default().server_config(&no_flags()).unwrap();
        assert_eq!(from_sample.data_dir, PathBuf::from("/var/lib/loopgate"));
        from_sample.data_dir = defaults.data_dir.clone();
        assert_eq!(format!("{from_sample:?}"), format!("{defaults:?}"));
        assert_eq!(bind, default_bind);
        assert_eq!(sample.server.as_deref(), Some(DEFAULT_SERVER));
    }

    /// The sample names every key: with its examples uncommented, it still
    /// parses (no unknown key, each example of the right type) and sets
    /// every key there is.
    #[test]
    fn the_sample_config_names_every_key() {
        let uncommented: Vec<&str> = SAMPLE
            .lines()
            .map(|line| example(line).unwrap_or(line))
            .collect();
        let all: FileConfig = toml::from_str(&uncommented.join("\n")).unwrap();
        let keys = serde_json::to_value(&all).unwrap();
        for (key, value) in keys.as_object().unwrap() {
            assert!(
                !value.is_null(),
                "deploy/loopgate.toml does not name `{key}`"
            );
        }
    }
}
