//! Known-answer tests (transparency-dev's RFC 9162 vectors, copied into
//! `tests/data/merkle` with their license note) and property tests of the
//! tree, the tiles and the proofs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use proptest::prelude::*;
use serde::Deserialize;

use super::merkle::*;
use super::tile::{TileBuilder, TileId, TileSource, encode_index, tree_of};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/merkle")
}

fn b64(text: &str) -> Vec<u8> {
    BASE64.decode(text).unwrap()
}

fn cases<T: for<'de> Deserialize<'de>>(kind: &str) -> Vec<(PathBuf, T)> {
    let mut found = Vec::new();
    let mut dirs = vec![data_dir().join(kind)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let text = std::fs::read_to_string(&path).unwrap();
                found.push((path, serde_json::from_str(&text).unwrap()));
            }
        }
    }
    assert!(!found.is_empty(), "no {kind} vectors found");
    found
}

#[derive(Deserialize)]
struct Roots {
    leaf_inputs_hex: Vec<String>,
    root_by_tree_size_hex: Vec<String>,
}

fn reference_leaves() -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(data_dir().join("roots.json")).unwrap();
    let roots: Roots = serde_json::from_str(&text).unwrap();
    roots
        .leaf_inputs_hex
        .iter()
        .map(|leaf| hex::decode(leaf).unwrap())
        .collect()
}

#[test]
fn roots_match_the_reference_for_every_size() {
    let text = std::fs::read_to_string(data_dir().join("roots.json")).unwrap();
    let roots: Roots = serde_json::from_str(&text).unwrap();
    let leaves = reference_leaves();
    for (size, expected) in roots.root_by_tree_size_hex.iter().enumerate() {
        assert_eq!(
            hex::encode(root_of(&leaves[..size])),
            *expected,
            "size {size}"
        );
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InclusionCase {
    leaf_idx: u64,
    tree_size: u64,
    root: String,
    leaf_hash: String,
    proof: Option<Vec<String>>,
    want_err: bool,
}

#[test]
fn every_inclusion_vector_is_accepted_or_rejected_as_it_should() {
    for (path, case) in cases::<InclusionCase>("inclusion") {
        let proof: Vec<Vec<u8>> = case
            .proof
            .unwrap_or_default()
            .iter()
            .map(|p| b64(p))
            .collect();
        let result = verify_inclusion(
            case.leaf_idx,
            case.tree_size,
            &b64(&case.leaf_hash),
            &proof,
            &b64(&case.root),
        );
        assert_eq!(
            result.is_err(),
            case.want_err,
            "{}: {result:?}",
            path.display()
        );
    }
}

#[derive(Deserialize)]
struct ConsistencyCase {
    size1: u64,
    size2: u64,
    root1: String,
    root2: String,
    proof: Option<Vec<String>>,
    #[serde(rename = "wantErr")]
    want_err: bool,
}

#[test]
fn every_consistency_vector_is_accepted_or_rejected_as_it_should() {
    for (path, case) in cases::<ConsistencyCase>("consistency") {
        let proof: Vec<Vec<u8>> = case
            .proof
            .unwrap_or_default()
            .iter()
            .map(|p| b64(p))
            .collect();
        let result = verify_consistency(
            case.size1,
            case.size2,
            &b64(&case.root1),
            &b64(&case.root2),
            &proof,
        );
        assert_eq!(
            result.is_err(),
            case.want_err,
            "{}: {result:?}",
            path.display()
        );
    }
}

#[test]
fn generated_proofs_match_the_happy_path_vectors() {
    let leaves: Vec<Hash> = reference_leaves()
        .iter()
        .map(|leaf| leaf_hash(leaf))
        .collect();
    for (path, case) in cases::<InclusionCase>("inclusion") {
        if case.want_err || case.tree_size > leaves.len() as u64 {
            continue;
        }
        let mut tree = MemoryTree::new(leaves[..case.tree_size as usize].to_vec());
        let proof = inclusion_proof(&mut tree, case.leaf_idx, case.tree_size).unwrap();
        let expected: Vec<Vec<u8>> = case
            .proof
            .unwrap_or_default()
            .iter()
            .map(|p| b64(p))
            .collect();
        let proof: Vec<Vec<u8>> = proof.iter().map(|h| h.to_vec()).collect();
        assert_eq!(proof, expected, "{}", path.display());
    }
    for (path, case) in cases::<ConsistencyCase>("consistency") {
        if case.want_err || case.size2 > leaves.len() as u64 || case.size2 == 0 {
            continue;
        }
        let mut tree = MemoryTree::new(leaves[..case.size2 as usize].to_vec());
        let proof = consistency_proof(&mut tree, case.size1, case.size2).unwrap();
        let expected: Vec<Vec<u8>> = case
            .proof
            .unwrap_or_default()
            .iter()
            .map(|p| b64(p))
            .collect();
        let proof: Vec<Vec<u8>> = proof.iter().map(|h| h.to_vec()).collect();
        assert_eq!(proof, expected, "{}", path.display());
    }
}

fn leaves(n: u64) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

/// Builds tiles for `n` leaves, appending in batches of `batch`, and keeps
/// what a store would keep: the latest bytes of every tile.
fn tiles_of(n: u64, batch: u64) -> (BTreeMap<(u32, u64), Vec<u8>>, Hash) {
    let mut builder = TileBuilder::default();
    let mut stored = BTreeMap::new();
    for (i, leaf) in leaves(n).into_iter().enumerate() {
        builder.append(leaf);
        if (i as u64 + 1).is_multiple_of(batch) {
            stored.extend(
                builder
                    .take_dirty()
                    .into_iter()
                    .map(|(l, x, b)| ((l, x), b)),
            );
        }
    }
    stored.extend(
        builder
            .take_dirty()
            .into_iter()
            .map(|(l, x, b)| ((l, x), b)),
    );
    (stored, builder.root())
}

#[test]
fn tile_proofs_equal_memory_proofs_across_tile_boundaries() {
    let n = 70_000;
    let (stored, root) = tiles_of(n, 997);
    let all = leaves(n);
    assert_eq!(root, root_of_hashes(&all));
    let mut memory = MemoryTree::new(all);
    let mut tiles =
        TileSource::new(|level, index| Ok::<_, ()>(tree_of(stored.get(&(level, index)).cloned())));
    for (index, size) in [
        (0, 1),
        (255, 256),
        (256, 257),
        (65_535, 65_536),
        (65_536, 70_000),
        (12_345, 69_999),
        (69_999, 70_000),
    ] {
        let a = inclusion_proof(&mut memory, index, size).unwrap();
        let b = inclusion_proof(&mut tiles, index, size).unwrap();
        assert_eq!(a, b, "inclusion {index} in {size}");
    }
    for (from, to) in [
        (1, 70_000),
        (256, 65_537),
        (65_536, 70_000),
        (300, 301),
        (69_999, 70_000),
    ] {
        let a = consistency_proof(&mut memory, from, to).unwrap();
        let b = consistency_proof(&mut tiles, from, to).unwrap();
        assert_eq!(a, b, "consistency {from} to {to}");
    }
}

fn root_of_hashes(hashes: &[Hash]) -> Hash {
    let mut frontier = Frontier::new();
    for hash in hashes {
        frontier.append(*hash, |_, _, _| {});
    }
    frontier.root()
}

#[test]
fn a_builder_restored_from_tiles_continues_the_same_tree() {
    for n in [0u64, 1, 255, 256, 257, 65_536, 65_537, 70_001] {
        let (stored, _) = tiles_of(n, 1000);
        let restored =
            TileBuilder::restore(n, |l, x| stored.get(&(l, x)).cloned().ok_or(()), || ());
        let mut builder = restored.unwrap();
        let mut reference = TileBuilder::default();
        for leaf in leaves(n + 300) {
            reference.append(leaf);
        }
        for leaf in &leaves(n + 300)[n as usize..] {
            builder.append(*leaf);
        }
        assert_eq!(builder.root(), reference.root(), "size {n}");
    }
}

#[test]
fn tile_paths_round_trip() {
    assert_eq!(encode_index(1_234_067), "x001/x234/067");
    assert_eq!(encode_index(5), "005");
    let id = TileId {
        level: Some(1),
        index: 1_234_067,
        width: 7,
    };
    assert_eq!(id.path(), "1/x001/x234/067.p/7");
    assert_eq!(TileId::parse(&id.path()), Some(id));
    let bundle = TileId {
        level: None,
        index: 0,
        width: 256,
    };
    assert_eq!(bundle.path(), "entries/000");
    assert_eq!(TileId::parse("entries/000"), Some(bundle));
    for bad in [
        "1/x000/001",
        "1/01",
        "1/001.p/256",
        "1/001.p/0",
        "64/000",
        "x/000",
        "1/001.p/07",
    ] {
        assert_eq!(TileId::parse(bad), None, "{bad}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn proofs_verify_and_any_flipped_bit_is_rejected(size in 1u64..600, seed in any::<u64>(), bit in 0usize..256) {
        let all = leaves(size);
        let root = root_of_hashes(&all);
        let mut tree = MemoryTree::new(all.clone());
        let index = seed % size;
        let proof = inclusion_proof(&mut tree, index, size).unwrap();
        prop_assert!(verify_inclusion(index, size, &all[index as usize], &proof, &root).is_ok());

        let flip = |hash: &Hash| { let mut h = *hash; h[bit / 8] ^= 1 << (bit % 8); h };
        prop_assert!(verify_inclusion(index, size, &flip(&all[index as usize]), &proof, &root).is_err());
        prop_assert!(verify_inclusion(index, size, &all[index as usize], &proof, &flip(&root)).is_err());
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let at = (seed as usize / 7) % bad.len();
            bad[at] = flip(&bad[at]);
            prop_assert!(verify_inclusion(index, size, &all[index as usize], &bad, &root).is_err());
        }

        let from = (seed / 3) % size + 1;
        let old_root = root_of_hashes(&all[..from as usize]);
        let proof = consistency_proof(&mut tree, from, size).unwrap();
        prop_assert!(verify_consistency(from, size, &old_root, &root, &proof).is_ok());
        prop_assert!(verify_consistency(from, size, &flip(&old_root), &root, &proof).is_err());
        prop_assert!(verify_consistency(from, size, &old_root, &flip(&root), &proof).is_err() || from == size);
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let at = (seed as usize / 11) % bad.len();
            bad[at] = flip(&bad[at]);
            prop_assert!(verify_consistency(from, size, &old_root, &root, &bad).is_err());
        }
    }
}
