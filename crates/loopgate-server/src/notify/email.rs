//! Email over SMTP (`lettre`): a plain-text and an HTML part per message,
//! one message per task or one per digest, with decision links for members.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use loopgate_core::{EventKind, Timestamp};
use loopgate_store::{DecisionLink, DueNotification};

use super::{Outcome, Summary, base_url, escape_html};
use crate::AppState;

/// The SMTP transport and the sender.
pub(crate) struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// `smtp://[user:pass@]host:port[?tls=required]` or `smtps://…`.
    pub(crate) fn new(url: &str, from: Option<&str>) -> Result<Mailer, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("`smtp_url` is not usable: {e}"))?
            .timeout(Some(Duration::from_secs(30)))
            .build();
        let from = from
            .unwrap_or("loopgate <loopgate@localhost>")
            .parse()
            .map_err(|e| format!("`email_from` is not an address: {e}"))?;
        Ok(Mailer { transport, from })
    }
}

/// Whether `address` is an email address loopgate can send to.
pub(crate) fn check_address(address: &str) -> Result<(), String> {
    if 254 < address.len() {
        return Err("an email address has at most 254 characters".to_owned());
    }
    address
        .parse::<lettre::Address>()
        .map(|_| ())
        .map_err(|_| format!("`{address}` is not an email address"))
}

/// One task's part of a message.
struct Part {
    summary: Summary,
    /// The decision link (approve, reject), when the message has one.
    decide: Option<String>,
}

/// Sends one message (or one digest) to `batch`'s target.
pub(crate) async fn send(app: &AppState, mailer: &Mailer, batch: &[DueNotification]) -> Outcome {
    let Some(first) = batch.first() else {
        return Outcome::Dropped("nothing to send".to_owned());
    };
    let to: Mailbox = match first.target.parse() {
        Ok(to) => to,
        Err(_) => return Outcome::Dropped(format!("`{}` is not an email address", first.target)),
    };
    let mut parts = Vec::new();
    for due in batch {
        let summary = match Summary::load(app, &due.task, due.kind).await {
            Ok(Some(summary)) => summary,
            Ok(None) => continue,
            Err(error) => {
                return Outcome::Failed {
                    status: None,
                    error: format!("the message could not be built: {error}"),
                };
            }
        };
        let decide = match link_for(app, due, &summary).await {
            Ok(link) => link,
            Err(error) => {
                return Outcome::Failed {
                    status: None,
                    error: format!("the decision link could not be stored: {error}"),
                };
            }
        };
        parts.push(Part { summary, decide });
    }
    if parts.is_empty() {
        return Outcome::Dropped("the task no longer exists".to_owned());
    }
    let subject = match &parts[..] {
        [one] => one.summary.title(),
        many => format!("{} loopgate reviews for {}", many.len(), first.group),
    };
    let message = Message::builder()
        .from(mailer.from.clone())
        .to(to)
        .subject(subject)
        .multipart(MultiPart::alternative_plain_html(
            text(&parts, app),
            html(&parts, app),
        ));
    let message = match message {
        Ok(message) => message,
        Err(error) => return Outcome::Dropped(format!("the message could not be built: {error}")),
    };
    match mailer.transport.send(message).await {
        Ok(response) => Outcome::Sent {
            status: code(&response.code().to_string()),
            reference: None,
        },
        Err(error) => {
            let status = error.status().and_then(|c| code(&c.to_string()));
            if error.is_permanent() {
                Outcome::Dropped(format!("the mail server refused the message: {error}"))
            } else {
                Outcome::Failed {
                    status,
                    error: format!(
                        "the mail server could not be reached or refused for now: {error}"
                    ),
                }
            }
        }
    }
}

fn code(text: &str) -> Option<u16> {
    text.get(..3).and_then(|c| c.parse().ok())
}

/// A new single-use decision link for a member's message about a task they
/// can still decide (with `public_url` set and links on).
async fn link_for(
    app: &AppState,
    due: &DueNotification,
    summary: &Summary,
) -> Result<Option<String>, loopgate_store::StoreError> {
    let wanted = app.config.email_decision_links
        && app.config.public_url.is_some()
        && summary.open
        && due.kind != EventKind::TaskExpired;
    let Some(user) = due.user.clone().filter(|_| wanted) else {
        return Ok(None);
    };
    let Ok(token) = crate::secrets::new_secret("lgl_") else {
        return Ok(None);
    };
    let now = app.clock.now();
    let ttl = i64::try_from(app.config.decision_link_ttl.as_millis()).unwrap_or(i64::MAX);
    app.store
        .create_decision_link(DecisionLink {
            hash: crate::secrets::hash_secret(&token),
            user,
            task: due.task.clone(),
            digest: summary.digest.clone(),
            created_at: now,
            expires_at: Timestamp::from_millis(now.millis().saturating_add(ttl)),
            used_at: None,
        })
        .await?;
    Ok(Some(format!("{}/ui/links/{token}", base_url(app))))
}

fn text(parts: &[Part], app: &AppState) -> String {
    let mut out = String::new();
    for part in parts {
        let s = &part.summary;
        out.push_str(&s.title());
        out.push_str("\n\n");
        for (key, value) in s.lines() {
            out.push_str(&format!("{key}: {value}\n"));
        }
        if let Some(link) = &part.decide {
            out.push_str(&format!(
                "\nApprove: {link}?verdict=approve\nReject: {link}?verdict=reject\n(Each opens a page to confirm; the link works once, for you only.)\n"
            ));
        }
        out.push_str(&format!("\nOpen in loopgate: {}\n\n", s.link));
    }
    if app.config.public_url.is_none() {
        out.push_str("(Links are relative: the server has no `public_url`.)\n");
    }
    out.push_str("-- \nloopgate · change what you receive on your account page.\n");
    out
}

fn html(parts: &[Part], _app: &AppState) -> String {
    let mut out =
        String::from("<!doctype html><html><body style=\"font-family:sans-serif;color:#1a1a1a\">");
    for part in parts {
        let s = &part.summary;
        out.push_str(&format!(
            "<h2 style=\"font-size:18px\">{}</h2>",
            escape_html(&s.title())
        ));
        out.push_str("<table style=\"border-collapse:collapse\">");
        for (key, value) in s.lines() {
            out.push_str(&format!(
                "<tr><th style=\"text-align:left;padding:2px 12px 2px 0;vertical-align:top\">{}</th><td>{}</td></tr>",
                escape_html(&key),
                escape_html(&value)
            ));
        }
        out.push_str("</table><p>");
        if let Some(link) = &part.decide {
            let link = escape_html(link);
            out.push_str(&format!(
                "<a href=\"{link}?verdict=approve\" style=\"background:#1f7a3a;color:#fff;padding:6px 12px;text-decoration:none\">Approve…</a> \
                 <a href=\"{link}?verdict=reject\" style=\"background:#a32020;color:#fff;padding:6px 12px;text-decoration:none\">Reject…</a> "
            ));
        }
        out.push_str(&format!(
            "<a href=\"{}\">Open in loopgate</a></p>",
            escape_html(&s.link)
        ));
    }
    out.push_str(
        "<p style=\"color:#666;font-size:12px\">Decision links open a page to confirm; each works once, for you only.</p></body></html>",
    );
    out
}
