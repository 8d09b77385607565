//! C2SP tlog-tiles: tiles of height 8 (256 hashes), their paths, the
//! entry-bundle encoding, a builder that keeps the right edge of every tile
//! level while the sequencer appends, and a `NodeSource` over stored tiles.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::merkle::{Frontier, Hash, NodeSource};

/// Tile height: a tile at tile level `L` holds hashes of tree level `8 L`.
pub const HEIGHT: u32 = 8;
/// Hashes in a full tile.
pub const WIDTH: u64 = 1 << HEIGHT;

/// A tile's coordinates and width (1..=256).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TileId {
    /// Tile level; `None` for an entry bundle.
    pub level: Option<u32>,
    /// Tile index at that level.
    pub index: u64,
    /// Number of hashes (or entries); 256 for a full tile.
    pub width: u64,
}

impl TileId {
    /// The path under `tile/`: `<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]`.
    pub fn path(&self) -> String {
        let level = match self.level {
            Some(level) => level.to_string(),
            None => "entries".to_owned(),
        };
        let mut path = format!("{level}/{}", encode_index(self.index));
        if self.width < WIDTH {
            path.push_str(&format!(".p/{}", self.width));
        }
        path
    }

    /// Parses a path under `tile/`; `None` when it is not a tile path.
    pub fn parse(path: &str) -> Option<TileId> {
        let (level, rest) = path.split_once('/')?;
        let level = match level {
            "entries" => None,
            digits => Some(parse_decimal(digits).filter(|l| *l < 64)? as u32),
        };
        let (index_path, width) = match rest.split_once(".p/") {
            Some((index_path, width)) => {
                let width = parse_decimal(width).filter(|w| (1..WIDTH).contains(w))?;
                (index_path, width)
            }
            None => (rest, WIDTH),
        };
        let index = decode_index(index_path)?;
        Some(TileId {
            level,
            index,
            width,
        })
    }
}

fn parse_decimal(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

/// `1234067` → `x001/x234/067`.
pub fn encode_index(index: u64) -> String {
    let mut groups = Vec::new();
    let mut rest = index;
    loop {
        groups.push(rest % 1000);
        rest /= 1000;
        if rest == 0 {
            break;
        }
    }
    let last = groups.len() - 1;
    groups
        .iter()
        .rev()
        .enumerate()
        .map(|(i, group)| {
            if i == last {
                format!("{group:03}")
            } else {
                format!("x{group:03}")
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn decode_index(path: &str) -> Option<u64> {
    let parts: Vec<&str> = path.split('/').collect();
    let (last, leading) = parts.split_last()?;
    let mut index = 0u64;
    for part in leading {
        let digits = part.strip_prefix('x')?;
        index = index.checked_mul(1000)?.checked_add(group(digits)?)?;
    }
    let index = index.checked_mul(1000)?.checked_add(group(last)?)?;
    // The canonical encoding has no leading `x000` group.
    (encode_index(index) == path).then_some(index)
}

fn group(digits: &str) -> Option<u64> {
    (digits.len() == 3 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Appends one entry to an entry bundle (big-endian u16 length, then bytes).
pub fn push_bundle_entry(bundle: &mut Vec<u8>, entry: &[u8]) -> Result<(), EntryTooLarge> {
    let length = u16::try_from(entry.len()).map_err(|_| EntryTooLarge)?;
    bundle.extend_from_slice(&length.to_be_bytes());
    bundle.extend_from_slice(entry);
    Ok(())
}

/// An entry longer than 65,535 bytes cannot go into a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an audit entry is longer than 65535 bytes")]
pub struct EntryTooLarge;

/// Splits an entry bundle into entries; `None` when it is malformed.
pub fn split_bundle(mut bundle: &[u8]) -> Option<Vec<&[u8]>> {
    let mut entries = Vec::new();
    while !bundle.is_empty() {
        let (length, rest) = bundle.split_first_chunk::<2>()?;
        let length = usize::from(u16::from_be_bytes(*length));
        if rest.len() < length {
            return None;
        }
        let (entry, rest) = rest.split_at(length);
        entries.push(entry);
        bundle = rest;
    }
    Some(entries)
}

/// The hash tiles of a growing tree: the frontier plus the rightmost tile
/// of every level, recording which tiles changed since the last `take`.
#[derive(Debug, Clone, Default)]
pub struct TileBuilder {
    frontier: Frontier,
    /// Rightmost tile per tile level: its index and its hashes.
    edges: Vec<(u64, Vec<Hash>)>,
    /// Tiles completed since the last `take_dirty`.
    completed: Vec<(u32, u64, Vec<u8>)>,
    /// Tile levels whose rightmost tile changed since the last `take_dirty`.
    touched: Vec<bool>,
}

impl TileBuilder {
    /// Resumes a tree of `size` leaves; `tile(level, index)` returns a
    /// stored tile's bytes.
    pub fn restore<E>(
        size: u64,
        mut tile: impl FnMut(u32, u64) -> Result<Vec<u8>, E>,
        missing: impl Fn() -> E,
    ) -> Result<TileBuilder, E> {
        let mut edges = Vec::new();
        for level in 0..64u32 {
            let count = size.checked_shr(HEIGHT * level).unwrap_or(0);
            if count == 0 {
                break;
            }
            let index = count / WIDTH;
            let width = count % WIDTH;
            let hashes = if width == 0 {
                Vec::new()
            } else {
                let bytes = tile(level, index)?;
                let hashes = hashes_of(&bytes).ok_or_else(&missing)?;
                hashes.get(..width as usize).ok_or_else(&missing)?.to_vec()
            };
            edges.push((index, hashes));
        }
        let mut source = TileSource::new(|level, index| tile(level, index).map(Some).map(tree_of));
        let frontier = Frontier::restore(size, |level, index| {
            source.node(level, index).map_err(|error| match error {
                TileError::Source(error) => error,
                TileError::Missing => missing(),
            })
        })?;
        Ok(TileBuilder {
            frontier,
            touched: vec![false; edges.len()],
            edges,
            completed: Vec::new(),
        })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The current root.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// Appends a leaf hash.
    pub fn append(&mut self, leaf: Hash) {
        let (edges, completed, touched) = (&mut self.edges, &mut self.completed, &mut self.touched);
        self.frontier.append(leaf, |level, index, hash| {
            if level % HEIGHT != 0 {
                return;
            }
            let tile_level = level / HEIGHT;
            let slot = tile_level as usize;
            if edges.len() <= slot {
                edges.resize_with(slot + 1, || (0, Vec::new()));
                touched.resize(slot + 1, false);
            }
            let (tile_index, hashes) = &mut edges[slot];
            if index / WIDTH != *tile_index {
                *tile_index = index / WIDTH;
                hashes.clear();
            }
            hashes.push(*hash);
            touched[slot] = true;
            if hashes.len() as u64 == WIDTH {
                completed.push((tile_level, *tile_index, hashes.concat()));
            }
        });
    }

    /// The tiles completed or grown since the last call, as
    /// `(level, index, bytes)`; the width is `bytes.len() / 32`.
    pub fn take_dirty(&mut self) -> Vec<(u32, u64, Vec<u8>)> {
        let mut tiles = std::mem::take(&mut self.completed);
        for (slot, touched) in self.touched.iter_mut().enumerate() {
            let Some((index, hashes)) = self.edges.get(slot) else {
                continue;
            };
            if std::mem::take(touched) && !hashes.is_empty() && (hashes.len() as u64) < WIDTH {
                tiles.push((slot as u32, *index, hashes.concat()));
            }
        }
        tiles
    }

    /// Tiles completed since the last call (partial tiles stay pending).
    pub fn take_completed(&mut self) -> Vec<(u32, u64, Vec<u8>)> {
        std::mem::take(&mut self.completed)
    }
}

/// Splits tile bytes into hashes; `None` when the length is not a multiple
/// of 32.
pub fn hashes_of(bytes: &[u8]) -> Option<Vec<Hash>> {
    if !bytes.len().is_multiple_of(32) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(32)
            .filter_map(|chunk| Hash::try_from(chunk).ok())
            .collect(),
    )
}

/// A tile with every level of its subtree computed once, so that proofs
/// read nodes instead of rehashing the tile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileTree {
    /// `levels[r]` holds the nodes `r` levels above the tile's base.
    levels: Vec<Vec<Hash>>,
}

impl TileTree {
    /// Builds the subtree of a tile's bytes; `None` when they are not hashes.
    pub fn new(bytes: &[u8]) -> Option<TileTree> {
        Some(TileTree {
            levels: super::merkle::levels_above(hashes_of(bytes)?),
        })
    }

    /// Number of base hashes.
    pub fn width(&self) -> u64 {
        self.levels.first().map_or(0, |base| base.len() as u64)
    }

    /// Whether the tile is full (and so never changes).
    pub fn is_full(&self) -> bool {
        self.width() == WIDTH
    }

    /// The node `rise` levels above the base, over base hashes from `first`.
    fn node(&self, rise: u32, first: u64) -> Option<Hash> {
        let level = self.levels.get(rise as usize)?;
        level.get(usize::try_from(first >> rise).ok()?).copied()
    }
}

/// Why a node could not be read from tiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TileError<E> {
    /// The tile is not stored or too narrow: the node is not complete.
    Missing,
    /// Reading the tile failed.
    Source(E),
}

/// A `NodeSource` over stored tiles, keeping the tiles it reads.
pub struct TileSource<F> {
    fetch: F,
    cache: BTreeMap<(u32, u64), Arc<TileTree>>,
}

impl<F, E> TileSource<F>
where
    F: FnMut(u32, u64) -> Result<Option<Arc<TileTree>>, E>,
{
    /// `fetch(level, index)` returns the widest stored version of a tile.
    pub fn new(fetch: F) -> TileSource<F> {
        TileSource {
            fetch,
            cache: BTreeMap::new(),
        }
    }
}

/// Turns stored tile bytes into a `TileTree` for a `TileSource`.
pub fn tree_of(bytes: Option<Vec<u8>>) -> Option<Arc<TileTree>> {
    bytes.and_then(|bytes| TileTree::new(&bytes)).map(Arc::new)
}

impl<F, E> NodeSource for TileSource<F>
where
    F: FnMut(u32, u64) -> Result<Option<Arc<TileTree>>, E>,
{
    type Error = TileError<E>;

    fn node(&mut self, level: u32, index: u64) -> Result<Hash, TileError<E>> {
        let rise = level % HEIGHT;
        let first = index << rise;
        let key = (level / HEIGHT, first / WIDTH);
        let tile = match self.cache.get(&key) {
            Some(tile) => Arc::clone(tile),
            None => {
                let tile = (self.fetch)(key.0, key.1)
                    .map_err(TileError::Source)?
                    .ok_or(TileError::Missing)?;
                self.cache.insert(key, Arc::clone(&tile));
                tile
            }
        };
        tile.node(rise, first % WIDTH).ok_or(TileError::Missing)
    }
}
