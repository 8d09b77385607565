-- The core loop: systems, users and credentials, policy versions,
-- proposals, review tasks, decisions, and the event log.
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE systems (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    owner TEXT NOT NULL,
    purpose TEXT NOT NULL,
    risk_tier TEXT NOT NULL,
    oversight TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    roles TEXT NOT NULL,
    groups_ TEXT NOT NULL,
    password_hash TEXT,
    created_at INTEGER NOT NULL
);

-- API keys of systems and personal tokens of users; only hashes are stored.
CREATE TABLE credentials (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE policies (
    seq INTEGER PRIMARY KEY,
    version TEXT NOT NULL,
    text TEXT NOT NULL,
    description TEXT NOT NULL,
    policy_ids TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE proposals (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    system TEXT NOT NULL REFERENCES systems (id),
    action TEXT NOT NULL,
    idempotency_key TEXT,
    digest TEXT NOT NULL,
    submitted_digest TEXT NOT NULL,
    subject TEXT NOT NULL,
    input TEXT NOT NULL,
    output TEXT NOT NULL,
    confidence REAL,
    explanation TEXT,
    model TEXT,
    context TEXT NOT NULL,
    status TEXT NOT NULL,
    route TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    matched_policies TEXT NOT NULL,
    overridden INTEGER NOT NULL,
    modified INTEGER NOT NULL,
    blind INTEGER NOT NULL,
    decided_by TEXT,
    decided_at INTEGER,
    submitted_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX proposals_idempotency ON proposals (system, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX proposals_by_system ON proposals (system, seq);
CREATE INDEX proposals_by_status ON proposals (status, seq);

CREATE TABLE tasks (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    proposal_id TEXT NOT NULL REFERENCES proposals (id),
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    grp TEXT NOT NULL,
    level INTEGER NOT NULL,
    required INTEGER NOT NULL,
    -- Approvals of the proposal's current digest, kept by every decision.
    approvals INTEGER NOT NULL DEFAULT 0,
    due_at INTEGER,
    claimed_by TEXT,
    lease_expires_at INTEGER,
    first_group TEXT NOT NULL,
    sla_ms INTEGER,
    escalate_to TEXT NOT NULL,
    on_timeout TEXT NOT NULL,
    blind INTEGER NOT NULL,
    sample_probability REAL NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX tasks_queue ON tasks (state, grp, seq);
CREATE INDEX tasks_by_proposal ON tasks (proposal_id);
CREATE INDEX tasks_due ON tasks (due_at) WHERE state IN ('open', 'claimed') AND due_at IS NOT NULL;

CREATE TABLE decisions (
    seq INTEGER PRIMARY KEY,
    proposal_id TEXT NOT NULL REFERENCES proposals (id),
    task_id TEXT NOT NULL REFERENCES tasks (id),
    reviewer TEXT NOT NULL,
    verdict TEXT NOT NULL,
    digest TEXT NOT NULL,
    rationale TEXT,
    output TEXT,
    labels TEXT,
    level INTEGER NOT NULL,
    decided_at INTEGER NOT NULL,
    UNIQUE (proposal_id, reviewer)
);

-- Every state change, written in the transaction of the change. Payloads
-- appear only as digests; the audit log (Merkle tree) is built over this.
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    actor TEXT NOT NULL,
    type TEXT NOT NULL,
    subject TEXT,
    data TEXT NOT NULL
);
