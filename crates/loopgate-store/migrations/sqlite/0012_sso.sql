-- Single sign-on (docs/sso.md): where a user comes from, the provider's
-- identity of a user signed in through OpenID Connect (issuer + subject,
-- never the email alone), the ID token a session may hand back to the
-- provider at logout, and the logins waiting for the provider's answer.

-- `local` (made by an admin), `bootstrap` (the first admin: the one who may
-- still sign in with a password when `password_login = false`), `oidc`.
ALTER TABLE users ADD COLUMN source TEXT NOT NULL DEFAULT 'local';
ALTER TABLE users ADD COLUMN oidc_issuer TEXT;
ALTER TABLE users ADD COLUMN oidc_subject TEXT;
CREATE UNIQUE INDEX users_by_oidc ON users (oidc_issuer, oidc_subject) WHERE oidc_subject IS NOT NULL;
UPDATE users SET source = 'bootstrap'
    WHERE id IN (SELECT subject FROM events WHERE type = 'user.created' AND actor = 'loopgate');

-- The provider's ID token, sent back as `id_token_hint` at logout.
ALTER TABLE sessions ADD COLUMN id_token TEXT;

-- A login sent to the provider: its `state` (hashed), bound to the browser
-- that started it (a cookie, hashed), with the nonce and PKCE verifier the
-- callback needs. Taken (deleted) by the callback: a state works once.
CREATE TABLE oidc_logins (
    state_hash TEXT PRIMARY KEY,
    browser_hash TEXT NOT NULL,
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    next TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX oidc_logins_by_expiry ON oidc_logins (expires_at);
