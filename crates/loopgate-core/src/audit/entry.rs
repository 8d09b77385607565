//! Audit entries and salted payload hashes.
//!
//! An entry is RFC 8785 canonical JSON:
//! `{"actor", "data", "index", "subject", "time", "type"}` (keys in JCS
//! order). `data` holds ids, digests and salted hashes, never payloads.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use serde::Deserialize;
use serde_json::Value;

use crate::digest::{Digest, canonical_json, write_canonical, write_string};

/// Bytes of a proposal's salt.
pub const SALT_LEN: usize = 32;

/// A proposal's salt as it appears in hashed documents (base64url, no pad).
pub fn salt_text(salt: &[u8]) -> String {
    BASE64URL.encode(salt)
}

/// Decodes a salt from its text form.
pub fn parse_salt(text: &str) -> Option<Vec<u8>> {
    BASE64URL
        .decode(text)
        .ok()
        .filter(|salt| salt.len() == SALT_LEN)
}

/// The salted hash of one payload field: SHA-256 over the canonical JSON of
/// `{"field": field, "salt": <base64url salt>, "value": value}`. Without
/// the salt, which erasure deletes, the hash cannot be linked to a guess.
pub fn salted_hash(salt: &[u8], field: &str, value: &Value) -> Digest {
    // The members in RFC 8785's order, written one by one rather than by
    // copying `value` into a document first.
    let mut document = Vec::with_capacity(128);
    for (name, text) in [
        (&b"{\"field\":"[..], field),
        (b",\"salt\":", &salt_text(salt)),
    ] {
        document.extend_from_slice(name);
        write_string(&mut document, text);
    }
    document.extend_from_slice(b",\"value\":");
    write_canonical(&mut document, value);
    document.push(b'}');
    Digest::of_canonical(&document)
}

/// The canonical bytes of an entry. `data` must already be canonical JSON
/// (the store writes it with [`canonical_json`]).
pub fn encode(
    index: u64,
    time: &str,
    actor: &str,
    type_: &str,
    subject: Option<&str>,
    data: &str,
) -> Vec<u8> {
    let string = |text: &str| serde_json::to_string(text).unwrap_or_default();
    let subject = subject.map_or_else(|| "null".to_owned(), string);
    format!(
        r#"{{"actor":{},"data":{data},"index":{index},"subject":{subject},"time":{},"type":{}}}"#,
        string(actor),
        string(time),
        string(type_),
    )
    .into_bytes()
}

/// Canonical JSON text of an event's data.
pub fn canonical_data(data: &Value) -> String {
    String::from_utf8(canonical_json(data)).unwrap_or_default()
}

/// The fields of an entry a verifier reads.
#[derive(Debug, Clone, Deserialize)]
pub struct EntryHead<'a> {
    /// Leaf index the entry claims.
    pub index: u64,
    /// Event type.
    #[serde(rename = "type", borrow)]
    pub type_: std::borrow::Cow<'a, str>,
    /// Subject id.
    #[serde(borrow)]
    pub subject: Option<std::borrow::Cow<'a, str>>,
    /// Event data.
    pub data: Value,
}

/// Parses an entry's head; `None` when it is not an entry.
pub fn parse_head(entry: &[u8]) -> Option<EntryHead<'_>> {
    serde_json::from_slice(entry).ok()
}

/// Reads the `"index":N` of a canonical entry without parsing it all: the
/// index follows `data`, so it is the last `,"index":` before `,"subject":`.
pub fn index_of(entry: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b",\"index\":";
    let subject = rfind(entry, b",\"subject\":")?;
    let start = rfind(&entry[..subject], KEY)? + KEY.len();
    let digits = &entry[start..subject];
    if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
        return None;
    }
    let mut index = 0u64;
    for &byte in digits {
        if !byte.is_ascii_digit() {
            return None;
        }
        index = index.checked_mul(10)?.checked_add(u64::from(byte - b'0'))?;
    }
    Some(index)
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, _) = needle.split_first()?;
    memchr::memrchr_iter(first, haystack).find(|&i| haystack[i..].starts_with(needle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_entry_is_canonical_json() {
        let data = canonical_data(&json!({"proposal": "prp_1", "digest": "sha256:00", "level": 0}));
        let entry = encode(
            7,
            "2026-01-01T00:00:00.000Z",
            "user:rita",
            "decision.recorded",
            Some("prp_1"),
            &data,
        );
        let value: Value = serde_json::from_slice(&entry).unwrap();
        assert_eq!(canonical_json(&value), entry);
        assert_eq!(index_of(&entry), Some(7));
        let head = parse_head(&entry).unwrap();
        assert_eq!((head.index, head.type_.as_ref()), (7, "decision.recorded"));
        let unsubjected = encode(0, "t", "loopgate", "policy.published", None, "{}");
        assert_eq!(index_of(&unsubjected), Some(0));
        assert!(
            String::from_utf8(unsubjected)
                .unwrap()
                .contains("\"subject\":null")
        );
    }

    proptest::proptest! {
        /// Written member by member, the document is the one its
        /// definition builds whole.
        #[test]
        fn a_salted_hash_is_its_definition(
            salt in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            field in "[a-z_\"é😀]{0,8}",
            value in "[a-z\"\\\\\u{1}€😀]{0,8}",
            n in proptest::prelude::any::<f64>(),
        ) {
            let value = json!({"text": value, "n": serde_json::Number::from_f64(n), "list": [value, 1, null]});
            let whole = Digest::of_json(&json!({"field": field, "salt": salt_text(&salt), "value": value}));
            proptest::prop_assert_eq!(salted_hash(&salt, &field, &value), whole);
        }
    }

    #[test]
    fn salted_hashes_depend_on_the_salt_and_field() {
        let value = json!({"amount": 10});
        let a = salted_hash(&[1; 32], "input", &value);
        assert_ne!(a, salted_hash(&[2; 32], "input", &value));
        assert_ne!(a, salted_hash(&[1; 32], "output", &value));
        assert_eq!(a, salted_hash(&[1; 32], "input", &json!({"amount": 10})));
        assert_eq!(parse_salt(&salt_text(&[9; 32])), Some(vec![9; 32]));
    }
}
