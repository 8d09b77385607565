//! Email decision links (`/ui/links/{token}`): a GET shows the task and a
//! form and never decides (mail scanners fetch links); only the form's POST
//! decides, once, as the user the link was made for, on the digest the
//! email showed. A link that is unknown, used, expired, stale or for a task
//! no longer open says so and links to the task.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use loopgate_core::EventKind;
use loopgate_proto as proto;
use loopgate_store::{DecisionLink, Principal, UserRecord};
use serde::Deserialize;

use super::Summary;
use crate::AppState;
use crate::auth::{Caller, Via};
use crate::http::extract::{JsonBody, Path};
use crate::secrets::hash_secret;
use crate::ui::Form;
use crate::ui::assets;

#[derive(Template)]
#[template(path = "decision_link.html")]
struct LinkPage {
    title: String,
    message: Option<String>,
    done: bool,
    lines: Vec<(String, String)>,
    can_decide: bool,
    username: String,
    verdict: String,
    rationale_required: bool,
    task_link: String,
    version: &'static str,
}

impl LinkPage {
    fn new(title: &str, task_link: String) -> LinkPage {
        LinkPage {
            title: title.to_owned(),
            message: None,
            done: false,
            lines: Vec::new(),
            can_decide: false,
            username: String::new(),
            verdict: String::new(),
            rationale_required: false,
            task_link,
            version: assets::version(),
        }
    }

    fn respond(self, status: StatusCode) -> Response {
        match self.render() {
            Ok(html) => (
                status,
                [(axum::http::header::CACHE_CONTROL, "no-store")],
                axum::response::Html(html),
            )
                .into_response(),
            Err(error) => {
                tracing::error!(%error, "the decision link page could not be rendered");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct LinkQuery {
    verdict: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct LinkForm {
    verdict: String,
    #[serde(default)]
    rationale: String,
}

/// What a link is good for right now.
enum Checked {
    Usable(Box<Usable>),
    Refused(Box<LinkPage>, StatusCode),
}

/// A link that can decide, with what it decides.
struct Usable {
    link: DecisionLink,
    user: UserRecord,
    summary: Summary,
}

/// `lgl_` and 64 hex digits; anything else is not looked up.
fn well_formed(token: &str) -> bool {
    token
        .strip_prefix("lgl_")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

async fn check(app: &AppState, token: &str) -> Checked {
    let refused = |title: &str, message: String, link: String, status| {
        let mut page = LinkPage::new(title, link);
        page.message = Some(message);
        Checked::Refused(Box::new(page), status)
    };
    let home = format!("{}/ui/queue", super::base_url(app));
    if !well_formed(token) {
        return refused(
            "Link not valid",
            "This decision link is not one loopgate made.".to_owned(),
            home,
            StatusCode::NOT_FOUND,
        );
    }
    let link = match app.store.decision_link(&hash_secret(token)).await {
        Ok(Some(link)) => link,
        Ok(None) => {
            return refused(
                "Link not valid",
                "This decision link is not one loopgate made (or it was removed).".to_owned(),
                home,
                StatusCode::NOT_FOUND,
            );
        }
        Err(error) => {
            tracing::error!(%error, "a decision link could not be read");
            return refused(
                "Try again",
                "loopgate could not read this link just now.".to_owned(),
                home,
                StatusCode::SERVICE_UNAVAILABLE,
            );
        }
    };
    let task_link = super::task_link(app, &link.task);
    let now = app.clock.now();
    if let Some(used) = link.used_at {
        return refused(
            "Link already used",
            format!(
                "This link was used at {}; each link decides once.",
                used.to_rfc3339()
            ),
            task_link,
            StatusCode::GONE,
        );
    }
    if link.expires_at <= now {
        return refused(
            "Link expired",
            format!(
                "This link expired at {}. Decide on the task page instead.",
                link.expires_at.to_rfc3339()
            ),
            task_link,
            StatusCode::GONE,
        );
    }
    let user = match app.store.user(&link.user).await {
        Ok(Some(user)) if user.disabled_at.is_none() => user,
        _ => {
            return refused(
                "Link not valid",
                "The user this link was made for cannot decide any more.".to_owned(),
                task_link,
                StatusCode::FORBIDDEN,
            );
        }
    };
    let summary = match Summary::load(app, &link.task, EventKind::TaskCreated).await {
        Ok(Some(summary)) => summary,
        _ => {
            return refused(
                "Task not found",
                "The task of this link no longer exists.".to_owned(),
                task_link,
                StatusCode::NOT_FOUND,
            );
        }
    };
    if !summary.open {
        let mut page = LinkPage::new("Task no longer open", task_link);
        page.message = Some(match &summary.outcome {
            Some(outcome) => format!("Nothing to decide: {outcome}."),
            None => "Nothing to decide: the task is no longer open.".to_owned(),
        });
        return Checked::Refused(Box::new(page), StatusCode::CONFLICT);
    }
    if summary.digest != link.digest {
        let mut page = LinkPage::new("The proposal changed", task_link);
        page.message = Some(
            "The proposal changed since the email was sent, so this link cannot decide it. It now reads as below; decide on the task page."
                .to_owned(),
        );
        page.lines = summary.lines();
        return Checked::Refused(Box::new(page), StatusCode::CONFLICT);
    }
    Checked::Usable(Box::new(Usable {
        link,
        user,
        summary,
    }))
}

fn form_page(user: &UserRecord, summary: &Summary, verdict: &str) -> LinkPage {
    let mut page = LinkPage::new(&summary.title(), summary.link.clone());
    page.lines = summary.lines();
    page.can_decide = true;
    page.username = user.username.clone();
    page.verdict = verdict.to_owned();
    page.rationale_required = summary.rationale_required;
    page
}

/// `GET /ui/links/{token}`: the confirmation page (decides nothing).
pub(crate) async fn page(
    State(app): State<AppState>,
    Path(token): Path<String>,
    Query(query): Query<LinkQuery>,
) -> Response {
    match check(&app, &token).await {
        Checked::Refused(page, status) => page.respond(status),
        Checked::Usable(usable) => {
            let Usable { user, summary, .. } = *usable;
            let verdict = match query.verdict.as_deref() {
                Some("approve") => "approve",
                Some("reject") => "reject",
                _ => "",
            };
            form_page(&user, &summary, verdict).respond(StatusCode::OK)
        }
    }
}

/// `POST /ui/links/{token}`: decides, once.
pub(crate) async fn decide(
    State(app): State<AppState>,
    Path(token): Path<String>,
    Form(form): Form<LinkForm>,
) -> Response {
    let (link, user, summary) = match check(&app, &token).await {
        Checked::Refused(page, status) => return page.respond(status),
        Checked::Usable(usable) => {
            let Usable {
                link,
                user,
                summary,
            } = *usable;
            (link, user, summary)
        }
    };
    let verdict = match form.verdict.as_str() {
        "approve" => proto::Verdict::Approve,
        "reject" => proto::Verdict::Reject,
        _ => {
            let mut page = form_page(&user, &summary, "");
            page.message = Some("Choose approve or reject.".to_owned());
            return page.respond(StatusCode::UNPROCESSABLE_ENTITY);
        }
    };
    let rationale = Some(form.rationale.trim().to_owned()).filter(|r| !r.is_empty());
    let caller = Caller(
        Principal::User(user.clone()),
        Via::Delegated(format!("link:{}", &link.hash[..16])),
    );
    let request = proto::DecisionRequest {
        verdict,
        rationale,
        output: None,
        labels: None,
        message: None,
        grant: None,
        seen_digest: link.digest.as_str().to_owned(),
    };
    let decided = crate::http::tasks::decide(
        State(app.clone()),
        caller,
        Path(link.task.as_str().to_owned()),
        JsonBody(request),
    )
    .await;
    match decided {
        Ok(_) => {
            // Decided: the link is spent. (Two POSTs at once cannot both
            // decide: the second is the same reviewer again, refused.)
            if let Err(error) = app
                .store
                .use_decision_link(&link.hash, app.clock.now())
                .await
            {
                tracing::warn!(%error, "a used decision link could not be marked");
            }
            let mut page = LinkPage::new("Decision recorded", summary.link.clone());
            page.done = true;
            page.message = Some(format!(
                "{} as {}. Thank you.",
                match verdict {
                    proto::Verdict::Approve => "Approved",
                    _ => "Rejected",
                },
                user.username
            ));
            page.respond(StatusCode::OK)
        }
        Err(error) => {
            let status =
                StatusCode::from_u16(error.code().status()).unwrap_or(StatusCode::CONFLICT);
            let detail = error.problem().detail;
            let mut page = form_page(&user, &summary, form.verdict.as_str());
            page.message = Some(format!("Nothing was decided: {detail}"));
            page.respond(status)
        }
    }
}
