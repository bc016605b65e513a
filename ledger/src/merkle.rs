//! Merkle trees for the transaction and receipt roots of block headers, and the inclusion proofs a
//! household checks against a certified header.
//!
//! The tree is the one of RFC 6962 (Certificate Transparency), restated in RFC 9162 §2.1, with blake3
//! in place of SHA-256. These definitions are normative; changing any of them changes every root and
//! proof the ledger has ever produced:
//!
//! - The leaf hash of leaf data `d` is `blake3(0x00 ‖ d)`.
//! - The hash of an interior node with children `left` and `right` is `blake3(0x01 ‖ left ‖ right)`.
//!   The two distinct prefixes keep a leaf from ever being passed off as an interior node.
//! - The Merkle Tree Hash (MTH) of an empty list is `blake3("")`, the hash of the empty string.
//! - The MTH of a list of one leaf is that leaf's leaf hash.
//! - For `n > 1` leaves, let `k` be the largest power of two strictly below `n`; then
//!   `MTH(D[0..n]) = node(MTH(D[0..k]), MTH(D[k..n]))`.
//!
//! An inclusion proof (audit path) for leaf `m` of a tree of `n` leaves is `PATH(m, D[0..n])` of
//! RFC 6962 §2.1.1: the hashes of the sibling subtrees from the leaf up to the root, nearest first:
//!
//! - `PATH(0, D[0..1])` is empty;
//! - for `n > 1` and `k` as above, `PATH(m, D[0..n])` is `PATH(m, D[0..k]) ‖ MTH(D[k..n])` when
//!   `m < k`, and `PATH(m - k, D[k..n]) ‖ MTH(D[0..k])` otherwise.
//!
//! A proof is verified exactly as in RFC 9162 §2.1.3.2 (the iterative algorithm with `fn`, `sn` and
//! `r`), after two cheap checks that need no hashing: the index must be below the tree size, and the
//! path must have exactly the length that algorithm consumes for that index and size (never more
//! than 64 entries, as a tree of at most `u64::MAX` leaves is at most 64 levels deep).
//!
//! A proof does not authenticate its own `tree_size`: a proof that claims a wrong size can still
//! verify when the wrong size gives the leaf the same path shape. The root is only meaningful
//! together with the leaf count certified in the same header, so callers must check that
//! `tree_size` equals that count (see [`InclusionProof::verify`]).

use crate::hash::Hash;

/// The domain-separation byte hashed in front of leaf data.
const LEAF_PREFIX: u8 = 0x00;

/// The domain-separation byte hashed in front of the two children of an interior node.
const NODE_PREFIX: u8 = 0x01;

/// The longest audit path any tree can need: a tree with at most `u64::MAX` leaves has at most 64
/// levels above its leaves.
const MAX_PATH_LENGTH: usize = 64;

/// The leaf hash of `data`: `blake3(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    Hash::of_parts(&[&[LEAF_PREFIX], data])
}

/// The hash of an interior node: `blake3(0x01 ‖ left ‖ right)`.
fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Hash::of_parts(&[&[NODE_PREFIX], &left.0, &right.0])
}

/// The largest power of two strictly below `leaf_count`, which is where RFC 6962 splits a tree of
/// `leaf_count` leaves into its left and right subtrees.
///
/// The caller must pass at least two leaves: a tree of fewer leaves has no split.
fn split_point(leaf_count: usize) -> usize {
    assert!(leaf_count >= 2, "a tree of {leaf_count} leaves has no split point");
    // For n >= 2, 2^floor(log2(n - 1)) is the largest power of two that is strictly below n.
    1 << (leaf_count - 1).ilog2()
}

/// The Merkle Tree Hash of the leaves whose leaf hashes are `leaf_hashes`, in order.
///
/// Every interior node is hashed exactly once (n - 1 node hashes for n leaves) and nothing is
/// allocated; the recursion follows the RFC's split, so it is at most 64 calls deep.
pub fn root(leaf_hashes: &[Hash]) -> Hash {
    match leaf_hashes {
        [] => Hash::of(&[]),
        [only] => *only,
        _ => {
            let (left, right) = leaf_hashes.split_at(split_point(leaf_hashes.len()));
            node_hash(&root(left), &root(right))
        }
    }
}

/// A proof that one leaf is part of a tree with a given root: RFC 6962 `PATH(leaf_index, D[0..tree_size])`.
#[derive(Clone, Debug, PartialEq, Eq, borsh::BorshSerialize, borsh::BorshDeserialize)]
pub struct InclusionProof {
    /// The zero-based position of the proven leaf in the tree.
    pub leaf_index: u64,
    /// The number of leaves in the tree; callers must check it against the certified header.
    pub tree_size: u64,
    /// The hashes of the sibling subtrees on the way from the leaf to the root, nearest first.
    pub path: Vec<Hash>,
}

/// The inclusion proof for leaf `leaf_index` of the tree with leaf hashes `leaf_hashes`, or `None`
/// when there is no such leaf.
///
/// This hashes about as many nodes as [`root`] does: each step down the tree computes the root of
/// the sibling subtree, and those subtrees halve in size.
pub fn prove(leaf_hashes: &[Hash], leaf_index: usize) -> Option<InclusionProof> {
    if leaf_index >= leaf_hashes.len() {
        return None;
    }
    let proof_leaf_index = u64::try_from(leaf_index).ok()?;
    let tree_size = u64::try_from(leaf_hashes.len()).ok()?;

    // Walk from the root down to the leaf, recording the sibling subtree at every split. That yields
    // the path farthest-first, so it is reversed at the end into the RFC's nearest-first order.
    let mut path = Vec::new();
    let mut subtree = leaf_hashes;
    let mut index_in_subtree = leaf_index;
    while subtree.len() > 1 {
        let (left, right) = subtree.split_at(split_point(subtree.len()));
        if index_in_subtree < left.len() {
            path.push(root(right));
            subtree = left;
        } else {
            path.push(root(left));
            index_in_subtree -= left.len();
            subtree = right;
        }
    }
    path.reverse();
    Some(InclusionProof { leaf_index: proof_leaf_index, tree_size, path })
}

/// Why an inclusion proof was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The proof names a leaf position that the tree does not have.
    #[error("leaf index {leaf_index} is not below the tree size {tree_size}")]
    IndexOutOfRange {
        /// The leaf position the proof claims.
        leaf_index: u64,
        /// The number of leaves the proof claims.
        tree_size: u64,
    },
    /// The audit path is longer or shorter than the one the index and size call for.
    #[error(
        "an inclusion proof for leaf {leaf_index} of a tree of {tree_size} leaves needs \
         {expected_path_length} path entries, but this one has {path_length}"
    )]
    PathLength {
        /// The leaf position the proof claims.
        leaf_index: u64,
        /// The number of leaves the proof claims.
        tree_size: u64,
        /// The number of hashes the audit path holds.
        path_length: usize,
        /// The number of hashes an audit path for this index and size must hold.
        expected_path_length: usize,
    },
    /// The leaf and the audit path hash to a different root than the trusted one.
    #[error(
        "the proof for leaf {leaf_index} of a tree of {tree_size} leaves leads to root \
         {computed_root}, not to the expected root {expected_root}"
    )]
    RootMismatch {
        /// The leaf position the proof claims.
        leaf_index: u64,
        /// The number of leaves the proof claims.
        tree_size: u64,
        /// The root the leaf and the audit path hash to.
        computed_root: Hash,
        /// The trusted root the proof was checked against.
        expected_root: Hash,
    },
}

/// The number of audit-path entries the RFC 9162 §2.1.3.2 algorithm consumes for leaf `leaf_index`
/// of a tree of `tree_size` leaves; the caller must ensure `leaf_index < tree_size`.
///
/// This replays the algorithm's updates of `fn` and `sn` without hashing. Every round shifts `sn`
/// right at least once, so there are at most 64 rounds and the result is at most
/// [`MAX_PATH_LENGTH`].
fn expected_path_length(leaf_index: u64, tree_size: u64) -> usize {
    assert!(leaf_index < tree_size, "leaf index {leaf_index} is not below the tree size {tree_size}");
    let mut first_node_index = leaf_index;
    let mut last_node_index = tree_size - 1;
    let mut rounds = 0;
    while last_node_index != 0 {
        if first_node_index & 1 == 0 && first_node_index == last_node_index {
            while first_node_index & 1 == 0 && first_node_index != 0 {
                first_node_index >>= 1;
                last_node_index >>= 1;
            }
        }
        first_node_index >>= 1;
        last_node_index >>= 1;
        rounds += 1;
    }
    rounds
}

impl InclusionProof {
    /// Checks that `leaf_data` is leaf `leaf_index` of a tree of `tree_size` leaves with root `root`.
    ///
    /// `root` must come from a certified header, and the caller must also check that `tree_size`
    /// equals the leaf count certified in that header: the proof does not authenticate its own size.
    ///
    /// The proof may come from anyone, so this never panics, and it rejects a path of the wrong
    /// length (in particular any path longer than 64 entries) before hashing any of its entries.
    pub fn verify(&self, leaf_data: &[u8], root: &Hash) -> Result<(), ProofError> {
        self.verify_leaf_hash(&leaf_hash(leaf_data), root)
    }

    /// Like [`InclusionProof::verify`], for a leaf whose leaf hash the caller already has.
    pub fn verify_leaf_hash(&self, leaf_hash: &Hash, root: &Hash) -> Result<(), ProofError> {
        let leaf_index = self.leaf_index;
        let tree_size = self.tree_size;
        if leaf_index >= tree_size {
            return Err(ProofError::IndexOutOfRange { leaf_index, tree_size });
        }
        // The expected length is at most MAX_PATH_LENGTH, so this also rejects over-long paths
        // before any of their entries are hashed.
        let expected_path_length = expected_path_length(leaf_index, tree_size);
        let path_length_error = ProofError::PathLength {
            leaf_index,
            tree_size,
            path_length: self.path.len(),
            expected_path_length,
        };
        if self.path.len() != expected_path_length || self.path.len() > MAX_PATH_LENGTH {
            return Err(path_length_error);
        }

        // RFC 9162 §2.1.3.2, step by step: `first_node_index` is `fn`, `last_node_index` is `sn` and
        // `computed_root` is `r`. The length check above makes the two length failures of the
        // algorithm unreachable, but they are kept so that this loop is the RFC's on its own.
        let mut first_node_index = leaf_index;
        let mut last_node_index = tree_size - 1;
        let mut computed_root = *leaf_hash;
        for sibling in &self.path {
            if last_node_index == 0 {
                return Err(path_length_error);
            }
            if first_node_index & 1 == 1 || first_node_index == last_node_index {
                computed_root = node_hash(sibling, &computed_root);
                if first_node_index & 1 == 0 {
                    // The node is the last one of its level and a left child, so it has no right
                    // sibling: climb until it is a right child or the root of a left subtree.
                    while first_node_index & 1 == 0 && first_node_index != 0 {
                        first_node_index >>= 1;
                        last_node_index >>= 1;
                    }
                }
            } else {
                computed_root = node_hash(&computed_root, sibling);
            }
            first_node_index >>= 1;
            last_node_index >>= 1;
        }
        if last_node_index != 0 {
            return Err(path_length_error);
        }
        if computed_root != *root {
            return Err(ProofError::RootMismatch {
                leaf_index,
                tree_size,
                computed_root,
                expected_root: *root,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;
    use proptest::prelude::*;

    /// The test leaves of a tree of `leaf_count` leaves; all distinct.
    fn leaf_data(leaf_count: usize) -> Vec<Vec<u8>> {
        (0..leaf_count)
            .map(|leaf_number| format!("household {leaf_number} sold 3 kWh").into_bytes())
            .collect()
    }

    fn leaf_hashes(leaves: &[Vec<u8>]) -> Vec<Hash> {
        leaves.iter().map(|leaf| leaf_hash(leaf)).collect()
    }

    /// The largest power of two strictly below `n`, found the slow and obvious way.
    fn naive_split(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    /// MTH straight from RFC 6962 §2.1, over the leaf data rather than precomputed leaf hashes.
    fn naive_mth(leaves: &[Vec<u8>]) -> Hash {
        match leaves.len() {
            0 => Hash(*blake3::hash(b"").as_bytes()),
            1 => {
                let mut input = vec![0x00];
                input.extend_from_slice(&leaves[0]);
                Hash(*blake3::hash(&input).as_bytes())
            }
            n => {
                let k = naive_split(n);
                let mut input = vec![0x01];
                input.extend_from_slice(&naive_mth(&leaves[..k]).0);
                input.extend_from_slice(&naive_mth(&leaves[k..]).0);
                Hash(*blake3::hash(&input).as_bytes())
            }
        }
    }

    /// PATH straight from RFC 6962 §2.1.1.
    fn naive_path(m: usize, leaves: &[Vec<u8>]) -> Vec<Hash> {
        let n = leaves.len();
        if n == 1 {
            return Vec::new();
        }
        let k = naive_split(n);
        if m < k {
            let mut path = naive_path(m, &leaves[..k]);
            path.push(naive_mth(&leaves[k..]));
            path
        } else {
            let mut path = naive_path(m - k, &leaves[k..]);
            path.push(naive_mth(&leaves[..k]));
            path
        }
    }

    /// The sequence of "sibling on the left" decisions RFC 9162 §2.1.3.2 makes for an index and a
    /// size, or `None` when the index is out of range. Two (index, size) pairs with the same shape
    /// combine the same path in the same way.
    fn path_shape(leaf_index: u64, tree_size: u64) -> Option<Vec<bool>> {
        if leaf_index >= tree_size {
            return None;
        }
        let (mut first, mut last) = (leaf_index, tree_size - 1);
        let mut shape = Vec::new();
        while last != 0 {
            let sibling_on_left = first & 1 == 1 || first == last;
            if first & 1 == 0 && first == last {
                while first & 1 == 0 && first != 0 {
                    first >>= 1;
                    last >>= 1;
                }
            }
            shape.push(sibling_on_left);
            first >>= 1;
            last >>= 1;
        }
        Some(shape)
    }

    #[test]
    fn root_and_prove_match_the_rfc_text_for_every_size_and_index() {
        for leaf_count in 0..=70 {
            let leaves = leaf_data(leaf_count);
            let hashes = leaf_hashes(&leaves);
            assert_eq!(root(&hashes), naive_mth(&leaves), "root of {leaf_count} leaves");
            for leaf_index in 0..leaf_count {
                let proof = prove(&hashes, leaf_index).unwrap();
                assert_eq!(proof.leaf_index, u64::try_from(leaf_index).unwrap());
                assert_eq!(proof.tree_size, u64::try_from(leaf_count).unwrap());
                assert_eq!(proof.path, naive_path(leaf_index, &leaves), "path {leaf_index} of {leaf_count}");
            }
            assert_eq!(prove(&hashes, leaf_count), None, "index {leaf_count} of {leaf_count}");
            assert_eq!(prove(&hashes, usize::MAX), None);
        }
    }

    #[test]
    fn known_structure() {
        let [l0, l1, l2] = [b"a", b"b", b"c"].map(|data| leaf_hash(data));
        assert_eq!(l0, Hash::of(b"\x00a"));
        assert_eq!(root(&[]), Hash::of(b""));
        assert_eq!(root(&[l0]), l0);
        assert_eq!(root(&[l0, l1]), Hash::of_parts(&[&[1], &l0.0, &l1.0]));
        assert_eq!(root(&[l0, l1, l2]), node_hash(&node_hash(&l0, &l1), &l2));
        assert_eq!(root(&[l0, l1, l2, l0]), node_hash(&node_hash(&l0, &l1), &node_hash(&l2, &l0)));
    }

    #[test]
    fn golden_root_of_a_b_c() {
        let hashes = leaf_hashes(&[b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        expect!["6c62dd52a0971b7d00a7cead004e0c3f3c0766e3f5359a0f8297768d2b02d03c"]
            .assert_eq(&root(&hashes).to_string());
    }

    #[test]
    fn every_proof_verifies_and_every_tampering_fails() {
        for leaf_count in 1..=70 {
            let leaves = leaf_data(leaf_count);
            let hashes = leaf_hashes(&leaves);
            let tree_root = root(&hashes);
            for leaf_index in 0..leaf_count {
                let proof = prove(&hashes, leaf_index).unwrap();
                let leaf = &leaves[leaf_index];
                assert_eq!(proof.verify(leaf, &tree_root), Ok(()), "leaf {leaf_index} of {leaf_count}");
                assert_eq!(proof.verify_leaf_hash(&hashes[leaf_index], &tree_root), Ok(()));

                for byte_index in 0..leaf.len() {
                    let mut tampered_leaf = leaf.clone();
                    tampered_leaf[byte_index] ^= 0x01;
                    assert!(proof.verify(&tampered_leaf, &tree_root).is_err());
                }
                assert!(proof.verify(&[], &tree_root).is_err());

                let mut tampered_root = tree_root;
                tampered_root.0[0] ^= 0x01;
                assert!(matches!(proof.verify(leaf, &tampered_root), Err(ProofError::RootMismatch { .. })));

                for entry_index in 0..proof.path.len() {
                    for byte_index in 0..32 {
                        let mut tampered = proof.clone();
                        tampered.path[entry_index].0[byte_index] ^= 0x01;
                        assert!(tampered.verify(leaf, &tree_root).is_err());
                    }
                }

                let mut shortened = proof.clone();
                if shortened.path.pop().is_some() {
                    assert!(matches!(shortened.verify(leaf, &tree_root), Err(ProofError::PathLength { .. })));
                }
                let mut lengthened = proof.clone();
                lengthened.path.push(tree_root);
                assert!(matches!(lengthened.verify(leaf, &tree_root), Err(ProofError::PathLength { .. })));

                for byte_index in 0..8 {
                    for mask in [0x01_u8, 0x80, 0xFF] {
                        let mut index_bytes = proof.leaf_index.to_le_bytes();
                        index_bytes[byte_index] ^= mask;
                        let tampered =
                            InclusionProof { leaf_index: u64::from_le_bytes(index_bytes), ..proof.clone() };
                        assert!(tampered.verify(leaf, &tree_root).is_err(), "{tampered:?}");

                        // The proof does not authenticate its size (the header does), so a wrong size
                        // may only pass when it gives the leaf exactly the same path shape.
                        let mut size_bytes = proof.tree_size.to_le_bytes();
                        size_bytes[byte_index] ^= mask;
                        let tampered =
                            InclusionProof { tree_size: u64::from_le_bytes(size_bytes), ..proof.clone() };
                        if tampered.verify(leaf, &tree_root).is_ok() {
                            assert_eq!(
                                path_shape(tampered.leaf_index, tampered.tree_size),
                                path_shape(proof.leaf_index, proof.tree_size),
                                "{tampered:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Documents why callers must compare `tree_size` with the certified header: leaf 2 of a tree of
    /// three has the same path shape as leaf 1 of a tree of two, so the relabelled proof verifies.
    #[test]
    fn tree_size_is_bound_only_by_the_certified_header() {
        let leaves = leaf_data(3);
        let hashes = leaf_hashes(&leaves);
        let proof = prove(&hashes, 2).unwrap();
        let relabelled = InclusionProof { leaf_index: 1, tree_size: 2, ..proof };
        assert_eq!(relabelled.verify(&leaves[2], &root(&hashes)), Ok(()));
    }

    #[test]
    fn hostile_proofs_are_rejected_cheaply() {
        let some_root = Hash::of(b"root");
        let huge_path = vec![Hash::ZERO; 100_000];
        let proof = InclusionProof { leaf_index: 0, tree_size: u64::MAX, path: huge_path };
        assert_eq!(
            proof.verify(b"leaf", &some_root),
            Err(ProofError::PathLength {
                leaf_index: 0,
                tree_size: u64::MAX,
                path_length: 100_000,
                expected_path_length: 64
            })
        );
        let proof = InclusionProof { leaf_index: u64::MAX, tree_size: u64::MAX, path: Vec::new() };
        assert_eq!(
            proof.verify(b"leaf", &some_root),
            Err(ProofError::IndexOutOfRange { leaf_index: u64::MAX, tree_size: u64::MAX })
        );
        let proof = InclusionProof { leaf_index: 0, tree_size: 0, path: Vec::new() };
        assert!(matches!(proof.verify(b"leaf", &some_root), Err(ProofError::IndexOutOfRange { .. })));
        let proof =
            InclusionProof { leaf_index: u64::MAX - 1, tree_size: u64::MAX, path: vec![Hash::ZERO; 64] };
        assert!(proof.verify(b"leaf", &some_root).is_err());
        // The last leaf of a tree that is not full skips a level; the first leaf of the largest tree
        // needs the longest possible path.
        assert_eq!(expected_path_length(u64::MAX - 1, u64::MAX), 63);
        assert_eq!(expected_path_length(0, u64::MAX), MAX_PATH_LENGTH);
        assert_eq!(expected_path_length(0, 1), 0);
    }

    #[test]
    fn error_messages_name_the_numbers() {
        let error =
            ProofError::PathLength { leaf_index: 5, tree_size: 7, path_length: 9, expected_path_length: 3 };
        assert_eq!(
            error.to_string(),
            "an inclusion proof for leaf 5 of a tree of 7 leaves needs 3 path entries, but this one has 9"
        );
        let error = ProofError::IndexOutOfRange { leaf_index: 7, tree_size: 7 };
        assert_eq!(error.to_string(), "leaf index 7 is not below the tree size 7");
    }

    #[test]
    fn a_large_tree_is_fast_and_its_proofs_verify() {
        let hashes: Vec<Hash> =
            (0..100_000_u32).map(|leaf_number| leaf_hash(&leaf_number.to_le_bytes())).collect();
        let tree_root = root(&hashes);
        // 100 000 leaves split into subtrees of 65 536, 32 768, 1 024, 512, 128 and 32 leaves, so the
        // first 98 304 leaves need 17 path entries and the last 32 need 5 splits + 5 levels = 10.
        for (leaf_index, expected_path_length) in
            [(0, 17), (1, 17), (65_535, 17), (65_536, 17), (99_968, 10), (99_998, 10), (99_999, 10)]
        {
            let proof = prove(&hashes, leaf_index).unwrap();
            assert_eq!(proof.path.len(), expected_path_length, "leaf {leaf_index}");
            assert_eq!(proof.verify_leaf_hash(&hashes[leaf_index], &tree_root), Ok(()));
        }
    }

    fn any_tree_size() -> impl Strategy<Value = u64> {
        prop_oneof![any::<u64>(), 0..200_u64, (u64::MAX - 200)..=u64::MAX]
    }

    fn any_proof() -> impl Strategy<Value = InclusionProof> {
        (any_tree_size(), any_tree_size(), prop::collection::vec(any::<[u8; 32]>().prop_map(Hash), 0..=80))
            .prop_map(|(leaf_index, tree_size, path)| InclusionProof { leaf_index, tree_size, path })
    }

    proptest! {
        #[test]
        fn arbitrary_proofs_never_panic(proof in any_proof(), leaf in prop::collection::vec(any::<u8>(), 0..64), root_bytes in any::<[u8; 32]>()) {
            let _ = proof.verify(&leaf, &Hash(root_bytes));
        }

        #[test]
        fn proofs_of_random_trees_verify(leaf_count in 1..500_usize, index_seed in any::<usize>()) {
            let hashes: Vec<Hash> = (0..leaf_count).map(|leaf_number| leaf_hash(&leaf_number.to_le_bytes())).collect();
            let leaf_index = index_seed % leaf_count;
            let proof = prove(&hashes, leaf_index).unwrap();
            prop_assert_eq!(proof.verify_leaf_hash(&hashes[leaf_index], &root(&hashes)), Ok(()));
        }
    }
}
