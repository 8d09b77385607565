//! The audit log in the database: the sequencer's transaction (queued events →
//! entries, tiles, tree head), checkpoints, proofs read from tiles, and
//! erasure.
//!
//! The sequencer's tile state (`TileBuilder`) lives in memory behind a
//! mutex. Each step works on a copy inside the write job and the copy
//! replaces the original only when the commit succeeded, so a failed step
//! leaves nothing half-applied; the next step reloads from the tiles.

use loopgate_core::audit::entry;
use loopgate_core::audit::event::{Erasure, Event};
use loopgate_core::audit::merkle::{self, Hash, ProofError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::db::{Arg, Connection, Dialect, OptionalExtension, Params, Row, params};
use loopgate_core::audit::tile::{TileBuilder, TileSource, TileTree, tree_of};
use loopgate_core::{ProposalId, Timestamp};

use super::SqlStore;
use super::queries as q;
use crate::{
    CheckpointRecord, EraseError, ProposalRecord, Sequenced, StoreError, TreeHead, TxError,
};

/// The statement of the stored tree head (no row: the empty tree).
const HEAD: &str = "SELECT size, root FROM audit_head WHERE id = 0";

pub(super) fn head(conn: &Connection) -> Result<TreeHead, StoreError> {
    let mut rows = conn.query(HEAD, params![])?;
    match rows.next()? {
        Some(row) => head_row(row),
        None => Ok(TreeHead {
            size: 0,
            root: merkle::empty_root(),
        }),
    }
}

fn head_row(row: &Row) -> Result<TreeHead, StoreError> {
    let (size, root): (i64, Vec<u8>) = (row.get(0)?, row.get(1)?);
    let root = Hash::try_from(root.as_slice())
        .map_err(|_| StoreError::Other("the audit tree head's root is not 32 bytes".into()))?;
    Ok(TreeHead {
        size: to_u64(size)?,
        root,
    })
}

fn to_u64(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Other(format!("negative audit size {value}")))
}

fn to_i64(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value)
        .map_err(|_| StoreError::Invalid(format!("audit index {value} is beyond the log's range")))
}

fn tile(conn: &Connection, level: u32, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
    conn.query_row(
        "SELECT data FROM audit_tiles WHERE level = ?1 AND idx = ?2",
        params![level, to_i64(index)?],
        |row| row.get(0),
    )
    .optional()
}

fn missing_tile() -> StoreError {
    StoreError::Other("an audit tile the tree head needs is missing".into())
}

fn load_builder(conn: &Connection) -> Result<TileBuilder, StoreError> {
    let head = head(conn)?;
    let builder = TileBuilder::restore(
        head.size,
        |level, index| tile(conn, level, index)?.ok_or_else(missing_tile),
        missing_tile,
    )?;
    if builder.root() != head.root {
        return Err(StoreError::Other(
            "the audit tiles do not give the stored root".into(),
        ));
    }
    Ok(builder)
}

const EVENT_COLUMNS: &str = "seq, time, actor, type, subject, data";

/// The entry of an `events` row (in `EVENT_COLUMNS` order): its index and
/// canonical bytes. Entry `i` is the event with `seq = i + 1`.
fn entry_row(row: &Row) -> Result<(u64, Vec<u8>), StoreError> {
    let index = to_u64(row.get::<_, i64>(0)? - 1)?;
    let time = Timestamp::from_millis(row.get(1)?).to_rfc3339();
    let actor: String = row.get(2)?;
    let type_: String = row.get(3)?;
    let subject: Option<String> = row.get(4)?;
    let data: String = row.get(5)?;
    let bytes = entry::encode(index, &time, &actor, &type_, subject.as_deref(), &data);
    Ok((index, bytes))
}

/// One sequencer step, inside the writer's transaction: hashes the next
/// queued events into the tree and stores the changed tiles and the head.
/// Events are never copied: they are the entries.
fn sequence_step(
    conn: &Connection,
    builder: &mut TileBuilder,
    limit: u32,
) -> Result<Sequenced, StoreError> {
    if conn.dialect() == Dialect::Postgres {
        give_positions(conn, limit)?;
    }
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT CAST(?2 AS BIGINT)"
    );
    let after = |size: u64| -> Result<Vec<Arg>, StoreError> {
        Ok(params![to_i64(size)?, limit].into_args())
    };
    // The stored head and the events after this builder's, in one round
    // trip with the move; another replica may have led the sequencer since
    // this one last did, and then the events are read again after its head.
    let rows = conn.query_all(vec![
        (HEAD, Vec::new()),
        (sql.as_str(), after(builder.size())?),
    ])?;
    let [heads, mut events] = q::answers(rows)?;
    let stored = match heads.first() {
        Some(row) => head_row(row)?,
        None => TreeHead {
            size: 0,
            root: merkle::empty_root(),
        },
    };
    if stored.size != builder.size() || stored.root != builder.root() {
        *builder = load_builder(conn)?;
        events = conn
            .query_all(vec![(sql.as_str(), after(builder.size())?)])?
            .into_iter()
            .next()
            .unwrap_or_default();
    }
    let mut appended = 0u64;
    for row in &events {
        let (index, bytes) = entry_row(row)?;
        if index != builder.size() {
            return Err(StoreError::Other(format!(
                "the audit queue has a gap: expected entry {}, found {index}",
                builder.size()
            )));
        }
        builder.append(merkle::leaf_hash(&bytes));
        appended += 1;
    }
    if appended > 0 {
        // Sent with the commit (PostgreSQL): a step is two round trips, its
        // reads and its commit.
        for (level, index, bytes) in builder.take_dirty() {
            conn.execute_later(
                "INSERT INTO audit_tiles (level, idx, data) VALUES (?1, ?2, ?3)
                 ON CONFLICT (level, idx) DO UPDATE SET data = excluded.data",
                params![level, to_i64(index)?, bytes],
            )?;
        }
        conn.execute_later(
            "INSERT INTO audit_head (id, size, root) VALUES (0, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET size = excluded.size, root = excluded.root",
            params![to_i64(builder.size())?, builder.root().to_vec()],
        )?;
    }
    Ok(Sequenced {
        appended,
        head: TreeHead {
            size: builder.size(),
            root: builder.root(),
        },
    })
}

/// Held by the sequencer's step (PostgreSQL).
const SEQUENCER_LOCK: i64 = 0x6c6f_6f70_6704;

/// PostgreSQL: moves the queued events of committed transactions into the
/// log, giving them the next positions in queue order (`id`). A writer
/// queues its events at its commit, after every lock it takes
/// (`Connection::execute_at_commit`), so two transactions that touched the
/// same rows queue theirs in the order they committed, and a transaction
/// that began after another committed queues after it. What a step sees
/// committed it moves: a transaction committed later is moved by a later
/// step, after it. Positions therefore stay dense and follow commit order
/// wherever one transaction could see or had to wait for another; no step
/// waits for transactions still running anywhere in the cluster. The move
/// is one statement of the step's transaction: a crash loses neither queue
/// nor log entries. Every replica hears on `loopgate` after the commit: the
/// log grew (the step runs only when events wait, so it nearly always did).
///
/// It takes the sequencer's lock for the rest of the transaction, so that
/// two replicas that both believe they lead (for a moment, while leadership
/// moves), or a reader settling the log, take turns; the move's snapshot is
/// taken after the lock, so it sees every step before it. Both statements
/// go out with the transaction's next round trip.
fn give_positions(conn: &Connection, limit: u32) -> Result<(), StoreError> {
    conn.execute_batch_later(&format!("SELECT pg_advisory_xact_lock({SEQUENCER_LOCK})"))?;
    conn.execute_later(
        "WITH ready AS (
             DELETE FROM event_queue WHERE id IN (
                 SELECT id FROM event_queue ORDER BY id LIMIT CAST(?1 AS BIGINT))
             RETURNING id, time, actor, type, subject, data),
         moved AS (
             INSERT INTO events (seq, time, actor, type, subject, data)
             SELECT (SELECT COALESCE(MAX(seq), 0) FROM events) + row_number() OVER (ORDER BY id),
                    time, actor, type, subject, data
             FROM ready
             RETURNING 1)
         SELECT count(*) FROM moved",
        params![limit],
    )?;
    conn.notify_after_commit(super::postgres::LOG_GREW, "");
    Ok(())
}

impl SqlStore {
    /// See `Store::settle_log`: one move of everything committed gives
    /// every event committed before the call its position (the hashing
    /// stays the sequencer's). Any replica may move events: they take turns
    /// on the sequencer's lock.
    pub(super) async fn settle_events(&self) -> Result<(), StoreError> {
        if !self.sequences_later() {
            return Ok(());
        }
        let queued: bool = self
            .read(|conn| {
                conn.query_row(
                    "SELECT EXISTS (SELECT 1 FROM event_queue)",
                    params![],
                    |row| row.get(0),
                )
            })
            .await?;
        if queued {
            self.write_plain(|conn| give_positions(conn, u32::MAX))
                .await?;
        }
        Ok(())
    }

    pub(super) async fn sequence_events(&self, limit: u32) -> Result<Sequenced, StoreError> {
        // Idle steps only read: the sequencer polls often.
        let idle = self
            .read(|conn| {
                let head = head(conn)?;
                let newest: i64 = conn.query_row(
                    "SELECT COALESCE(MAX(seq), 0) FROM events",
                    params![],
                    |row| row.get(0),
                )?;
                let queued = match conn.dialect() {
                    Dialect::Sqlite => false,
                    Dialect::Postgres => conn.query_row(
                        "SELECT EXISTS (SELECT 1 FROM event_queue)",
                        params![],
                        |row| row.get(0),
                    )?,
                };
                Ok((to_u64(newest)? == head.size && !queued).then_some(head))
            })
            .await?;
        if let Some(head) = idle {
            return Ok(Sequenced { appended: 0, head });
        }
        let mut state = self.inner.sequencer.lock().await;
        let builder = match state.take() {
            Some(builder) => builder,
            None => self.read(load_builder).await?,
        };
        let (builder, sequenced) = self
            .write_plain(move |conn| {
                let mut builder = builder.clone();
                let sequenced = sequence_step(conn, &mut builder, limit)?;
                Ok((builder, sequenced))
            })
            .await?;
        *state = Some(builder);
        Ok(sequenced)
    }
}

pub(super) fn add_checkpoint(
    conn: &Connection,
    checkpoint: &CheckpointRecord,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO audit_checkpoints (size, time, note) VALUES (?1, ?2, ?3) ON CONFLICT (size) DO NOTHING",
    params![
        to_i64(checkpoint.size)?,
        checkpoint.time.millis(),
        checkpoint.note
    ])?;
    Ok(())
}

pub(super) fn checkpoints(
    conn: &Connection,
    after: u64,
    limit: u32,
) -> Result<Vec<CheckpointRecord>, StoreError> {
    let sql = "SELECT size, time, note FROM audit_checkpoints WHERE size > ?1 ORDER BY size LIMIT CAST(?2 AS BIGINT)";
    q::all(conn, sql, params![to_i64(after)?, limit], checkpoint_row)
}

pub(super) fn latest_checkpoint(conn: &Connection) -> Result<Option<CheckpointRecord>, StoreError> {
    let sql = "SELECT size, time, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1";
    q::one(conn, sql, params![], checkpoint_row)
}

fn checkpoint_row(row: &Row) -> Result<CheckpointRecord, StoreError> {
    Ok(CheckpointRecord {
        size: to_u64(row.get(0)?)?,
        time: Timestamp::from_millis(row.get(1)?),
        note: row.get(2)?,
    })
}

/// Entries `[start, end)`, sequenced or not.
pub(super) fn entries(conn: &Connection, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
    let sql =
        format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?1 AND seq <= ?2 ORDER BY seq");
    q::all(conn, &sql, params![to_i64(start)?, to_i64(end)?], |row| {
        Ok(entry_row(row)?.1)
    })
}

/// A subject's entries with their indexes, sequenced or not.
pub(super) fn subject_entries(
    conn: &Connection,
    subject: &str,
) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE subject = ?1 ORDER BY seq");
    q::all(conn, &sql, params![subject], entry_row)
}

pub(super) fn stored_tile(
    conn: &Connection,
    level: u32,
    index: u64,
) -> Result<Option<Vec<u8>>, StoreError> {
    tile(conn, level, index)
}

fn proof_error(error: ProofError<loopgate_core::audit::tile::TileError<StoreError>>) -> StoreError {
    use loopgate_core::audit::tile::TileError;
    match error {
        ProofError::OutOfRange(message) => StoreError::Invalid(message.to_owned()),
        ProofError::Source(TileError::Source(error)) => error,
        ProofError::Source(TileError::Missing) => {
            StoreError::Invalid("the tree is not that large yet".to_owned())
        }
    }
}

fn check_size(conn: &Connection, size: u64) -> Result<(), StoreError> {
    let head = head(conn)?;
    if size > head.size {
        return Err(StoreError::Invalid(format!(
            "the log holds {} entries, fewer than {size}",
            head.size
        )));
    }
    Ok(())
}

/// Full tiles never change: proofs keep up to `TILE_CACHE` of them, with
/// their subtrees computed, across calls.
const TILE_CACHE: usize = 4096;

/// Full tiles already read, shared by the readers.
#[derive(Default)]
pub(super) struct TileCache(Mutex<HashMap<(u32, u64), Arc<TileTree>>>);

impl TileCache {
    fn read(
        &self,
        conn: &Connection,
        level: u32,
        index: u64,
    ) -> Result<Option<Arc<TileTree>>, StoreError> {
        let cached = match self.0.lock() {
            Ok(map) => map.get(&(level, index)).cloned(),
            Err(poisoned) => poisoned.into_inner().get(&(level, index)).cloned(),
        };
        if cached.is_some() {
            return Ok(cached);
        }
        let Some(tree) = tree_of(tile(conn, level, index)?) else {
            return Ok(None);
        };
        if tree.is_full() {
            let mut map = match self.0.lock() {
                Ok(map) => map,
                Err(poisoned) => poisoned.into_inner(),
            };
            if map.len() >= TILE_CACHE {
                map.clear();
            }
            map.insert((level, index), Arc::clone(&tree));
        }
        Ok(Some(tree))
    }
}

pub(super) fn inclusion_proofs(
    conn: &Connection,
    cache: &TileCache,
    indexes: &[u64],
    size: u64,
) -> Result<Vec<Vec<Hash>>, StoreError> {
    check_size(conn, size)?;
    let mut source = TileSource::new(|level, index| cache.read(conn, level, index));
    indexes
        .iter()
        .map(|&index| merkle::inclusion_proof(&mut source, index, size).map_err(proof_error))
        .collect()
}

pub(super) fn consistency_proof(
    conn: &Connection,
    cache: &TileCache,
    from: u64,
    to: u64,
) -> Result<Vec<Hash>, StoreError> {
    check_size(conn, to)?;
    let mut source = TileSource::new(|level, index| cache.read(conn, level, index));
    merkle::consistency_proof(&mut source, from, to).map_err(proof_error)
}

/// Erases a settled proposal's payloads, salt and fingerprint.
pub(super) fn erase(
    conn: &Connection,
    id: &ProposalId,
    actor: &str,
    reason: &str,
    now: Timestamp,
) -> Result<ProposalRecord, TxError<EraseError>> {
    q::lock_proposal(conn, id.as_str())?;
    let record = q::proposal(conn, id.as_str())?.ok_or(StoreError::NotFound)?;
    if !record.status.is_terminal() {
        return Err(TxError::Refused(EraseError::Pending(id.clone())));
    }
    if record.erased_at.is_some() {
        return Ok(record);
    }
    erase_rows(conn, id.as_str(), now)?;
    let event = Event::ProposalErased {
        proposal: id.as_str(),
        why: Erasure::Requested(reason),
    };
    q::append(conn, now, actor, &event)?;
    Ok(q::proposal(conn, id.as_str())?.ok_or(StoreError::NotFound)?)
}

fn erase_rows(conn: &Connection, id: &str, now: Timestamp) -> Result<(), StoreError> {
    let tracked = super::aggregates::Tracked::before(conn, id)?;
    conn.execute(
        "UPDATE proposals SET subject = 'null', input = 'null', output = 'null', ai_output = NULL, explanation = NULL, context = '{}',
             model = NULL, fingerprint = '', salt = NULL, erased_at = ?2
         WHERE id = ?1",
    params![id, now.millis()])?;
    conn.execute(
        "UPDATE decisions SET rationale = NULL, output = NULL, labels = NULL, message = NULL WHERE proposal_id = ?1",
    params![id])?;
    conn.execute(
        "UPDATE comments SET body = NULL WHERE proposal_id = ?1",
        params![id],
    )?;
    // Cedar's messages may quote the request's values; which policy failed, and how, stays.
    let errors: Option<String> = q::one(
        conn,
        "SELECT policy_errors FROM proposals WHERE id = ?1",
        params![id],
        |row| row.get(0),
    )?
    .flatten();
    if let Some(text) = errors {
        let mut errors: Vec<loopgate_core::routing::EvaluationError> = serde_json::from_str(&text)?;
        for error in &mut errors {
            error.message.clear();
        }
        conn.execute(
            "UPDATE proposals SET policy_errors = ?2 WHERE id = ?1",
            params![id, q::to_json(&errors)],
        )?;
    }
    conn.execute(
        "UPDATE shadow_errors SET message = '' WHERE proposal_id = ?1",
        params![id],
    )?;
    tracked.apply(conn)
}

/// Erases what retention periods have run out on.
pub(super) fn erase_expired(
    conn: &Connection,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<ProposalId>, StoreError> {
    // System by system (few have a retention), each from its index: the
    // cost follows what is due, not how many proposals are stored.
    let systems: Vec<(String, i64)> = q::all(
        conn,
        "SELECT id, retention_ms FROM systems WHERE retention_ms IS NOT NULL ORDER BY id",
        params![],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    let mut ids: Vec<String> = Vec::new();
    for (system, retention_ms) in systems {
        let room = i64::from(limit) - ids.len() as i64;
        if room <= 0 {
            break;
        }
        ids.extend(q::all(
            conn,
            "SELECT id FROM proposals INDEXED BY proposals_to_erase
             WHERE system = ?1 AND erased_at IS NULL AND decided_at IS NOT NULL AND decided_at <= ?2
             ORDER BY decided_at LIMIT CAST(?3 AS BIGINT) /*pg FOR UPDATE SKIP LOCKED*/",
            params![system, now.millis().saturating_sub(retention_ms), room],
            |row| row.get(0),
        )?);
    }
    let mut erased = Vec::with_capacity(ids.len());
    for id in ids {
        erase_rows(conn, &id, now)?;
        let event = Event::ProposalErased {
            proposal: &id,
            why: Erasure::Retention,
        };
        q::append(conn, now, "loopgate", &event)?;
        erased.push(
            ProposalId::parse(&id)
                .ok_or_else(|| StoreError::Other(format!("bad proposal id {id}")))?,
        );
    }
    Ok(erased)
}
