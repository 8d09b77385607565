//! C2SP tlog-checkpoint bodies: origin, tree size and root hash, one per
//! line, plus loopgate's extension line with the issue time.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::merkle::Hash;
use super::note::{NoteError, Signer, Verifier};
use crate::Timestamp;

/// A checkpoint: the log's state at `size` leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line (also the key name).
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// RFC 9162 root of those leaves.
    pub root: Hash,
    /// When it was issued (extension line `time <ms since epoch>`).
    pub time: Timestamp,
}

impl Checkpoint {
    /// The note text that gets signed.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\ntime {}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root),
            self.time.millis()
        )
    }

    /// Signs the checkpoint into a note.
    pub fn sign(&self, signer: &Signer) -> Result<String, NoteError> {
        signer.sign(&self.body())
    }

    /// Verifies a signed checkpoint note and parses it. The origin must be
    /// the verifier's key name.
    pub fn open(note: &str, verifier: &Verifier) -> Result<Checkpoint, NoteError> {
        let text = verifier.open(note)?;
        let checkpoint = Checkpoint::parse_body(text)?;
        if checkpoint.origin != verifier.name() {
            return Err(NoteError::Format("the origin is not the key's name"));
        }
        Ok(checkpoint)
    }

    /// Parses a checkpoint body (without checking any signature).
    pub fn parse_body(text: &str) -> Result<Checkpoint, NoteError> {
        let mut lines = text.lines();
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(NoteError::Format(
                "a checkpoint has origin, size and root lines",
            ));
        };
        let size = size
            .parse::<u64>()
            .ok()
            .filter(|_| size == "0" || !size.starts_with('0'))
            .ok_or(NoteError::Format("the size is not a decimal number"))?;
        let root: Hash = BASE64
            .decode(root)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(NoteError::Format("the root is not a base64 SHA-256 hash"))?;
        let time = lines
            .find_map(|line| line.strip_prefix("time "))
            .and_then(|ms| ms.parse::<i64>().ok())
            .map(Timestamp::from_millis)
            .unwrap_or(Timestamp::from_millis(0));
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            time,
        })
    }
}
