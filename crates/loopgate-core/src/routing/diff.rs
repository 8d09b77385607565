//! Policy-level differences between two policy sets: policies added,
//! removed, and changed (with a line diff of their text), matched by id.

use std::collections::BTreeMap;

use similar::TextDiff;

use super::Policies;

/// What changed from one set to another.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyDiff {
    /// Ids only in the newer set.
    pub added: Vec<String>,
    /// Ids only in the older set.
    pub removed: Vec<String>,
    /// Ids in both whose text differs beyond whitespace.
    pub changed: Vec<Changed>,
    /// How many policies are the same in both.
    pub unchanged: usize,
}

/// One changed policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Changed {
    /// The policy id.
    pub id: String,
    /// A unified diff of its text.
    pub diff: String,
}

/// The differences from `old` to `new`.
pub fn diff(old: &Policies, new: &Policies) -> PolicyDiff {
    let texts = |set: &Policies| -> BTreeMap<String, String> {
        set.set
            .policies()
            .map(|policy| (policy.id().to_string(), policy.to_string()))
            .collect()
    };
    let (before, after) = (texts(old), texts(new));
    let in_order = |set: &Policies, keep: &dyn Fn(&str) -> bool| -> Vec<String> {
        set.ids.iter().filter(|id| keep(id)).cloned().collect()
    };
    let mut result = PolicyDiff {
        added: in_order(new, &|id| !before.contains_key(id)),
        removed: in_order(old, &|id| !after.contains_key(id)),
        ..PolicyDiff::default()
    };
    for id in &new.ids {
        let (Some(a), Some(b)) = (before.get(id), after.get(id)) else {
            continue;
        };
        let words = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
        if words(a) == words(b) {
            result.unchanged += 1;
            continue;
        }
        let (a, b) = (format!("{}\n", a.trim_end()), format!("{}\n", b.trim_end()));
        let diff = TextDiff::from_lines(&a, &b)
            .unified_diff()
            .context_radius(3)
            .header(
                &format!("{} {id}", old.version),
                &format!("{} {id}", new.version),
            )
            .to_string();
        result.changed.push(Changed {
            id: id.clone(),
            diff,
        });
    }
    result
}
