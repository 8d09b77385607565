-- Notifications to people (docs/notifications.md): how to reach a user, what
-- each group wants to hear, an outbox of messages filled from `events`
-- behind one cursor (as webhooks are), and single-use decision links.

ALTER TABLE users ADD COLUMN email TEXT;
ALTER TABLE users ADD COLUMN slack_user_id TEXT;
-- Per channel: `default`, `each`, `off` or a digest every N minutes (JSON).
ALTER TABLE users ADD COLUMN notify TEXT NOT NULL DEFAULT '{}';
CREATE INDEX users_by_email ON users (lower(email)) WHERE email IS NOT NULL;
CREATE UNIQUE INDEX users_by_slack ON users (slack_user_id) WHERE slack_user_id IS NOT NULL;

CREATE TABLE group_notifications (
    grp TEXT PRIMARY KEY,
    -- JSON array of addresses.
    email TEXT NOT NULL,
    slack_channel TEXT,
    -- A Power Automate workflow URL (it carries its own signature).
    teams_webhook TEXT,
    -- Comma-framed, e.g. `,task.created,task.sla_warning,`.
    events TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Tasks whose SLA warning was logged (`task.sla_warning`), once each.
CREATE TABLE task_warnings (
    task_id TEXT PRIMARY KEY,
    at INTEGER NOT NULL
);

CREATE TABLE notifications (
    id INTEGER PRIMARY KEY,
    -- The event that made it; one message per event, channel and target.
    seq INTEGER NOT NULL REFERENCES events (seq),
    channel TEXT NOT NULL CHECK (channel IN ('email', 'slack', 'teams', 'slack_update')),
    -- An address, a Slack channel or user id, `teams`, or `update`.
    target TEXT NOT NULL,
    -- The loopgate user it is for, when it is for one (decision links, digests).
    user_id TEXT,
    grp TEXT NOT NULL,
    task_id TEXT NOT NULL,
    proposal_id TEXT NOT NULL,
    type TEXT NOT NULL,
    -- Messages with the same key go out one at a time, in `id` order.
    ord TEXT NOT NULL,
    -- Set when the recipient takes digests: sent together with the others of
    -- the same target and time.
    digest_at INTEGER,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    delivered_at INTEGER,
    last_status INTEGER,
    last_error TEXT,
    -- Slack: `channel:ts` of the posted message (updated after decisions).
    ref TEXT,
    UNIQUE (seq, channel, target)
);
CREATE INDEX notifications_due ON notifications (next_at, id) WHERE state = 'pending';
CREATE INDEX notifications_ord ON notifications (ord, id) WHERE state = 'pending';
CREATE INDEX notifications_by_task ON notifications (task_id, id);
CREATE INDEX notifications_by_proposal ON notifications (proposal_id) WHERE channel = 'slack';

CREATE TABLE notification_attempts (
    id INTEGER NOT NULL REFERENCES notifications (id),
    n INTEGER NOT NULL,
    time INTEGER NOT NULL,
    status INTEGER,
    error TEXT,
    duration_ms INTEGER NOT NULL,
    PRIMARY KEY (id, n)
) WITHOUT ROWID;

-- Decision links in emails: the SHA-256 of the token, never the token.
CREATE TABLE decision_links (
    hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE INDEX decision_links_expiry ON decision_links (expires_at);

-- Events before this migration notify nobody.
INSERT INTO meta (key, value) SELECT 'notify_cursor', CAST(COALESCE(MAX(seq), 0) AS TEXT) FROM events;
