//! Wire types of the loopgate HTTP API: request and response bodies exactly as
//! they appear in JSON, the RFC 9457 `Problem` body and the `ErrorCode` table.
//!
//! This crate has no behaviour and depends on no other loopgate crate. Ids,
//! digests and timestamps are plain strings here; the server parses them into
//! domain types. Renaming a field here is a breaking change of the API.
#![deny(missing_docs, rustdoc::broken_intra_doc_links)]

mod analytics;
mod error;
mod types;

pub use analytics::*;
pub use error::{ErrorCode, Problem};
pub use types::*;
