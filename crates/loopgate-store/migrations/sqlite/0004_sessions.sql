-- Web UI sessions. The cookie holds a random secret; only its SHA-256 is
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
