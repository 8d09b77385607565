//! The web UI over HTTP: login, sessions and their expiry, CSRF, login
//! throttling, and the role matrix of every page and action.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{ADMIN_TOKEN, TestApp, spawn_app, spawn_with};

const PASSWORD: &str = "correct horse battery";

/// A cookie-keeping client that does not follow redirects.
struct Browser {
    base: String,
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
    headers: Vec<(String, String)>,
}

struct Page {
    status: StatusCode,
    location: Option<String>,
    retry_after: Option<String>,
    set_cookies: Vec<String>,
    body: String,
}

impl Page {
    /// The CSRF token a page carries (meta tag or hidden field).
    fn csrf(&self) -> String {
        for marker in ["name=\"csrf-token\" content=\"", "name=\"_csrf\" value=\""] {
            if let Some(at) = self.body.find(marker) {
                let rest = &self.body[at + marker.len()..];
                return rest[..rest.find('"').unwrap()].to_owned();
            }
        }
        panic!("no CSRF token on the page:\n{}", self.body)
    }
}

impl Browser {
    fn new(app: &TestApp) -> Browser {
        Browser {
            base: app.base.clone(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: BTreeMap::new(),
            headers: Vec::new(),
        }
    }

    async fn send(&mut self, method: Method, path: &str, form: Option<&[(&str, &str)]>) -> Page {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if !self.cookies.is_empty() {
            let cookie: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            request = request.header("cookie", cookie.join("; "));
        }
        for (k, v) in &self.headers {
            request = request.header(k, v);
        }
        if let Some(form) = form {
            request = request.form(form);
        }
        let response = request.send().await.unwrap();
        let set_cookies: Vec<String> = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        for cookie in &set_cookies {
            let pair = cookie.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || cookie.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Page {
            status: response.status(),
            location: response
                .headers()
                .get(LOCATION)
                .map(|v| v.to_str().unwrap().to_owned()),
            retry_after: response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned()),
            set_cookies,
            body: response.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        self.send(Method::GET, path, None).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send(Method::POST, path, Some(form)).await
    }

    /// Logs in through the form.
    async fn login(&mut self, username: &str, password: &str) -> Page {
        let form = self.get("/ui/login").await;
        assert_eq!(form.status, StatusCode::OK);
        let csrf = form.csrf();
        self.post(
            "/ui/login",
            &[
                ("_csrf", &csrf),
                ("username", username),
                ("password", password),
                ("next", "/ui"),
            ],
        )
        .await
    }
}

/// Creates a user with [`PASSWORD`]; returns their id.
async fn user(app: &TestApp, username: &str, roles: &[&str], groups: &[&str]) -> String {
    app.user_with_password(username, roles, groups, PASSWORD)
        .await
}

async fn logged_in(app: &TestApp, username: &str, roles: &[&str], groups: &[&str]) -> Browser {
    user(app, username, roles, groups).await;
    let mut browser = Browser::new(app);
    let page = browser.login(username, PASSWORD).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    browser
}

#[tokio::test]
async fn login_sets_a_safe_cookie_and_logout_ends_the_session() {
    let app = spawn_app().await;
    user(&app, "rita", &["reviewer"], &["ops"]).await;
    let mut browser = Browser::new(&app);

    let page = browser.get("/ui/queue?group=ops").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(
        page.location.as_deref(),
        Some("/ui/login?next=%2Fui%2Fqueue%3Fgroup%3Dops")
    );

    let wrong = browser.login("rita", "not the password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(
        wrong.body.contains("Wrong username or password."),
        "{}",
        wrong.body
    );
    let unknown = browser.login("nobody", PASSWORD).await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert!(unknown.body.contains("Wrong username or password."));

    let ok = browser.login("rita", PASSWORD).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(ok.location.as_deref(), Some("/ui"));
    let session = ok
        .set_cookies
        .iter()
        .find(|c| c.starts_with("loopgate_session="))
        .unwrap();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(session.contains(attribute), "{session}");
    }
    assert!(!session.contains("Secure"), "plain HTTP: {session}");

    let queue = browser.get("/ui/queue").await;
    assert_eq!(queue.status, StatusCode::OK);
    assert!(queue.body.contains("Review queue"));
    let headers_page = app
        .http
        .get(format!("{}/ui/login", app.base))
        .send()
        .await
        .unwrap();
    let csp = headers_page.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );

    let csrf = queue.csrf();
    let out = browser.post("/ui/logout", &[("_csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    // The old cookie names nothing any more.
    let mut replay = Browser::new(&app);
    replay.cookies.insert(
        "loopgate_session".into(),
        session
            .split(';')
            .next()
            .unwrap()
            .split_once('=')
            .unwrap()
            .1
            .to_owned(),
    );
    assert_eq!(replay.get("/ui/queue").await.status, StatusCode::SEE_OTHER);

    // Behind a TLS proxy the cookie is Secure.
    let mut tls = Browser::new(&app);
    tls.headers
        .push(("x-forwarded-proto".into(), "https".into()));
    let ok = tls.login("rita", PASSWORD).await;
    assert!(
        ok.set_cookies
            .iter()
            .any(|c| c.starts_with("loopgate_session=") && c.contains("Secure"))
    );

    // Only paths inside the UI are followed after login.
    let mut evil = Browser::new(&app);
    let form = evil.get("/ui/login").await;
    let csrf = form.csrf();
    let page = evil
        .post(
            "/ui/login",
            &[
                ("_csrf", &csrf),
                ("username", "rita"),
                ("password", PASSWORD),
                ("next", "//evil.example/ui"),
            ],
        )
        .await;
    assert_eq!(page.location.as_deref(), Some("/ui"));
}

#[tokio::test]
async fn every_change_needs_the_csrf_token() {
    let app = spawn_app().await;
    let key = app.system("fraud-detector", "in_the_loop").await;
    assert_eq!(
        app.publish(r#"@reviewers("ops") permit(principal, action, resource);"#)
            .await
            .status,
        StatusCode::CREATED
    );
    let mut browser = logged_in(&app, "rita", &["reviewer"], &["ops"]).await;
    let submitted = app
        .submit(&key, "block_card", json!({"block": true}), json!({}))
        .await;
    let proposal = submitted.body["id"].as_str().unwrap().to_owned();
    let token = app.user("rita-token", &["reviewer"], &["ops"]).await;
    let task = app.task_of(&token, &proposal).await;
    let task_id = task["id"].as_str().unwrap();
    let digest = task["digest"].as_str().unwrap();
    let csrf = browser.get("/ui/queue").await.csrf();

    // A form without the token, or with another, does nothing.
    let path = format!("/ui/tasks/{task_id}/decide");
    for token in [None, Some("0".repeat(64))] {
        let mut form = vec![("verdict", "approve"), ("seen_digest", digest)];
        if let Some(token) = &token {
            form.push(("_csrf", token));
        }
        let page = browser.post(&path, &form).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN);
        assert!(page.body.contains("Form expired"), "{}", page.body);
    }
    assert_eq!(app.task_of(&token, &proposal).await["state"], "open");

    // The login form needs its own cookie's token.
    let mut stranger = Browser::new(&app);
    let page = stranger
        .post(
            "/ui/login",
            &[
                ("_csrf", "forged"),
                ("username", "rita"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);

    // The API with the session cookie: reads need nothing more, changes
    // need the token in a header.
    let tasks = browser.get("/v1/tasks").await;
    assert_eq!(tasks.status, StatusCode::OK, "{}", tasks.body);
    let claim = format!("/v1/tasks/{task_id}/claim");
    let refused = browser.send(Method::POST, &claim, None).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let problem: Value = serde_json::from_str(&refused.body).unwrap();
    assert_eq!(problem["code"], "forbidden");
    browser.headers.push(("x-csrf-token".into(), csrf.clone()));
    let claimed = browser.send(Method::POST, &claim, None).await;
    assert_eq!(claimed.status, StatusCode::OK, "{}", claimed.body);
    browser.headers.clear();

    // With the token the decision goes through and the next page is the queue.
    let page = browser
        .post(
            &path,
            &[
                ("_csrf", &csrf),
                ("verdict", "approve"),
                ("seen_digest", digest),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.location.as_deref(), Some("/ui/queue?done=1"));
    let proposal = app
        .get(&format!("/v1/proposals/{proposal}"), ADMIN_TOKEN)
        .await;
    assert_eq!(proposal.body["status"], "approved");
}

#[tokio::test]
async fn the_decision_form_keeps_what_was_typed_when_refused() {
    let app = spawn_app().await;
    let key = app.system("fraud-detector", "in_the_loop").await;
    assert_eq!(
        app.publish(
            r#"@reviewers("ops") @rationale("required") permit(principal, action, resource);"#
        )
        .await
        .status,
        StatusCode::CREATED
    );
    let mut browser = logged_in(&app, "rita", &["reviewer"], &["ops"]).await;
    let first = app
        .submit(&key, "block_card", json!({"block": true}), json!({}))
        .await;
    let second = app
        .submit(&key, "block_card", json!({"block": false}), json!({}))
        .await;
    let token = app.user("rita-token", &["reviewer"], &["ops"]).await;
    let task = app
        .task_of(&token, first.body["id"].as_str().unwrap())
        .await;
    let task_id = task["id"].as_str().unwrap();
    let digest = task["digest"].as_str().unwrap();
    let page = browser.get(&format!("/ui/tasks/{task_id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("fraud-detector · block_card"));
    let csrf = page.csrf();
    let path = format!("/ui/tasks/{task_id}/decide");

    let page = browser
        .post(
            &path,
            &[
                ("_csrf", &csrf),
                ("verdict", "reject"),
                ("rationale", " "),
                ("seen_digest", digest),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.body
            .contains("this task&#39;s policy requires a `rationale` with every decision")
            || page
                .body
                .contains("this task&#x27;s policy requires a `rationale` with every decision"),
        "{}",
        page.body
    );
    assert!(page.body.contains("required by the policy"));

    let page = browser
        .post(
            &path,
            &[
                ("_csrf", &csrf),
                ("verdict", "modify"),
                ("rationale", "amount"),
                ("output", "{\"block\": tru"),
                ("seen_digest", digest),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.body.contains("The edited output is not valid JSON"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("{&quot;block&quot;: tru")
            || page.body.contains("{&#34;block&#34;: tru"),
        "the edit is kept"
    );

    let page = browser
        .post(
            &path,
            &[
                ("_csrf", &csrf),
                ("verdict", "modify"),
                ("rationale", "partial block"),
                ("output", "{\"block\": \"partial\"}"),
                ("seen_digest", digest),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    // The next task of the queue opens.
    let next = app
        .task_of(&token, second.body["id"].as_str().unwrap())
        .await;
    assert_eq!(
        page.location.unwrap(),
        format!("/ui/tasks/{}", next["id"].as_str().unwrap())
    );
    let decided = app
        .get(
            &format!("/v1/proposals/{}", first.body["id"].as_str().unwrap()),
            ADMIN_TOKEN,
        )
        .await;
    assert_eq!(
        decided.body["resolution"]["output"],
        json!({"block": "partial"})
    );
    assert_eq!(
        decided.body["resolution"]["decisions"][0]["rationale"],
        "partial block"
    );
}

#[tokio::test]
async fn sessions_end_when_idle_or_old_and_on_a_password_change() {
    let app = spawn_app().await;
    let mut browser = logged_in(&app, "rita", &["reviewer"], &["ops"]).await;
    assert_eq!(browser.get("/ui/queue").await.status, StatusCode::OK);

    // Idle for an hour: gone.
    app.clock.advance(Duration::from_secs(3600));
    assert_eq!(browser.get("/ui/queue").await.status, StatusCode::SEE_OTHER);

    // Active every 50 minutes: still ends 12 hours after login.
    assert_eq!(
        browser.login("rita", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    for _ in 0..14 {
        app.clock.advance(Duration::from_secs(50 * 60));
        assert_eq!(browser.get("/ui/account").await.status, StatusCode::OK);
    }
    app.clock.advance(Duration::from_secs(50 * 60));
    assert_eq!(
        browser.get("/ui/account").await.status,
        StatusCode::SEE_OTHER
    );

    // Changing the password ends the other sessions, keeps this browser in.
    assert_eq!(
        browser.login("rita", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    let mut other = Browser::new(&app);
    assert_eq!(
        other.login("rita", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    let csrf = browser.get("/ui/account").await.csrf();
    let short = browser
        .post(
            "/ui/account",
            &[("_csrf", &csrf), ("current", PASSWORD), ("new", "short")],
        )
        .await;
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(short.body.contains("at least 12 characters"));
    let wrong = browser
        .post(
            "/ui/account",
            &[
                ("_csrf", &csrf),
                ("current", "nope"),
                ("new", "a much longer one"),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    let changed = browser
        .post(
            "/ui/account",
            &[
                ("_csrf", &csrf),
                ("current", PASSWORD),
                ("new", "a much longer one"),
            ],
        )
        .await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER);
    let page = browser.get("/ui/account?changed=1").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Password changed"));
    assert_eq!(other.get("/ui/account").await.status, StatusCode::SEE_OTHER);
    assert_eq!(
        Browser::new(&app).login("rita", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        Browser::new(&app)
            .login("rita", "a much longer one")
            .await
            .status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn failed_logins_are_throttled_per_username_and_address() {
    let app = spawn_app().await;
    user(&app, "rita", &["reviewer"], &["ops"]).await;
    user(&app, "sam", &["reviewer"], &["ops"]).await;
    let mut browser = Browser::new(&app);
    for _ in 0..5 {
        assert_eq!(
            browser.login("rita", "guess").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let locked = browser.login("rita", PASSWORD).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(locked.retry_after.as_deref(), Some("900"));
    assert!(
        locked.body.contains(
            "Too many failed logins for this username from your address. Try again in 15 minutes."
        ),
        "{}",
        locked.body
    );
    // Another username is not affected.
    assert_eq!(
        browser.login("sam", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    app.clock.advance(Duration::from_secs(15 * 60));
    assert_eq!(
        Browser::new(&app).login("rita", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_a_locked_admin_still_gets_in_from_elsewhere() {
    let app = spawn_with(|config| {
        config.trusted_proxy_header = Some("x-forwarded-for".to_owned());
    })
    .await;
    user(&app, "boss", &["admin"], &[]).await;
    let mut attacker = Browser::new(&app);
    attacker
        .headers
        .push(("x-forwarded-for".into(), "203.0.113.66".into()));
    for _ in 0..5 {
        attacker.login("boss", "guess").await;
    }
    assert_eq!(
        attacker.login("boss", PASSWORD).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    let mut office = Browser::new(&app);
    office
        .headers
        .push(("x-forwarded-for".into(), "198.51.100.7".into()));
    assert_eq!(
        office.login("boss", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    // An address that tries many usernames is stopped for all of them.
    let mut sprayer = Browser::new(&app);
    sprayer
        .headers
        .push(("x-forwarded-for".into(), "192.0.2.200".into()));
    for i in 0..50 {
        sprayer.login(&format!("user{i}"), "guess").await;
    }
    assert_eq!(
        sprayer.login("boss", PASSWORD).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn login_input_is_bounded_before_any_work() {
    let app = spawn_app().await;
    let mut browser = Browser::new(&app);
    let long_name = "n".repeat(65);
    let refused = browser.login(&long_name, PASSWORD).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!refused.body.contains(&long_name));
    let long_password = "p".repeat(1025);
    let refused = browser.login("admin", &long_password).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    // A body over the login form's limit is refused before it is read.
    let huge = browser.login(&"x".repeat(100_000), PASSWORD).await;
    assert_eq!(huge.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        app.get("/healthz", ADMIN_TOKEN).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn every_page_and_action_checks_roles() {
    let app = spawn_app().await;
    let key = app.system("fraud-detector", "in_the_loop").await;
    let published = app
        .publish(r#"@id("review") @reviewers("ops") permit(principal, action, resource);"#)
        .await;
    assert_eq!(published.status, StatusCode::CREATED);
    let version = published.body["version"].as_str().unwrap().to_owned();
    let submitted = app
        .submit(&key, "block_card", json!({"block": true}), json!({}))
        .await;
    let proposal = submitted.body["id"].as_str().unwrap().to_owned();
    let token = app.user("probe", &["reviewer"], &["ops"]).await;
    let task = app.task_of(&token, &proposal).await;
    let task_id = task["id"].as_str().unwrap().to_owned();
    let target = user(&app, "target", &["reviewer"], &["ops"]).await;

    let mut browsers = vec![
        ("anonymous", Browser::new(&app)),
        ("admin", logged_in(&app, "adm", &["admin"], &[]).await),
        (
            "policy_author",
            logged_in(&app, "pa", &["policy_author"], &[]).await,
        ),
        (
            "reviewer",
            logged_in(&app, "rev", &["reviewer"], &["ops"]).await,
        ),
        (
            "other group",
            logged_in(&app, "out", &["reviewer"], &["elsewhere"]).await,
        ),
        ("auditor", logged_in(&app, "aud", &["auditor"], &[]).await),
    ];
    let pages = [
        "/ui".to_owned(),
        "/ui/queue".into(),
        format!("/ui/tasks/{task_id}"),
        format!("/ui/proposals/{proposal}"),
        "/ui/systems".into(),
        "/ui/policies".into(),
        format!("/ui/policies/{version}"),
        "/ui/policies/draft".into(),
        "/ui/users".into(),
        "/ui/audit".into(),
        "/ui/analytics".into(),
        "/ui/account".into(),
        "/ui/grants".into(),
    ];
    // Actions that change nothing lasting when allowed (or that are undone).
    let actions: Vec<(String, Vec<(&str, String)>)> = vec![
        (format!("/ui/tasks/{task_id}/claim"), vec![]),
        (format!("/ui/tasks/{task_id}/release"), vec![]),
        // No such grant: only who may revoke one.
        ("/ui/grants/gnt_none/revoke".into(), vec![]),
        // No task selected: only who may send a batch.
        (
            "/ui/queue/decisions".into(),
            vec![("verdict", "approve".into())],
        ),
        (
            "/ui/systems/fraud-detector/status".into(),
            vec![("status", "active".into())],
        ),
        (
            "/ui/policies/draft".into(),
            vec![
                ("op", "validate".into()),
                ("text", "permit(principal, action, resource);".into()),
            ],
        ),
        (
            format!("/ui/users/{target}"),
            vec![("role", "reviewer".into()), ("groups", "ops".into())],
        ),
    ];
    let mut table = String::new();
    table.push_str(&format!("{:<40}", "page or action"));
    for (role, _) in &browsers {
        table.push_str(&format!(" | {role:<13}"));
    }
    table.push('\n');
    let show = |page: &Page| -> String {
        match (page.status.as_u16(), page.location.as_deref()) {
            (303, Some(to)) if to.starts_with("/ui/login") => "login".to_owned(),
            (303, _) => "ok".to_owned(),
            (200, _) => "ok".to_owned(),
            (status, _) => status.to_string(),
        }
    };
    for page in &pages {
        table.push_str(&format!(
            "{:<40}",
            format!(
                "GET {}",
                page.replace(&task_id, "{task}")
                    .replace(&proposal, "{proposal}")
                    .replace(&version, "{version}")
            )
        ));
        for (_, browser) in browsers.iter_mut() {
            let got = browser.get(page).await;
            table.push_str(&format!(" | {:<13}", show(&got)));
        }
        table.push('\n');
    }
    for (path, fields) in &actions {
        table.push_str(&format!(
            "{:<40}",
            format!(
                "POST {}",
                path.replace(&task_id, "{task}").replace(&target, "{user}")
            )
        ));
        for (_, browser) in browsers.iter_mut() {
            let csrf = match browser.cookies.contains_key("loopgate_session") {
                true => browser.get("/ui/account").await.csrf(),
                false => String::new(),
            };
            let mut form: Vec<(&str, &str)> =
                fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            form.push(("_csrf", &csrf));
            let got = browser.post(path, &form).await;
            table.push_str(&format!(" | {:<13}", show(&got)));
            // Give a claimed task back so that the next role finds it open.
            if path.ends_with("/claim") && got.status == StatusCode::SEE_OTHER {
                browser
                    .post(&format!("/ui/tasks/{task_id}/release"), &[("_csrf", &csrf)])
                    .await;
            }
        }
        table.push('\n');
    }
    insta::assert_snapshot!("ui_role_matrix", table);
}

#[tokio::test]
async fn blind_review_hides_the_output_until_decided() {
    let app = spawn_app().await;
    let key = app.system("diagnosis-assistant", "in_the_loop").await;
    let published = app
        .publish(r#"@reviewers("clinicians") @blind("true") permit(principal, action, resource);"#)
        .await;
    assert_eq!(published.status, StatusCode::CREATED);
    let mut browser = logged_in(&app, "rita", &["reviewer"], &["clinicians"]).await;
    let submitted = app
        .submit(
            &key,
            "suggest",
            json!({"finding": "secret-finding"}),
            json!({}),
        )
        .await;
    let proposal = submitted.body["id"].as_str().unwrap().to_owned();
    let token = app.user("rita-token", &["reviewer"], &["clinicians"]).await;
    let task = app.task_of(&token, &proposal).await;
    let page = browser
        .get(&format!("/ui/tasks/{}", task["id"].as_str().unwrap()))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Blind review"), "{}", page.body);
    assert!(!page.body.contains("secret-finding"));
    assert!(!page.body.contains("0.80"), "no confidence");
    assert!(!page.body.contains("Edit output"), "nothing to edit unseen");
    let queue = browser.get("/ui/queue").await;
    assert!(queue.body.contains("blind"));

    let decided = app.decide(&token, &task, "approve").await;
    assert_eq!(decided.status, StatusCode::OK);
    let page = browser.get(&format!("/ui/proposals/{proposal}")).await;
    assert!(page.body.contains("secret-finding"), "shown once decided");
}

#[tokio::test]
async fn a_policy_author_tests_publishes_and_compares_in_the_editor() {
    let app = spawn_app().await;
    app.system("fraud-detector", "in_the_loop").await;
    let old = app
        .publish(r#"@id("big") @reviewers("ops") permit(principal, action, resource) when { context.amount_minor >= 50000 };"#)
        .await;
    let old = old.body["version"].as_str().unwrap().to_owned();
    let mut browser = logged_in(&app, "ana", &["policy_author"], &[]).await;
    let page = browser.get("/ui/policies/draft").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("context.amount_minor &#62;= 50000"),
        "the live text is the start"
    );
    let csrf = page.csrf();
    let text = r#"@id("big") @reviewers("ops") permit(principal, action, resource) when { context.amount_minor >= 10000 };"#;
    let cases = "cases:\n  - name: small goes to review now\n    system: fraud-detector\n    action: block_card\n    context: {amount_minor: 20000}\n    expect: {route: allow}\n";

    let bad = browser
        .post(
            "/ui/policies/draft",
            &[
                ("_csrf", &csrf),
                ("op", "validate"),
                ("text", "permit(principal, action"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad.body.contains("permit(principal, action"),
        "the text is kept"
    );

    let tested = browser
        .post(
            "/ui/policies/draft",
            &[
                ("_csrf", &csrf),
                ("op", "test"),
                ("text", text),
                ("cases", cases),
            ],
        )
        .await;
    assert_eq!(
        tested.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        tested.body
    );
    assert!(
        tested.body.contains("0 passed, 1 failed"),
        "{}",
        tested.body
    );
    assert!(tested.body.contains("small goes to review now"));

    let refused = browser
        .post(
            "/ui/policies/draft",
            &[
                ("_csrf", &csrf),
                ("op", "publish"),
                ("text", text),
                ("cases", cases),
                ("description", "lower"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused
            .body
            .contains("policy tests failed; the version was not published"),
        "{}",
        refused.body
    );

    let published = browser
        .post(
            "/ui/policies/draft",
            &[
                ("_csrf", &csrf),
                ("op", "publish"),
                ("text", text),
                ("description", "lower the threshold"),
                ("mode", "live"),
            ],
        )
        .await;
    assert_eq!(
        published.status,
        StatusCode::SEE_OTHER,
        "{}",
        published.body
    );
    let location = published.location.unwrap();
    let new = location.trim_start_matches("/ui/policies/").to_owned();
    let page = browser.get(&location).await;
    assert!(page.body.contains("lower the threshold"));
    assert!(
        page.body
            .contains(r#"<span class="tok-keyword">permit</span>"#),
        "highlighted"
    );

    let diff = browser
        .get(&format!("/ui/policies/diff?a={old}&b={new}"))
        .await;
    assert_eq!(diff.status, StatusCode::OK);
    assert!(
        diff.body
            .contains("0 added, 0 removed, 1 changed, 0 unchanged"),
        "{}",
        diff.body
    );
    assert!(diff.body.contains("10000"));

    // Rolling back is activating the old version, with a reason.
    let back = browser
        .post(
            "/ui/policies/draft",
            &[
                ("_csrf", &csrf),
                ("op", "activate"),
                ("version", &old),
                ("reason", "flooded the queue"),
                ("mode", "live"),
            ],
        )
        .await;
    assert_eq!(back.status, StatusCode::SEE_OTHER);
    let list = browser.get("/ui/policies").await;
    assert!(list.body.contains("flooded the queue"));
}

#[tokio::test]
async fn the_proposal_page_shows_policies_that_failed_to_evaluate() {
    let app = spawn_app().await;
    let key = app.system("shop", "in_the_loop").await;
    let published = app
        .publish(r#"@id("deny-big") forbid(principal, action, resource) when { context.amount_minor > 100000 };"#)
        .await;
    assert_eq!(published.status, StatusCode::CREATED, "{}", published.body);
    let submitted = app
        .submit(&key, "refund", json!({}), json!({"amount_minor": "lots"}))
        .await;
    assert_eq!(submitted.body["status"], "rejected", "{}", submitted.body);
    let id = submitted.body["id"].as_str().unwrap();
    let mut browser = logged_in(&app, "audrey", &["auditor"], &[]).await;
    let page = browser.get(&format!("/ui/proposals/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("Policies that failed to evaluate"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("<strong>deny-big</strong> (type error)"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("expected long, got string"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn users_issue_and_revoke_their_tokens_and_admins_system_keys() {
    let app = spawn_app().await;
    let mut browser = logged_in(&app, "rita", &["reviewer"], &["ops"]).await;
    let page = browser.get("/ui/account/tokens").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let csrf = page.csrf();
    let issued = browser
        .post(
            "/ui/account/tokens",
            &[("_csrf", &csrf), ("name", "laptop"), ("expires_in", "P30D")],
        )
        .await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.body);
    let at = issued.body.find("lgt_").expect("the secret is shown once");
    let secret: String = issued.body[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    assert_eq!(app.get("/v1/tasks", &secret).await.status, StatusCode::OK);
    let listed = browser.get("/ui/account/tokens").await;
    assert!(listed.body.contains("laptop"));
    assert!(!listed.body.contains(&secret), "never shown again");
    let at = listed.body.find("/ui/account/tokens/tok_").unwrap();
    let action: String = listed.body[at..]
        .chars()
        .take_while(|c| *c != '"')
        .collect();
    let revoked = browser.post(&action, &[("_csrf", &csrf)]).await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.body);
    assert_eq!(
        app.get("/v1/tasks", &secret).await.status,
        StatusCode::UNAUTHORIZED
    );

    // System keys are the admins'.
    app.system("shop", "in_the_loop").await;
    assert_eq!(
        browser.get("/ui/systems/shop/keys").await.status,
        StatusCode::FORBIDDEN
    );
    let mut admin = logged_in(&app, "boss", &["admin"], &[]).await;
    let keys = admin.get("/ui/systems/shop/keys").await;
    assert_eq!(keys.status, StatusCode::OK, "{}", keys.body);
    let csrf = keys.csrf();
    let issued = admin
        .post(
            "/ui/systems/shop/keys",
            &[("_csrf", &csrf), ("name", "ci"), ("expires_in", "")],
        )
        .await;
    assert!(issued.body.contains("lgk_"), "{}", issued.body);
}

#[tokio::test]
async fn a_reviewer_comments_and_answers_the_ai_from_the_task_page() {
    let app = spawn_app().await;
    let key = app.system("fraud-detector", "in_the_loop").await;
    let published = app
        .publish(r#"@reviewers("ops") permit(principal, action, resource);"#)
        .await;
    assert_eq!(published.status, StatusCode::CREATED);
    let mut browser = logged_in(&app, "rev", &["reviewer"], &["ops"]).await;
    let submitted = app
        .submit(&key, "refund", json!({"amount": 9}), json!({}))
        .await;
    let proposal = submitted.body["id"].as_str().unwrap().to_owned();
    let tasks = app.get("/v1/tasks", ADMIN_TOKEN).await;
    let task = tasks.body["items"][0].clone();
    let task_id = task["id"].as_str().unwrap().to_owned();
    let digest = task["digest"].as_str().unwrap().to_owned();

    let page = browser.get(&format!("/ui/tasks/{task_id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("No comments yet"), "{}", page.body);
    assert!(page.body.contains("value=\"respond\""), "{}", page.body);
    let csrf = page.csrf();
    // A form holding U+0000 is refused as a page, as the API refuses it.
    let refused = browser
        .post(
            &format!("/ui/tasks/{task_id}/comments"),
            &[("_csrf", &csrf), ("body", "asked\u{0}")],
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains("text must not contain U+0000 (NUL)"),
        "{}",
        refused.body
    );
    let posted = browser
        .post(
            &format!("/ui/tasks/{task_id}/comments"),
            &[("_csrf", &csrf), ("body", "asked finance <b>first</b>")],
        )
        .await;
    assert_eq!(posted.status, StatusCode::SEE_OTHER, "{}", posted.body);
    let page = browser.get(&format!("/ui/tasks/{task_id}")).await;
    assert!(
        page.body
            .contains("asked finance &#60;b&#62;first&#60;/b&#62;"),
        "{}",
        page.body
    );

    let answered = browser
        .post(
            &format!("/ui/tasks/{task_id}/decide"),
            &[
                ("_csrf", &csrf),
                ("verdict", "respond"),
                ("message", "attach the invoice and ask again"),
                ("seen_digest", &digest),
            ],
        )
        .await;
    assert_eq!(answered.status, StatusCode::SEE_OTHER, "{}", answered.body);
    let read = app
        .get(&format!("/v1/proposals/{proposal}"), ADMIN_TOKEN)
        .await;
    assert_eq!(read.body["status"], "returned");
    assert_eq!(
        read.body["resolution"]["message"],
        "attach the invoice and ask again"
    );
}

#[tokio::test]
async fn a_reviewer_gives_a_grant_from_the_task_page_and_revokes_it_from_the_grants_page() {
    let app = spawn_app().await;
    let key = app.system("fraud-detector", "in_the_loop").await;
    let policy = r#"@reviewers("ops") @grantable("PT2H") @grantable_risk("high") permit(principal, action, resource);"#;
    assert_eq!(app.publish(policy).await.status, StatusCode::CREATED);
    let mut browser = logged_in(&app, "rev", &["reviewer"], &["ops"]).await;
    let submit = || app.submit(&key, "refund", json!({"amount": 9}), json!({}));
    submit().await;
    let task = app.get("/v1/tasks", ADMIN_TOKEN).await.body["items"][0].clone();
    let task_id = task["id"].as_str().unwrap().to_owned();
    let digest = task["digest"].as_str().unwrap().to_owned();
    let page = browser.get(&format!("/ui/tasks/{task_id}")).await;
    assert!(page.body.contains("Approve and grant"), "{}", page.body);
    assert!(page.body.contains("at most 2h"), "{}", page.body);
    let csrf = page.csrf();
    // Longer than the policy allows: the form comes back with the reason.
    let decide = |grant_for: &'static str| {
        let (csrf, digest) = (csrf.clone(), digest.clone());
        let path = format!("/ui/tasks/{task_id}/decide");
        (path, move || {
            vec![
                ("_csrf".to_owned(), csrf.clone()),
                ("verdict".to_owned(), "approve".to_owned()),
                ("grant_for".to_owned(), grant_for.to_owned()),
                ("grant_uses".to_owned(), "3".to_owned()),
                ("grant_scope".to_owned(), "same_output".to_owned()),
                ("seen_digest".to_owned(), digest.clone()),
            ]
        })
    };
    let (path, form) = decide("3h");
    let form = form();
    let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let refused = browser.post(&path, &fields).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("at most 2h"), "{}", refused.body);
    let (path, form) = decide("1h");
    let form = form();
    let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let approved = browser.post(&path, &fields).await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER, "{}", approved.body);

    // The same call goes through by the grant; the page lists it.
    let again = submit().await;
    assert_eq!(again.body["resolution"]["decided_by"], "grant");
    let page = browser.get("/ui/grants").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("1 of 3 used, 2 left"), "{}", page.body);
    let grant = app.get("/v1/grants", ADMIN_TOKEN).await.body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked = browser
        .post(
            &format!("/ui/grants/{grant}/revoke"),
            &[("_csrf", &page.csrf())],
        )
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.body);
    assert_eq!(submit().await.body["status"], "pending");
    let page = browser.get("/ui/grants?all=1").await;
    assert!(page.body.contains("revoked"), "{}", page.body);
    assert!(page.body.contains("by user:rev"), "{}", page.body);
}

#[tokio::test]
async fn the_queue_shows_what_is_mine_and_reserved_and_users_set_away_and_groups() {
    let app = spawn_app().await;
    let key = app.system("fraud-detector", "in_the_loop").await;
    let policy = r#"@reviewers("ops") permit(principal, action, resource);"#;
    assert_eq!(app.publish(policy).await.status, StatusCode::CREATED);
    let mut admin = logged_in(&app, "boss", &["admin"], &[]).await;
    let mut ann = logged_in(&app, "ann", &["reviewer"], &["ops"]).await;
    user(&app, "bob", &["reviewer"], &["ops"]).await;

    // The admin sets `ops` to round robin from the users page.
    let page = admin.get("/ui/users").await;
    assert!(page.body.contains("Group assignment"), "{}", page.body);
    let saved = admin
        .post(
            "/ui/groups/ops/assignment",
            &[
                ("_csrf", &page.csrf()),
                ("assignment", "round_robin"),
                ("return_after", "15m"),
            ],
        )
        .await;
    assert!(
        saved.body.contains("Assignment of ops saved."),
        "{}",
        saved.body
    );
    let refused = admin
        .post(
            "/ui/groups/ops/assignment",
            &[
                ("_csrf", &page.csrf()),
                ("assignment", "round_robin"),
                ("return_after", "5s"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains("between 1m and 7d"),
        "{}",
        refused.body
    );

    // Two tasks: ann's, then bob's.
    for _ in 0..2 {
        app.submit(&key, "flag", json!({"fraud": true}), json!({}))
            .await;
    }
    let tasks = app.get("/v1/tasks", ADMIN_TOKEN).await.body["items"].clone();
    let (ann_task, bob_task) = (
        tasks[0]["id"].as_str().unwrap().to_owned(),
        tasks[1]["id"].as_str().unwrap().to_owned(),
    );
    assert_eq!(tasks[1]["assignee"], "bob");
    let queue = ann.get("/ui/queue").await;
    assert!(queue.body.contains("mine (1)"), "{}", queue.body);
    assert!(queue.body.contains("assigned to bob"), "{}", queue.body);
    // Bob's row cannot be selected by ann.
    let bob_row = &queue.body[queue.body.find(&format!("value=\"{bob_task}")).unwrap()..];
    assert!(bob_row[..bob_row.find('>').unwrap()].contains("disabled"));
    let mine = ann.get("/ui/queue?mine=1").await;
    assert!(mine.body.contains(&ann_task), "{}", mine.body);
    assert!(!mine.body.contains(&bob_task), "{}", mine.body);
    // Bob's task page: readable, not claimed on open, not decidable.
    let page = ann.get(&format!("/ui/tasks/{bob_task}")).await;
    assert!(
        page.body.contains("This task is assigned to bob"),
        "{}",
        page.body
    );
    assert!(page.body.contains("data-claim=\"\""), "{}", page.body);

    // Ann goes away with bob standing in: the next task is bob's turn
    // anyway, the one after goes to bob for her.
    let account = ann.get("/ui/account").await;
    let saved = ann
        .post(
            "/ui/account/away",
            &[
                ("_csrf", &account.csrf()),
                ("away_until", "2026-11-25T09:00"),
                ("delegate", "bob"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    assert!(
        saved
            .body
            .contains("You are away until 2026-11-25T09:00 UTC: bob gets"),
        "{}",
        saved.body
    );
    let user = app.get("/v1/users", ADMIN_TOKEN).await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "ann")
        .cloned()
        .unwrap();
    assert_eq!(user["away_until"], "2026-11-25T09:00:00.000Z");
    let bad = ann
        .post(
            "/ui/account/away",
            &[
                ("_csrf", &account.csrf()),
                ("away_until", ""),
                ("delegate", "nobody"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("is not a user"), "{}", bad.body);
}

#[tokio::test]
async fn proposals_made_together_show_as_one_group_in_the_queue() {
    let app = spawn_app().await;
    let key = app.system("agent", "in_the_loop").await;
    let policy = r#"@reviewers("ops") permit(principal, action, resource);"#;
    assert_eq!(app.publish(policy).await.status, StatusCode::CREATED);
    let mut rev = logged_in(&app, "rev", &["reviewer"], &["ops"]).await;
    let submit = |batch: Value, n: u32| {
        let mut body = crate::harness::proposal("call", json!({"n": n}), json!({}));
        body["batch"] = batch;
        app.post("/v1/proposals", &key, body)
    };
    let alone = submit(Value::Null, 0).await;
    assert_eq!(alone.status, StatusCode::CREATED, "{}", alone.body);
    for n in 1..=3 {
        let made = submit(json!("mcp-01JBATCH"), n).await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
        assert_eq!(made.body["batch"], "mcp-01JBATCH");
    }
    // A batch name is bounded and plain.
    for bad in [json!(""), json!("a b"), json!("x".repeat(129)), json!(7)] {
        let refused = submit(bad.clone(), 9).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(refused.content_type, "application/problem+json");
    }
    let tasks = app.get("/v1/tasks", ADMIN_TOKEN).await.body["items"].clone();
    assert_eq!(tasks[1]["batch"], "mcp-01JBATCH");
    assert!(tasks[0]["batch"].is_null());
    let queue = rev.get("/ui/queue").await;
    assert!(
        queue.body.contains("3 proposals made together"),
        "{}",
        queue.body
    );
    assert_eq!(
        queue.body.matches("data-batch=\"mcp-01JBATCH\"").count(),
        4,
        "the group's box and its three rows"
    );
    let rows = rev.get("/ui/queue/rows").await;
    assert!(rows.body.contains("class=\"pick-batch\""), "{}", rows.body);
}
