//! `loopgate audit ...` and `loopgate erase ...`: the public key,
//! checkpoints, proofs, exporting the log as static C2SP tlog-tiles files,
//! and verifying an export or a receipt offline with nothing but the key.
//!
//! Architecture invariant: `verify` and `verify-receipt` read files only;
//! they never open the store or the network.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::Subcommand;
use futures::{StreamExt as _, TryStreamExt as _};
use indicatif::{ProgressBar, ProgressStyle};
use loopgate_core::audit::checkpoint::Checkpoint;
use loopgate_core::audit::entry::parse_head;
use loopgate_core::audit::merkle::{leaf_hash, verify_inclusion};
use loopgate_core::audit::note::Verifier;
use loopgate_core::audit::tile::{TileId, WIDTH, split_bundle};
use loopgate_core::audit::verify::{LogVerifier, compare_tile};
use loopgate_proto as proto;

use crate::cli::{Remote, Remote0};
use crate::config::FileConfig;

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Print the log's verifier key (`<origin>+<key id>+<key>`); needs no token.
    Pubkey(Remote0),
    /// Print the newest signed checkpoint; `--issue` signs one now.
    Checkpoint {
        /// Sequence everything queued and sign a checkpoint now.
        #[arg(long)]
        issue: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Print an inclusion proof (`--index`) or a consistency proof (`--from`).
    Proof {
        /// Leaf index for an inclusion proof.
        #[arg(long, conflicts_with = "from")]
        index: Option<u64>,
        /// Older tree size for a consistency proof.
        #[arg(long)]
        from: Option<u64>,
        /// Tree size [default: the newest checkpoint's].
        #[arg(long)]
        size: Option<u64>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Write the log (entries, hash tiles, checkpoints) as tlog-tiles files.
    Export {
        /// Directory to write (created; existing files are overwritten).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        remote: Remote,
    },
    /// Verify an export offline: every entry, leaf, tile, checkpoint signature and root.
    Verify {
        /// The export directory.
        dir: PathBuf,
        /// The verifier key, or a file holding it (get it from `loopgate audit pubkey`).
        #[arg(long)]
        pubkey: String,
    },
    /// Verify a decision receipt offline.
    VerifyReceipt {
        /// A receipt, or a proposal whose resolution carries one (JSON).
        file: PathBuf,
        /// The verifier key, or a file holding it.
        #[arg(long)]
        pubkey: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum EraseCommand {
    /// Erase a settled proposal's payloads and salt; its audit trail stays
    /// verifiable but can no longer be linked to the data.
    Proposal {
        /// Proposal id.
        id: String,
        /// Why (only its hash enters the audit log).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        remote: Remote,
    },
}

pub(crate) async fn erase(file: &FileConfig, command: EraseCommand) -> anyhow::Result<()> {
    let EraseCommand::Proposal { id, reason, remote } = command;
    let erased = file.client(&remote)?.erase(&id, &reason).await?;
    out!(
        "erased the payloads of {} ({}); its audit entries still verify",
        erased.id,
        erased.erased_at.unwrap_or_default()
    );
    Ok(())
}

pub(crate) async fn run(file: &FileConfig, command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Pubkey(args) => {
            // The key is public: no token needed.
            out!(
                "{}",
                file.public_client(&args.remote)?.audit_pubkey().await?
            );
        }
        AuditCommand::Checkpoint { issue, remote } => {
            let client = file.client(&remote)?;
            let note = if issue {
                client.issue_checkpoint().await?
            } else {
                client.audit_checkpoint().await?
            };
            out!("{}", note.trim_end());
        }
        AuditCommand::Proof {
            index,
            from,
            size,
            remote,
        } => {
            let client = file.client(&remote)?;
            let size = match size {
                Some(size) => size,
                None => latest_size(&client).await?,
            };
            let value = match (index, from) {
                (Some(index), _) => {
                    serde_json::to_value(client.inclusion_proof(index, size).await?)?
                }
                (None, Some(from)) => {
                    serde_json::to_value(client.consistency_proof(from, size).await?)?
                }
                (None, None) => {
                    bail!("pass --index for an inclusion proof or --from for a consistency proof")
                }
            };
            out!("{}", serde_json::to_string_pretty(&value)?);
        }
        AuditCommand::Export { out, remote } => {
            let written = export(&file.client(&remote)?, &out).await?;
            out!("{written}");
        }
        AuditCommand::Verify { dir, pubkey } => {
            let verifier = read_key(&pubkey)?;
            let summary = tokio::task::spawn_blocking(move || verify_dir(&dir, &verifier))
                .await
                .context("the verifier stopped")??;
            out!(
                "verified: {} entries, {} checkpoints, root {}",
                summary.entries,
                summary.checkpoints,
                BASE64.encode(summary.root)
            );
        }
        AuditCommand::VerifyReceipt { file, pubkey } => {
            let verifier = read_key(&pubkey)?;
            out!("{}", verify_receipt_file(&file, &verifier)?);
        }
    }
    Ok(())
}

async fn latest_size(client: &loopgate_client::Client) -> anyhow::Result<u64> {
    let note = client.audit_checkpoint().await?;
    let body = note.split("\n\n").next().unwrap_or_default();
    Ok(Checkpoint::parse_body(&format!("{body}\n"))?.size)
}

/// The key itself, or a file that holds it.
pub(crate) fn read_key(arg: &str) -> anyhow::Result<Verifier> {
    if arg.trim().is_empty() {
        anyhow::bail!(
            "the verifier key is empty: pass the key that `loopgate audit pubkey --server URL` prints (no token needed), or a file that holds it"
        );
    }
    let text = if Path::new(arg).is_file() {
        std::fs::read_to_string(arg).with_context(|| format!("cannot read the key file `{arg}`"))?
    } else {
        arg.to_owned()
    };
    Verifier::parse(text.trim()).with_context(|| {
        format!(
            "`{}` is not a verifier key; `loopgate audit pubkey` prints one",
            text.trim()
        )
    })
}

/// Checks one receipt; returns the sentence to print.
pub(crate) fn verify_receipt_file(path: &Path, verifier: &Verifier) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let receipt = match serde_json::from_str::<proto::Receipt>(&text) {
        Ok(receipt) => receipt,
        Err(_) => {
            let proposal = serde_json::from_str::<proto::Proposal>(&text).with_context(|| {
                format!("`{}` is neither a receipt nor a proposal", path.display())
            })?;
            let Some(resolution) = proposal.resolution else {
                bail!(
                    "proposal {} is not resolved, so it has no receipt",
                    proposal.id
                );
            };
            resolution.receipt.with_context(|| {
                format!(
                    "proposal {} has no receipt yet: no checkpoint covered its resolution when it was read; read it again in a second",
                    proposal.id
                )
            })?
        }
    };
    verify_receipt(&receipt, verifier)
}

pub(crate) fn verify_receipt(
    receipt: &proto::Receipt,
    verifier: &Verifier,
) -> anyhow::Result<String> {
    let checkpoint = Checkpoint::open(&receipt.checkpoint, verifier)
        .context("the receipt's checkpoint is not signed by this key")?;
    if checkpoint.size != receipt.tree_size {
        bail!(
            "the receipt says tree size {} but its checkpoint is for {}",
            receipt.tree_size,
            checkpoint.size
        );
    }
    let proof = receipt
        .inclusion_proof
        .iter()
        .map(|hash| BASE64.decode(hash))
        .collect::<Result<Vec<_>, _>>()
        .context("the inclusion proof is not base64")?;
    let entry = receipt.entry.as_bytes();
    verify_inclusion(
        receipt.index,
        checkpoint.size,
        &leaf_hash(entry),
        &proof,
        &checkpoint.root,
    )
    .map_err(|error| {
        anyhow::anyhow!(
            "the entry is not in the log at index {}: {error}",
            receipt.index
        )
    })?;
    let head = parse_head(entry).context("the receipt's entry is not an audit entry")?;
    if head.index != receipt.index {
        bail!(
            "the entry says it is entry {}, the receipt says {}",
            head.index,
            receipt.index
        );
    }
    let field = |name: &str| {
        head.data
            .get(name)
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_owned()
    };
    Ok(format!(
        "receipt verifies: {} {} ({} by {}, digest {}) is entry {} of {} at tree size {}",
        head.type_,
        field("proposal"),
        field("outcome"),
        field("decided_by"),
        field("digest"),
        receipt.index,
        checkpoint.origin,
        checkpoint.size
    ))
}

/// Exports the log into `out`; returns the sentence that says what was written.
pub(crate) async fn export(client: &loopgate_client::Client, out: &Path) -> anyhow::Result<String> {
    let latest = client.audit_checkpoint().await.context(
        "cannot read the newest checkpoint; `loopgate audit checkpoint --issue` makes one",
    )?;
    let body = latest.split("\n\n").next().unwrap_or_default();
    let size = Checkpoint::parse_body(&format!("{body}\n"))?.size;
    std::fs::create_dir_all(out.join("checkpoints"))
        .with_context(|| format!("cannot create `{}`", out.display()))?;
    write(&out.join("checkpoint"), latest.as_bytes())?;
    write(
        &out.join("pubkey"),
        format!("{}\n", client.audit_pubkey().await?).as_bytes(),
    )?;
    let mut after = 0;
    let mut n_checkpoints = 0;
    loop {
        let page = client.audit_checkpoints(after).await?;
        for checkpoint in page.items.iter().filter(|c| c.size <= size) {
            write(
                &out.join("checkpoints")
                    .join(format!("{:020}", checkpoint.size)),
                checkpoint.note.as_bytes(),
            )?;
            n_checkpoints += 1;
        }
        match page.next_after {
            Some(next) => after = next,
            None => break,
        }
    }
    let tiles = tile_ids(size);
    let bar = progress(tiles.len() as u64, "tiles");
    futures::stream::iter(tiles)
        .map(|id| async move {
            let bytes = client.audit_tile(&id.path()).await?;
            anyhow::Ok((id, bytes))
        })
        .buffered(16)
        .try_for_each(|(id, bytes)| {
            let result = write(&out.join("tile").join(id.path()), &bytes);
            bar.inc(1);
            futures::future::ready(result)
        })
        .await?;
    bar.finish_and_clear();
    Ok(format!(
        "exported {size} entries, {n_checkpoints} checkpoints to {}",
        out.display()
    ))
}

/// Every entry bundle and hash tile of a tree of `size` entries.
fn tile_ids(size: u64) -> Vec<TileId> {
    let tiles_of = |level: Option<u32>, count: u64| {
        (0..count.div_ceil(WIDTH)).map(move |index| TileId {
            level,
            index,
            width: (count - index * WIDTH).min(WIDTH),
        })
    };
    let mut ids: Vec<TileId> = tiles_of(None, size).collect();
    for level in 0..8u32 {
        let count = size >> (8 * level);
        if count == 0 {
            break;
        }
        ids.extend(tiles_of(Some(level), count));
    }
    ids
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create `{}`", parent.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("cannot write `{}`", path.display()))
}

fn progress(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let template = format!("{{bar:40}} {{pos}}/{{len}} {what} ({{per_sec}}, {{eta}} left)");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

/// Verifies an export directory.
pub(crate) fn verify_dir(
    dir: &Path,
    verifier: &Verifier,
) -> anyhow::Result<loopgate_core::audit::verify::Summary> {
    let fail = |failure: loopgate_core::audit::verify::Failure| {
        anyhow::anyhow!("verification failed: {failure}")
    };
    let mut notes = Vec::new();
    let listing = std::fs::read_dir(dir.join("checkpoints")).with_context(|| {
        format!(
            "`{}` has no checkpoints/ folder; is it an export?",
            dir.display()
        )
    })?;
    for entry in listing {
        let path = entry?.path();
        let note = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        notes.push((format!("checkpoints/{}", file_name(&path)), note));
    }
    if let Ok(note) = std::fs::read_to_string(dir.join("checkpoint"))
        && !notes.iter().any(|(_, known)| *known == note)
    {
        notes.push(("checkpoint".to_owned(), note));
    }
    let mut log = LogVerifier::new(verifier, notes).map_err(fail)?;
    let expected = log.expected();
    let bar = progress(expected, "entries");
    let read_tile = |id: &TileId| std::fs::read(dir.join("tile").join(id.path())).ok();
    for index in 0..expected.div_ceil(WIDTH) {
        let width = (expected - index * WIDTH).min(WIDTH);
        let bundle_id = TileId {
            level: None,
            index,
            width,
        };
        let leaves_id = TileId {
            level: Some(0),
            ..bundle_id
        };
        let bundle = read_tile(&bundle_id).ok_or_else(|| {
            anyhow::anyhow!(
                "verification failed: entries {}..{} are missing (tile/{})",
                index * WIDTH,
                index * WIDTH + width,
                bundle_id.path()
            )
        })?;
        let entries = split_bundle(&bundle).ok_or_else(|| {
            anyhow::anyhow!(
                "verification failed: tile/{} is not an entry bundle",
                bundle_id.path()
            )
        })?;
        let leaves = read_tile(&leaves_id).unwrap_or_default();
        for (i, entry) in entries.iter().enumerate() {
            let exported = leaves.get(i * 32..i * 32 + 32);
            log.push(entry, exported).map_err(fail)?;
        }
        if (entries.len() as u64) < width {
            bail!(
                "verification failed: entry {}: missing from tile/{}: an entry was deleted",
                log.size(),
                bundle_id.path()
            );
        }
        if entries.len() as u64 > width {
            bail!(
                "verification failed: entry {}: the export holds more entries than its newest checkpoint covers",
                index * WIDTH + width
            );
        }
        for (id, bytes) in log.completed_tiles() {
            compare_tile(&id, &bytes, read_tile(&id).as_deref()).map_err(fail)?;
        }
        bar.inc(width);
    }
    bar.finish_and_clear();
    let (summary, partial) = log.finish().map_err(fail)?;
    for (id, bytes) in partial {
        compare_tile(&id, &bytes, read_tile(&id).as_deref()).map_err(fail)?;
    }
    Ok(summary)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}
