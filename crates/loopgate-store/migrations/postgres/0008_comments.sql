-- A comment thread per proposal (docs/api.md): what reviewers (and
-- auditors) say to each other about it, kept with the proposal. The body is
-- a payload: erased with the proposal's (NULL), and only its salted hash is
-- in the audit log (`comment.added`).
CREATE TABLE comments (
    id TEXT PRIMARY KEY,
    proposal_id TEXT NOT NULL REFERENCES proposals (id),
    author TEXT NOT NULL,
    body TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX comments_by_proposal ON comments (proposal_id, created_at);
