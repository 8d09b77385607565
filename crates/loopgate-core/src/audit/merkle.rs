//! The RFC 9162 Merkle tree: leaf and node hashes, the append-only frontier
//! that gives the root, proofs built from any source of subtree hashes, and
//! the RFC's verification algorithms (sections 2.1.3.2 and 2.1.4.2).
//!
//! Levels count from the leaves: a node at level `h` and index `i` is the
//! root of the perfect subtree over leaves `[i << h, (i + 1) << h)`.

use sha2::{Digest as _, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 || entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(entry);
    hasher.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut block = [0u8; 65];
    block[0] = 1;
    block[1..33].copy_from_slice(left);
    block[33..].copy_from_slice(right);
    Sha256::digest(block).into()
}

/// The root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The right edge of a tree grown from leaf 0: one perfect subtree per set
/// bit of the size, largest first. Appending is amortised O(1) hashes and
/// reports every completed node, so a caller can keep tiles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    stack: Vec<Hash>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// Rebuilds the frontier of a tree of `size` leaves from its perfect
    /// subtrees, asking `node(level, index)` for each.
    pub fn restore<E>(
        size: u64,
        mut node: impl FnMut(u32, u64) -> Result<Hash, E>,
    ) -> Result<Frontier, E> {
        let mut stack = Vec::new();
        let mut start = 0u64;
        for level in (0..64u32).rev() {
            if size & (1u64 << level) != 0 {
                stack.push(node(level, start >> level)?);
                start += 1u64 << level;
            }
        }
        Ok(Frontier { size, stack })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash; `completed(level, index, hash)` is called for
    /// the leaf (level 0) and for every node the leaf completes.
    pub fn append(&mut self, leaf: Hash, mut completed: impl FnMut(u32, u64, &Hash)) {
        let mut hash = leaf;
        let mut index = self.size;
        let mut level = 0u32;
        completed(level, index, &hash);
        while index & 1 == 1 {
            let Some(left) = self.stack.pop() else { break };
            hash = node_hash(&left, &hash);
            index >>= 1;
            level += 1;
            completed(level, index, &hash);
        }
        self.stack.push(hash);
        self.size += 1;
    }

    /// The tree's root (RFC 9162 MTH).
    pub fn root(&self) -> Hash {
        let mut nodes = self.stack.iter().rev();
        let Some(last) = nodes.next() else {
            return empty_root();
        };
        nodes.fold(*last, |right, left| node_hash(left, &right))
    }
}

/// The root of a list of entries (for tests and small trees).
pub fn root_of<T: AsRef<[u8]>>(entries: &[T]) -> Hash {
    let mut frontier = Frontier::new();
    for entry in entries {
        frontier.append(leaf_hash(entry.as_ref()), |_, _, _| {});
    }
    frontier.root()
}

/// Where proofs read subtree hashes from: tiles, a database, memory.
pub trait NodeSource {
    /// Why a hash could not be read.
    type Error;
    /// The root of the perfect subtree at `level`, `index`.
    fn node(&mut self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// Why a proof could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError<E> {
    /// The requested index or sizes do not fit the tree.
    #[error("{0}")]
    OutOfRange(&'static str),
    /// The node source failed.
    #[error("reading the tree failed")]
    Source(E),
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves
/// (RFC 9162 2.1.3.1), from the leaf upwards.
pub fn inclusion_proof<S: NodeSource>(
    source: &mut S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if index >= size {
        return Err(ProofError::OutOfRange(
            "the index must be below the tree size",
        ));
    }
    let mut proof = Vec::new();
    path(source, index, 0, size, &mut proof).map_err(ProofError::Source)?;
    Ok(proof)
}

/// The consistency proof between the trees of `from` and `to` leaves
/// (RFC 9162 2.1.4.1).
pub fn consistency_proof<S: NodeSource>(
    source: &mut S,
    from: u64,
    to: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if from > to {
        return Err(ProofError::OutOfRange("from must not be above to"));
    }
    let mut proof = Vec::new();
    if from > 0 && from < to {
        subproof(source, from, 0, to, true, &mut proof).map_err(ProofError::Source)?;
    }
    Ok(proof)
}

/// The largest power of two below `n` (n >= 2).
fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

fn path<S: NodeSource>(
    source: &mut S,
    m: u64,
    lo: u64,
    hi: u64,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    if hi - lo <= 1 {
        return Ok(());
    }
    let k = split(hi - lo);
    if m < lo + k {
        path(source, m, lo, lo + k, out)?;
        out.push(range_hash(source, lo + k, hi)?);
    } else {
        path(source, m, lo + k, hi, out)?;
        out.push(range_hash(source, lo, lo + k)?);
    }
    Ok(())
}

fn subproof<S: NodeSource>(
    source: &mut S,
    m: u64,
    lo: u64,
    hi: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    let n = hi - lo;
    if m == n {
        if !whole {
            out.push(range_hash(source, lo, hi)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(source, m, lo, lo + k, whole, out)?;
        out.push(range_hash(source, lo + k, hi)?);
    } else {
        subproof(source, m - k, lo + k, hi, false, out)?;
        out.push(range_hash(source, lo, lo + k)?);
    }
    Ok(())
}

/// MTH of leaves `[lo, hi)`, where `lo` is aligned to the largest power of
/// two not above `hi - lo` (always so inside the RFC's recursion).
pub fn range_hash<S: NodeSource>(source: &mut S, lo: u64, hi: u64) -> Result<Hash, S::Error> {
    let n = hi - lo;
    if n.is_power_of_two() {
        let level = n.trailing_zeros();
        return source.node(level, lo >> level);
    }
    let k = split(n);
    let left = range_hash(source, lo, lo + k)?;
    let right = range_hash(source, lo + k, hi)?;
    Ok(node_hash(&left, &right))
}

/// Why a proof did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The index or sizes cannot be right.
    #[error("{0}")]
    Bounds(&'static str),
    /// The proof has the wrong number of hashes, or a hash of the wrong length.
    #[error("{0}")]
    Shape(&'static str),
    /// The recomputed root is not the expected one.
    #[error("the recomputed root does not match")]
    RootMismatch,
}

fn to_hash(bytes: &[u8]) -> Result<Hash, VerifyError> {
    bytes
        .try_into()
        .map_err(|_| VerifyError::Shape("a hash is not 32 bytes long"))
}

/// Verifies an inclusion proof (RFC 9162 2.1.3.2).
pub fn verify_inclusion<P: AsRef<[u8]>>(
    index: u64,
    size: u64,
    leaf: &[u8],
    proof: &[P],
    root: &[u8],
) -> Result<(), VerifyError> {
    if index >= size {
        return Err(VerifyError::Bounds("the index is not below the tree size"));
    }
    let mut r = to_hash(leaf)?;
    let (mut f, mut s) = (index, size - 1);
    for p in proof {
        let p = to_hash(p.as_ref())?;
        if s == 0 {
            return Err(VerifyError::Shape("the proof is too long"));
        }
        if f & 1 == 1 || f == s {
            r = node_hash(&p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, &p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(VerifyError::Shape("the proof is too short"));
    }
    if r.as_slice() != root {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

/// Verifies a consistency proof (RFC 9162 2.1.4.2).
pub fn verify_consistency<P: AsRef<[u8]>>(
    from: u64,
    to: u64,
    from_root: &[u8],
    to_root: &[u8],
    proof: &[P],
) -> Result<(), VerifyError> {
    if from > to {
        return Err(VerifyError::Bounds("the first size is above the second"));
    }
    if from == 0 {
        return Err(VerifyError::Bounds(
            "a consistency proof from the empty tree proves nothing",
        ));
    }
    if from == to {
        if !proof.is_empty() {
            return Err(VerifyError::Shape("equal sizes need an empty proof"));
        }
        return if from_root == to_root {
            Ok(())
        } else {
            Err(VerifyError::RootMismatch)
        };
    }
    let Some((head, rest)) = proof.split_first() else {
        return Err(VerifyError::Shape("the proof is empty"));
    };
    let first = to_hash(from_root)?;
    let (mut f, mut s) = (from - 1, to - 1);
    let (seed, rest): (Hash, &[P]) = if from.is_power_of_two() {
        (first, proof)
    } else {
        (to_hash(head.as_ref())?, rest)
    };
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (seed, seed);
    for c in rest {
        let c = to_hash(c.as_ref())?;
        if s == 0 {
            return Err(VerifyError::Shape("the proof is too long"));
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(&c, &fr);
            sr = node_hash(&c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, &c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(VerifyError::Shape("the proof is too short"));
    }
    if fr != first || sr.as_slice() != to_root {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

/// Every complete level over `base`: `[base, pairs of base, ...]` up to a
/// single node (or fewer, when `base` is not a power of two wide).
pub fn levels_above(base: Vec<Hash>) -> Vec<Vec<Hash>> {
    let mut levels = vec![base];
    while let Some(below) = levels.last().filter(|level| level.len() > 1) {
        let above = below
            .chunks_exact(2)
            .map(|pair| node_hash(&pair[0], &pair[1]))
            .collect();
        levels.push(above);
    }
    levels
}

/// All node hashes of a small tree in memory; a `NodeSource` for tests and
/// for the offline verifier's checks of served proofs.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// Builds the tree over these leaf hashes.
    pub fn new(leaves: Vec<Hash>) -> MemoryTree {
        MemoryTree {
            levels: levels_above(leaves),
        }
    }
}

/// A node the tree does not have (yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingNode;

impl NodeSource for MemoryTree {
    type Error = MissingNode;
    fn node(&mut self, level: u32, index: u64) -> Result<Hash, MissingNode> {
        let level = usize::try_from(level).map_err(|_| MissingNode)?;
        let index = usize::try_from(index).map_err(|_| MissingNode)?;
        self.levels
            .get(level)
            .and_then(|hashes| hashes.get(index))
            .copied()
            .ok_or(MissingNode)
    }
}
