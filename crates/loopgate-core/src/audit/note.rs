//! C2SP signed notes with Ed25519 keys: signing, the verifier key text
//! (`<name>+<key id hex>+<base64(0x01 || public key)>`), the signer key text
//! (`PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 || seed)>`) and opening a
//! note with a verifier.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

const ED25519: u8 = 0x01;
const DASH: &str = "\u{2014} ";

/// Why a key or a note was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The key text is malformed.
    #[error("the key is malformed: {0}")]
    Key(&'static str),
    /// The note is malformed.
    #[error("the note is malformed: {0}")]
    Format(&'static str),
    /// No signature from the key is on the note.
    #[error("the note has no signature by {0}")]
    Unsigned(String),
    /// The key's signature does not verify.
    #[error("the signature by {0} does not verify")]
    BadSignature(String),
}

fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', ED25519]);
    hasher.update(public);
    let hash = hasher.finalize();
    [hash[0], hash[1], hash[2], hash[3]]
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('+')
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// An Ed25519 note signer.
#[derive(Clone)]
pub struct Signer {
    name: String,
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer from a key name and a 32-byte seed.
    pub fn new(name: &str, seed: [u8; 32]) -> Result<Signer, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::Key(
                "the name must be non-empty, without '+' or spaces",
            ));
        }
        Ok(Signer {
            name: name.to_owned(),
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Parses `PRIVATE+KEY+<name>+<id>+<base64>`.
    pub fn parse(text: &str) -> Result<Signer, NoteError> {
        let rest = text
            .trim_end()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::Key("a signer key starts with PRIVATE+KEY+"))?;
        let (name, id, bytes) = split_key(rest)?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| NoteError::Key("an Ed25519 seed is 32 bytes"))?;
        let signer = Signer::new(name, seed)?;
        if signer.verifier().id != id {
            return Err(NoteError::Key("the key id does not match the key"));
        }
        Ok(signer)
    }

    /// The signer key text.
    pub fn to_text(&self) -> String {
        let mut bytes = vec![ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        let id = self.verifier().id;
        format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            hex::encode(id),
            BASE64.encode(bytes)
        )
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matching verifier.
    pub fn verifier(&self) -> Verifier {
        let public = self.key.verifying_key();
        Verifier {
            name: self.name.clone(),
            id: key_id(&self.name, public.as_bytes()),
            key: public,
        }
    }

    /// Signs `text` (which must end in a newline) and returns the note.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        let signature = self.key.sign(text.as_bytes());
        let mut blob = self.verifier().id.to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        Ok(format!(
            "{text}\n{DASH}{} {}\n",
            self.name,
            BASE64.encode(blob)
        ))
    }
}

fn split_key(text: &str) -> Result<(&str, [u8; 4], Vec<u8>), NoteError> {
    // Base64 may contain '+', so the key is whatever follows the second one.
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::Key("expected <name>+<key id>+<base64 key>"));
    };
    if !valid_name(name) {
        return Err(NoteError::Key("the name must be non-empty, without spaces"));
    }
    let id: [u8; 4] = (id.len() == 8)
        .then(|| hex::decode(id).ok())
        .flatten()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(NoteError::Key("the key id is 8 hex digits"))?;
    let bytes = BASE64
        .decode(key)
        .map_err(|_| NoteError::Key("the key is not base64"))?;
    match bytes.split_first() {
        Some((&ED25519, rest)) => Ok((name, id, rest.to_vec())),
        _ => Err(NoteError::Key(
            "only Ed25519 keys (type 0x01) are supported",
        )),
    }
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::Format("the text must end with a newline"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(NoteError::Format("the text has control characters"));
    }
    Ok(())
}

/// An Ed25519 note verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

impl Verifier {
    /// Parses `<name>+<id>+<base64(0x01 || key)>`.
    pub fn parse(text: &str) -> Result<Verifier, NoteError> {
        let (name, id, bytes) = split_key(text.trim())?;
        let public: [u8; 32] = bytes
            .try_into()
            .map_err(|_| NoteError::Key("an Ed25519 public key is 32 bytes"))?;
        if key_id(name, &public) != id {
            return Err(NoteError::Key("the key id does not match the key"));
        }
        let key = VerifyingKey::from_bytes(&public)
            .map_err(|_| NoteError::Key("not a valid Ed25519 public key"))?;
        Ok(Verifier {
            name: name.to_owned(),
            id,
            key,
        })
    }

    /// The verifier key text.
    pub fn to_text(&self) -> String {
        let mut bytes = vec![ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.id),
            BASE64.encode(bytes)
        )
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks the note's signature by this key and returns the signed text.
    /// Signatures by other keys are ignored, as the spec requires.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let split = note
            .rfind("\n\n")
            .ok_or(NoteError::Format("no blank line before the signatures"))?;
        let (text, signatures) = (&note[..split + 1], &note[split + 2..]);
        check_text(text)?;
        if signatures.is_empty() || !signatures.ends_with('\n') {
            return Err(NoteError::Format(
                "the signature lines must end with a newline",
            ));
        }
        let mut found = false;
        for line in signatures.lines() {
            let rest = line
                .strip_prefix(DASH)
                .ok_or(NoteError::Format("a signature line starts with an em dash"))?;
            let (name, blob) = rest
                .split_once(' ')
                .ok_or(NoteError::Format("a signature line is '— <name> <base64>'"))?;
            let blob = BASE64
                .decode(blob)
                .map_err(|_| NoteError::Format("a signature is not base64"))?;
            if name != self.name || blob.get(..4) != Some(&self.id[..]) {
                continue;
            }
            let signature = Signature::from_slice(&blob[4..])
                .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
            self.key
                .verify_strict(text.as_bytes(), &signature)
                .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
            found = true;
        }
        if found {
            Ok(text)
        } else {
            Err(NoteError::Unsigned(self.name.clone()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_KEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    const SPEC_NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

    #[test]
    fn the_specs_example_note_verifies() {
        let verifier = Verifier::parse(SPEC_KEY).unwrap();
        assert_eq!(verifier.to_text(), SPEC_KEY);
        assert_eq!(
            verifier.open(SPEC_NOTE).unwrap(),
            "This is an example message.\n"
        );
    }

    #[test]
    fn a_changed_text_or_signature_is_refused() {
        let verifier = Verifier::parse(SPEC_KEY).unwrap();
        let changed = SPEC_NOTE.replace("example message", "exemple message");
        assert!(matches!(
            verifier.open(&changed),
            Err(NoteError::BadSignature(_))
        ));
        let resigned = SPEC_NOTE.replace("Uw2Q", "Uw2R");
        assert!(verifier.open(&resigned).is_err());
        let other = Signer::new("example.com/foo", [7; 32]).unwrap().verifier();
        assert!(matches!(other.open(SPEC_NOTE), Err(NoteError::Unsigned(_))));
    }

    #[test]
    fn sign_then_open_round_trips_and_keys_parse_back() {
        let signer = Signer::new("loopgate.test/log", [42; 32]).unwrap();
        let note = signer.sign("hello\nworld\n").unwrap();
        assert_eq!(signer.verifier().open(&note).unwrap(), "hello\nworld\n");
        let parsed = Signer::parse(&signer.to_text()).unwrap();
        assert_eq!(parsed.verifier(), signer.verifier());
        assert_eq!(
            Verifier::parse(&signer.verifier().to_text()).unwrap(),
            signer.verifier()
        );
        assert!(signer.sign("no newline").is_err());
        assert!(
            Verifier::parse(
                "example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
            )
            .is_err()
        );
    }
}
