-- Webhooks: one endpoint per system, and a durable outbox of deliveries.
--
-- The outbox is filled from `events` (already durable, written in the
-- transaction of each change) behind one cursor, so the core loop writes
-- nothing more for webhooks. A delivery's id is its event's `seq` (the
-- `webhook-id` is `msg_<seq>`); deliveries of one proposal go out in order.

CREATE TABLE webhooks (
    system TEXT PRIMARY KEY REFERENCES systems (id),
    url TEXT NOT NULL,
    -- `whsec_<base64>`: kept in the clear, as HMAC signing needs it.
    secret TEXT NOT NULL,
    -- Comma-framed event types, e.g. `,proposal.resolved,task.created,`.
    types TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE webhook_deliveries (
    seq INTEGER PRIMARY KEY REFERENCES events (seq),
    system TEXT NOT NULL,
    -- Deliveries with the same key go out one at a time, in `seq` order.
    ord TEXT NOT NULL,
    type TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL,
    -- Retries give up this long after this time (reset by a redelivery).
    window_start INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    delivered_at INTEGER,
    last_status INTEGER,
    last_error TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at, seq) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_ord ON webhook_deliveries (ord, seq) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_system ON webhook_deliveries (system, seq);

CREATE TABLE webhook_attempts (
    seq INTEGER NOT NULL REFERENCES webhook_deliveries (seq),
    n INTEGER NOT NULL,
    time INTEGER NOT NULL,
    status INTEGER,
    error TEXT,
    duration_ms INTEGER NOT NULL,
    PRIMARY KEY (seq, n)
) WITHOUT ROWID;

-- Events before this migration are not delivered.
INSERT INTO meta (key, value) SELECT 'webhook_cursor', CAST(COALESCE(MAX(seq), 0) AS TEXT) FROM events;
