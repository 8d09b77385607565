//! `/v1/audit/*`: the public key, checkpoints, C2SP tlog-tiles, entries and
//! proofs; and `/v1/proposals/{id}/audit`, a proposal's trail with proofs.
//!
//! Reads need an auditor or admin token unless `audit_public` is set; the
//! public key is always public. Nothing here can change an entry.

use axum::Json;
use axum::extract::{FromRequestParts as _, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use loopgate_core::Role;
use loopgate_core::audit::entry::salt_text;
use loopgate_core::audit::tile::{self, TileId, WIDTH};
use loopgate_proto as proto;
use serde::Deserialize;

use crate::AppState;
use crate::auth::Caller;
use crate::http::error::ApiError;
use crate::http::extract::{Params, Path};

/// Most entries per `GET /v1/audit/entries`.
const MAX_ENTRIES: u64 = 1000;

async fn check_reader(app: &AppState, parts: &mut Parts) -> Result<(), ApiError> {
    if app.config.audit_public {
        return Ok(());
    }
    let caller = Caller::from_request_parts(parts, app).await?;
    caller.user_with(&[Role::Auditor])?;
    Ok(())
}

fn text(body: String, cache: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

/// The verifier key: `<origin>+<key id>+<base64 Ed25519 key>`.
#[utoipa::path(get, path = "/v1/audit/pubkey", tag = "audit", security(()),
    responses((status = 200, description = "the C2SP signed-note verifier key", content_type = "text/plain")))]
pub async fn pubkey(State(app): State<AppState>) -> Response {
    text(
        format!("{}\n", app.audit.signer.verifier().to_text()),
        "public, max-age=86400",
    )
}

/// The newest signed checkpoint (C2SP tlog-checkpoint).
#[utoipa::path(get, path = "/v1/audit/checkpoint", tag = "audit",
    responses((status = 200, description = "a signed note", content_type = "text/plain"), (status = 404, body = proto::Problem)))]
pub async fn checkpoint(
    State(app): State<AppState>,
    mut parts: Parts,
) -> Result<Response, ApiError> {
    check_reader(&app, &mut parts).await?;
    let latest = app.store.latest_checkpoint().await?.ok_or_else(|| {
        ApiError::new(
            proto::ErrorCode::NotFound,
            "no checkpoint has been issued yet",
        )
        .help("POST /v1/audit/checkpoint issues one now")
    })?;
    Ok(text(latest.note, "no-store"))
}

/// Sequences every queued event and signs a checkpoint now.
#[utoipa::path(post, path = "/v1/audit/checkpoint", tag = "audit",
    responses((status = 201, description = "the new signed note", content_type = "text/plain")))]
pub async fn issue(State(app): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.user_with(&[Role::Auditor])?;
    let latest = crate::audit::sequence_and_sign(&app, true)
        .await?
        .ok_or_else(|| ApiError::internal(&"no checkpoint after signing"))?;
    let mut response = text(latest.note, "no-store");
    *response.status_mut() = StatusCode::CREATED;
    Ok(response)
}

/// Page of `GET /v1/audit/checkpoints`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CheckpointsQuery {
    /// Only checkpoints larger than this size.
    #[serde(default)]
    #[param(minimum = 0)]
    pub after: i64,
}

/// Every stored checkpoint, smallest first, 1000 a page: what an auditor
/// needs to check that the log only ever grew.
#[utoipa::path(get, path = "/v1/audit/checkpoints", tag = "audit", params(CheckpointsQuery),
    responses((status = 200, body = proto::AuditCheckpoints)))]
pub async fn checkpoints(
    State(app): State<AppState>,
    Params(query): Params<CheckpointsQuery>,
    mut parts: Parts,
) -> Result<Json<proto::AuditCheckpoints>, ApiError> {
    check_reader(&app, &mut parts).await?;
    const PAGE: u32 = 1000;
    let after = position("after", query.after)?;
    let records = app.store.checkpoints(after, PAGE).await?;
    let next_after = (records.len() == PAGE as usize)
        .then(|| records.last().map(|c| c.size))
        .flatten();
    let items = records
        .into_iter()
        .map(|c| proto::AuditCheckpoint {
            size: c.size,
            time: c.time.to_rfc3339(),
            note: c.note,
        })
        .collect();
    Ok(Json(proto::AuditCheckpoints { items, next_after }))
}

/// A C2SP tlog-tiles hash tile (`<L>/<N>[.p/<W>]`) or entry bundle
/// (`entries/<N>[.p/<W>]`).
#[utoipa::path(get, path = "/v1/audit/tile/{path}", tag = "audit", params(("path" = String, Path)),
    responses((status = 200, description = "tile bytes", content_type = "application/octet-stream"), (status = 404, body = proto::Problem)))]
pub async fn tile(
    State(app): State<AppState>,
    Path(path): Path<String>,
    mut parts: Parts,
) -> Result<Response, ApiError> {
    check_reader(&app, &mut parts).await?;
    let id = TileId::parse(&path).ok_or_else(|| ApiError::not_found("tile", &path))?;
    let missing = || ApiError::not_found("tile", &path);
    let bytes = match id.level {
        Some(level) => {
            let stored = app.store.tile(level, id.index).await?.ok_or_else(missing)?;
            let wanted = id
                .width
                .checked_mul(32)
                .and_then(|it| usize::try_from(it).ok())
                .ok_or_else(missing)?;
            stored.get(..wanted).ok_or_else(missing)?.to_vec()
        }
        None => {
            let start = id.index.checked_mul(WIDTH).ok_or_else(missing)?;
            let end = start.checked_add(id.width).ok_or_else(missing)?;
            let head = app.store.tree_head().await?;
            if end > head.size {
                return Err(missing());
            }
            let entries = app.store.entries(start, start + id.width).await?;
            let mut bundle = Vec::new();
            for entry in &entries {
                tile::push_bundle_entry(&mut bundle, entry)
                    .map_err(|error| ApiError::internal(&error))?;
            }
            bundle
        }
    };
    let cache = if id.width == WIDTH {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=3600"
    };
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    Ok(response)
}

/// Range of `GET /v1/audit/entries`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EntriesQuery {
    /// First index (inclusive).
    #[param(minimum = 0)]
    pub start: i64,
    /// Last index (exclusive). At most 1000 entries come back, and none
    /// past the log's end (nor any when `end` is not after `start`).
    #[param(minimum = 0)]
    pub end: i64,
}

/// Entries `[start, end)`, as the canonical JSON text that was hashed.
#[utoipa::path(get, path = "/v1/audit/entries", tag = "audit", params(EntriesQuery),
    responses((status = 200, body = proto::AuditEntries), (status = 422, body = proto::Problem)))]
pub async fn entries(
    State(app): State<AppState>,
    Params(query): Params<EntriesQuery>,
    mut parts: Parts,
) -> Result<Json<proto::AuditEntries>, ApiError> {
    check_reader(&app, &mut parts).await?;
    let start = position("start", query.start)?;
    let end = position("end", query.end)?
        .min(start.saturating_add(MAX_ENTRIES))
        .max(start);
    // What the caller wrote before is in the log (PostgreSQL sequences later).
    app.store.settle_log().await?;
    let entries = match start < end {
        true => app.store.entries(start, end).await?,
        false => Vec::new(),
    };
    let items = entries
        .into_iter()
        .zip(start..)
        .map(|(entry, index)| proto::AuditEntry {
            index,
            entry: String::from_utf8_lossy(&entry).into_owned(),
            inclusion_proof: None,
        })
        .collect();
    Ok(Json(proto::AuditEntries { items }))
}

/// Query of the inclusion proof.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InclusionQuery {
    /// Leaf index (404 when the tree has no such entry).
    #[param(minimum = 0)]
    pub index: i64,
    /// Tree size (a checkpoint's); defaults to the newest checkpoint's (404
    /// past the log's end).
    #[param(minimum = 1)]
    pub size: Option<i64>,
}

/// The RFC 9162 inclusion proof of an entry.
#[utoipa::path(get, path = "/v1/audit/proof/inclusion", tag = "audit", params(InclusionQuery),
    responses((status = 200, body = proto::InclusionProof), (status = 422, body = proto::Problem)))]
pub async fn inclusion(
    State(app): State<AppState>,
    Params(query): Params<InclusionQuery>,
    mut parts: Parts,
) -> Result<Json<proto::InclusionProof>, ApiError> {
    check_reader(&app, &mut parts).await?;
    let index = position("index", query.index)?;
    let size = match query.size {
        Some(size) => within_log(&app, "size", size).await?,
        None => latest_size(&app).await?,
    };
    if index >= size {
        return Err(ApiError::new(
            proto::ErrorCode::NotFound,
            format!("the tree of size {size} has no entry {index}"),
        ));
    }
    let proofs = app.store.inclusion_proofs(vec![index], size).await?;
    let proof = proofs.into_iter().next().unwrap_or_default();
    Ok(Json(proto::InclusionProof {
        index,
        size,
        proof: encode(&proof),
    }))
}

/// Query of the consistency proof.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyQuery {
    /// The older tree size (404 when larger than `to`).
    #[param(minimum = 1)]
    pub from: i64,
    /// The newer tree size; defaults to the newest checkpoint's (404 past
    /// the log's end).
    #[param(minimum = 1)]
    pub to: Option<i64>,
}

/// The RFC 9162 consistency proof between two tree sizes.
#[utoipa::path(get, path = "/v1/audit/proof/consistency", tag = "audit", params(ConsistencyQuery),
    responses((status = 200, body = proto::ConsistencyProof), (status = 422, body = proto::Problem)))]
pub async fn consistency(
    State(app): State<AppState>,
    Params(query): Params<ConsistencyQuery>,
    mut parts: Parts,
) -> Result<Json<proto::ConsistencyProof>, ApiError> {
    check_reader(&app, &mut parts).await?;
    let to = match query.to {
        Some(to) => within_log(&app, "to", to).await?,
        None => latest_size(&app).await?,
    };
    let from = position("from", query.from)?;
    if from == 0 {
        return Err(ApiError::invalid("`from` must be at least 1"));
    }
    if from > to {
        return Err(ApiError::new(
            proto::ErrorCode::NotFound,
            format!("no consistency proof leads from size {from} to the smaller size {to}"),
        ));
    }
    let proof = app.store.consistency_proof(from, to).await?;
    Ok(Json(proto::ConsistencyProof {
        from,
        to,
        proof: encode(&proof),
    }))
}

/// A position or size from the query: never negative (422); numbers
/// beyond 63 bits are refused by the query parser.
fn position(name: &str, value: i64) -> Result<u64, ApiError> {
    u64::try_from(value)
        .map_err(|_| ApiError::invalid(format!("`{name}` must not be negative, not {value}")))
}

/// A tree size: 404 past the log's end (where nothing can be read or
/// proven yet).
async fn within_log(app: &AppState, name: &str, value: i64) -> Result<u64, ApiError> {
    let value = position(name, value)?;
    if value == 0 {
        return Err(ApiError::invalid(format!("`{name}` must be at least 1")));
    }
    let size = app.store.tree_head().await?.size;
    if size < value {
        return Err(ApiError::new(
            proto::ErrorCode::NotFound,
            format!("`{name}` {value} is past the log's end ({size} entries)"),
        ));
    }
    Ok(value)
}

async fn latest_size(app: &AppState) -> Result<u64, ApiError> {
    match app.store.latest_checkpoint().await? {
        Some(checkpoint) => Ok(checkpoint.size),
        None => Err(ApiError::invalid(
            "no checkpoint has been issued yet; pass the size",
        )),
    }
}

fn encode(proof: &[loopgate_core::audit::Hash]) -> Vec<String> {
    proof.iter().map(|hash| BASE64.encode(hash)).collect()
}

/// A proposal's audit trail: its entries with inclusion proofs to the
/// newest checkpoint, and its salt, so that its digest and salted hashes
/// can be recomputed from the payload.
#[utoipa::path(get, path = "/v1/proposals/{id}/audit", tag = "audit", params(("id" = String, Path)),
    responses((status = 200, body = proto::ProposalAudit), (status = 404, body = proto::Problem)))]
pub async fn proposal(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<proto::ProposalAudit>, ApiError> {
    let viewer = crate::http::proposals::Viewer::of(&caller)?;
    let (id, record) = crate::http::proposals::load(&app, &id).await?;
    viewer.check_can_read(&app, &record).await?;
    app.store.settle_log().await?;
    let checkpoint = app.store.latest_checkpoint().await?;
    let entries = app.store.subject_entries(id.as_str()).await?;
    let size = checkpoint.as_ref().map_or(0, |c| c.size);
    let covered: Vec<u64> = entries
        .iter()
        .map(|(index, _)| *index)
        .filter(|index| *index < size)
        .collect();
    let mut proofs = if covered.is_empty() {
        Vec::new()
    } else {
        app.store.inclusion_proofs(covered, size).await?
    }
    .into_iter();
    let items = entries
        .into_iter()
        .map(|(index, entry)| proto::AuditEntry {
            index,
            entry: String::from_utf8_lossy(&entry).into_owned(),
            inclusion_proof: if index < size {
                proofs.next().map(|proof| encode(&proof))
            } else {
                None
            },
        })
        .collect();
    Ok(Json(proto::ProposalAudit {
        proposal: id.to_string(),
        salt: (!record.salt.is_empty()).then(|| salt_text(&record.salt)),
        erased_at: record.erased_at.map(loopgate_core::Timestamp::to_rfc3339),
        tree_size: size,
        checkpoint: checkpoint.map(|c| c.note),
        entries: items,
    }))
}
