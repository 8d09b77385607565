-- Standing grants (docs/policies.md, `@grantable`): approvers let later
-- proposals of the same system, action and subject (and output, for
-- `same_output`) through for a while. Neither the subject nor the output
-- is stored here: a grant keeps their digests keyed with the deployment's
-- grant key (`meta.grant_secret`), which is what admission looks them up by.
-- `used` counts the proposals it approved; `ended` is set once
-- `grant.expired` is logged. Rows are never deleted (the evidence report
-- lists them).
CREATE TABLE grants (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    system TEXT NOT NULL,
    action TEXT NOT NULL,
    subject_digest TEXT NOT NULL,
    scope TEXT NOT NULL,
    output_digest TEXT,
    policies TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    grp TEXT NOT NULL,
    granted_by TEXT NOT NULL,
    proposal_id TEXT NOT NULL,
    used BIGINT NOT NULL DEFAULT 0,
    max_uses BIGINT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    revoked_by TEXT,
    ended BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX grants_lookup ON grants (subject_digest) WHERE revoked_at IS NULL AND NOT ended;
CREATE INDEX grants_ending ON grants (expires_at) WHERE revoked_at IS NULL AND NOT ended;
-- What the task's policy allows (`Grantable`): a longest grant, or the risk
-- tier that refuses grants.
ALTER TABLE tasks ADD COLUMN grant_max_ms BIGINT;
ALTER TABLE tasks ADD COLUMN grant_refused_tier TEXT;
-- The terms an approver agreed to, as JSON.
ALTER TABLE decisions ADD COLUMN grant_terms TEXT;
-- The grant that approved a proposal (`decided_by: grant`).
ALTER TABLE proposals ADD COLUMN grant_id TEXT;
