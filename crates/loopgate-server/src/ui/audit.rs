//! The audit page: the latest checkpoint and, for a proposal, its entries
//! and proofs, verified in the browser.

use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use loopgate_core::audit::entry;
use loopgate_core::{EventKind, Role};
use serde::Deserialize;

use crate::AppState;
use crate::auth::session::Session;
use crate::http::audit;
use crate::http::extract::Path;
use crate::ui::{Nav, UiError, render};

#[derive(Deserialize)]
pub(crate) struct AuditQuery {
    #[serde(default)]
    proposal: Option<String>,
}

/// A proposal's receipt, for the page's script to verify.
pub(crate) struct ReceiptView {
    proposal: String,
    entries: Vec<ReceiptEntry>,
    checkpoint: Option<String>,
    tree_size: u64,
}

pub(crate) struct ReceiptEntry {
    index: u64,
    entry: String,
    proof: String,
    /// Empty when the entry does not parse (the page's verifier says why).
    kind: &'static str,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    nav: Nav,
    checkpoint: Option<String>,
    pubkey: String,
    query: String,
    receipt: Option<ReceiptView>,
    error: Option<String>,
}

/// `GET /ui/audit`: the latest checkpoint; with `?proposal=` that
/// proposal's entries and proofs, verified in the page.
pub(crate) async fn audit(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    Query(query): Query<AuditQuery>,
) -> Result<Response, UiError> {
    session.caller().user_with(&[Role::Auditor])?;
    let checkpoint = app.store.latest_checkpoint().await?.map(|c| c.note);
    let pubkey = app.audit.signer.verifier().to_text();
    let (receipt, error) = match query.proposal.as_deref().map(str::trim) {
        Some(id) if !id.is_empty() => {
            match audit::proposal(State(app.clone()), session.caller(), Path(id.to_owned())).await {
                Ok(axum::Json(trail)) => (
                    Some(ReceiptView {
                        proposal: trail.proposal,
                        checkpoint: trail.checkpoint,
                        tree_size: trail.tree_size,
                        entries: trail
                            .entries
                            .into_iter()
                            .map(|e| ReceiptEntry {
                                kind: entry::parse_head(e.entry.as_bytes())
                                    .and_then(|head| EventKind::parse(&head.type_))
                                    .map_or("", EventKind::as_str),
                                index: e.index,
                                proof: e.inclusion_proof.map(|p| p.join(" ")).unwrap_or_default(),
                                entry: e.entry,
                            })
                            .collect(),
                    }),
                    None,
                ),
                Err(error) => (None, Some(error.problem().detail)),
            }
        }
        _ => (None, None),
    };
    Ok(render(&AuditPage {
        nav: Nav::new(&session, "audit"),
        checkpoint,
        pubkey,
        query: query.proposal.unwrap_or_default(),
        receipt,
        error,
    })?
    .into_response())
}
