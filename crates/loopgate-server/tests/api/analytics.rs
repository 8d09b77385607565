//! `/v1/analytics/*` over a small stored history with known answers.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{ADMIN_TOKEN, TestApp, spawn_app};

const POLICIES: &str = r#"
@id("auto") @route("allow") @sample("1.0") @reviewers("qa")
permit(principal, action == Action::"flag", resource)
when { context.confidence.greaterThanOrEqual(decimal("0.9")) };
@id("review") @reviewers("ops") @approvals("2") @sla("PT1H")
permit(principal, action == Action::"flag", resource)
when { context.confidence.lessThan(decimal("0.9")) };
"#;

async fn submit(app: &TestApp, key: &str, confidence: f64, country: &str) -> String {
    let body = json!({
        "action": "flag",
        "subject": {"type": "Account", "id": "acct-1", "attributes": {"country": country}},
        "input": {}, "output": {"flag": true}, "confidence": confidence, "context": {},
    });
    let created = app.post("/v1/proposals", key, body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    created.body["id"].as_str().unwrap().to_owned()
}

/// 6 reviewed proposals (two reviewers each; `sam` rejects two), 3
/// auto-approved with a QA review each (one found wrong).
async fn history() -> TestApp {
    let app = spawn_app().await;
    let key = app.system("fraud-detector", "in_the_loop").await;
    assert_eq!(app.publish(POLICIES).await.status, StatusCode::CREATED);
    let rita = app.user("rita", &["reviewer"], &["ops", "qa"]).await;
    let sam = app.user("sam", &["reviewer"], &["ops"]).await;
    let reviewed = [
        (0.55, "DE", true),
        (0.65, "DE", true),
        (0.75, "FR", false),
        (0.8, "FR", true),
        (0.85, "DE", false),
        (0.6, "FR", true),
    ];
    for (confidence, country, sam_approves) in reviewed {
        let id = submit(&app, &key, confidence, country).await;
        app.clock.advance(Duration::from_secs(60));
        let task = app.task_of(&rita, &id).await;
        assert_eq!(
            app.decide(&rita, &task, "approve").await.status,
            StatusCode::OK
        );
        app.clock.advance(Duration::from_secs(30));
        let task = app.task_of(&sam, &id).await;
        let verdict = if sam_approves { "approve" } else { "reject" };
        assert_eq!(
            app.decide(&sam, &task, verdict).await.status,
            StatusCode::OK
        );
    }
    for (confidence, wrong) in [(0.95, false), (0.97, true), (0.99, false)] {
        let id = submit(&app, &key, confidence, "DE").await;
        let task = app.task_of(&rita, &id).await;
        let verdict = if wrong { "reject" } else { "approve" };
        assert_eq!(
            app.decide(&rita, &task, verdict).await.status,
            StatusCode::OK
        );
    }
    app
}

fn without_ids(mut report: Value) -> Value {
    if let Some(ids) = report
        .get_mut("disagreements")
        .and_then(Value::as_array_mut)
    {
        for id in ids {
            *id = json!("prp_…");
        }
    }
    report
}

#[tokio::test]
async fn every_report_over_a_known_history() {
    let app = history().await;
    for name in [
        "overview",
        "calibration",
        "qa",
        "thresholds",
        "fairness",
        "agreement",
    ] {
        let extra = if name == "fairness" {
            "&attribute=country&min_group=1"
        } else {
            ""
        };
        let report = app
            .get(
                &format!("/v1/analytics/{name}?system=fraud-detector&since=1d{extra}"),
                ADMIN_TOKEN,
            )
            .await;
        assert_eq!(report.status, StatusCode::OK, "{name}: {}", report.body);
        insta::assert_json_snapshot!(format!("analytics_{name}"), without_ids(report.body));
    }
}

#[tokio::test]
async fn analytics_refuse_what_they_cannot_answer() {
    let app = history().await;
    let reviewer = app.user("rev", &["reviewer"], &["ops"]).await;
    let forbidden = app
        .get("/v1/analytics/overview?system=fraud-detector", &reviewer)
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    let auditor = app.user("aud", &["auditor"], &[]).await;
    let cases = [
        (
            "/v1/analytics/overview",
            "name the system: `?system=fraud-detector`",
        ),
        (
            "/v1/analytics/overview?system=nope",
            "system `nope` does not exist",
        ),
        (
            "/v1/analytics/overview?system=fraud-detector&since=forever",
            "`since` must be a period such as `30d`, `12h` or `P7D` (at most 9999 days), not `forever`",
        ),
        (
            "/v1/analytics/overview?system=fraud-detector&since=99999999d",
            "`since` must be a period such as `30d`, `12h` or `P7D` (at most 9999 days), not `99999999d`",
        ),
        (
            "/v1/analytics/thresholds?system=fraud-detector&target=2",
            "`target` must be a fraction from 0 to 1, not 2",
        ),
    ];
    for (path, detail) in cases {
        let refused = app.get(path, &auditor).await;
        assert!(
            refused.status.is_client_error(),
            "{path}: {}",
            refused.status
        );
        assert_eq!(refused.body["detail"], detail, "{path}");
    }
    // Fairness without `attribute`: the first attribute the proposals carry.
    let fairness = app
        .get("/v1/analytics/fairness?system=fraud-detector", &auditor)
        .await;
    assert_eq!(fairness.status, StatusCode::OK, "{}", fairness.body);
    assert_eq!(fairness.body["attribute"], "country");
    // A system without history answers with empty figures, not errors.
    app.system("quiet", "in_the_loop").await;
    for name in [
        "overview",
        "calibration",
        "qa",
        "thresholds",
        "agreement",
        "fairness",
    ] {
        let empty = app
            .get(&format!("/v1/analytics/{name}?system=quiet"), &auditor)
            .await;
        assert_eq!(empty.status, StatusCode::OK, "{name}: {}", empty.body);
    }
    let fairness = app
        .get(
            "/v1/analytics/fairness?system=quiet&attribute=country",
            &auditor,
        )
        .await;
    assert_eq!(fairness.status, StatusCode::OK);
    assert_eq!(
        fairness.body["ai"]["demographic_parity_difference"],
        Value::Null
    );
}

#[tokio::test]
async fn labels_export_pairs_the_ai_output_with_the_decided_one() {
    let app = history().await;
    let key = app
        .post("/v1/systems/fraud-detector/keys", ADMIN_TOKEN, json!({}))
        .await;
    let key = key.body["secret"].as_str().unwrap().to_owned();
    let rita = app.user("rita2", &["reviewer"], &["ops"]).await;
    let sam = app.user("sam2", &["reviewer"], &["ops"]).await;
    let id = submit(&app, &key, 0.7, "NL").await;
    let task = app.task_of(&rita, &id).await;
    let body = json!({"verdict": "modify", "rationale": "partial", "output": {"flag": false},
                      "labels": {"reason": "false_positive"}, "seen_digest": task["digest"]});
    let path = format!("/v1/tasks/{}/decision", task["id"].as_str().unwrap());
    assert_eq!(app.post(&path, &rita, body).await.status, StatusCode::OK);
    let task = app.task_of(&sam, &id).await;
    assert_eq!(
        app.decide(&sam, &task, "approve").await.status,
        StatusCode::OK
    );
    // An erased proposal leaves the export.
    let erased = submit(&app, &key, 0.7, "NL").await;
    let task = app.task_of(&rita, &erased).await;
    app.decide(&rita, &task, "reject").await;
    let gone = app
        .post(
            &format!("/v1/proposals/{erased}/erase"),
            ADMIN_TOKEN,
            json!({"reason": "gdpr"}),
        )
        .await;
    assert_eq!(gone.status, StatusCode::OK, "{}", gone.body);

    let response = app
        .http
        .get(format!(
            "{}/v1/exports/labels?system=fraud-detector&since=1d",
            app.base
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 10, "9 from the history and the modified one");
    assert!(lines.iter().all(|l| l["proposal"] != erased.as_str()));
    let modified = lines.iter().find(|l| l["proposal"] == id.as_str()).unwrap();
    assert_eq!(modified["ai_output"], json!({"flag": true}));
    assert_eq!(modified["output"], json!({"flag": false}));
    assert_eq!(modified["modified"], true);
    assert_eq!(modified["attributes"], json!({"country": "NL"}));
    assert_eq!(modified["decisions"][0]["verdict"], "modify");
    assert_eq!(
        modified["decisions"][0]["labels"],
        json!({"reason": "false_positive"})
    );
    assert_eq!(modified["decisions"][0]["rationale"], "partial");
    let reviewer = app.user("rev", &["reviewer"], &["ops"]).await;
    let forbidden = app
        .get("/v1/exports/labels?system=fraud-detector", &reviewer)
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
}
