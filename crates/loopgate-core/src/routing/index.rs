//! An index of a policy set by principal and action scope, so that routing
//! evaluates only the policies that can apply to a request.
//!
//! Why it gives exactly Cedar's answer: a policy whose scope does not match
//! the request is neither satisfied nor erroring, so leaving it out changes
//! neither the decision nor the determining policies nor the errors. The
//! entities loopgate builds have no parents and no action hierarchy is given
//! to the authorizer, so `principal in E` holds exactly when
//! `principal == E`, and `action in [A, B]` exactly when the action is A or B.
//! Everything else (`principal is T`, no constraint) goes to the wildcard
//! bucket and is always evaluated.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use cedar_policy::{ActionConstraint, EntityUid, Policy, PolicySet, PrincipalConstraint};

/// Position of a named principal or action; `WILD` for "not named",
/// `NEVER` for an entity of another type, which no request can be.
type Slot = u32;
const WILD: Slot = Slot::MAX;
const NEVER: Slot = Slot::MAX - 1;

/// Sets of candidate policies per (principal, action) pair, built on first use.
#[derive(Debug, Default)]
pub(super) struct PolicyIndex {
    /// System ids named by `principal ==`/`in` constraints.
    principals: HashMap<String, Slot>,
    /// Action ids named by action constraints.
    actions: HashMap<String, Slot>,
    /// Policies by (principal slot, action slot); `WILD` where unconstrained.
    buckets: HashMap<(Slot, Slot), Vec<Policy>>,
    /// Candidate sets already built. Keys are bounded by the named slots.
    sets: RwLock<HashMap<(Slot, Slot), Arc<PolicySet>>>,
}

impl PolicyIndex {
    /// Indexes `policies` (static policies with their final ids).
    pub(super) fn new<'a>(policies: impl IntoIterator<Item = &'a Policy>) -> PolicyIndex {
        let mut index = PolicyIndex::default();
        for policy in policies {
            let principal = match policy.principal_constraint() {
                PrincipalConstraint::Eq(uid)
                | PrincipalConstraint::In(uid)
                | PrincipalConstraint::IsIn(_, uid) => index.principal_slot(&uid),
                PrincipalConstraint::Any | PrincipalConstraint::Is(_) => WILD,
            };
            let actions = match policy.action_constraint() {
                ActionConstraint::Any => vec![WILD],
                ActionConstraint::Eq(uid) => vec![index.action_slot(&uid)],
                ActionConstraint::In(uids) => {
                    let mut slots: Vec<Slot> =
                        uids.iter().map(|uid| index.action_slot(uid)).collect();
                    slots.sort_unstable();
                    slots.dedup();
                    slots
                }
            };
            if principal == NEVER {
                continue;
            }
            for action in actions.into_iter().filter(|slot| *slot != NEVER) {
                index
                    .buckets
                    .entry((principal, action))
                    .or_default()
                    .push(policy.clone());
            }
        }
        index
    }

    fn principal_slot(&mut self, uid: &EntityUid) -> Slot {
        slot(&mut self.principals, uid, "System")
    }

    fn action_slot(&mut self, uid: &EntityUid) -> Slot {
        slot(&mut self.actions, uid, "Action")
    }

    /// The policies that can apply to a request from system `principal` for
    /// `action` (ids, not entity uids).
    pub(super) fn candidates(&self, principal: &str, action: &str) -> Arc<PolicySet> {
        let key = (
            self.principals.get(principal).copied().unwrap_or(WILD),
            self.actions.get(action).copied().unwrap_or(WILD),
        );
        if let Ok(sets) = self.sets.read()
            && let Some(set) = sets.get(&key)
        {
            return Arc::clone(set);
        }
        let set = Arc::new(self.build(key));
        if let Ok(mut sets) = self.sets.write() {
            sets.insert(key, Arc::clone(&set));
        }
        set
    }

    fn build(&self, (principal, action): (Slot, Slot)) -> PolicySet {
        let mut keys = vec![(WILD, WILD)];
        if principal != WILD {
            keys.push((principal, WILD));
        }
        if action != WILD {
            keys.push((WILD, action));
        }
        if principal != WILD && action != WILD {
            keys.push((principal, action));
        }
        let mut set = PolicySet::new();
        for key in keys {
            for policy in self.buckets.get(&key).into_iter().flatten() {
                // A policy lands in one bucket per action it names, and the
                // keys above overlap in at most one of those: adding twice
                // is impossible, but an error here would only drop a
                // duplicate, never a policy.
                let _ = set.add(policy.clone());
            }
        }
        set
    }

    /// How many policies a request from `principal` for `action` evaluates.
    #[cfg(test)]
    pub(super) fn candidate_count(&self, principal: &str, action: &str) -> usize {
        self.candidates(principal, action).policies().count()
    }
}

/// The slot of `uid` in `slots`, or `NEVER` when it is not of `type_name`.
fn slot(slots: &mut HashMap<String, Slot>, uid: &EntityUid, type_name: &str) -> Slot {
    if uid.type_name().to_string() != type_name {
        return NEVER;
    }
    let next = Slot::try_from(slots.len())
        .unwrap_or(NEVER - 1)
        .min(NEVER - 1);
    *slots.entry(uid.id().unescaped().to_owned()).or_insert(next)
}
