//! Microsoft Teams: an Adaptive Card (1.5) per message, posted to the
//! group's workflow URL (Power Automate's "When a Teams webhook request is
//! received"), through the same fence as webhooks.

use loopgate_store::DueNotification;
use serde_json::{Value, json};

use super::{Outcome, Summary, clip};
use crate::AppState;

/// The message body: one Adaptive Card attachment.
pub(crate) fn card(summary: &Summary) -> Value {
    let facts: Vec<Value> = summary
        .lines()
        .into_iter()
        .map(|(title, value)| json!({"title": clip(&title, 60), "value": clip(&value, 500)}))
        .collect();
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.5",
                "body": [
                    {"type": "TextBlock", "text": clip(&summary.title(), 200), "weight": "Bolder",
                     "size": "Medium", "wrap": true},
                    {"type": "FactSet", "facts": facts},
                ],
                "actions": [
                    {"type": "Action.OpenUrl", "title": "Open in loopgate", "url": summary.link},
                ],
            },
        }],
    })
}

/// Posts the card to the group's workflow.
pub(crate) async fn send(app: &AppState, http: &reqwest::Client, due: &DueNotification) -> Outcome {
    let url = match app.store.group_notifications().await {
        Ok(groups) => groups
            .into_iter()
            .find(|g| g.group == due.group)
            .and_then(|g| g.channels.teams_webhook),
        Err(error) => {
            return Outcome::Failed {
                status: None,
                error: format!("the group's settings could not be read: {error}"),
            };
        }
    };
    let Some(url) = url else {
        return Outcome::Dropped("the group has no Teams workflow any more".to_owned());
    };
    let summary = match Summary::load(app, &due.task, due.kind).await {
        Ok(Some(summary)) => summary,
        Ok(None) => return Outcome::Dropped("the task no longer exists".to_owned()),
        Err(error) => {
            return Outcome::Failed {
                status: None,
                error: format!("the message could not be built: {error}"),
            };
        }
    };
    let Ok(url) = reqwest::Url::parse(&url) else {
        return Outcome::Dropped("the Teams workflow URL is not valid".to_owned());
    };
    if let Some(refused) = app.fence.refuses_literal(&url) {
        return Outcome::Dropped(format!("refused: {refused}"));
    }
    match http.post(url).json(&card(&summary)).send().await {
        Ok(response) if response.status().is_success() => Outcome::Sent {
            status: Some(response.status().as_u16()),
            reference: None,
        },
        Ok(response) => Outcome::Failed {
            status: Some(response.status().as_u16()),
            error: format!("the workflow answered HTTP {}", response.status().as_u16()),
        },
        Err(error) => Outcome::Failed {
            status: None,
            error: crate::webhooks::describe(error, app.config.webhook_timeout),
        },
    }
}
