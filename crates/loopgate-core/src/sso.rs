//! Single sign-on's rules (docs/sso.md): the values of the provider's groups
//! claim become roles and reviewer groups through the operator's two maps,
//! and a sign-in creates the user, updates their roles and groups, or is
//! refused. The server checks the ID token; the store writes what
//! [`sign_in`] returns.

use std::collections::BTreeMap;

use crate::Role;

/// `oidc_role_map` and `oidc_group_map`: from a claim value to loopgate
/// roles and to reviewer groups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mapping {
    /// Claim value → roles.
    pub roles: BTreeMap<String, Vec<Role>>,
    /// Claim value → reviewer groups.
    pub groups: BTreeMap<String, Vec<String>>,
}

/// What a user may do, from their claim values: sorted, without repeats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// Roles.
    pub roles: Vec<Role>,
    /// Reviewer groups.
    pub groups: Vec<String>,
}

impl Mapping {
    /// The roles and groups that `values` (the groups claim) map to; values
    /// in neither map give nothing.
    pub fn access(&self, values: &[String]) -> Access {
        let mut access = Access::default();
        for value in values {
            if let Some(roles) = self.roles.get(value) {
                access.roles.extend(roles.iter().copied());
            }
            if let Some(groups) = self.groups.get(value) {
                access.groups.extend(groups.iter().cloned());
            }
        }
        access.roles.sort();
        access.roles.dedup();
        access.groups.sort();
        access.groups.dedup();
        access
    }
}

/// A user already signed in before with the same issuer and subject, as
/// stored now.
#[derive(Debug, Clone, Copy)]
pub struct Known<'a> {
    /// Roles.
    pub roles: &'a [Role],
    /// Reviewer groups.
    pub groups: &'a [String],
    /// Whether an admin disabled them in loopgate.
    pub disabled: bool,
}

/// What a sign-in does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignIn {
    /// First sign-in: create the user with this access (`user.created`).
    Create(Access),
    /// The claims changed: store this access (`user.updated`), then sign in.
    Update(Access),
    /// Sign in as stored.
    Same,
    /// Refused: disabled in loopgate, whatever the provider says.
    Disabled,
    /// Refused: no claim value maps to a role. A known user with access
    /// loses it (`revoke`: roles and groups emptied, `user.updated`, their
    /// sessions end).
    Unmapped {
        /// Whether a stored user has roles or groups to take away.
        revoke: bool,
    },
}

/// Decides a sign-in from the stored user (if any) and the access their
/// claims map to now.
pub fn sign_in(known: Option<Known<'_>>, access: Access) -> SignIn {
    if known.is_some_and(|user| user.disabled) {
        return SignIn::Disabled;
    }
    if access.roles.is_empty() {
        let revoke = known.is_some_and(|user| !user.roles.is_empty() || !user.groups.is_empty());
        return SignIn::Unmapped { revoke };
    }
    match known {
        None => SignIn::Create(access),
        Some(user)
            if same_set(user.roles, &access.roles) && same_set(user.groups, &access.groups) =>
        {
            SignIn::Same
        }
        Some(_) => SignIn::Update(access),
    }
}

fn same_set<T: Ord + Clone>(stored: &[T], sorted: &[T]) -> bool {
    let mut stored = stored.to_vec();
    stored.sort();
    stored.dedup();
    stored == sorted
}

/// The longest username.
pub const MAX_USERNAME: usize = 64;

/// A username for a first sign-in: the provider's `preferred_username`, else
/// the local part of the email, else the subject, kept to letters, digits,
/// `.`, `_` and `-` (others become `-`) and 64 bytes at most (a suffix may
/// later be added for uniqueness, within the same bound). Never empty.
pub fn username(preferred: Option<&str>, email: Option<&str>, subject: &str) -> String {
    let local = |address: &str| address.split('@').next().unwrap_or_default().to_owned();
    let candidates = [
        preferred.map(local),
        email.map(local),
        Some(subject.to_owned()),
    ];
    for candidate in candidates.into_iter().flatten() {
        let cleaned: String = candidate
            .chars()
            .map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '-' => c,
                _ => '-',
            })
            .take(MAX_USERNAME - SUFFIX)
            .collect();
        let cleaned = cleaned.trim_matches('-').to_owned();
        if !cleaned.is_empty() {
            return cleaned;
        }
    }
    "user".to_owned()
}

/// Room left in a username for a uniqueness suffix (`-` and 8 characters).
const SUFFIX: usize = 9;

/// The names to try, in order, when `base` is taken: `base-2` to `base-9`,
/// then `base-` and eight hex digits of `tag` (derived from the subject).
pub fn alternatives(base: &str, tag: &str) -> impl Iterator<Item = String> {
    let numbered = (2..10).map(move |n| format!("{base}-{n}"));
    let tag: String = tag.chars().take(8).collect();
    let tagged = std::iter::once(format!("{base}-{tag}"));
    numbered.chain(tagged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mapping() -> Mapping {
        Mapping {
            roles: BTreeMap::from([
                ("lg-admins".to_owned(), vec![Role::Admin]),
                (
                    "lg-reviewers".to_owned(),
                    vec![Role::Reviewer, Role::Auditor],
                ),
                ("fraud".to_owned(), vec![Role::Reviewer]),
            ]),
            groups: BTreeMap::from([
                ("fraud".to_owned(), vec!["fraud-l1".to_owned()]),
                (
                    "fraud-leads".to_owned(),
                    vec!["fraud-l2".to_owned(), "fraud-l1".to_owned()],
                ),
            ]),
        }
    }

    fn values(list: &[&str]) -> Vec<String> {
        list.iter().map(|it| (*it).to_owned()).collect()
    }

    #[test]
    fn claim_values_map_to_sorted_roles_and_groups() {
        let access = mapping().access(&values(&["fraud-leads", "fraud", "unknown"]));
        assert_eq!(access.roles, vec![Role::Reviewer]);
        assert_eq!(access.groups, vec!["fraud-l1", "fraud-l2"]);
        assert_eq!(mapping().access(&values(&["unknown"])), Access::default());
    }

    #[test]
    fn sign_ins() {
        let access = mapping().access(&values(&["fraud"]));
        assert_eq!(
            sign_in(None, access.clone()),
            SignIn::Create(access.clone())
        );
        let groups = values(&["fraud-l1"]);
        let same = Known {
            roles: &[Role::Reviewer],
            groups: &groups,
            disabled: false,
        };
        assert_eq!(sign_in(Some(same), access.clone()), SignIn::Same);
        let other = Known {
            roles: &[Role::Admin],
            groups: &groups,
            disabled: false,
        };
        assert_eq!(
            sign_in(Some(other), access.clone()),
            SignIn::Update(access.clone())
        );
        let disabled = Known {
            disabled: true,
            ..same
        };
        assert_eq!(sign_in(Some(disabled), access), SignIn::Disabled);
        let nothing = Access::default();
        assert_eq!(
            sign_in(None, nothing.clone()),
            SignIn::Unmapped { revoke: false }
        );
        assert_eq!(
            sign_in(Some(same), nothing.clone()),
            SignIn::Unmapped { revoke: true }
        );
        let emptied = Known {
            roles: &[],
            groups: &[],
            disabled: false,
        };
        assert_eq!(
            sign_in(Some(emptied), nothing),
            SignIn::Unmapped { revoke: false }
        );
    }

    #[test]
    fn usernames_from_claims() {
        assert_eq!(username(Some("alice"), None, "s1"), "alice");
        assert_eq!(username(Some("alice@corp.example"), None, "s1"), "alice");
        assert_eq!(
            username(None, Some("bob.smith@corp.example"), "s1"),
            "bob.smith"
        );
        assert_eq!(username(Some("Zoë Ünal"), None, "s1"), "Zo---nal");
        assert_eq!(username(Some("@@"), None, "248289761001"), "248289761001");
        assert_eq!(username(Some("!"), Some("@x"), "***"), "user");
        let tried: Vec<String> = alternatives("alice", "0123456789abcdef").collect();
        assert_eq!(tried.first().map(String::as_str), Some("alice-2"));
        assert_eq!(tried.last().map(String::as_str), Some("alice-01234567"));
    }

    fn is_username(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= MAX_USERNAME
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    }

    proptest! {
        /// Whatever the provider sends, the name (and every alternative) is a
        /// valid loopgate username.
        #[test]
        fn usernames_are_always_valid(preferred in proptest::option::of(".{0,200}"), email in proptest::option::of(".{0,200}"), subject in ".{0,300}") {
            let name = username(preferred.as_deref(), email.as_deref(), &subject);
            prop_assert!(is_username(&name), "{name:?}");
            for alternative in alternatives(&name, "0123456789abcdef") {
                prop_assert!(is_username(&alternative), "{alternative:?}");
            }
        }

        /// No sign-in without a role, and none of a disabled user.
        #[test]
        fn no_access_without_a_role(claims in proptest::collection::vec("[a-z-]{1,12}", 0..6), disabled: bool, known: bool) {
            let access = mapping().access(&claims);
            let stored = Known { roles: &[Role::Reviewer], groups: &[], disabled };
            let outcome = sign_in(known.then_some(stored), access.clone());
            match outcome {
                SignIn::Create(granted) | SignIn::Update(granted) => {
                    prop_assert!(!granted.roles.is_empty());
                    prop_assert!(!(known && disabled));
                }
                SignIn::Same => prop_assert!(known && !disabled && !access.roles.is_empty()),
                SignIn::Disabled => prop_assert!(known && disabled),
                SignIn::Unmapped { .. } => prop_assert!(access.roles.is_empty()),
            }
        }
    }
}
