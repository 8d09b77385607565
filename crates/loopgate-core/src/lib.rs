//! loopgate's domain: ids, timestamps, digests, Cedar routing and the review
//! state machine.
//!
//! Architecture invariant: this crate does no IO and has no async. It never
//! reads the clock or a random source: functions that need the time take
//! `now: Timestamp`, and ids come in as arguments. Its errors are refusals
//! (a stale digest, a self-approval), never IO failures.

pub mod analytics;
pub mod assign;
pub mod audit;
pub mod digest;
pub mod duration;
mod enums;
pub mod grant;
pub mod ids;
pub mod notify;
pub mod proposal;
pub mod review;
pub mod routing;
pub mod sso;
pub mod timestamp;

pub use digest::Digest;
pub use enums::*;
pub use grant::{Grant, GrantTerms, Grantable};
pub use ids::{GrantId, ProposalId, SystemId, TaskId, UserId};
pub use timestamp::Timestamp;
