-- Web UI sessions, and review plans that require a rationale.
-- stored. The CSRF token is bound to the session. A session ends at
-- `expires_at` (absolute) or after the idle timeout since `seen_at`.
CREATE TABLE sessions (
    hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    csrf TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    seen_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX sessions_by_user ON sessions (user_id);

-- `@rationale("required")`: a decision on the task must say why.
ALTER TABLE tasks ADD COLUMN rationale_required INTEGER NOT NULL DEFAULT 0;
