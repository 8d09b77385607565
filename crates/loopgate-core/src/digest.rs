//! Proposal digests: SHA-256 over the RFC 8785 (JCS) canonical JSON of
//! `{action, input, output, salt, subject, system}`, where `salt` is the
//! proposal's own random salt in base64url.
//!
//! Every approval is bound to the digest the reviewer saw; an edit of the
//! output makes a new digest. Because the salt is in it, a digest in the
//! audit log cannot be linked to a guessed payload once the salt is erased
//! (crypto-shredding). The idempotency fingerprint is the same document
//! with an empty salt; it lives only beside the payload and is erased with it.

use std::fmt;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// `sha256:<64 hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest(String);

/// The parts of a proposal the digest covers.
#[derive(Debug, Clone, Copy)]
pub struct DigestParts<'a> {
    /// System id.
    pub system: &'a str,
    /// Action.
    pub action: &'a str,
    /// `{"type", "id", "attributes"}`.
    pub subject: &'a Value,
    /// Input.
    pub input: &'a Value,
    /// Output.
    pub output: &'a Value,
    /// The proposal's salt (empty for the idempotency fingerprint).
    pub salt: &'a [u8],
}

impl Digest {
    /// Computes the digest of a proposal.
    pub fn of(parts: DigestParts<'_>) -> Digest {
        Canonical::of(parts).digest(parts.salt)
    }

    /// The digest of a proposal and its idempotency fingerprint (the same
    /// document with an empty salt), its payload made canonical once.
    pub fn with_fingerprint(parts: DigestParts<'_>) -> (Digest, Digest) {
        let canonical = Canonical::of(parts);
        (canonical.digest(parts.salt), canonical.digest(&[]))
    }

    /// SHA-256 over the canonical JSON of any value.
    pub fn of_json(value: &Value) -> Digest {
        Digest::of_canonical(&canonical_json(value))
    }

    /// SHA-256 over bytes that already are canonical JSON.
    pub fn of_canonical(bytes: &[u8]) -> Digest {
        Digest::of_hash(&Sha256::digest(bytes).into())
    }

    /// `sha256:` and the hash in lowercase hex, written into one buffer
    /// (`hex::encode` collects a `String` char by char).
    fn of_hash(hash: &[u8; 32]) -> Digest {
        Digest(sha256_text(hash))
    }

    /// Parses `sha256:<64 lowercase hex>`.
    pub fn parse(text: &str) -> Option<Digest> {
        let hex_part = text.strip_prefix("sha256:")?;
        let well_formed = hex_part.len() == 64
            && hex_part
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        well_formed.then(|| Digest(text.to_owned()))
    }

    /// The digest as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The canonical JSON of a digest's document but its salt: the members
/// `action`, `input`, `output`, `salt`, `subject`, `system` in RFC 8785's
/// order (all ASCII names, so byte order), each value canonical on its own.
/// Written member by member, without first building the document (which
/// copied the whole payload) and without sorting its names.
struct Canonical {
    /// `{"action":…,"input":…,"output":…,"salt":`
    head: Vec<u8>,
    /// `,"subject":…,"system":…}`
    tail: Vec<u8>,
}

impl Canonical {
    fn of(parts: DigestParts<'_>) -> Canonical {
        let mut head = Vec::with_capacity(256);
        head.extend_from_slice(b"{\"action\":");
        write_string(&mut head, parts.action);
        head.extend_from_slice(b",\"input\":");
        write_canonical(&mut head, parts.input);
        head.extend_from_slice(b",\"output\":");
        write_canonical(&mut head, parts.output);
        head.extend_from_slice(b",\"salt\":");
        let mut tail = Vec::with_capacity(128);
        tail.extend_from_slice(b",\"subject\":");
        write_canonical(&mut tail, parts.subject);
        tail.extend_from_slice(b",\"system\":");
        write_string(&mut tail, parts.system);
        tail.push(b'}');
        Canonical { head, tail }
    }

    fn digest(&self, salt: &[u8]) -> Digest {
        let mut salt_json = Vec::with_capacity(48);
        write_string(&mut salt_json, &crate::audit::entry::salt_text(salt));
        let mut hasher = Sha256::new();
        hasher.update(&self.head);
        hasher.update(&salt_json);
        hasher.update(&self.tail);
        Digest::of_hash(&hasher.finalize().into())
    }
}

/// `sha256:` and the hex SHA-256 of `bytes` (e.g. of a webhook URL the
/// audit log must not hold in the clear).
pub fn sha256_of(bytes: &[u8]) -> String {
    sha256_text(&Sha256::digest(bytes).into())
}

/// `sha256:<64 lowercase hex>` of a hash.
fn sha256_text(hash: &[u8; 32]) -> String {
    let mut text = [0u8; 7 + 64];
    text[..7].copy_from_slice(b"sha256:");
    // 64 bytes of room for 32 bytes, and hex is ASCII.
    let _ = hex::encode_to_slice(hash, &mut text[7..]);
    String::from_utf8_lossy(&text).into_owned()
}

/// RFC 8785 canonical JSON bytes of a value.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write_canonical(&mut out, value);
    out
}

/// Appends the RFC 8785 canonical JSON of `value` to `out`.
///
/// Written straight from the `Value`: serde_jcs (the reference the
/// property tests compare with) serializes through a boxed writer per
/// fragment and buffers every member of every object, which made it a
/// sixth of the server's instructions per ingested proposal. Numbers are
/// ECMAScript's shortest form of the `f64` (ryu-js, as serde_jcs), strings
/// serde_json's escaping (which is RFC 8785's: `"`, `\\` and controls only),
/// members sorted by their names' UTF-16 code units.
pub fn write_canonical(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => match number.as_f64().filter(|it| it.is_finite()) {
            Some(number) => {
                out.extend_from_slice(ryu_js::Buffer::new().format_finite(number).as_bytes());
            }
            // A `serde_json::Number` without arbitrary precision is always
            // a finite `f64`, `i64` or `u64`.
            None => out.extend_from_slice(b"null"),
        },
        Value::String(text) => write_string(out, text),
        Value::Array(items) => {
            out.push(b'[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                write_canonical(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            let order = |a: &(&String, &Value), b: &(&String, &Value)| {
                a.0.encode_utf16().cmp(b.0.encode_utf16())
            };
            if !members.is_sorted_by(|a, b| order(a, b).is_le()) {
                members.sort_unstable_by(order);
            }
            out.push(b'{');
            for (n, (name, item)) in members.into_iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                write_string(out, name);
                out.push(b':');
                write_canonical(out, item);
            }
            out.push(b'}');
        }
    }
}

/// A JSON string as RFC 8785 writes it.
pub(crate) fn write_string(out: &mut Vec<u8>, text: &str) {
    // Writing into a `Vec` cannot fail.
    let _ = serde_json::to_writer(out, text);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use serde_json::json;

    /// Test cases of RFC 8785, section 3.2.2 and appendix B.
    #[test]
    fn rfc8785_examples() {
        let input = r#"{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"#;
        let value: Value = serde_json::from_str(input).unwrap();
        let expected = r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#;
        assert_eq!(String::from_utf8(canonical_json(&value)).unwrap(), expected);

        let sorting = r#"{"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh", "1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control", "\u00f6": "Latin Small Letter O With Diaeresis"}"#;
        let value: Value = serde_json::from_str(sorting).unwrap();
        let keys: Vec<String> =
            match serde_json::from_slice::<serde_json::Map<String, Value>>(&canonical_json(&value))
            {
                Ok(map) => map
                    .values()
                    .map(|v| v.as_str().unwrap_or_default().to_owned())
                    .collect(),
                Err(_) => Vec::new(),
            };
        // serde_json's map keeps insertion order only with preserve_order; compare the raw text instead.
        let text = String::from_utf8(canonical_json(&value)).unwrap();
        let order = [
            "Carriage Return",
            "One",
            "Control",
            "Latin Small",
            "Euro Sign",
            "Emoji",
            "Hebrew",
        ];
        let positions: Vec<usize> = order.iter().map(|it| text.find(it).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert_eq!(keys.len(), 7);
    }

    #[test]
    fn rfc8785_numbers() {
        // Appendix B: IEEE 754 values and their canonical text.
        let cases = [
            (0x0000000000000000_u64, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for (bits, expected) in cases {
            let value = serde_json::Number::from_f64(f64::from_bits(bits))
                .map(Value::Number)
                .unwrap();
            assert_eq!(
                String::from_utf8(canonical_json(&value)).unwrap(),
                expected,
                "bits {bits:#x}"
            );
        }
    }

    #[test]
    fn digest_is_stable() {
        let subject = json!({"type": "Account", "id": "acct-1", "attributes": {}});
        let parts = DigestParts {
            system: "s",
            action: "a",
            subject: &subject,
            input: &json!({}),
            output: &json!({"x": 1}),
            salt: &[0; 32],
        };
        let digest = Digest::of(parts);
        assert!(Digest::parse(digest.as_str()).is_some());
        assert_ne!(
            digest,
            Digest::of(DigestParts {
                salt: &[1; 32],
                ..parts
            })
        );
        expect_test::expect![
            "sha256:de3ff5cdbbade5346842d037be689da9f79fdbce1539c84bb7bd59f7d4452ce8"
        ]
        .assert_eq(digest.as_str());
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-z€😀]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-zA-Z0-9]{1,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Any JSON a request can carry, with the corners of RFC 8785: every
    /// kind of number, controls and quotes in strings, and names with
    /// characters above U+FFFF and in U+E000–U+FFFF, which sort in one
    /// order by code point and in the other by UTF-16 code unit.
    fn any_json() -> impl Strategy<Value = Value> {
        let text = "[a-zA-Z\"\\\\/\u{0}-\u{1f}\u{7f}é€\u{e000}\u{ffff}😀\u{10ffff}]{0,6}";
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>().prop_filter_map("finite", |n| serde_json::Number::from_f64(n)
                .map(Value::Number)),
            (-1e6f64..1e6).prop_filter_map("finite", |n| serde_json::Number::from_f64(n)
                .map(Value::Number)),
            text.prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 8, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((text, inner), 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// The document written member by member is the document built
        /// whole and made canonical (the definition).
        #[test]
        fn digest_is_the_canonical_document(
            system in "[a-z\"\\\u{1}é😀]{0,6}",
            action in ".{0,8}",
            subject in arb_json(),
            input in arb_json(),
            output in arb_json(),
            salt in prop::collection::vec(any::<u8>(), 0..40),
        ) {
            let parts = DigestParts { system: &system, action: &action, subject: &subject, input: &input, output: &output, salt: &salt };
            let whole = |salt: &[u8]| Digest::of_json(&json!({
                "salt": crate::audit::entry::salt_text(salt),
                "system": system,
                "action": action,
                "subject": subject,
                "input": input,
                "output": output,
            }));
            prop_assert_eq!(Digest::of(parts), whole(&salt));
            prop_assert_eq!(Digest::with_fingerprint(parts), (whole(&salt), whole(&[])));
        }

        /// The canonical form is serde_jcs's, for any JSON: numbers of
        /// every kind, names that sort differently in UTF-8 and UTF-16,
        /// strings that need escapes.
        #[test]
        fn canonical_json_is_serde_jcs(value in any_json()) {
            let reference = serde_jcs::to_vec(&value).unwrap();
            prop_assert_eq!(
                String::from_utf8(canonical_json(&value)).unwrap(),
                String::from_utf8(reference).unwrap()
            );
        }

        #[test]
        fn digest_ignores_key_order_and_whitespace(value in arb_json()) {
            let pretty = serde_json::to_string_pretty(&value).unwrap();
            let reparsed: Value = serde_json::from_str(&pretty).unwrap();
            prop_assert_eq!(Digest::of_json(&value), Digest::of_json(&reparsed));
            let canonical = canonical_json(&value);
            let again: Value = serde_json::from_slice(&canonical).unwrap();
            prop_assert_eq!(canonical_json(&again), canonical);
        }
    }
}
