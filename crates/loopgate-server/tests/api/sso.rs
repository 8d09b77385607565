//! Single sign-on against a real OpenID Provider: `oidc-provider` (npm) on
//! loopback (`tests/oidc/provider.mjs`, installed into `target/oidc` by
//! `scripts/test`). A cookie-keeping client goes through the provider's
//! pages as a browser would; the provider's test hooks make it misbehave.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use loopgate_core::{Role, Timestamp};
use loopgate_server::ManualClock;
use loopgate_server::config::OidcConfig;
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::harness::{ADMIN_TOKEN, TestApp, spawn_listening};

pub(crate) const CLIENT_SECRET: &str = "loopgate-test-secret";
pub(crate) const ADMIN_PASSWORD: &str = "break-glass-password";

/// Where `scripts/test` installed oidc-provider.
fn oidc_dir() -> PathBuf {
    let dir = match std::env::var("LOOPGATE_TEST_OIDC_DIR") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/oidc"),
    };
    assert!(
        dir.join("node_modules/oidc-provider").exists(),
        "the single sign-on tests need oidc-provider in {}: run scripts/test, or \
         `mkdir -p target/oidc && cp tests/oidc/package*.json target/oidc && npm ci --prefix target/oidc`",
        dir.display()
    );
    dir
}

/// A running test identity provider.
pub(crate) struct Idp {
    pub(crate) issuer: String,
    http: reqwest::Client,
    _child: tokio::process::Child,
    _script: tempfile::TempPath,
}

impl Idp {
    /// Starts the provider with a client whose redirect URI is under `base`.
    pub(crate) async fn start(base: &str) -> Idp {
        let dir = oidc_dir();
        // Beside node_modules, so that node finds the packages.
        let script = tempfile::Builder::new()
            .prefix("provider-")
            .suffix(".mjs")
            .tempfile_in(&dir)
            .unwrap()
            .into_temp_path();
        std::fs::write(&script, include_str!("../../../../tests/oidc/provider.mjs")).unwrap();
        let mut child = tokio::process::Command::new("node")
            .arg(&script)
            .arg(base)
            .arg(CLIENT_SECRET)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts (is Node.js installed?)");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).await.unwrap();
        let said: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("the test IdP said `{line}`"));
        Idp {
            issuer: said["issuer"].as_str().unwrap().to_owned(),
            http: reqwest::Client::new(),
            _child: child,
            _script: script,
        }
    }

    /// Makes the provider misbehave (`""`: behave).
    pub(crate) async fn mode(&self, mode: &str) {
        let sent = self
            .http
            .post(format!("{}/__test/mode", self.issuer))
            .json(&json!({ "mode": mode }))
            .send()
            .await
            .unwrap();
        assert_eq!(sent.status(), StatusCode::NO_CONTENT);
    }

    /// Changes an account's groups at the provider.
    pub(crate) async fn groups(&self, account: &str, groups: &[&str]) {
        let sent = self
            .http
            .post(format!("{}/__test/groups", self.issuer))
            .json(&json!({ "account": account, "groups": groups }))
            .send()
            .await
            .unwrap();
        assert_eq!(sent.status(), StatusCode::NO_CONTENT);
    }
}

/// The provider's configuration as the tests use it: `lg-admins` and
/// `lg-reviewers` map to roles, `fraud` to the `fraud-l1` group.
pub(crate) fn oidc_config(issuer: &str, secret: &str) -> OidcConfig {
    let mut config = OidcConfig::new(issuer, "loopgate", Some(secret));
    config.name = "Test IdP".to_owned();
    config.mapping.roles = BTreeMap::from([
        ("lg-admins".to_owned(), vec![Role::Admin]),
        ("lg-reviewers".to_owned(), vec![Role::Reviewer]),
    ]);
    config.mapping.groups = BTreeMap::from([("fraud".to_owned(), vec!["fraud-l1".to_owned()])]);
    config
}

/// The wall clock: the provider's tokens are stamped with it.
#[allow(
    clippy::disallowed_methods,
    reason = "the provider runs on the wall clock"
)]
pub(crate) fn wall_clock() -> ManualClock {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    ManualClock::new(Timestamp::from_millis(now.as_millis() as i64))
}

/// loopgate (on the wall clock) and a provider that knows it.
pub(crate) async fn with_idp(
    secret: &str,
    configure: impl FnOnce(&mut loopgate_server::Config),
) -> (TestApp, Idp) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let idp = Idp::start(&base).await;
    let issuer = idp.issuer.clone();
    let secret = secret.to_owned();
    let app = spawn_listening(listener, wall_clock(), move |config| {
        config.public_url = Some(base);
        config.admin_password = Some(ADMIN_PASSWORD.to_owned());
        config.oidc = Some(oidc_config(&issuer, &secret));
        configure(config);
    })
    .await;
    (app, idp)
}

/// A browser: keeps cookies, follows redirects itself (and remembers them).
struct Browser {
    http: reqwest::Client,
    visited: Vec<String>,
    /// Stops before following a redirect to a URL with this in it.
    stop_at: Option<&'static str>,
}

/// Where a walk through redirects ended.
struct Landed {
    status: StatusCode,
    url: String,
    body: String,
}

impl Browser {
    fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .cookie_store(true)
                .build()
                .unwrap(),
            visited: Vec::new(),
            stop_at: None,
        }
    }

    /// Sends, then follows redirects (as GETs) until a page.
    async fn walk(&mut self, request: reqwest::RequestBuilder) -> Landed {
        let mut response = request.send().await.unwrap();
        let mut url = response.url().to_string();
        self.visited.push(url.clone());
        for _ in 0..20 {
            if !response.status().is_redirection() {
                break;
            }
            let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
            url = reqwest::Url::parse(&url)
                .unwrap()
                .join(&location)
                .unwrap()
                .to_string();
            self.visited.push(url.clone());
            if self.stop_at.is_some_and(|stop| url.contains(stop)) {
                break;
            }
            response = self.http.get(&url).send().await.unwrap();
        }
        Landed {
            status: response.status(),
            url,
            body: response.text().await.unwrap(),
        }
    }

    async fn open(&mut self, url: &str) -> Landed {
        let request = self.http.get(url);
        self.walk(request).await
    }

    /// From loopgate's "Sign in with" to the provider's login page, then
    /// signs in there as `account` and follows the way back.
    async fn sign_in(&mut self, app: &TestApp, account: &str) -> Landed {
        let form = self
            .open(&format!("{}/ui/oidc/login?next=/ui", app.base))
            .await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        self.submit_login(&form, account).await
    }

    async fn submit_login(&mut self, form: &Landed, account: &str) -> Landed {
        let marker = "action=\"";
        let at = form
            .body
            .find(marker)
            .unwrap_or_else(|| panic!("no login form at {}:\n{}", form.url, form.body));
        let rest = &form.body[at + marker.len()..];
        let action = &rest[..rest.find('"').unwrap()];
        let target = reqwest::Url::parse(&form.url)
            .unwrap()
            .join(action)
            .unwrap();
        let password = format!("{account}-pw");
        let request = self
            .http
            .post(target)
            .form(&[("login", account), ("password", password.as_str())]);
        self.walk(request).await
    }

    /// The callback URL the provider sent the browser to last.
    fn callback(&self) -> String {
        self.visited
            .iter()
            .rev()
            .find(|url| url.contains("/ui/oidc/callback"))
            .cloned()
            .expect("the provider sent the browser back")
    }

    /// Whether the browser has a loopgate session (the queue opens).
    async fn signed_in(&self, app: &TestApp) -> bool {
        let page = self
            .http
            .get(format!("{}/ui/account", app.base))
            .send()
            .await
            .unwrap();
        page.status() == StatusCode::OK
    }
}

async fn users(app: &TestApp) -> Vec<Value> {
    let listed = app.get("/v1/users", ADMIN_TOKEN).await;
    listed.body["items"].as_array().unwrap().clone()
}

async fn user_named(app: &TestApp, username: &str) -> Option<Value> {
    users(app)
        .await
        .into_iter()
        .find(|user| user["username"] == username)
}

#[tokio::test]
async fn first_sign_in_creates_the_user_with_mapped_roles_and_groups_and_later_ones_follow_the_provider()
 {
    let (app, idp) = with_idp(CLIENT_SECRET, |_| ()).await;
    let mut browser = Browser::new();
    let landed = browser.sign_in(&app, "alice").await;
    assert_eq!(landed.status, StatusCode::OK, "{}", landed.body);
    assert!(landed.url.ends_with("/ui/queue"), "{}", landed.url);
    assert!(browser.signed_in(&app).await);

    let alice = user_named(&app, "alice").await.expect("alice was created");
    assert_eq!(alice["source"], "oidc");
    assert_eq!(alice["roles"], json!(["reviewer"]));
    assert_eq!(alice["groups"], json!(["fraud-l1"]));
    assert_eq!(alice["email"], "alice@corp.example");

    // The callback's state worked once.
    let callback = browser.callback();
    let replayed = browser.open(&callback).await;
    assert_eq!(replayed.status, StatusCode::BAD_REQUEST);
    assert!(replayed.body.contains("already used"), "{}", replayed.body);

    // The provider moved alice to the admins: the next sign-in follows.
    idp.groups("alice", &["lg-admins"]).await;
    let mut again = Browser::new();
    let landed = again.sign_in(&app, "alice").await;
    assert_eq!(landed.status, StatusCode::OK, "{}", landed.body);
    let alice = user_named(&app, "alice").await.unwrap();
    assert_eq!(alice["roles"], json!(["admin"]));
    assert_eq!(alice["groups"], json!([]));
    assert_eq!(users(&app).await.len(), 2, "the same user, not a new one");

    // A local user named like a provider's user is never taken over.
    app.user("bob", &["auditor"], &[]).await;
    let mut bobs = Browser::new();
    let landed = bobs.sign_in(&app, "bob").await;
    assert_eq!(landed.status, StatusCode::OK, "{}", landed.body);
    let local = user_named(&app, "bob").await.unwrap();
    assert_eq!(local["source"], "local");
    assert_eq!(local["roles"], json!(["auditor"]));
    let signed_in = user_named(&app, "bob-2").await.unwrap();
    assert_eq!(signed_in["source"], "oidc");
    assert_eq!(signed_in["roles"], json!(["admin"]));

    // Every change is in the audit log.
    let kinds = audit_kinds(&app).await;
    let created: Vec<&Value> = kinds
        .iter()
        .filter(|entry| entry["type"] == "user.created" && entry["data"]["source"] == "oidc")
        .collect();
    assert_eq!(created.len(), 2, "{kinds:#?}");
    assert_eq!(created[0]["data"]["issuer"], idp.issuer.as_str());
    assert!(
        kinds
            .iter()
            .any(|entry| entry["type"] == "user.updated" && entry["actor"] == "oidc"),
        "{kinds:#?}"
    );
}

/// The audit log's entries so far (each with its type, actor and data).
async fn audit_kinds(app: &TestApp) -> Vec<Value> {
    let note = app
        .call(
            reqwest::Method::POST,
            "/v1/audit/checkpoint",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(note.status, StatusCode::CREATED, "{}", note.body);
    let size: u64 = note
        .body
        .as_str()
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let entries = app
        .get(
            &format!("/v1/audit/entries?start=0&end={size}"),
            ADMIN_TOKEN,
        )
        .await;
    assert_eq!(entries.status, StatusCode::OK, "{}", entries.body);
    entries.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| serde_json::from_str(item["entry"].as_str().unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn a_user_whose_groups_no_longer_map_is_refused_and_their_sessions_end() {
    let (app, idp) = with_idp(CLIENT_SECRET, |_| ()).await;
    let mut signed_in = Browser::new();
    let landed = signed_in.sign_in(&app, "alice").await;
    assert_eq!(landed.status, StatusCode::OK, "{}", landed.body);
    assert!(signed_in.signed_in(&app).await);

    idp.groups("alice", &["marketing"]).await;
    let mut browser = Browser::new();
    let refused = browser.sign_in(&app, "alice").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(
        refused
            .body
            .contains("in no group that loopgate gives access to"),
        "{}",
        refused.body
    );
    assert!(!browser.signed_in(&app).await);
    // The session alice had before ended, and she holds nothing.
    assert!(!signed_in.signed_in(&app).await);
    let alice = user_named(&app, "alice").await.unwrap();
    assert_eq!(alice["roles"], json!([]));
    assert_eq!(alice["groups"], json!([]));

    // Someone whose groups never mapped is never created.
    let mut carols = Browser::new();
    let refused = carols.sign_in(&app, "carol").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(user_named(&app, "carol").await.is_none());

    // Back in a mapped group: back in.
    idp.groups("alice", &["lg-reviewers"]).await;
    let landed = Browser::new().sign_in(&app, "alice").await;
    assert_eq!(landed.status, StatusCode::OK, "{}", landed.body);
}

#[tokio::test]
async fn a_user_disabled_in_loopgate_stays_disabled_whatever_the_provider_says() {
    let (app, _idp) = with_idp(CLIENT_SECRET, |_| ()).await;
    let landed = Browser::new().sign_in(&app, "alice").await;
    assert_eq!(landed.status, StatusCode::OK, "{}", landed.body);
    let id = app.user_id("alice").await;
    let disabled = app.patch_user(&id, json!({"disabled": true})).await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.body);

    let mut browser = Browser::new();
    let refused = browser.sign_in(&app, "alice").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(
        refused.body.contains("disabled in loopgate"),
        "{}",
        refused.body
    );
    assert!(!browser.signed_in(&app).await);
}

#[tokio::test]
async fn tokens_the_provider_did_not_make_for_this_sign_in_are_refused() {
    let (app, idp) = with_idp(CLIENT_SECRET, |_| ()).await;
    let cases = [
        ("aud", "for another application"),
        ("tamper", "signature does not verify"),
        ("nonce", "belongs to another sign-in"),
        ("unknown_kid", "a key the provider does not publish"),
        ("none", "is not signed"),
        ("hs256", "an algorithm loopgate does not accept"),
        ("expired", "has expired"),
    ];
    for (mode, says) in cases {
        idp.mode(mode).await;
        let mut browser = Browser::new();
        let refused = browser.sign_in(&app, "alice").await;
        assert_eq!(
            refused.status,
            StatusCode::UNAUTHORIZED,
            "{mode}: {}",
            refused.body
        );
        assert!(refused.body.contains(says), "{mode}: {}", refused.body);
        assert!(!refused.body.contains(CLIENT_SECRET));
        assert!(!browser.signed_in(&app).await, "{mode}");
    }
    assert!(user_named(&app, "alice").await.is_none());
    assert!(
        user_named(&app, "bob").await.is_none(),
        "a tampered token signed nobody in"
    );

    // A key rotated at the provider (a new `kid`) is fetched and works.
    idp.mode("rotate").await;
    let landed = Browser::new().sign_in(&app, "alice").await;
    assert_eq!(landed.status, StatusCode::OK, "{}", landed.body);
    idp.mode("").await;
    let landed = Browser::new().sign_in(&app, "alice").await;
    assert_eq!(landed.status, StatusCode::OK, "{}", landed.body);
}

#[tokio::test]
async fn a_token_past_its_expiry_on_loopgates_clock_is_refused() {
    let (app, _idp) = with_idp(CLIENT_SECRET, |_| ()).await;
    // The provider's tokens live an hour; loopgate's clock is two ahead.
    app.clock.advance(Duration::from_secs(2 * 3600));
    let mut browser = Browser::new();
    let refused = browser.sign_in(&app, "alice").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    assert!(refused.body.contains("has expired"), "{}", refused.body);
}

#[tokio::test]
async fn callbacks_with_unknown_state_or_from_another_browser_sign_nobody_in() {
    let (app, _idp) = with_idp(CLIENT_SECRET, |_| ()).await;
    let mut browser = Browser::new();
    let unknown = browser
        .open(&format!(
            "{}/ui/oidc/callback?code=abc&state=made-up",
            app.base
        ))
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(
        unknown
            .body
            .contains("unknown, has expired or was already used"),
        "{}",
        unknown.body
    );
    let missing = browser
        .open(&format!("{}/ui/oidc/callback", app.base))
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    let huge = browser
        .open(&format!(
            "{}/ui/oidc/callback?state={}",
            app.base,
            "s".repeat(20_000)
        ))
        .await;
    assert!(huge.status.is_client_error(), "{}", huge.status);

    // Login CSRF: an attacker signs in at the provider in their browser and
    // has the victim's browser open the callback.
    let mut attacker = Browser::new();
    attacker.stop_at = Some("/ui/oidc/callback");
    attacker.sign_in(&app, "alice").await;
    let callback = attacker.callback();
    let mut victim = Browser::new();
    let opened = victim.open(&callback).await;
    assert_eq!(opened.status, StatusCode::BAD_REQUEST, "{}", opened.body);
    assert!(opened.body.contains("another browser"), "{}", opened.body);
    assert!(!victim.signed_in(&app).await);
    // The state was spent: the attacker's own browser cannot use it either.
    let spent = attacker.open(&callback).await;
    assert_eq!(spent.status, StatusCode::BAD_REQUEST, "{}", spent.body);
    assert!(!attacker.signed_in(&app).await);

    // An error from the provider is said as such.
    let mut browser = Browser::new();
    browser.open(&format!("{}/ui/oidc/login", app.base)).await;
    let state = browser.visited[1]
        .split("state=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let denied = browser
        .open(&format!(
            "{}/ui/oidc/callback?error=access_denied&state={state}",
            app.base
        ))
        .await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED, "{}", denied.body);
    assert!(denied.body.contains("access_denied"), "{}", denied.body);

    // The server still serves.
    let health = app.call(reqwest::Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, StatusCode::OK);
}

#[tokio::test]
async fn a_wrong_client_secret_or_a_provider_that_is_down_is_a_clear_page() {
    let (app, _idp) = with_idp("not-the-secret", |_| ()).await;
    let mut browser = Browser::new();
    let refused = browser.sign_in(&app, "alice").await;
    assert_eq!(refused.status, StatusCode::BAD_GATEWAY, "{}", refused.body);
    assert!(refused.body.contains("invalid_client"), "{}", refused.body);
    assert!(
        refused.body.contains("client id and secret"),
        "{}",
        refused.body
    );
    assert!(!refused.body.contains("not-the-secret"));
    assert!(!browser.signed_in(&app).await);

    // A provider nobody answers for.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (app, _idp) = with_idp(CLIENT_SECRET, move |config| {
        config.oidc = Some(oidc_config(&dead, CLIENT_SECRET));
    })
    .await;
    let down = Browser::new()
        .open(&format!("{}/ui/oidc/login", app.base))
        .await;
    assert_eq!(down.status, StatusCode::BAD_GATEWAY, "{}", down.body);
    assert!(
        down.body.contains("could not reach the identity provider"),
        "{}",
        down.body
    );
}

#[tokio::test]
async fn with_passwords_off_only_the_first_admin_logs_in_with_a_password_and_it_is_audited() {
    let (app, _idp) = with_idp(CLIENT_SECRET, |config| config.password_login = false).await;
    app.user_with_password("dana", &["reviewer"], &["fraud-l1"], "dana-password-1")
        .await;
    let mut browser = Browser::new();
    let page = browser.open(&format!("{}/ui/login", app.base)).await;
    assert!(page.body.contains("Sign in with Test IdP"), "{}", page.body);
    assert!(!page.body.contains("name=\"password\""), "{}", page.body);

    let login = |username: &'static str, password: &'static str| {
        let base = app.base.clone();
        async move {
            let mut browser = Browser::new();
            let page = browser
                .open(&format!("{base}/ui/login?break_glass=1"))
                .await;
            assert!(page.body.contains("Break-glass"), "{}", page.body);
            let csrf = hidden(&page.body, "_csrf");
            let request = browser.http.post(format!("{base}/ui/login")).form(&[
                ("_csrf", csrf.as_str()),
                ("username", username),
                ("password", password),
                ("next", "/ui"),
            ]);
            let landed = browser.walk(request).await;
            (landed, browser)
        }
    };
    let (refused, browser) = login("dana", "dana-password-1").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(
        refused.body.contains("sign in with Test IdP"),
        "{}",
        refused.body
    );
    assert!(!browser.signed_in(&app).await);

    let (landed, browser) = login("admin", ADMIN_PASSWORD).await;
    assert_eq!(landed.status, StatusCode::OK, "{}", landed.body);
    assert!(browser.signed_in(&app).await);
    let entries = audit_kinds(&app).await;
    let glass: Vec<&Value> = entries
        .iter()
        .filter(|entry| entry["type"] == "user.break_glass_login")
        .collect();
    assert_eq!(glass.len(), 1, "{entries:#?}");
    assert_eq!(glass[0]["actor"], "user:admin");
}

/// A hidden field's value (or, for `_csrf`, the page's CSRF meta tag).
fn hidden(body: &str, name: &str) -> String {
    let field = format!("name=\"{name}\" value=\"");
    let meta = "name=\"csrf-token\" content=\"".to_owned();
    for marker in [field, meta] {
        if let Some(at) = body.find(&marker) {
            let rest = &body[at + marker.len()..];
            return rest[..rest.find('"').unwrap()].to_owned();
        }
    }
    panic!("no {name}:\n{body}")
}

#[tokio::test]
async fn logout_ends_the_session_here_and_at_the_provider() {
    let (app, idp) = with_idp(CLIENT_SECRET, |_| ()).await;
    let mut browser = Browser::new();
    let landed = browser.sign_in(&app, "alice").await;
    assert_eq!(landed.status, StatusCode::OK, "{}", landed.body);
    let csrf = hidden(&landed.body, "_csrf");
    let request = browser
        .http
        .post(format!("{}/ui/logout", app.base))
        .form(&[("_csrf", csrf.as_str())]);
    let at_provider = browser.walk(request).await;
    assert!(!browser.signed_in(&app).await);
    let end_session = browser
        .visited
        .iter()
        .find(|url| url.starts_with(&format!("{}/session/end", idp.issuer)))
        .unwrap_or_else(|| panic!("{:#?}", browser.visited));
    assert!(end_session.contains("id_token_hint="), "{end_session}");
    assert!(
        end_session.contains("post_logout_redirect_uri="),
        "{end_session}"
    );
    assert!(
        at_provider.body.contains("Sign out of the test IdP"),
        "{}",
        at_provider.body
    );
}
