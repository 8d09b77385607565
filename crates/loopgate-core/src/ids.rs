//! Parsed identifiers. Random parts are made by the caller (core has no
//! random source); these types only check and carry them.

use std::fmt;

macro_rules! prefixed_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The prefix of every id of this kind.
            pub const PREFIX: &'static str = $prefix;

            /// Builds an id from its unique part (a ULID in practice).
            pub fn from_unique(unique: &str) -> $name {
                $name(format!("{}{}", $prefix, unique))
            }

            /// Parses an id: the prefix, then 1 to 64 ASCII letters or digits.
            pub fn parse(text: &str) -> Option<$name> {
                let rest = text.strip_prefix($prefix)?;
                let well_formed = !rest.is_empty()
                    && rest.len() <= 64
                    && rest.bytes().all(|b| b.is_ascii_alphanumeric());
                well_formed.then(|| $name(text.to_owned()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(
    /// `prp_…`
    ProposalId, "prp_"
);
prefixed_id!(
    /// `tsk_…`
    TaskId, "tsk_"
);
prefixed_id!(
    /// `usr_…`
    UserId, "usr_"
);
prefixed_id!(
    /// `gnt_…`: a standing grant.
    GrantId, "gnt_"
);

/// A system's slug: lowercase ASCII letters, digits and `-`, 1 to 64 bytes,
/// starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SystemId(String);

impl SystemId {
    /// Parses a slug.
    pub fn parse(text: &str) -> Option<SystemId> {
        let starts_with_letter = text.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
        let well_formed = starts_with_letter
            && text.len() <= 64
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        well_formed.then(|| SystemId(text.to_owned()))
    }

    /// The slug.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SystemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A reviewer group name: like a system slug, also allowing `_`.
pub fn is_group_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse() {
        assert!(ProposalId::parse("prp_01J9ZX").is_some());
        assert!(ProposalId::parse("tsk_01J9ZX").is_none());
        assert!(ProposalId::parse("prp_").is_none());
        assert!(ProposalId::parse("prp_../etc").is_none());
        assert!(SystemId::parse("fraud-detector").is_some());
        assert!(SystemId::parse("Fraud").is_none());
        assert!(SystemId::parse("1abc").is_none());
        assert!(SystemId::parse("").is_none());
    }
}
