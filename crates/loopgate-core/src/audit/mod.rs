//! The tamper-evident audit log's math and formats: entries, the RFC 9162
//! Merkle tree and its proofs, C2SP tlog-tiles, signed notes and
//! checkpoints, and the offline verifier. No IO: the store keeps the tiles,
//! the server signs, the CLI reads exports.

pub mod checkpoint;
pub mod entry;
pub mod event;
pub mod merkle;
pub mod note;
pub mod tile;
pub mod verify;

#[cfg(test)]
mod tests;

pub use checkpoint::Checkpoint;
pub use merkle::{Frontier, Hash, leaf_hash, node_hash};
pub use note::{Signer, Verifier};
