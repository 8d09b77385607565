//! The HTTP-level integration suite: a real server on a loopback port with a
//! fresh data directory per test, driven over HTTP; on SQLite, or on a fresh
//! PostgreSQL database per test with `LOOPGATE_TEST_STORE=postgres`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod analytics;
mod assignment;
mod audit;
mod credentials;
mod e2e;
mod errors;
mod events;
mod fail_closed;
mod grants;
mod harness;
mod limits;
mod notifications;
mod policies;
mod proposals;
mod review;
mod routing;
mod sso;
mod traces;
mod ui;
mod visibility;
mod webhooks;
