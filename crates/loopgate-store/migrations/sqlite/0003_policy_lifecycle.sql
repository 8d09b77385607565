-- The policy lifecycle: declared proposal shapes per system, which
-- version is live or shadow (each activation is kept), what shadow
-- versions disagreed on, and counters for `@max_auto` caps.

ALTER TABLE systems ADD COLUMN shape TEXT;

CREATE TABLE policy_activations (
    seq INTEGER PRIMARY KEY,
    version TEXT NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('live', 'shadow', 'shadow_off')),
    reason TEXT NOT NULL,
    actor TEXT NOT NULL,
    at INTEGER NOT NULL
);

INSERT INTO policy_activations (version, mode, reason, actor, at)
SELECT version, 'live', description, created_by, created_at FROM policies ORDER BY seq DESC LIMIT 1;

CREATE TABLE shadow_disagreements (
    proposal_id TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    live_route TEXT NOT NULL,
    shadow_route TEXT NOT NULL,
    live_matched TEXT NOT NULL,
    shadow_matched TEXT NOT NULL,
    shadow_group TEXT,
    at INTEGER NOT NULL
);
CREATE INDEX shadow_by_version ON shadow_disagreements (version, at);

CREATE TABLE auto_counters (
    policy TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (policy, window_start)
) WITHOUT ROWID;

CREATE INDEX proposals_by_time ON proposals (created_at);
