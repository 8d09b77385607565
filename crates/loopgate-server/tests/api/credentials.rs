//! Credentials have a lifecycle: keys and tokens are named, listed without
//! their secrets, expire and are revoked; users are disabled. Each takes
//! effect at once, also on the streams and long-polls already open.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{ADMIN_TOKEN, TestApp, spawn_app};

/// `DELETE path` as the admin.
async fn delete(app: &TestApp, path: &str) -> crate::harness::Response {
    app.call(Method::DELETE, path, Some(ADMIN_TOKEN), None)
        .await
}

/// The types of every event so far, from the store.
async fn event_types(app: &TestApp) -> Vec<String> {
    app.app.store.settle_log().await.unwrap();
    let events = app.app.store.events_after(0, 10_000).await.unwrap();
    events
        .into_iter()
        .map(|e| e.kind.as_str().to_owned())
        .collect()
}

async fn status_with(app: &TestApp, token: &str) -> StatusCode {
    app.get("/v1/proposals?limit=1", token).await.status
}

#[tokio::test]
async fn keys_are_named_listed_without_secrets_and_revoked_at_once() {
    let app = spawn_app().await;
    let first = app.system("shop", "in_the_loop").await;
    let issued = app
        .post(
            "/v1/systems/shop/keys",
            ADMIN_TOKEN,
            json!({"name": "ci", "expires_in": "P90D"}),
        )
        .await;
    assert_eq!(issued.status, StatusCode::CREATED, "{}", issued.body);
    assert_eq!(issued.body["name"], "ci");
    assert_eq!(issued.body["expires_at"], "2027-02-16T11:06:40.000Z");
    let key_id = issued.body["id"].as_str().unwrap().to_owned();
    let second = issued.body["secret"].as_str().unwrap().to_owned();
    assert_eq!(status_with(&app, &second).await, StatusCode::OK);

    // The last use is recorded in the background, at most once a minute.
    let mut listed = app.get("/v1/systems/shop/keys", ADMIN_TOKEN).await;
    for _ in 0..50 {
        if listed.body.to_string().contains("last_used_at\":\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        listed = app.get("/v1/systems/shop/keys", ADMIN_TOKEN).await;
    }
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    let items = listed.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let listed_key = items.iter().find(|it| it["id"] == key_id.as_str()).unwrap();
    assert_eq!(listed_key["name"], "ci");
    assert_eq!(listed_key["revoked_at"], Value::Null);
    assert_eq!(listed_key["active"], true);
    assert!(listed_key["last_used_at"].is_string(), "{listed_key}");
    assert!(!listed.body.to_string().contains(&second));
    assert!(items.iter().all(|it| it.get("secret").is_none()));

    let revoked = delete(&app, &format!("/v1/systems/shop/keys/{key_id}")).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    assert_eq!(revoked.body["revoked_at"], "2026-11-18T11:06:40.000Z");
    assert_eq!(revoked.body["active"], false);
    let refused = app
        .http
        .get(format!("{}/v1/proposals", app.base))
        .bearer_auth(&second)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        refused.headers()["www-authenticate"],
        "Bearer realm=\"loopgate\""
    );
    // The other key still works; revoking twice changes nothing.
    assert_eq!(status_with(&app, &first).await, StatusCode::OK);
    let again = delete(&app, &format!("/v1/systems/shop/keys/{key_id}")).await;
    assert_eq!(again.body["revoked_at"], "2026-11-18T11:06:40.000Z");
    let unknown = app
        .call(
            Method::DELETE,
            "/v1/systems/shop/keys/key_nope",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    // A system's key cannot list or revoke keys.
    assert_eq!(
        app.get("/v1/systems/shop/keys", &first).await.status,
        StatusCode::FORBIDDEN
    );
    assert!(event_types(&app).await.contains(&"key.revoked".to_owned()));
}

#[tokio::test]
async fn expired_and_badly_made_credentials_are_refused() {
    let app = spawn_app().await;
    app.system("shop", "in_the_loop").await;
    let issued = app
        .post(
            "/v1/systems/shop/keys",
            ADMIN_TOKEN,
            json!({"expires_in": "PT1H"}),
        )
        .await;
    let key = issued.body["secret"].as_str().unwrap().to_owned();
    assert_eq!(status_with(&app, &key).await, StatusCode::OK);
    app.clock.advance(Duration::from_secs(3600));
    assert_eq!(status_with(&app, &key).await, StatusCode::UNAUTHORIZED);
    let listed = app.get("/v1/systems/shop/keys", ADMIN_TOKEN).await;
    let expired = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|it| it["id"] == issued.body["id"])
        .unwrap()
        .clone();
    assert_eq!(expired["active"], false, "{expired}");
    assert_eq!(expired["revoked_at"], Value::Null);
    for body in [
        json!({"expires_in": "P0D"}),
        json!({"expires_in": "forever"}),
        json!({"expires_in": "P20Y"}),
        json!({"name": "x".repeat(101)}),
        json!({"name": "line\nbreak"}),
        json!({"expires_in": "P99999999999999999999999D"}),
        json!({"expires_in": "PT-5S"}),
        json!({"name": 7}),
        json!({"secret": "mine"}),
    ] {
        let refused = app.post("/v1/systems/shop/keys", ADMIN_TOKEN, body).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            refused.body
        );
    }
    assert_eq!(
        app.get("/healthz", ADMIN_TOKEN).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn users_manage_their_own_tokens_and_nobody_elses() {
    let app = spawn_app().await;
    let ann = app.user("ann", &["reviewer"], &["ops"]).await;
    let bob = app.user("bob", &["reviewer"], &["ops"]).await;
    let ann_id = app.user_id("ann").await;
    let bob_id = app.user_id("bob").await;

    let own = app
        .post(
            &format!("/v1/users/{ann_id}/tokens"),
            &ann,
            json!({"name": "laptop"}),
        )
        .await;
    assert_eq!(own.status, StatusCode::CREATED, "{}", own.body);
    assert_eq!(own.body["name"], "laptop");
    let listed = app.get(&format!("/v1/users/{ann_id}/tokens"), &ann).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 2);
    for (method, path) in [
        (Method::GET, format!("/v1/users/{bob_id}/tokens")),
        (Method::POST, format!("/v1/users/{bob_id}/tokens")),
    ] {
        let refused = app.call(method, &path, Some(&ann), None).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}");
    }
    // Ann revokes the token she is using: the next request is refused.
    let first = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|it| it["id"] != own.body["id"])
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked = app
        .call(
            Method::DELETE,
            &format!("/v1/users/{ann_id}/tokens/{first}"),
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    assert_eq!(status_with(&app, &ann).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status_with(&app, &bob).await, StatusCode::OK);
    // Another user's token id is not found under Ann.
    let bobs = app
        .get(&format!("/v1/users/{bob_id}/tokens"), ADMIN_TOKEN)
        .await;
    let bobs_token = bobs.body["items"][0]["id"].as_str().unwrap().to_owned();
    let wrong_owner = app
        .call(
            Method::DELETE,
            &format!("/v1/users/{ann_id}/tokens/{bobs_token}"),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(wrong_owner.status, StatusCode::NOT_FOUND);
    assert_eq!(status_with(&app, &bob).await, StatusCode::OK);
}

#[tokio::test]
async fn a_user_stripped_of_every_role_mints_nothing_and_sees_no_events() {
    let app = spawn_app().await;
    let ann = app.user("ann", &["reviewer"], &["ops"]).await;
    let ann_id = app.user_id("ann").await;
    let stripped = app.patch_user(&ann_id, json!({"roles": []})).await;
    assert_eq!(stripped.status, StatusCode::OK, "{}", stripped.body);
    let mint = app
        .post(&format!("/v1/users/{ann_id}/tokens"), &ann, json!({}))
        .await;
    assert_eq!(mint.status, StatusCode::FORBIDDEN, "{}", mint.body);
    assert_eq!(
        app.get("/v1/events", &ann).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn a_password_change_may_revoke_every_token() {
    let app = spawn_app().await;
    let ann = app.user("ann", &["reviewer"], &["ops"]).await;
    let ann_id = app.user_id("ann").await;
    let changed = app
        .patch_user(
            &ann_id,
            json!({"password": "a new long password", "revoke_tokens": true}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(status_with(&app, &ann).await, StatusCode::UNAUTHORIZED);
    let tokens = app
        .get(&format!("/v1/users/{ann_id}/tokens"), ADMIN_TOKEN)
        .await;
    assert!(tokens.body["items"][0]["revoked_at"].is_string());
}

#[tokio::test]
async fn disabling_a_user_ends_their_tokens_streams_and_long_polls_at_once() {
    let app = spawn_app().await;
    let (key, ann) = app.ops_review().await;
    let ann_id = app.user_id("ann").await;
    let submitted = app
        .submit(&key, "block_card", json!({"block": true}), json!({}))
        .await;
    let id = submitted.body["id"].as_str().unwrap().to_owned();

    let long_poll = {
        let (http, url, ann) = (
            app.http.clone(),
            format!("{}/v1/proposals/{id}?wait=60s", app.base),
            ann.clone(),
        );
        tokio::spawn(async move { http.get(url).bearer_auth(ann).send().await.unwrap() })
    };
    let mut stream = app
        .http
        .get(format!("{}/v1/events", app.base))
        .bearer_auth(&ann)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let disabled = app.patch_user(&ann_id, json!({"disabled": true})).await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.body);
    assert_eq!(disabled.body["disabled"], true);

    let answered = tokio::time::timeout(Duration::from_secs(5), long_poll)
        .await
        .expect("the long-poll is answered at once")
        .unwrap();
    assert_eq!(answered.status(), StatusCode::UNAUTHORIZED);
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(chunk) = stream.chunk().await.unwrap() {
            drop(chunk);
        }
    })
    .await;
    assert!(ended.is_ok(), "the event stream ends at once");
    assert_eq!(status_with(&app, &ann).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.post(
            &format!("/v1/users/{ann_id}/tokens"),
            ADMIN_TOKEN,
            json!({})
        )
        .await
        .status,
        StatusCode::CREATED,
        "an admin may still issue one, refused until enabled"
    );

    // An admin cannot lock themself out.
    let admin_id = app.user_id("admin").await;
    let own = app.patch_user(&admin_id, json!({"disabled": true})).await;
    assert_eq!(own.status, StatusCode::UNPROCESSABLE_ENTITY);

    let enabled = app.patch_user(&ann_id, json!({"disabled": false})).await;
    assert_eq!(enabled.body["disabled"], false);
    assert_eq!(status_with(&app, &ann).await, StatusCode::OK);
    let types = event_types(&app).await;
    assert!(types.contains(&"user.disabled".to_owned()), "{types:?}");
    assert!(types.contains(&"user.enabled".to_owned()), "{types:?}");
}

#[tokio::test]
async fn streams_and_long_polls_end_when_their_token_expires() {
    let app = spawn_app().await;
    let (key, _) = app.ops_review().await;
    let ann_id = app.user_id("ann").await;
    let issued = app
        .post(
            &format!("/v1/users/{ann_id}/tokens"),
            ADMIN_TOKEN,
            json!({"expires_in": "PT1S"}),
        )
        .await;
    let token = issued.body["secret"].as_str().unwrap().to_owned();
    let submitted = app
        .submit(&key, "block_card", json!({"block": true}), json!({}))
        .await;
    let id = submitted.body["id"].as_str().unwrap().to_owned();
    let started = std::time::Instant::now();
    let long_poll = app
        .get(&format!("/v1/proposals/{id}?wait=30s"), &token)
        .await;
    assert_eq!(
        long_poll.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        long_poll.body
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // The stream opened now ends when the token expires (the clock is the
    // test's: it has not moved, so the token has a second left).
    let mut stream = app
        .http
        .get(format!("{}/v1/events", app.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = stream.chunk().await.unwrap() {
            drop(chunk);
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream outlived its token");
}
