//! Domain and store records to wire types, by hand (core does not know the
//! wire format), and wire enums to domain enums.
#![allow(
    dead_code,
    reason = "map_enum! emits both directions; not every one is used"
)]

use loopgate_core::review::Decision;
use loopgate_core::{self as core, Timestamp};
use loopgate_proto as proto;
use loopgate_store::{PolicyRecord, ProposalRecord, SystemRecord, TaskRecord, UserRecord};
use serde_json::Value;

/// Maps an enum between proto and core by variant name.
macro_rules! map_enum {
    ($fn_to:ident, $fn_from:ident, $proto:ident, $core:ident, [$($variant:ident),+]) => {
        pub(crate) fn $fn_to(value: proto::$proto) -> core::$core {
            match value { $(proto::$proto::$variant => core::$core::$variant),+ }
        }
        pub(crate) fn $fn_from(value: core::$core) -> proto::$proto {
            match value { $(core::$core::$variant => proto::$proto::$variant),+ }
        }
    };
}

map_enum!(
    route_to_core,
    route_to_proto,
    Route,
    Route,
    [Allow, Deny, Review]
);
map_enum!(
    status_to_core,
    status_to_proto,
    ProposalStatus,
    ProposalStatus,
    [Pending, Approved, Rejected, Cancelled, Returned]
);
map_enum!(
    decided_by_to_core,
    decided_by_to_proto,
    DecidedBy,
    DecidedBy,
    [Policy, Reviewers, Timeout, KillSwitch, System, Grant]
);
map_enum!(
    scope_to_core,
    scope_to_proto,
    GrantScope,
    GrantScope,
    [SameOutput, SameSubject]
);
map_enum!(
    verdict_to_core,
    verdict_to_proto,
    Verdict,
    Verdict,
    [Approve, Reject, Modify, Escalate, Respond]
);
map_enum!(
    kind_to_core,
    kind_to_proto,
    TaskKind,
    TaskKind,
    [Gate, PostHoc, QaSample]
);
map_enum!(
    state_to_core,
    state_to_proto,
    TaskState,
    TaskState,
    [Open, Claimed, Done, Expired, Cancelled]
);
map_enum!(
    risk_to_core,
    risk_to_proto,
    RiskTier,
    RiskTier,
    [Minimal, Limited, High, Unacceptable]
);
map_enum!(
    oversight_to_core,
    oversight_to_proto,
    Oversight,
    Oversight,
    [InTheLoop, OnTheLoop, Automated]
);
map_enum!(
    system_status_to_core,
    system_status_to_proto,
    SystemStatus,
    SystemStatus,
    [Active, Paused]
);
map_enum!(
    role_to_core,
    role_to_proto,
    Role,
    Role,
    [Admin, PolicyAuthor, Reviewer, Auditor]
);

pub(crate) fn proposal(record: ProposalRecord) -> proto::Proposal {
    let resolution = match (record.status.is_terminal(), record.decided_by) {
        (true, Some(decided_by)) => Some(proto::Resolution {
            outcome: status_to_proto(record.status),
            message: record
                .decisions
                .iter()
                .rev()
                .find_map(|it| it.message.clone()),
            decided_by: decided_by_to_proto(decided_by),
            grant_id: record.grant_id.clone(),
            output: record.output.clone(),
            modified: record.modified,
            digest: record.digest.to_string(),
            policy_version: record.policy_version.clone(),
            matched_policies: record.matched_policies.clone(),
            decisions: record.decisions.iter().map(decision).collect(),
            decided_at: record
                .decided_at
                .map(Timestamp::to_rfc3339)
                .unwrap_or_default(),
            receipt: None,
        }),
        _ => None,
    };
    let subject = proto::Subject {
        type_: record
            .subject
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        id: record
            .subject
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        attributes: match record.subject.get("attributes") {
            Some(Value::Object(map)) => map.clone(),
            _ => serde_json::Map::new(),
        },
    };
    let model = record.model.and_then(|it| serde_json::from_value(it).ok());
    proto::Proposal {
        id: record.id.to_string(),
        system: record.system.to_string(),
        action: record.action,
        status: status_to_proto(record.status),
        digest: record.digest.to_string(),
        route: route_to_proto(record.route),
        policy_version: record.policy_version,
        matched_policies: record.matched_policies,
        overridden: record.overridden,
        created_at: record.created_at.to_rfc3339(),
        subject,
        input: record.input,
        output: record.output,
        confidence: record.confidence,
        explanation: record.explanation,
        model,
        context: record.context,
        idempotency_key: record.idempotency_key,
        batch: record.batch,
        resolution,
        erased_at: record.erased_at.map(Timestamp::to_rfc3339),
        policy_errors: record.policy_errors.into_iter().map(policy_error).collect(),
    }
}

pub(crate) fn policy_error(
    error: loopgate_core::routing::EvaluationError,
) -> proto::PolicyEvaluationError {
    proto::PolicyEvaluationError {
        policy: error.policy,
        kind: error.kind,
        message: error.message,
    }
}

fn decision(decision: &Decision) -> proto::DecisionRecord {
    proto::DecisionRecord {
        reviewer: decision.reviewer.clone(),
        verdict: verdict_to_proto(decision.verdict),
        digest: decision.digest.to_string(),
        rationale: decision.rationale.clone(),
        message: decision.message.clone(),
        grant: decision.grant.as_ref().map(grant_offer),
        level: decision.level,
        decided_at: decision.decided_at.to_rfc3339(),
    }
}

pub(crate) fn task(record: TaskRecord, now: Timestamp) -> proto::Task {
    let task = record.task;
    let state = task.effective_state(now);
    let (claimed_by, lease_expires_at) = match state {
        core::TaskState::Claimed => (
            task.claimed_by.clone(),
            task.lease_expires_at.map(Timestamp::to_rfc3339),
        ),
        _ => (None, None),
    };
    let assigned = task.assignee(now).and(task.assigned.as_ref());
    proto::Task {
        id: task.id.to_string(),
        proposal_id: task.proposal_id.to_string(),
        system: record.system.to_string(),
        action: record.action,
        digest: record.digest.to_string(),
        group: task.group,
        kind: kind_to_proto(task.kind),
        state: state_to_proto(state),
        level: task.level,
        required: task.required,
        approvals: record.approvals,
        due_at: task.due_at.map(Timestamp::to_rfc3339),
        claimed_by,
        lease_expires_at,
        blind: task.plan.blind,
        rationale_required: task.plan.rationale_required,
        grantable: match task.plan.grant {
            core::Grantable::UpTo(max) => Some(core::duration::format(max)),
            _ => None,
        },
        grant_refused: match task.plan.grant {
            core::Grantable::NotAtRisk(tier) => Some(core::grant::refused_at_risk(tier)),
            _ => None,
        },
        batch: record.batch,
        assignee: assigned.map(|a| a.to.clone()),
        delegated_from: assigned.and_then(|a| a.delegated_from.clone()),
        return_at: assigned
            .and_then(|a| a.return_at)
            .map(Timestamp::to_rfc3339),
        created_at: task.created_at.to_rfc3339(),
    }
}

/// Terms as the API shows them.
pub(crate) fn grant_offer(terms: &core::GrantTerms) -> proto::GrantOffer {
    proto::GrantOffer {
        for_: core::duration::format(terms.duration),
        uses: terms.uses,
        scope: scope_to_proto(terms.scope),
    }
}

/// A grant as the API shows it at `now`.
pub(crate) fn grant(grant: core::Grant, now: Timestamp) -> proto::Grant {
    use core::grant::GrantState as S;
    let state = match grant.state(now) {
        S::Live => proto::GrantState::Live,
        S::UsedUp => proto::GrantState::UsedUp,
        S::Expired => proto::GrantState::Expired,
        S::Revoked => proto::GrantState::Revoked,
    };
    let uses_left = grant.uses_left();
    let (revoked_at, revoked_by) = match grant.revoked {
        Some((at, by)) => (Some(at.to_rfc3339()), Some(by)),
        None => (None, None),
    };
    proto::Grant {
        id: grant.id.to_string(),
        state,
        system: grant.system,
        action: grant.action,
        scope: scope_to_proto(grant.scope),
        proposal: grant.proposal.to_string(),
        policies: grant.policies,
        policy_version: grant.policy_version,
        group: grant.group,
        granted_by: grant.granted_by,
        used: grant.used,
        max_uses: grant.max_uses,
        uses_left,
        created_at: grant.created_at.to_rfc3339(),
        expires_at: grant.expires_at.to_rfc3339(),
        revoked_at,
        revoked_by,
    }
}

pub(crate) fn system(record: SystemRecord) -> proto::System {
    proto::System {
        id: record.id.to_string(),
        name: record.name,
        owner: record.owner,
        purpose: record.purpose,
        risk_tier: risk_to_proto(record.risk_tier),
        oversight: oversight_to_proto(record.oversight),
        status: system_status_to_proto(record.status),
        created_at: record.created_at.to_rfc3339(),
        updated_at: record.updated_at.to_rfc3339(),
        retention: record.retention.map(|r| format!("PT{}S", r.as_secs())),
        shape: record.shape,
    }
}

pub(crate) fn user(record: UserRecord) -> proto::User {
    proto::User {
        id: record.id.to_string(),
        username: record.username,
        roles: record.roles.into_iter().map(role_to_proto).collect(),
        groups: record.groups,
        created_at: record.created_at.to_rfc3339(),
        disabled: record.disabled_at.is_some(),
        email: record.email,
        slack_user_id: record.slack_user_id,
        notify: prefs_to_proto(record.notify),
        source: match record.source {
            loopgate_core::UserSource::Local => proto::UserSource::Local,
            loopgate_core::UserSource::Bootstrap => proto::UserSource::Bootstrap,
            loopgate_core::UserSource::Oidc => proto::UserSource::Oidc,
        },
        away_until: record.away_until.map(Timestamp::to_rfc3339),
        delegate: record.delegate,
    }
}

pub(crate) fn assignment_to_proto(mode: core::Assignment) -> proto::Assignment {
    match mode {
        core::Assignment::Pool => proto::Assignment::Pool,
        core::Assignment::RoundRobin => proto::Assignment::RoundRobin,
        core::Assignment::LeastLoaded => proto::Assignment::LeastLoaded,
    }
}

pub(crate) fn assignment_to_core(mode: proto::Assignment) -> core::Assignment {
    match mode {
        proto::Assignment::Pool => core::Assignment::Pool,
        proto::Assignment::RoundRobin => core::Assignment::RoundRobin,
        proto::Assignment::LeastLoaded => core::Assignment::LeastLoaded,
    }
}

/// A group as the API shows it.
pub(crate) fn group(record: loopgate_store::GroupRecord) -> proto::Group {
    proto::Group {
        group: record.group,
        assignment: assignment_to_proto(record.settings.assignment),
        return_after: core::duration::format(record.settings.return_after),
        members: record.members,
        updated_at: record.updated_at.map(Timestamp::to_rfc3339),
    }
}

pub(crate) fn prefs_to_proto(prefs: loopgate_core::notify::Prefs) -> proto::NotifyPrefs {
    use loopgate_core::notify::Pref;
    let one = |pref: Pref| match pref {
        Pref::Default => proto::NotifyPref::default(),
        Pref::Each => proto::NotifyPref {
            mode: proto::NotifyMode::Each,
            every_minutes: None,
        },
        Pref::Off => proto::NotifyPref {
            mode: proto::NotifyMode::Off,
            every_minutes: None,
        },
        Pref::Digest { every_minutes } => proto::NotifyPref {
            mode: proto::NotifyMode::Digest,
            every_minutes: Some(every_minutes),
        },
    };
    proto::NotifyPrefs {
        email: one(prefs.email),
        slack: one(prefs.slack),
    }
}

/// A user's choices from the wire; a digest needs its period.
pub(crate) fn prefs_to_core(
    prefs: proto::NotifyPrefs,
) -> Result<loopgate_core::notify::Prefs, String> {
    use loopgate_core::notify::{Pref, Prefs};
    let one = |name: &str, pref: proto::NotifyPref| match (pref.mode, pref.every_minutes) {
        (_, Some(n)) if !(1..=1440).contains(&n) => Err(format!(
            "`{name}.every_minutes` must be from 1 to 1440, not {n}"
        )),
        (proto::NotifyMode::Default, _) => Ok(Pref::Default),
        (proto::NotifyMode::Each, _) => Ok(Pref::Each),
        (proto::NotifyMode::Off, _) => Ok(Pref::Off),
        (proto::NotifyMode::Digest, Some(every_minutes)) => Ok(Pref::Digest { every_minutes }),
        (proto::NotifyMode::Digest, None) => Err(format!(
            "`{name}`: a digest needs `every_minutes` (1 to 1440)"
        )),
    };
    let prefs = Prefs {
        email: one("email", prefs.email)?,
        slack: one("slack", prefs.slack)?,
    };
    prefs.check()?;
    Ok(prefs)
}

pub(crate) fn policy(record: PolicyRecord, active: bool) -> proto::PolicyVersion {
    proto::PolicyVersion {
        version: record.version,
        seq: u64::try_from(record.seq).unwrap_or(0),
        description: record.description,
        created_by: record.created_by,
        created_at: record.created_at.to_rfc3339(),
        active,
        shadow: false,
        policy_ids: record.policy_ids,
        text: record.text,
        warnings: Vec::new(),
    }
}

/// One attempt of a webhook delivery or a notification.
pub(crate) fn attempt(record: loopgate_store::AttemptRecord) -> proto::DeliveryAttempt {
    proto::DeliveryAttempt {
        n: record.n,
        time: record.time.to_rfc3339(),
        status: record.status,
        error: record.error,
        duration_ms: record.duration_ms,
    }
}
