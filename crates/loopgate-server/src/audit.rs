//! The audit log's moving parts in the server: the signing key (generated
//! into the data directory on first start, mode 0600), the sequencer worker
//! that drains queued events into the Merkle tree and signs checkpoints, and
//! decision receipts.
//!
//! Architecture invariant: there is no switch to turn the audit log off.
//! Events are written by the store in the transaction of every change; this
//! worker only orders, hashes and signs them.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use loopgate_core::ProposalId;
use loopgate_core::audit::{Checkpoint, Signer};
use loopgate_proto as proto;
use loopgate_store::{CheckpointRecord, StoreError};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::{AppState, StartError};

/// Events moved per sequencer step.
const BATCH: u32 = 4096;
/// How often the sequencer looks for new events when idle.
const POLL: Duration = Duration::from_millis(20);
/// Shortest time between two steps woken by commits (PostgreSQL): commits
/// that come meanwhile share the next step, one transaction, instead of
/// taking one each (as the event tail's and the outboxes' 5 ms).
const STEP: Duration = Duration::from_millis(5);
pub(crate) const KEY_FILE: &str = "audit-signing-key";

/// The signer and the last checkpoint issued.
pub(crate) struct Audit {
    pub(crate) signer: Signer,
    last: Mutex<Option<CheckpointRecord>>,
}

impl Audit {
    /// Loads the signing key from the data directory (which `start` has
    /// made), or makes one.
    pub(crate) fn open(data_dir: &Path, origin: Option<&str>) -> Result<Audit, StartError> {
        let path = data_dir.join(KEY_FILE);
        let problem = |e: &dyn std::fmt::Display| {
            StartError::Secrets(format!("audit key `{}`: {e}", path.display()))
        };
        let signer = match std::fs::read_to_string(&path) {
            Ok(text) => Signer::parse(&text).map_err(|e| problem(&e))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed).map_err(|e| problem(&e))?;
                let origin = match origin {
                    Some(origin) => origin.to_owned(),
                    None => {
                        let mut id = [0u8; 4];
                        getrandom::fill(&mut id).map_err(|e| problem(&e))?;
                        format!("loopgate.local/{}", hex::encode(id))
                    }
                };
                let signer = Signer::new(&origin, seed).map_err(|e| problem(&e))?;
                write_private(&path, &signer.to_text()).map_err(|e| problem(&e))?;
                signer
            }
            Err(error) => return Err(problem(&error)),
        };
        Ok(Audit {
            signer,
            last: Mutex::new(None),
        })
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut file = loopgate_store::files::create_private(path)?;
    file.write_all(format!("{text}\n").as_bytes())?;
    file.sync_all()
}

/// Starts the sequencer; it stops at shutdown after a last step.
pub(crate) fn spawn(app: AppState) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = crate::limits::Backoff::new(POLL, Duration::from_secs(5));
        // SQLite's events are in the log as they commit: its steps can wait
        // and take more at once.
        let eager = app.store.sequences_later();
        loop {
            let stepped = tokio::time::Instant::now();
            // Only the leader sequences and signs (replicas share the log).
            let pause = match app.store.leads() {
                true => match sequence_and_sign(&app, false).await {
                    Ok(_) => {
                        backoff.succeeded();
                        POLL
                    }
                    Err(error) => {
                        let wait = backoff.failed();
                        tracing::warn!(%error, retry_in = ?wait, "audit sequencing failed");
                        wait
                    }
                },
                false => POLL,
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                // A commit: on PostgreSQL its events wait for this step,
                // taken `STEP` after the last at the earliest.
                () = app.bus.sequencer.notified(), if pause == POLL && eager => {
                    tokio::select! {
                        () = tokio::time::sleep_until(stepped + STEP) => {}
                        () = app.shutdown.cancelled() => {}
                    }
                }
                () = app.shutdown.cancelled() => {
                    if !app.store.leads() {
                        return;
                    }
                    if let Err(error) = sequence_and_sign(&app, true).await {
                        tracing::warn!(%error, "last audit step at shutdown failed");
                    }
                    return;
                }
            }
        }
    })
}

/// Drains the queued events into the tree, then signs a checkpoint when
/// the tree grew and the interval has passed (or at once with `force`).
/// Returns the newest checkpoint.
pub async fn sequence_and_sign(
    app: &AppState,
    force: bool,
) -> Result<Option<CheckpointRecord>, StoreError> {
    if force {
        // Every event committed before, in the checkpoint.
        app.store.settle_log().await?;
    }
    let head = loop {
        let step = app.store.sequence(BATCH).await?;
        app.metrics.audit_appended(step.appended);
        if step.appended < u64::from(BATCH) {
            break step.head;
        }
    };
    let mut last = app.audit.last.lock().await;
    if last.is_none() {
        *last = app.store.latest_checkpoint().await?;
    }
    let now = app.clock.now();
    let due = match last.as_ref() {
        None => true,
        Some(previous) => {
            let interval =
                i64::try_from(app.config.audit_checkpoint_interval.as_millis()).unwrap_or(i64::MAX);
            head.size > previous.size
                && (force || previous.time.millis().saturating_add(interval) <= now.millis())
        }
    };
    if due {
        // A checkpoint never goes back in time, even if the clock does.
        let time = match last.as_ref() {
            Some(previous) if previous.time.millis() > now.millis() => previous.time,
            _ => now,
        };
        let checkpoint = Checkpoint {
            origin: app.audit.signer.name().to_owned(),
            size: head.size,
            root: head.root,
            time,
        };
        let note = checkpoint
            .sign(&app.audit.signer)
            .map_err(|e| StoreError::Other(e.to_string()))?;
        let record = CheckpointRecord {
            size: head.size,
            time,
            note,
        };
        app.store.add_checkpoint(record.clone()).await?;
        *last = Some(record);
    }
    Ok(last.clone())
}

/// The receipt of a resolved proposal: its `proposal.resolved` entry, the
/// newest checkpoint and the inclusion proof between them. `None` until the
/// entry is sequenced and covered by a checkpoint.
pub(crate) async fn receipt(
    app: &AppState,
    id: &ProposalId,
) -> Result<Option<proto::Receipt>, StoreError> {
    let Some(checkpoint) = app.store.latest_checkpoint().await? else {
        return Ok(None);
    };
    let entries = app.store.subject_entries(id.as_str()).await?;
    let resolved = entries.into_iter().rev().find(|(index, entry)| {
        *index < checkpoint.size
            && loopgate_core::audit::entry::parse_head(entry)
                .is_some_and(|head| head.type_ == "proposal.resolved")
    });
    let Some((index, entry)) = resolved else {
        return Ok(None);
    };
    let proofs = app
        .store
        .inclusion_proofs(vec![index], checkpoint.size)
        .await?;
    let proof = proofs.into_iter().next().unwrap_or_default();
    Ok(Some(proto::Receipt {
        index,
        tree_size: checkpoint.size,
        entry: String::from_utf8_lossy(&entry).into_owned(),
        checkpoint: checkpoint.note,
        inclusion_proof: proof.iter().map(|hash| BASE64.encode(hash)).collect(),
    }))
}
