//! Offline verification of a whole log: every entry's index, every leaf,
//! every tile, every checkpoint's signature and root, in one streaming pass.
//!
//! The caller reads the files and feeds them in; this module does no IO.
//! Checking each checkpoint's root against the tree rebuilt from the same
//! entries proves every pair of checkpoints consistent (one tree holds them
//! all), which is what consistency proofs show a client that lacks the
//! entries.

use std::fmt;

use super::checkpoint::Checkpoint;
use super::entry::index_of;
use super::merkle::leaf_hash;
use super::note::Verifier;
use super::tile::{TileBuilder, TileId, WIDTH};

/// The first thing that did not verify, named for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// An entry is wrong.
    Entry {
        /// Its position in the log.
        index: u64,
        /// Why.
        reason: String,
    },
    /// A checkpoint is wrong.
    Checkpoint {
        /// Its file or position.
        name: String,
        /// Why.
        reason: String,
    },
    /// A tile differs from the one rebuilt from the entries.
    Tile {
        /// Its path under `tile/`.
        path: String,
        /// Why.
        reason: String,
    },
    /// The log as a whole is wrong (truncated, empty).
    Log(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Entry { index, reason } => write!(f, "entry {index}: {reason}"),
            Failure::Checkpoint { name, reason } => write!(f, "checkpoint {name}: {reason}"),
            Failure::Tile { path, reason } => write!(f, "tile {path}: {reason}"),
            Failure::Log(reason) => f.write_str(reason),
        }
    }
}

/// What a successful run checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Entries checked.
    pub entries: u64,
    /// Checkpoints checked.
    pub checkpoints: usize,
    /// The root of the whole log.
    pub root: [u8; 32],
}

/// A tile rebuilt from the entries, to compare with the exported one.
pub type RebuiltTile = (TileId, Vec<u8>);

/// The streaming verifier.
#[derive(Debug)]
pub struct LogVerifier {
    tree: TileBuilder,
    checkpoints: Vec<(String, Checkpoint)>,
    next: usize,
}

impl LogVerifier {
    /// Checks every checkpoint's signature with `verifier` and orders them
    /// by size. `checkpoints` are `(name, note)` pairs; names go into
    /// failure messages.
    pub fn new(
        verifier: &Verifier,
        checkpoints: Vec<(String, String)>,
    ) -> Result<LogVerifier, Failure> {
        let mut opened = Vec::with_capacity(checkpoints.len());
        for (name, note) in checkpoints {
            match Checkpoint::open(&note, verifier) {
                Ok(checkpoint) => opened.push((name, checkpoint)),
                Err(error) => {
                    return Err(Failure::Checkpoint {
                        name,
                        reason: error.to_string(),
                    });
                }
            }
        }
        if opened.is_empty() {
            return Err(Failure::Log("the export has no checkpoint".to_owned()));
        }
        opened.sort_by_key(|(_, checkpoint)| checkpoint.size);
        for pair in opened.windows(2) {
            let ((_, a), (name, b)) = (&pair[0], &pair[1]);
            if b.time < a.time {
                return Err(Failure::Checkpoint {
                    name: name.clone(),
                    reason: format!(
                        "it covers more entries ({}) than an earlier-dated checkpoint ({}) but is dated before it",
                        b.size, a.size
                    ),
                });
            }
        }
        Ok(LogVerifier {
            tree: TileBuilder::default(),
            checkpoints: opened,
            next: 0,
        })
    }

    /// Entries seen so far.
    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    /// The size of the largest checkpoint: how many entries must follow.
    pub fn expected(&self) -> u64 {
        self.checkpoints
            .last()
            .map_or(0, |(_, checkpoint)| checkpoint.size)
    }

    /// Adds the next entry. `exported_leaf` is its hash in the exported
    /// level-0 tile, when there is one: a difference names the changed entry
    /// before any checkpoint can only name a range.
    pub fn push(&mut self, entry: &[u8], exported_leaf: Option<&[u8]>) -> Result<(), Failure> {
        let index = self.tree.size();
        match index_of(entry) {
            Some(claimed) if claimed == index => {}
            Some(claimed) => {
                let reason = format!(
                    "it says it is entry {claimed}: an entry was inserted, deleted or moved"
                );
                return Err(Failure::Entry { index, reason });
            }
            None => {
                let reason = "it is not a canonical audit entry".to_owned();
                return Err(Failure::Entry { index, reason });
            }
        }
        let leaf = leaf_hash(entry);
        if exported_leaf.is_some_and(|exported| exported != leaf) {
            let reason =
                "its hash differs from the exported tile's: the entry was changed".to_owned();
            return Err(Failure::Entry { index, reason });
        }
        self.tree.append(leaf);
        self.check_checkpoints()
    }

    fn check_checkpoints(&mut self) -> Result<(), Failure> {
        let size = self.tree.size();
        while let Some((name, checkpoint)) = self.checkpoints.get(self.next) {
            if checkpoint.size > size {
                break;
            }
            if self.tree.root() != checkpoint.root {
                let since = self
                    .next
                    .checked_sub(1)
                    .and_then(|i| self.checkpoints.get(i))
                    .map_or(0, |(_, c)| c.size);
                return Err(Failure::Checkpoint {
                    name: name.clone(),
                    reason: format!(
                        "its root does not match the entries: an entry in {since}..{} was changed, or the checkpoint was",
                        checkpoint.size
                    ),
                });
            }
            self.next += 1;
        }
        Ok(())
    }

    /// Tiles completed since the last call, to compare with the exported ones.
    pub fn completed_tiles(&mut self) -> Vec<RebuiltTile> {
        self.tree
            .take_completed()
            .into_iter()
            .map(|(level, index, bytes)| (tile_id(level, index, &bytes), bytes))
            .collect()
    }

    /// Ends the run: every checkpoint must be covered by the entries. The
    /// rightmost partial tiles are returned for comparison.
    pub fn finish(mut self) -> Result<(Summary, Vec<RebuiltTile>), Failure> {
        self.check_checkpoints()?;
        if let Some((name, checkpoint)) = self.checkpoints.get(self.next) {
            return Err(Failure::Checkpoint {
                name: name.clone(),
                reason: format!(
                    "it covers {} entries but the export holds only {}: the log was truncated",
                    checkpoint.size,
                    self.tree.size()
                ),
            });
        }
        let summary = Summary {
            entries: self.tree.size(),
            checkpoints: self.checkpoints.len(),
            root: self.tree.root(),
        };
        let tiles = self
            .tree
            .take_dirty()
            .into_iter()
            .map(|(level, index, bytes)| (tile_id(level, index, &bytes), bytes))
            .collect();
        Ok((summary, tiles))
    }
}

fn tile_id(level: u32, index: u64, bytes: &[u8]) -> TileId {
    TileId {
        level: Some(level),
        index,
        width: (bytes.len() as u64 / 32).min(WIDTH),
    }
}

/// Compares a rebuilt tile with the exported bytes; names the first
/// differing hash.
pub fn compare_tile(id: &TileId, rebuilt: &[u8], exported: Option<&[u8]>) -> Result<(), Failure> {
    let path = id.path();
    let Some(exported) = exported else {
        return Err(Failure::Tile {
            path,
            reason: "it is missing from the export".to_owned(),
        });
    };
    if exported == rebuilt {
        return Ok(());
    }
    let position = rebuilt
        .chunks(32)
        .zip(exported.chunks(32))
        .position(|(a, b)| a != b)
        .unwrap_or(rebuilt.len().min(exported.len()) / 32) as u64;
    let reason = match id.level {
        Some(0) => format!(
            "hash {position} differs from the leaf hash of entry {}",
            id.index * WIDTH + position
        ),
        _ => format!("hash {position} differs from the one rebuilt from the entries"),
    };
    Err(Failure::Tile { path, reason })
}
