//! End to end in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`), driven over WebDriver: log in, work three tasks with
//! the keyboard, see a task arrive live, and be refused an admin page.
//! Screenshots of the main pages go to `target/e2e-screenshots/`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::actions::{
    Actions, InputSource, KeyAction, KeyActions, MOUSE_BUTTON_LEFT, MouseActions, PointerAction,
};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{ADMIN_TOKEN, TestApp, spawn_app};

const PASSWORD: &str = "correct horse battery";
const CTRL_ENTER: &str = "\u{E009}\u{E007}\u{E000}";

/// chromedriver on a free port and a browser session in it; both end on
/// drop. chromedriver runs in a process group of its own, with the
/// browser it starts, and the whole group is killed: killing chromedriver
/// alone left its browser running after the test.
struct Browser {
    client: Client,
    _driver: tokio::process::Child,
    group: Option<u32>,
    shots: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(group) = self.group {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{group}")])
                .status();
        }
    }
}

impl Browser {
    async fn start() -> Browser {
        let driver_path =
            std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        assert!(
            std::path::Path::new(&driver_path).exists() && std::path::Path::new(&chromium).exists(),
            "the browser tests need Debian's chromium and chromium-driver \
             (`apt-get install chromium chromium-driver`; .ci/run installs them), \
             or CHROMIUM and CHROMEDRIVER set to their paths"
        );
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let driver = tokio::process::Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .process_group(0)
            .spawn()
            .unwrap();
        let group = driver.id();
        let url = format!("http://127.0.0.1:{port}");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                         "--window-size=1280,800", "--lang=en-US"],
            }),
        );
        let mut last = None;
        for _ in 0..100 {
            match ClientBuilder::native()
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                        .join("../../target/e2e-screenshots");
                    std::fs::create_dir_all(&shots).unwrap();
                    return Browser {
                        client,
                        _driver: driver,
                        group,
                        shots,
                    };
                }
                Err(error) => last = Some(error),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not start a session: {last:?}");
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => panic!("no `{css}` on {}: {e}", self.url().await),
        }
    }

    async fn url(&self) -> String {
        self.client.current_url().await.unwrap().to_string()
    }

    /// The text of `css`. A page that navigates between finding the element
    /// and reading it makes the element stale: find it again on the new page.
    async fn text(&self, css: &str) -> String {
        let mut tries = 0;
        loop {
            match self.find(css).await.text().await {
                Ok(text) => return text,
                Err(e) if tries < 20 => {
                    tries += 1;
                    eprintln!("reading `{css}` again: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot read `{css}`: {e}"),
            }
        }
    }

    /// Types on the page itself (not in a field), as a reviewer's shortcut.
    async fn press(&self, keys: &str) {
        self.find("body").await.send_keys(keys).await.unwrap();
    }

    /// Waits until `check` holds, or fails with `what`.
    async fn until<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        for _ in 0..100 {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.shot("failure").await;
        let main = self.text("main").await;
        panic!(
            "timed out waiting for {what} on {}:\n{main}",
            self.url().await
        );
    }

    async fn url_changes_from(&self, before: &str) -> String {
        self.until("the next page", || async { self.url().await != before })
            .await;
        self.find("main").await;
        self.url().await
    }

    /// Waits until the page has claimed its task.
    async fn claimed(&self) {
        self.until("the claim", || async {
            self.text("#lease").await.starts_with("Yours")
        })
        .await;
    }

    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    async fn login(&self, base: &str, username: &str) {
        self.goto(&format!("{base}/ui/login")).await;
        self.find("#username")
            .await
            .send_keys(username)
            .await
            .unwrap();
        self.find("#password")
            .await
            .send_keys(PASSWORD)
            .await
            .unwrap();
        self.find("form button[type=submit]")
            .await
            .click()
            .await
            .unwrap();
        self.find("header.top").await;
    }
}

async fn user(app: &TestApp, username: &str, roles: &[&str], groups: &[&str]) {
    app.user_with_password(username, roles, groups, PASSWORD)
        .await;
}

async fn submit(app: &TestApp, key: &str, n: u32, amount: u32) -> String {
    submit_action(app, key, "block_card", n, amount).await
}

async fn submit_action(app: &TestApp, key: &str, action: &str, n: u32, amount: u32) -> String {
    let body = json!({
        "action": action,
        "subject": {"type": "Account", "id": format!("acct-{n}"), "attributes": {"country": "DE", "age_band": "35-44"}},
        "input": {"transaction_id": format!("tx-{n}"), "amount_minor": amount, "currency": "EUR"},
        "output": {"block": true, "reason_code": "velocity"},
        "confidence": 0.87,
        "explanation": {"summary": "5 transactions in 3 minutes", "features": {"velocity_5m": 5, "amount_z": 2.4, "account_age": -1.2}},
        "model": {"name": "fraud-gbm", "version": "2026.11.2"},
        "context": {"amount_minor": amount, "channel": "online"},
    });
    let created = app.post("/v1/proposals", key, body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    created.body["id"].as_str().unwrap().to_owned()
}

async fn proposal(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/proposals/{id}"), ADMIN_TOKEN)
        .await
        .body
}

#[tokio::test]
async fn a_reviewer_works_the_queue_with_the_keyboard_in_chromium() {
    let app = spawn_app().await;
    // The browser counts deadlines and leases against its own clock.
    #[allow(
        clippy::disallowed_methods,
        reason = "the browser's clock is the real one"
    )]
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    app.clock
        .advance(now - Duration::from_millis(crate::harness::T0 as u64));
    let base = app.base.clone();
    let key = app.system("fraud-detector", "in_the_loop").await;
    let published = app
        .publish(
            r#"@id("review-blocks") @reviewers("fraud-analysts") @sla("PT4H") permit(principal, action == Action::"block_card", resource);
@id("review-closures") @reviewers("fraud-analysts") @sla("PT4H") @rationale("required") permit(principal, action == Action::"close_account", resource);"#,
        )
        .await;
    assert_eq!(published.status, StatusCode::CREATED, "{}", published.body);
    user(&app, "rita", &["reviewer"], &["fraud-analysts"]).await;
    user(&app, "root", &["admin"], &[]).await;
    let first = submit(&app, &key, 1, 129_900).await;
    let second = submit(&app, &key, 2, 45_000).await;
    let third = submit_action(&app, &key, "close_account", 3, 9_900).await;

    let browser = Browser::start().await;
    browser.login(&base, "rita").await;
    assert!(
        browser.url().await.ends_with("/ui/queue"),
        "{}",
        browser.url().await
    );
    let rows = browser
        .client
        .find_all(Locator::Css("#queue-rows tr[data-task]"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    browser.shot("queue").await;

    // j selects the first row, Enter opens it; the page claims the task.
    browser.press("j").await;
    let queue_url = browser.url().await;
    browser
        .client
        .active_element()
        .await
        .unwrap()
        .send_keys("\u{E007}")
        .await
        .unwrap();
    browser.url_changes_from(&queue_url).await;
    browser.claimed().await;
    assert!(
        browser
            .text("main")
            .await
            .contains("5 transactions in 3 minutes")
    );
    browser.shot("task").await;

    // 1. Approve with `a`: the next task opens.
    let at = browser.url().await;
    browser.press("a").await;
    let at = browser.url_changes_from(&at).await;
    assert!(at.contains("/ui/tasks/"), "{at}");

    // 2. Edit the output with `e`, see the diff, give a rationale, Ctrl+Enter.
    browser.claimed().await;
    browser.press("e").await;
    let output = browser.find("#output").await;
    output.clear().await.unwrap();
    output
        .send_keys(
            "{\n  \"block\": false,\n  \"reason_code\": \"velocity\",\n  \"notify\": true\n}",
        )
        .await
        .unwrap();
    browser
        .until("the diff", || async {
            browser
                .text("#output-diff")
                .await
                .contains("+   \"notify\": true")
        })
        .await;
    browser.shot("task-modify").await;
    // Tab to the rationale, say why, Ctrl+Enter sends the edit.
    output.send_keys("\u{E004}").await.unwrap();
    let focused = browser.client.active_element().await.unwrap();
    assert_eq!(
        focused.attr("id").await.unwrap().as_deref(),
        Some("rationale")
    );
    focused
        .send_keys("customer confirmed the purchases")
        .await
        .unwrap();
    focused.send_keys(CTRL_ENTER).await.unwrap();
    let at = browser.url_changes_from(&at).await;

    // 3. Reject with `r`: this policy asks for a rationale, so the field
    // takes the focus first.
    browser.claimed().await;
    assert!(
        browser
            .text("label[for=rationale]")
            .await
            .contains("required by the policy")
    );
    browser.press("r").await;
    let focused = browser.client.active_element().await.unwrap();
    assert_eq!(
        focused.attr("id").await.unwrap().as_deref(),
        Some("rationale")
    );
    focused
        .send_keys("small amount, known merchant")
        .await
        .unwrap();
    focused.send_keys(CTRL_ENTER).await.unwrap();
    let at = browser.url_changes_from(&at).await;
    assert!(at.contains("/ui/queue?done=1"), "{at}");

    let statuses: Vec<Value> = [
        proposal(&app, &first).await,
        proposal(&app, &second).await,
        proposal(&app, &third).await,
    ]
    .into_iter()
    .map(|p| {
        json!([
            p["status"],
            p["resolution"]["modified"],
            p["resolution"]["decisions"][0]["rationale"]
        ])
    })
    .collect();
    assert_eq!(
        statuses,
        [
            json!(["approved", false, null]),
            json!(["approved", true, "customer confirmed the purchases"]),
            json!(["rejected", false, "small amount, known merchant"]),
        ]
    );
    assert_eq!(
        proposal(&app, &second).await["resolution"]["output"],
        json!({"block": false, "reason_code": "velocity", "notify": true})
    );

    // A new task appears without a reload.
    browser
        .until("the live connection", || async {
            browser
                .client
                .execute("return document.readyState", vec![])
                .await
                .unwrap()
                == "complete"
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let live = submit(&app, &key, 4, 77_700).await;
    let task = app
        .tasks(ADMIN_TOKEN)
        .await
        .into_iter()
        .find(|t| t["proposal_id"] == live.as_str())
        .unwrap();
    let selector = format!(
        "#queue-rows tr[data-task=\"{}\"]",
        task["id"].as_str().unwrap()
    );
    browser.find(&selector).await;
    assert_eq!(browser.url().await, at, "no reload");
    browser.shot("queue-live").await;

    // A reviewer cannot open an admin page, and is not offered it.
    let nav = browser.text("header.top nav").await;
    assert!(!nav.contains("Users") && !nav.contains("Systems"), "{nav}");
    browser.goto(&format!("{base}/ui/users")).await;
    assert!(
        browser
            .text("main")
            .await
            .contains("this needs one of the roles auditor, admin")
    );
    browser.shot("reviewer-forbidden").await;

    // Phone width.
    browser.client.set_window_size(390, 844).await.unwrap();
    browser
        .goto(&format!("{base}/ui/tasks/{}", task["id"].as_str().unwrap()))
        .await;
    browser.find("#decision-form").await;
    browser.shot("task-phone").await;
    browser.client.set_window_size(1280, 800).await.unwrap();

    // The governance pages, as an admin.
    browser
        .find("form[action=\"/ui/logout\"] button")
        .await
        .click()
        .await
        .unwrap();
    browser.find("#username").await;
    browser.login(&base, "root").await;
    for (name, path) in [
        ("systems", "/ui/systems".to_owned()),
        ("policies", "/ui/policies".into()),
        (
            "policy",
            format!(
                "/ui/policies/{}",
                published.body["version"].as_str().unwrap()
            ),
        ),
        ("policy-draft", "/ui/policies/draft".into()),
        ("users", "/ui/users".into()),
        ("analytics", "/ui/analytics?attribute=country".into()),
        ("proposal", format!("/ui/proposals/{second}")),
    ] {
        browser.goto(&format!("{base}{path}")).await;
        browser.find("main h1").await;
        browser.shot(name).await;
    }
    let issued = app
        .post("/v1/audit/checkpoint", ADMIN_TOKEN, json!({}))
        .await;
    assert_eq!(issued.status, StatusCode::CREATED);
    browser
        .goto(&format!("{base}/ui/audit?proposal={second}"))
        .await;
    browser
        .until("the receipt check", || async {
            browser
                .text("#receipt-status")
                .await
                .starts_with("Verified in this page")
        })
        .await;
    let results = browser
        .client
        .find_all(Locator::Css(".verify-result.verify-ok"))
        .await
        .unwrap();
    assert!(5 <= results.len(), "every entry of the proposal is proven");
    browser.shot("audit").await;
    browser.client.clone().close().await.unwrap();
}

/// An email's decision link, followed in the browser: the page shows the
/// task and decides nothing until the reviewer confirms; a second use is
/// refused.
#[tokio::test]
async fn a_reviewer_decides_from_an_email_link_in_chromium() {
    let smtp = crate::notifications::SmtpSink::start().await;
    let app = crate::harness::spawn_with(|config| {
        config.public_url = Some("http://loopgate.test".to_owned());
        config.smtp_url = Some(smtp.url());
    })
    .await;
    let (key, _ann) = app.ops_review().await;
    let ann = app.user_id("ann").await;
    let patched = app
        .patch_user(&ann, json!({"email": "ann@example.com"}))
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    let set = app
        .call(
            reqwest::Method::PUT,
            "/v1/groups/ops/notifications",
            Some(ADMIN_TOKEN),
            Some(json!({"events": ["task.created"]})),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    let id = submit(&app, &key, 1, 4200).await;
    let mail = smtp.wait_for(1).await.remove(0);
    let path = mail.link_path().expect("a decision link");

    let browser = Browser::start().await;
    let base = &app.base;
    browser.goto(&format!("{base}{path}?verdict=reject")).await;
    assert!(browser.text("#link-summary").await.contains("Action"));
    assert_eq!(proposal(&app, &id).await["status"], "pending");
    browser.shot("decision-link").await;
    browser
        .find("#rationale")
        .await
        .send_keys("amount is off for this merchant")
        .await
        .unwrap();
    browser.find("#link-confirm").await.click().await.unwrap();
    browser
        .until("the decision page", || async {
            // The form's page may still be there, or going (its elements
            // then go stale): only the new page's title counts.
            match browser.client.find(Locator::Css("#link-title")).await {
                Ok(title) => title
                    .text()
                    .await
                    .is_ok_and(|text| text == "Decision recorded"),
                Err(_) => false,
            }
        })
        .await;
    assert!(
        browser
            .text("#link-message")
            .await
            .contains("Rejected as ann")
    );
    let decided = proposal(&app, &id).await;
    assert_eq!(decided["status"], "rejected");
    assert_eq!(
        decided["resolution"]["decisions"][0]["rationale"],
        "amount is off for this merchant"
    );
    browser.goto(&format!("{base}{path}")).await;
    assert_eq!(browser.text("#link-title").await, "Link already used");
    browser.client.clone().close().await.unwrap();
}

#[tokio::test]
async fn a_reviewer_signs_in_with_the_identity_provider_and_out_in_chromium() {
    let (app, idp) = crate::sso::with_idp(crate::sso::CLIENT_SECRET, |_| ()).await;
    let browser = Browser::start().await;
    browser.goto(&format!("{}/ui/login", app.base)).await;
    assert_eq!(browser.text("#sso").await, "Sign in with Test IdP");
    browser.find("#sso").await.click().await.unwrap();

    // The provider's own pages.
    browser
        .find("#idp-login")
        .await
        .send_keys("alice")
        .await
        .unwrap();
    browser
        .find("#idp-password")
        .await
        .send_keys("alice-pw")
        .await
        .unwrap();
    assert!(browser.url().await.starts_with(&idp.issuer));
    browser.shot("sso-provider-login").await;
    browser.find("#idp-submit").await.click().await.unwrap();

    // Back in loopgate, on the queue, with the mapped role and group.
    browser.find("header.top").await;
    assert!(
        browser.url().await.ends_with("/ui/queue"),
        "{}",
        browser.url().await
    );
    browser.shot("sso-queue").await;
    browser.goto(&format!("{}/ui/account", app.base)).await;
    let account = browser.text("main").await;
    assert!(account.contains("reviewer"), "{account}");
    assert!(account.contains("fraud-l1"), "{account}");
    assert!(
        account.contains("loopgate keeps no password for you"),
        "{account}"
    );

    // Logging out ends the session here and at the provider.
    browser
        .find("header.top form[action='/ui/logout'] button")
        .await
        .click()
        .await
        .unwrap();
    browser.find("#idp-logout").await.click().await.unwrap();
    browser
        .until("the login page", || async {
            browser
                .url()
                .await
                .starts_with(&format!("{}/ui/login", app.base))
        })
        .await;
    browser.find("#sso").await;
    browser.goto(&format!("{}/ui/account", app.base)).await;
    browser.find("#sso").await;
}

#[tokio::test]
async fn a_reviewer_selects_three_rows_and_approves_them_at_once_in_chromium() {
    let app = spawn_app().await;
    let base = app.base.clone();
    let key = app.system("fraud-detector", "in_the_loop").await;
    let published = app
        .publish(r#"@reviewers("fraud-analysts") permit(principal, action == Action::"block_card", resource);"#)
        .await;
    assert_eq!(published.status, StatusCode::CREATED, "{}", published.body);
    user(&app, "rita", &["reviewer"], &["fraud-analysts"]).await;
    let mut ids = Vec::new();
    for n in 1..=4 {
        ids.push(submit(&app, &key, n, 10_000 * n).await);
    }

    let browser = Browser::start().await;
    browser.login(&base, "rita").await;
    browser.find("#batch-approve").await;
    let boxes = browser
        .client
        .find_all(Locator::Css("input.pick"))
        .await
        .unwrap();
    assert_eq!(boxes.len(), 4);
    // The first row by a click, the next two by a Shift-click on the third.
    boxes[0].click().await.unwrap();
    let still = Duration::from_millis(0);
    let shift = KeyActions::new("keyboard".into())
        .then(KeyAction::Down {
            value: Key::Shift.into(),
        })
        .pause(still)
        .pause(still)
        .pause(still)
        .then(KeyAction::Up {
            value: Key::Shift.into(),
        });
    let click = MouseActions::new("mouse".into())
        .pause(still)
        .then(PointerAction::MoveToElement {
            element: boxes[2].clone(),
            duration: None,
            x: 0.0,
            y: 0.0,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        })
        .pause(still);
    browser
        .client
        .perform_actions(Actions::from(shift).and(click))
        .await
        .unwrap();
    let selected = |n: usize| {
        let browser = &browser;
        async move {
            browser
                .until(&format!("{n} selected"), || async {
                    browser.text("#batch-count").await == format!("{n} selected")
                })
                .await;
        }
    };
    selected(3).await;
    // The keyboard: `j` moves to the fourth row, `x` selects it and takes it back.
    browser.press("jjjj").await;
    browser.press("x").await;
    selected(4).await;
    browser.press("x").await;
    selected(3).await;
    browser
        .find("#batch-rationale")
        .await
        .send_keys("same merchant, same pattern")
        .await
        .unwrap();
    browser.shot("batch-selected").await;
    browser.find("#batch-approve").await.click().await.unwrap();
    browser
        .until("the batch's notice", || async {
            browser.text("main").await.contains("3 decisions recorded.")
        })
        .await;
    browser.shot("batch-done").await;

    let statuses: Vec<Value> = {
        let mut statuses = Vec::new();
        for id in &ids {
            statuses.push(proposal(&app, id).await["status"].clone());
        }
        statuses
    };
    assert_eq!(
        statuses,
        vec![
            json!("approved"),
            json!("approved"),
            json!("approved"),
            json!("pending")
        ]
    );
}
