//! Standing grants: reviewers who approve a proposal may let later
//! proposals of the same kind through without asking them again, for a
//! bounded time and number of uses, where the review policy allows it
//! (`@grantable`).
//!
//! The bounds are the point. A grant is made only by the quorum that
//! approved (every approval that counted must offer it; their terms are
//! combined the narrowest way), only on a policy that says how long it may
//! last, and (unless the policy names the tier) never for a `high` or
//! `unacceptable` risk system. A grant is consulted after the policies'
//! forbids (a denied proposal never reaches it), only for a proposal that
//! would otherwise wait for the same review, of the same system, action and
//! subject (and output, for `same_output`), and it can be revoked at once.

use std::time::Duration;

use serde_json::{Value, json};

use crate::digest::{Digest, DigestParts};
use crate::routing::Routing;
use crate::{GrantId, GrantScope, ProposalId, RiskTier, Route, Timestamp};

/// The longest any grant may last, whatever a policy says.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The most uses a grant may be given.
pub const MAX_USES: u32 = 100_000;

/// Whether a task's reviewers may give a grant, as routing decided it from
/// the policies and the system's risk tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Grantable {
    /// The policy has no `@grantable` (or not every matching review policy has).
    #[default]
    No,
    /// Grants of at most this long.
    UpTo(Duration),
    /// The policy allows grants, but not on a system of this risk tier.
    NotAtRisk(RiskTier),
}

/// Why no grant may be given on a system of `tier`.
pub fn refused_at_risk(tier: RiskTier) -> String {
    format!(
        "grants are refused on `{tier}` risk systems unless the policy says `@grantable_risk(\"{tier}\")`"
    )
}

/// What a policy's annotations allow: `@grantable("PT1H")` and the highest
/// risk tier grants are made for (`@grantable_risk`, `limited` unless said).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantRule {
    /// The longest grant.
    pub max: Duration,
    /// The highest risk tier a grant may be made on.
    pub risk: RiskTier,
}

impl GrantRule {
    /// What the rules of every matching review policy allow together for a
    /// system of `tier`: nothing unless every one allows grants; the
    /// shortest duration and the lowest tier otherwise.
    pub fn combine<'r>(
        rules: impl IntoIterator<Item = Option<&'r GrantRule>>,
        tier: RiskTier,
    ) -> Grantable {
        let mut combined: Option<GrantRule> = None;
        for rule in rules {
            let Some(rule) = rule else {
                return Grantable::No;
            };
            combined = Some(match combined {
                None => *rule,
                Some(it) => GrantRule {
                    max: it.max.min(rule.max),
                    risk: it.risk.min(rule.risk),
                },
            });
        }
        match combined {
            None => Grantable::No,
            Some(rule) if rule.risk < tier => Grantable::NotAtRisk(tier),
            Some(rule) => Grantable::UpTo(rule.max),
        }
    }
}

/// The terms a reviewer offers with an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantTerms {
    /// How long the grant lasts from its creation.
    pub duration: Duration,
    /// How many proposals it may approve (`None`: until it ends).
    pub uses: Option<u32>,
    /// What it covers.
    pub scope: GrantScope,
}

impl GrantTerms {
    /// The narrowest terms of every offer: the shortest time, the fewest
    /// uses, `same_output` if any says so. `None` when any approval came
    /// without an offer (a grant needs the whole quorum).
    pub fn combine(offers: &[Option<GrantTerms>]) -> Option<GrantTerms> {
        let mut combined: Option<GrantTerms> = None;
        for offer in offers {
            let offer = (*offer)?;
            combined = Some(match combined {
                None => offer,
                Some(it) => GrantTerms {
                    duration: it.duration.min(offer.duration),
                    uses: match (it.uses, offer.uses) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    },
                    scope: match (it.scope, offer.scope) {
                        (GrantScope::SameSubject, GrantScope::SameSubject) => {
                            GrantScope::SameSubject
                        }
                        _ => GrantScope::SameOutput,
                    },
                },
            });
        }
        combined
    }

    /// Checks an offer against what the task's policy allows: why not, as a
    /// sentence, when it may not be made.
    pub fn check(&self, allowed: Grantable) -> Result<(), String> {
        let max = match allowed {
            Grantable::No => {
                return Err(
                    "this task's policy gives no standing grants (it has no `@grantable`)"
                        .to_owned(),
                );
            }
            Grantable::NotAtRisk(tier) => return Err(refused_at_risk(tier)),
            Grantable::UpTo(max) => max,
        };
        if self.duration.is_zero() {
            return Err("a grant's `for` must be longer than zero".to_owned());
        }
        if max < self.duration {
            return Err(format!(
                "a grant lasts at most {} under this task's policy",
                crate::duration::format(max)
            ));
        }
        match self.uses {
            Some(0) => Err("a grant's `uses` must be at least 1".to_owned()),
            Some(n) if MAX_USES < n => Err(format!("a grant's `uses` is at most {MAX_USES}")),
            _ => Ok(()),
        }
    }
}

/// The grant a decision's quorum agreed to: their narrowest terms and who
/// they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreed {
    /// The terms.
    pub terms: GrantTerms,
    /// The approvers, in the order they decided.
    pub granted_by: Vec<String>,
}

/// A standing grant as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    /// Its id.
    pub id: GrantId,
    /// The system whose proposals it covers (never another's).
    pub system: String,
    /// The action.
    pub action: String,
    /// The system, action, subject type and id, keyed with the
    /// deployment's grant key (the subject id may name a person: it is not
    /// kept in the clear); what admission looks grants up by.
    pub subject_digest: Digest,
    /// What it covers.
    pub scope: GrantScope,
    /// For `same_output`: the same with the output, keyed alike.
    pub output_digest: Option<Digest>,
    /// The review policies it stands in for: a proposal that another
    /// policy sends to review is not covered.
    pub policies: Vec<String>,
    /// The policy version it was made under.
    pub policy_version: String,
    /// The reviewer group that made it.
    pub group: String,
    /// The approvers who agreed to it.
    pub granted_by: Vec<String>,
    /// The proposal whose approval made it.
    pub proposal: ProposalId,
    /// Proposals it approved so far.
    pub used: u32,
    /// Most proposals it may approve.
    pub max_uses: Option<u32>,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it ends.
    pub expires_at: Timestamp,
    /// When and by whom it was revoked.
    pub revoked: Option<(Timestamp, String)>,
}

/// A grant's state at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantState {
    /// It approves matching proposals.
    Live,
    /// Its uses ran out.
    UsedUp,
    /// Its time ran out.
    Expired,
    /// Someone revoked it.
    Revoked,
}

impl GrantState {
    /// The stable string form.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantState::Live => "live",
            GrantState::UsedUp => "used_up",
            GrantState::Expired => "expired",
            GrantState::Revoked => "revoked",
        }
    }
}

/// The parts of a proposal a grant is matched on.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// System id.
    pub system: &'a str,
    /// Action.
    pub action: &'a str,
    /// `{"type", "id", …}`.
    pub subject: &'a Value,
    /// The model's output.
    pub output: &'a Value,
}

impl Request<'_> {
    fn subject_part(&self, key: &str) -> &str {
        self.subject
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// The digest a grant keeps of what it covers: system, action, subject
/// type and id, and (for `same_output`) the output, keyed with the
/// deployment's grant key (a secret of the store's: without it nobody can
/// test a guessed subject against the digest).
pub fn digest(request: &Request<'_>, output: Option<&Value>, key: &[u8]) -> Digest {
    let subject = json!({"type": request.subject_part("type"), "id": request.subject_part("id")});
    Digest::of(DigestParts {
        system: request.system,
        action: request.action,
        subject: &subject,
        input: &Value::Null,
        output: output.unwrap_or(&Value::Null),
        salt: key,
    })
}

/// Where a new grant comes from: the proposal just approved.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    /// The new grant's id (core has no random source).
    pub id: &'a GrantId,
    /// The deployment's grant key.
    pub key: &'a [u8],
    /// The approved proposal.
    pub proposal: &'a ProposalId,
    /// What it covers.
    pub request: Request<'a>,
    /// The review policies that sent it to review, and their version.
    pub policies: &'a [String],
    /// The policy version.
    pub policy_version: &'a str,
    /// The group that reviewed it.
    pub group: &'a str,
    /// The approvers.
    pub granted_by: Vec<String>,
}

impl Grant {
    /// The grant that `terms` make from `origin` at `now`.
    pub fn new(origin: Origin<'_>, terms: GrantTerms, now: Timestamp) -> Grant {
        let output_digest = (terms.scope == GrantScope::SameOutput)
            .then(|| digest(&origin.request, Some(origin.request.output), origin.key));
        Grant {
            id: origin.id.clone(),
            system: origin.request.system.to_owned(),
            action: origin.request.action.to_owned(),
            subject_digest: digest(&origin.request, None, origin.key),
            scope: terms.scope,
            output_digest,
            policies: origin.policies.to_vec(),
            policy_version: origin.policy_version.to_owned(),
            group: origin.group.to_owned(),
            granted_by: origin.granted_by,
            proposal: origin.proposal.clone(),
            used: 0,
            max_uses: terms.uses,
            created_at: now,
            expires_at: now.plus(terms.duration),
            revoked: None,
        }
    }

    /// Its state at `now`.
    pub fn state(&self, now: Timestamp) -> GrantState {
        if self.revoked.is_some() {
            GrantState::Revoked
        } else if self.expires_at <= now {
            GrantState::Expired
        } else if self.uses_left() == Some(0) {
            GrantState::UsedUp
        } else {
            GrantState::Live
        }
    }

    /// Uses left (`None`: no limit).
    pub fn uses_left(&self) -> Option<u32> {
        self.max_uses.map(|max| max.saturating_sub(self.used))
    }

    /// Whether it approves `request`, which `routing` sends to review, at
    /// `now`: live, the same system, action and subject (and output for
    /// `same_output`), and a review that the grant's policies stand for and
    /// that allows grants now (a policy changed to drop `@grantable`, or a
    /// system raised to a higher risk tier, ends every grant's effect).
    pub fn covers(
        &self,
        request: &Request<'_>,
        routing: &Routing,
        key: &[u8],
        now: Timestamp,
    ) -> bool {
        self.state(now) == GrantState::Live
            && routing.route == Route::Review
            && matches!(routing.review.grant, Grantable::UpTo(_))
            && routing.matched.iter().all(|id| self.policies.contains(id))
            && self.system == request.system
            && self.action == request.action
            && self.subject_digest == digest(request, None, key)
            && match self.scope {
                GrantScope::SameSubject => true,
                GrantScope::SameOutput => {
                    self.output_digest.as_ref() == Some(&digest(request, Some(request.output), key))
                }
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn terms(minutes: u64, uses: Option<u32>, scope: GrantScope) -> Option<GrantTerms> {
        Some(GrantTerms {
            duration: Duration::from_secs(minutes * 60),
            uses,
            scope,
        })
    }

    #[test]
    fn a_quorum_grants_its_narrowest_terms_and_only_all_together() {
        use GrantScope::*;
        let both =
            GrantTerms::combine(&[terms(60, None, SameSubject), terms(30, Some(5), SameOutput)]);
        assert_eq!(both, terms(30, Some(5), SameOutput));
        assert_eq!(
            GrantTerms::combine(&[
                terms(60, Some(9), SameSubject),
                terms(90, Some(3), SameSubject)
            ]),
            terms(60, Some(3), SameSubject)
        );
        assert_eq!(
            GrantTerms::combine(&[terms(60, None, SameSubject), None]),
            None
        );
        assert_eq!(GrantTerms::combine(&[]), None);
    }

    #[test]
    fn every_policy_must_allow_and_risk_bounds_it() {
        let hour = GrantRule {
            max: HOUR,
            risk: RiskTier::Limited,
        };
        let day_high = GrantRule {
            max: 24 * HOUR,
            risk: RiskTier::High,
        };
        assert_eq!(
            GrantRule::combine([Some(&hour), Some(&day_high)], RiskTier::Minimal),
            Grantable::UpTo(HOUR)
        );
        assert_eq!(
            GrantRule::combine([Some(&hour), None], RiskTier::Minimal),
            Grantable::No
        );
        assert_eq!(
            GrantRule::combine([Some(&hour)], RiskTier::High),
            Grantable::NotAtRisk(RiskTier::High)
        );
        assert_eq!(
            GrantRule::combine([Some(&day_high)], RiskTier::High),
            Grantable::UpTo(24 * HOUR)
        );
        assert_eq!(
            GrantRule::combine([Some(&day_high)], RiskTier::Unacceptable),
            Grantable::NotAtRisk(RiskTier::Unacceptable)
        );
        assert_eq!(GrantRule::combine([], RiskTier::Minimal), Grantable::No);
    }

    fn routing(grant: Grantable, matched: &[&str]) -> Routing {
        Routing {
            route: Route::Review,
            matched: matched.iter().map(|it| (*it).to_owned()).collect(),
            policy_version: "v1".to_owned(),
            review: crate::routing::ReviewPlan {
                grant,
                ..crate::routing::ReviewPlan::default_review()
            },
            sample_rate: 0.0,
            limits: Vec::new(),
            errors: Vec::new(),
        }
    }

    proptest::proptest! {
        /// A grant covers exactly its own system, action and subject (and
        /// output for `same_output`), only while live, only for a review
        /// that allows grants and that its policies stand for.
        #[test]
        fn a_grant_covers_only_what_it_was_given_for(
            system in 0_u8..2, action in 0_u8..2, subject in 0_u8..2, output in 0_u8..2,
            same_subject: bool, minutes in 0_u64..120, used in 0_u32..4,
            revoked: bool, grantable: bool, extra_policy: bool, deny: bool,
        ) {
            let key = b"grant key";
            let value = |n: u8| json!({"to": format!("acct-{n}")});
            let subject_of = |n: u8| json!({"type": "Account", "id": format!("a-{n}"), "attributes": {"x": n}});
            let (origin_subject, origin_output) = (subject_of(0), value(0));
            let origin = Origin {
                id: &GrantId::from_unique("1"),
                key,
                proposal: &ProposalId::from_unique("1"),
                request: Request { system: "s0", action: "a0", subject: &origin_subject, output: &origin_output },
                policies: &["tools".to_owned()],
                policy_version: "v1",
                group: "ops",
                granted_by: vec!["ann".to_owned()],
            };
            let scope = if same_subject { GrantScope::SameSubject } else { GrantScope::SameOutput };
            let t0 = Timestamp::from_millis(1_795_000_000_000);
            let mut grant = Grant::new(origin, GrantTerms { duration: HOUR, uses: Some(3), scope }, t0);
            grant.used = used;
            if revoked {
                grant.revoked = Some((t0, "user:ann".to_owned()));
            }
            let (system_id, action_id) = (format!("s{system}"), format!("a{action}"));
            let (subject_value, output_value) = (subject_of(subject), value(output));
            let request = Request { system: &system_id, action: &action_id, subject: &subject_value, output: &output_value };
            let allowed = if grantable { Grantable::UpTo(HOUR) } else { Grantable::No };
            let matched: &[&str] = if extra_policy { &["tools", "big"] } else { &["tools"] };
            let mut routed = routing(allowed, matched);
            if deny {
                routed.route = Route::Deny;
            }
            let now = t0.plus(Duration::from_secs(minutes * 60));
            let expected = system == 0 && action == 0 && subject == 0
                && (same_subject || output == 0)
                && minutes < 60 && used < 3 && !revoked && grantable && !extra_policy && !deny;
            proptest::prop_assert_eq!(grant.covers(&request, &routed, key, now), expected);
            // Another deployment's key never matches.
            proptest::prop_assert!(!grant.covers(&request, &routed, b"another key", now));
        }
    }

    #[test]
    fn offers_are_checked_against_the_policy() {
        let offer = terms(120, Some(10), GrantScope::SameOutput).unwrap();
        assert!(offer.check(Grantable::UpTo(3 * HOUR)).is_ok());
        let refusals = [
            offer.check(Grantable::UpTo(HOUR)),
            offer.check(Grantable::No),
            offer.check(Grantable::NotAtRisk(RiskTier::High)),
            terms(0, None, GrantScope::SameOutput)
                .unwrap()
                .check(Grantable::UpTo(HOUR)),
            terms(1, Some(0), GrantScope::SameOutput)
                .unwrap()
                .check(Grantable::UpTo(HOUR)),
        ];
        let messages: Vec<String> = refusals.into_iter().map(|it| it.unwrap_err()).collect();
        expect_test::expect![[r#"
            [
                "a grant lasts at most 1h under this task's policy",
                "this task's policy gives no standing grants (it has no `@grantable`)",
                "grants are refused on `high` risk systems unless the policy says `@grantable_risk(\"high\")`",
                "a grant's `for` must be longer than zero",
                "a grant's `uses` must be at least 1",
            ]
        "#]]
        .assert_debug_eq(&messages);
    }
}
