-- Policies whose evaluation failed while a proposal was routed: each counted
-- the most restrictive way it could. JSON `[{"policy", "message"}]`; NULL
-- when none failed.
ALTER TABLE proposals ADD COLUMN policy_errors TEXT;

-- The same for the shadow version, one row per failing policy and proposal.
CREATE TABLE shadow_errors (
    proposal_id TEXT NOT NULL,
    version TEXT NOT NULL,
    policy TEXT NOT NULL,
    message TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (proposal_id, policy)
);
CREATE INDEX shadow_errors_by_version ON shadow_errors (version, at);
