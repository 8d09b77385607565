//! The webhook endpoints and their outbox (see `0007_webhooks.sql`).

use crate::db::{Connection, OptionalExtension, Row, params};
use loopgate_core::audit::event::Event;
use loopgate_core::{EventKind, SystemId, Timestamp};

use super::queries::{self as q, EVENT_COLUMNS, event_row};
use crate::{
    AttemptResult, DeliveryFilter, DeliveryRecord, DeliveryState, DueDelivery, Paged, StoreError,
    WebhookConfig,
};

const ATTEMPTS: q::Attempts = q::Attempts {
    table: "webhook_attempts",
    key: "seq",
};
const WEBHOOK_COLUMNS: &str = "system, url, secret, types, created_at, updated_at";
const DELIVERY_COLUMNS: &str = "seq, system, ord, type, state, attempts, next_at, created_at, delivered_at, \
     last_status, last_error";

fn webhook_row(row: &Row) -> Result<WebhookConfig, StoreError> {
    let types: String = row.get(3)?;
    Ok(WebhookConfig {
        system: q::parse(&row.get::<_, String>(0)?, SystemId::parse)?,
        url: row.get(1)?,
        secret: row.get(2)?,
        types: types
            .split(',')
            .filter(|t| !t.is_empty())
            .map(|t| q::parse(t, EventKind::parse))
            .collect::<Result<_, _>>()?,
        created_at: Timestamp::from_millis(row.get(4)?),
        updated_at: Timestamp::from_millis(row.get(5)?),
    })
}

fn delivery_row(row: &Row) -> Result<DeliveryRecord, StoreError> {
    let state = q::parse(&row.get::<_, String>(4)?, DeliveryState::parse)?;
    Ok(DeliveryRecord {
        id: row.get(0)?,
        system: q::parse(&row.get::<_, String>(1)?, SystemId::parse)?,
        subject: row.get(2)?,
        kind: q::parse(&row.get::<_, String>(3)?, EventKind::parse)?,
        state,
        attempts: row.get(5)?,
        next_at: (state == DeliveryState::Pending)
            .then(|| Timestamp::from_millis(row.get(6).unwrap_or(0))),
        created_at: Timestamp::from_millis(row.get(7)?),
        delivered_at: row.get::<_, Option<i64>>(8)?.map(Timestamp::from_millis),
        last_status: row.get(9)?,
        last_error: row.get(10)?,
        history: Vec::new(),
    })
}

pub(super) fn webhook(
    conn: &Connection,
    system: &str,
) -> Result<Option<WebhookConfig>, StoreError> {
    let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE system = ?1");
    q::one(conn, &sql, params![system], webhook_row)
}

pub(super) fn set(
    conn: &Connection,
    webhook: &WebhookConfig,
    actor: &str,
    now: Timestamp,
) -> Result<WebhookConfig, StoreError> {
    if q::system(conn, webhook.system.as_str())?.is_none() {
        return Err(StoreError::NotFound);
    }
    // Without webhooks the cursor stands still (see `has_work`): the first
    // one starts from now.
    // (The aggregate is in a subquery: an aggregate over no rows is still
    // one row, which would move the cursor back to 0.)
    conn.execute_batch(
        "INSERT INTO meta (key, value)
         SELECT 'webhook_cursor', CAST(COALESCE(last.seq, 0) AS TEXT)
         FROM (SELECT MAX(seq) AS seq FROM events) AS last
         WHERE NOT EXISTS (SELECT 1 FROM webhooks)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?;
    let names: Vec<&str> = webhook.types.iter().map(|k| k.as_str()).collect();
    let types = format!(",{},", names.join(","));
    conn.execute(
        "INSERT INTO webhooks (system, url, secret, types, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)
         ON CONFLICT (system) DO UPDATE SET url = ?2, secret = ?3, types = ?4, updated_at = ?5",
    params![webhook.system.as_str(), webhook.url, webhook.secret, types, now.millis()])?;
    let event = Event::WebhookSet {
        system: webhook.system.as_str(),
        url: &webhook.url,
        types: &webhook.types,
    };
    q::append(conn, now, actor, &event)?;
    self::webhook(conn, webhook.system.as_str())?.ok_or(StoreError::NotFound)
}

pub(super) fn remove(
    conn: &Connection,
    system: &str,
    actor: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let removed = conn.execute("DELETE FROM webhooks WHERE system = ?1", params![system])?;
    if removed == 0 {
        return Ok(false);
    }
    conn.execute(
        "UPDATE webhook_deliveries SET state = 'failed', last_error = 'webhook removed'
         WHERE system = ?1 AND state = 'pending'",
        params![system],
    )?;
    q::append(conn, now, actor, &Event::WebhookRemoved { system })?;
    Ok(true)
}

/// Whether any webhook is set, and whether events came after the cursor for
/// it to queue: checked on a reader, so that the dispatcher's wake-ups cost
/// the writer nothing when there is nothing to queue.
pub(super) fn has_work(conn: &Connection) -> Result<(bool, bool), StoreError> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM webhooks),
            COALESCE((SELECT MAX(seq) FROM events), 0)
                > COALESCE((SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'webhook_cursor'), 0)",
        params![],
        |row| {
            let set: bool = row.get(0)?;
            Ok((set, set && row.get::<_, bool>(1)?))
        },
    )
}

pub(super) fn enqueue(conn: &Connection, now: Timestamp, limit: u32) -> Result<u32, StoreError> {
    let cursor: i64 = q::meta(conn, "webhook_cursor")?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (passed, upto): (u32, Option<i64>) = conn.query_row(
        "SELECT COUNT(*), MAX(seq) FROM (SELECT seq FROM events WHERE seq > ?1 ORDER BY seq LIMIT CAST(?2 AS BIGINT)) AS next",
        params![cursor, limit],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    let Some(upto) = upto else {
        return Ok(0);
    };
    conn.execute(
        "INSERT INTO webhook_deliveries (seq, system, ord, type, state, next_at, window_start, created_at)
         SELECT e.seq, w.system, e.subject, e.type, 'pending', ?3, ?3, ?3
         FROM events e
         JOIN proposals p ON p.id = e.subject
         JOIN webhooks w ON w.system = p.system
         WHERE e.seq > ?1 AND e.seq <= ?2 AND instr(w.types, ',' || e.type || ',') > 0
         ON CONFLICT DO NOTHING",
    params![cursor, upto, now.millis()])?;
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('webhook_cursor', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![upto.to_string()],
    )?;
    Ok(passed)
}

pub(super) fn due(
    conn: &Connection,
    now: Timestamp,
    skip: &[SystemId],
    limit: u32,
) -> Result<Vec<DueDelivery>, StoreError> {
    let skip: Vec<&str> = skip.iter().map(SystemId::as_str).collect();
    let sql = format!(
        "SELECT d.seq, w.url, w.secret, d.attempts, d.window_start, {EVENT_COLUMNS}
         FROM webhook_deliveries d
         JOIN webhooks w ON w.system = d.system
         JOIN events e ON e.seq = d.seq
         LEFT JOIN proposals p ON p.id = e.subject
         LEFT JOIN tasks t ON t.proposal_id = e.subject
         WHERE d.state = 'pending' AND d.next_at <= ?1
           AND d.system NOT IN (SELECT value FROM json_each(?2))
           AND NOT EXISTS (SELECT 1 FROM webhook_deliveries b
                           WHERE b.ord = d.ord AND b.state = 'pending' AND b.seq < d.seq)
         ORDER BY d.next_at, d.seq LIMIT CAST(?3 AS BIGINT)"
    );
    q::all(
        conn,
        &sql,
        params![now.millis(), q::to_json(&skip), limit],
        |row| {
            Ok(DueDelivery {
                id: row.get(0)?,
                url: row.get(1)?,
                secret: row.get(2)?,
                attempts: row.get(3)?,
                window_start: Timestamp::from_millis(row.get(4)?),
                event: event_row(row, 5)?,
            })
        },
    )
}

pub(super) fn record(conn: &Connection, results: &[AttemptResult]) -> Result<(), StoreError> {
    for result in results {
        let n: Option<i64> = conn
            .query_row(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, state = ?2, next_at = ?3, last_status = ?4,
                     last_error = ?5, delivered_at = CASE WHEN ?2 = 'delivered' THEN ?6 ELSE delivered_at END
                 WHERE seq = ?1 RETURNING attempts",
                params![
                    result.id,
                    result.state.as_str(),
                    result.next_at.millis(),
                    result.status,
                    result.error,
                    result.time.millis() + i64::from(result.duration_ms)
                ],
                |row| row.get(0),
            )
            .optional()?;
        if let Some(n) = n {
            ATTEMPTS.insert(conn, result.id, n, result)?;
        }
    }
    Ok(())
}

pub(super) fn list(
    conn: &Connection,
    filter: &DeliveryFilter,
) -> Result<Paged<DeliveryRecord>, StoreError> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
         WHERE system = ?1 AND (CAST(?2 AS TEXT) IS NULL OR state = ?2) AND (CAST(?3 AS BIGINT) IS NULL OR seq < ?3)
         ORDER BY seq DESC LIMIT CAST(?4 AS BIGINT)"
    );
    let items = q::all(
        conn,
        &sql,
        params![
            filter.system.as_str(),
            filter.state.map(DeliveryState::as_str),
            filter.before,
            filter.limit.saturating_add(1)
        ],
        delivery_row,
    )?;
    Ok(q::newest_first(items, filter.limit, |d| d.id))
}

pub(super) fn one(
    conn: &Connection,
    system: &str,
    id: i64,
) -> Result<Option<DeliveryRecord>, StoreError> {
    let sql =
        format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE seq = ?1 AND system = ?2");
    let Some(mut delivery) = q::one(conn, &sql, params![id, system], delivery_row)? else {
        return Ok(None);
    };
    delivery.history = ATTEMPTS.history(conn, id)?;
    Ok(Some(delivery))
}

pub(super) fn redeliver(
    conn: &Connection,
    system: &str,
    id: i64,
    now: Timestamp,
) -> Result<DeliveryRecord, StoreError> {
    let changed = conn.execute(
        "UPDATE webhook_deliveries SET state = 'pending', next_at = ?3, window_start = ?3
             WHERE seq = ?1 AND system = ?2",
        params![id, system, now.millis()],
    )?;
    if changed == 0 {
        return Err(StoreError::NotFound);
    }
    one(conn, system, id)?.ok_or(StoreError::NotFound)
}

pub(super) fn prune(conn: &Connection, before: Timestamp, limit: u32) -> Result<u32, StoreError> {
    let old = "SELECT seq FROM webhook_deliveries
               WHERE state != 'pending' AND created_at < ?1 ORDER BY seq LIMIT CAST(?2 AS BIGINT)";
    conn.execute(
        &format!("DELETE FROM webhook_attempts WHERE seq IN ({old})"),
        params![before.millis(), limit],
    )?;
    let deleted = conn.execute(
        &format!("DELETE FROM webhook_deliveries WHERE seq IN ({old})"),
        params![before.millis(), limit],
    )?;
    Ok(u32::try_from(deleted).unwrap_or(u32::MAX))
}
