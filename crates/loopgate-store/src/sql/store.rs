//! `Store` for `SqlStore`, on SQLite and PostgreSQL alike: the index of
//! the store's methods. Each one either runs a query function on a reader
//! or in the writer's next group (`self.read` / `self.write`), or hands over
//! to the file of its resource: `users` (users and sessions), `systems`
//! (systems and credentials), `policies`, `proposals`, `tasks` (tasks and
//! decisions), `audit` (the log, erasure) and `webhooks`.

use std::sync::Arc;
use std::time::Duration;

use crate::db::params;
use loopgate_core::audit::Hash;
use loopgate_core::review::{DecisionInput, ReviewError};
use loopgate_core::{Digest, Grant, GrantId, ProposalId, SystemId, TaskId, Timestamp, UserId};

use super::aggregates as counts;
use super::queries as q;
use super::{SqlStore, audit, notifications, webhooks};
use crate::{
    Activation, ActivationMode, AnalyticsFilter, AttemptResult, Authenticated, CheckpointRecord,
    CredentialOwner, CredentialRecord, DecisionLink, DecisionOutcome, DeliveryFilter,
    DeliveryRecord, DueDelivery, DueNotification, EraseError, GroupNotifications, LabelRow,
    LoginRecord, NewCredential, NewPolicy, NewProposal, NewSession, NewSystem, NewUser,
    NotificationFilter, NotificationRecord, NotificationResult, OidcIdentity, OidcLogin,
    OidcSignIn, Paged, PolicyRecord, PolicyState, ProposalFilter, ProposalRecord, ReplayRow,
    ReviewFact, ReviewerRef, Sequenced, SessionRecord, ShadowSummary, Store, StoreError,
    StoredEvent, SubmitError, Submitted, SystemPatch, SystemRecord, TaskFilter, TaskRecord,
    TimerOutcome, Total, TotalsQuery, TreeHead, TxError, UserPatch, UserRecord, WebhookConfig,
};
use crate::{CommentRecord, GrantError, GrantFilter, GroupRecord, NewComment};

#[async_trait::async_trait]
impl Store for SqlStore {
    async fn sampling_secret(&self, candidate: String) -> Result<String, StoreError> {
        self.write_plain(move |conn| {
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('sampling_secret', ?1) ON CONFLICT DO NOTHING",
                params![candidate],
            )?;
            q::meta(conn, "sampling_secret")?.ok_or(StoreError::NotFound)
        })
        .await
    }

    async fn bootstrap_admin(
        &self,
        admin: NewUser,
        token: Option<NewCredential>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        SqlStore::bootstrap_admin(self, admin, token, now).await
    }

    async fn principal(&self, credential_hash: &str) -> Result<Option<Authenticated>, StoreError> {
        SqlStore::principal(self, credential_hash).await
    }

    async fn touch_credential(&self, id: &str, now: Timestamp) -> Result<(), StoreError> {
        SqlStore::touch_credential(self, id, now).await
    }

    async fn credentials(
        &self,
        owner: &CredentialOwner,
    ) -> Result<Vec<CredentialRecord>, StoreError> {
        SqlStore::credentials(self, owner).await
    }

    async fn revoke_credential(
        &self,
        owner: &CredentialOwner,
        id: &str,
        actor: &str,
        now: Timestamp,
    ) -> Result<CredentialRecord, StoreError> {
        SqlStore::revoke_credential(self, owner, id, actor, now).await
    }

    async fn create_user(
        &self,
        user: NewUser,
        actor: &str,
        now: Timestamp,
    ) -> Result<UserRecord, StoreError> {
        SqlStore::create_user(self, user, actor, now).await
    }

    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        SqlStore::users(self).await
    }

    async fn user(&self, id: &UserId) -> Result<Option<UserRecord>, StoreError> {
        SqlStore::user(self, id).await
    }

    async fn update_user(
        &self,
        id: &UserId,
        patch: UserPatch,
        actor: &str,
        now: Timestamp,
    ) -> Result<UserRecord, StoreError> {
        SqlStore::update_user(self, id, patch, actor, now).await
    }

    async fn login_user(&self, username: &str) -> Result<Option<LoginRecord>, StoreError> {
        SqlStore::login_user(self, username).await
    }

    async fn create_session(&self, session: NewSession, now: Timestamp) -> Result<(), StoreError> {
        SqlStore::create_session(self, session, now).await
    }

    async fn session(&self, hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        SqlStore::session(self, hash).await
    }

    async fn touch_session(&self, hash: &str, now: Timestamp) -> Result<(), StoreError> {
        SqlStore::touch_session(self, hash, now).await
    }

    async fn delete_session(&self, hash: &str) -> Result<(), StoreError> {
        SqlStore::delete_session(self, hash).await
    }

    async fn start_oidc_login(&self, login: OidcLogin, now: Timestamp) -> Result<(), StoreError> {
        SqlStore::start_oidc_login(self, login, now).await
    }

    async fn take_oidc_login(
        &self,
        state_hash: &str,
        now: Timestamp,
    ) -> Result<Option<OidcLogin>, StoreError> {
        SqlStore::take_oidc_login(self, state_hash, now).await
    }

    async fn oidc_sign_in(
        &self,
        identity: OidcIdentity,
        now: Timestamp,
    ) -> Result<OidcSignIn, StoreError> {
        SqlStore::oidc_sign_in(self, identity, now).await
    }

    async fn log_break_glass(
        &self,
        user: &UserId,
        actor: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        SqlStore::log_break_glass(self, user, actor, now).await
    }

    async fn create_credential(
        &self,
        credential: NewCredential,
        actor: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        SqlStore::create_credential(self, credential, actor, now).await
    }

    async fn create_system(
        &self,
        system: NewSystem,
        actor: &str,
        now: Timestamp,
    ) -> Result<SystemRecord, StoreError> {
        SqlStore::create_system(self, system, actor, now).await
    }

    async fn systems(&self) -> Result<Vec<SystemRecord>, StoreError> {
        SqlStore::systems(self).await
    }

    async fn system(&self, id: &SystemId) -> Result<Option<SystemRecord>, StoreError> {
        SqlStore::system(self, id).await
    }

    async fn update_system(
        &self,
        id: &SystemId,
        patch: SystemPatch,
        actor: &str,
        now: Timestamp,
    ) -> Result<SystemRecord, StoreError> {
        SqlStore::update_system(self, id, patch, actor, now).await
    }

    async fn publish_policy(
        &self,
        policy: NewPolicy,
        mode: ActivationMode,
        actor: &str,
        now: Timestamp,
    ) -> Result<PolicyRecord, StoreError> {
        SqlStore::publish_policy(self, policy, mode, actor, now).await
    }

    async fn activate_policy(
        &self,
        version: &str,
        mode: ActivationMode,
        reason: &str,
        actor: &str,
        now: Timestamp,
    ) -> Result<PolicyState, StoreError> {
        SqlStore::activate_policy(self, version, mode, reason, actor, now).await
    }

    async fn policy(&self, version: &str) -> Result<Option<PolicyRecord>, StoreError> {
        SqlStore::policy(self, version).await
    }

    async fn policy_state(&self) -> Result<PolicyState, StoreError> {
        SqlStore::policy_state(self).await
    }

    async fn activations(&self) -> Result<Vec<Activation>, StoreError> {
        SqlStore::activations(self).await
    }

    async fn shadow_summary(
        &self,
        version: &str,
        since: Timestamp,
        limit: u32,
    ) -> Result<ShadowSummary, StoreError> {
        SqlStore::shadow_summary(self, version, since, limit).await
    }

    async fn count_since(&self, since: Timestamp) -> Result<u64, StoreError> {
        SqlStore::count_since(self, since).await
    }

    async fn replay_rows(
        &self,
        since: Timestamp,
        after: i64,
        limit: u32,
    ) -> Result<Vec<ReplayRow>, StoreError> {
        SqlStore::replay_rows(self, since, after, limit).await
    }

    async fn policies(&self) -> Result<Vec<PolicyRecord>, StoreError> {
        SqlStore::policies(self).await
    }

    async fn submit(
        &self,
        new: NewProposal,
        now: Timestamp,
    ) -> Result<Submitted, TxError<SubmitError>> {
        SqlStore::submit(self, new, now).await
    }

    async fn proposal(&self, id: &ProposalId) -> Result<Option<ProposalRecord>, StoreError> {
        SqlStore::proposal(self, id).await
    }

    async fn replay(
        &self,
        system: &SystemId,
        key: &str,
        fingerprint: &Digest,
    ) -> Result<Option<ProposalRecord>, TxError<SubmitError>> {
        SqlStore::replay(self, system, key, fingerprint).await
    }

    async fn add_comment(
        &self,
        comment: NewComment,
        now: Timestamp,
    ) -> Result<CommentRecord, StoreError> {
        SqlStore::add_comment(self, comment, now).await
    }

    async fn comments(&self, proposal: &ProposalId) -> Result<Vec<CommentRecord>, StoreError> {
        SqlStore::comments(self, proposal).await
    }

    async fn proposal_groups(&self, id: &ProposalId) -> Result<Vec<String>, StoreError> {
        SqlStore::proposal_groups(self, id).await
    }

    async fn proposals(&self, filter: ProposalFilter) -> Result<Paged<ProposalRecord>, StoreError> {
        SqlStore::proposals(self, filter).await
    }

    async fn cancel(
        &self,
        id: &ProposalId,
        actor: &str,
        now: Timestamp,
    ) -> Result<ProposalRecord, TxError<ReviewError>> {
        SqlStore::cancel(self, id, actor, now).await
    }

    async fn tasks(
        &self,
        filter: TaskFilter,
        now: Timestamp,
    ) -> Result<Paged<TaskRecord>, StoreError> {
        SqlStore::tasks(self, filter, now).await
    }

    async fn task(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError> {
        SqlStore::task(self, id).await
    }

    async fn claim(
        &self,
        id: &TaskId,
        reviewer: &ReviewerRef,
        lease: Duration,
        now: Timestamp,
    ) -> Result<TaskRecord, TxError<ReviewError>> {
        SqlStore::claim(self, id, reviewer, lease, now).await
    }

    async fn release(
        &self,
        id: &TaskId,
        reviewer: &ReviewerRef,
        now: Timestamp,
    ) -> Result<TaskRecord, TxError<ReviewError>> {
        SqlStore::release(self, id, reviewer, now).await
    }

    async fn decide(
        &self,
        id: &TaskId,
        reviewer: &ReviewerRef,
        input: DecisionInput,
        now: Timestamp,
    ) -> Result<DecisionOutcome, TxError<ReviewError>> {
        SqlStore::decide(self, id, reviewer, input, now).await
    }

    async fn run_timers(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<TimerOutcome>, StoreError> {
        SqlStore::run_timers(self, now, limit).await
    }

    async fn grants(&self, filter: GrantFilter) -> Result<Vec<Grant>, StoreError> {
        SqlStore::grants(self, filter).await
    }

    async fn grant(&self, id: &GrantId) -> Result<Option<Grant>, StoreError> {
        SqlStore::grant(self, id).await
    }

    async fn revoke_grant(
        &self,
        id: &GrantId,
        actor: &str,
        now: Timestamp,
    ) -> Result<Grant, TxError<GrantError>> {
        SqlStore::revoke_grant(self, id, actor, now).await
    }

    async fn queue_depth(&self, now: Timestamp) -> Result<Vec<(String, u64)>, StoreError> {
        SqlStore::queue_depth(self, now).await
    }

    async fn erase(
        &self,
        id: &ProposalId,
        actor: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<ProposalRecord, TxError<EraseError>> {
        let (id, actor, reason) = (id.clone(), actor.to_owned(), reason.to_owned());
        self.write(move |conn| audit::erase(conn, &id, &actor, &reason, now))
            .await
    }

    async fn erase_expired(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<ProposalId>, StoreError> {
        self.write_plain(move |conn| audit::erase_expired(conn, now, limit))
            .await
    }

    async fn sequence(&self, limit: u32) -> Result<Sequenced, StoreError> {
        self.sequence_events(limit).await
    }

    async fn tree_head(&self) -> Result<TreeHead, StoreError> {
        self.read(audit::head).await
    }

    async fn add_checkpoint(&self, checkpoint: CheckpointRecord) -> Result<(), StoreError> {
        self.write_plain(move |conn| audit::add_checkpoint(conn, &checkpoint))
            .await
    }

    async fn latest_checkpoint(&self) -> Result<Option<CheckpointRecord>, StoreError> {
        self.read(audit::latest_checkpoint).await
    }

    async fn checkpoints(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<CheckpointRecord>, StoreError> {
        self.read(move |conn| audit::checkpoints(conn, after, limit))
            .await
    }

    async fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.read(move |conn| audit::entries(conn, start, end))
            .await
    }

    async fn subject_entries(&self, subject: &str) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let subject = subject.to_owned();
        self.read(move |conn| audit::subject_entries(conn, &subject))
            .await
    }

    async fn tile(&self, level: u32, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(move |conn| audit::stored_tile(conn, level, index))
            .await
    }

    async fn inclusion_proofs(
        &self,
        indexes: Vec<u64>,
        size: u64,
    ) -> Result<Vec<Vec<Hash>>, StoreError> {
        let tiles = Arc::clone(&self.inner.tiles);
        self.read(move |conn| audit::inclusion_proofs(conn, &tiles, &indexes, size))
            .await
    }

    async fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, StoreError> {
        let tiles = Arc::clone(&self.inner.tiles);
        self.read(move |conn| audit::consistency_proof(conn, &tiles, from, to))
            .await
    }

    async fn review_facts(&self, filter: AnalyticsFilter) -> Result<Vec<ReviewFact>, StoreError> {
        self.read(move |conn| q::review_facts(conn, &filter)).await
    }

    async fn analytics_totals(&self, query: TotalsQuery) -> Result<Vec<Total>, StoreError> {
        self.read(move |conn| counts::totals(conn, &query)).await
    }

    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {} FROM events e
                 LEFT JOIN proposals p ON p.id = e.subject
                 LEFT JOIN tasks t ON t.proposal_id = e.subject
                 WHERE e.seq > ?1 ORDER BY e.seq LIMIT CAST(?2 AS BIGINT)",
                q::EVENT_COLUMNS
            );
            q::all(conn, &sql, params![after, limit], |row| {
                q::event_row(row, 0)
            })
        })
        .await
    }

    async fn last_event_seq(&self) -> Result<i64, StoreError> {
        self.read(|conn| {
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |row| {
                row.get(0)
            })
        })
        .await
    }

    async fn set_webhook(
        &self,
        webhook: WebhookConfig,
        actor: &str,
        now: Timestamp,
    ) -> Result<WebhookConfig, StoreError> {
        let actor = actor.to_owned();
        let set = self
            .write_plain(move |conn| webhooks::set(conn, &webhook, &actor, now))
            .await;
        self.inner.no_webhooks.forget();
        set
    }

    async fn remove_webhook(
        &self,
        system: &SystemId,
        actor: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (system, actor) = (system.clone(), actor.to_owned());
        self.write_plain(move |conn| webhooks::remove(conn, system.as_str(), &actor, now))
            .await
    }

    async fn webhook(&self, system: &SystemId) -> Result<Option<WebhookConfig>, StoreError> {
        let system = system.clone();
        self.read(move |conn| webhooks::webhook(conn, system.as_str()))
            .await
    }

    async fn enqueue_deliveries(&self, now: Timestamp, limit: u32) -> Result<u32, StoreError> {
        if !self
            .outbox_has_work(&self.inner.no_webhooks, webhooks::has_work)
            .await?
        {
            return Ok(0);
        }
        self.write_plain(move |conn| webhooks::enqueue(conn, now, limit))
            .await
    }

    async fn due_deliveries(
        &self,
        now: Timestamp,
        skip: Vec<SystemId>,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        self.read(move |conn| webhooks::due(conn, now, &skip, limit))
            .await
    }

    async fn record_attempts(&self, results: Vec<AttemptResult>) -> Result<(), StoreError> {
        self.write_plain(move |conn| webhooks::record(conn, &results))
            .await
    }

    async fn deliveries(
        &self,
        filter: DeliveryFilter,
    ) -> Result<Paged<DeliveryRecord>, StoreError> {
        self.read(move |conn| webhooks::list(conn, &filter)).await
    }

    async fn delivery(
        &self,
        system: &SystemId,
        id: i64,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let system = system.clone();
        self.read(move |conn| webhooks::one(conn, system.as_str(), id))
            .await
    }

    async fn redeliver(
        &self,
        system: &SystemId,
        id: i64,
        now: Timestamp,
    ) -> Result<DeliveryRecord, StoreError> {
        let system = system.clone();
        self.write_plain(move |conn| webhooks::redeliver(conn, system.as_str(), id, now))
            .await
    }

    async fn prune_deliveries(&self, before: Timestamp, limit: u32) -> Result<u32, StoreError> {
        self.write_plain(move |conn| webhooks::prune(conn, before, limit))
            .await
    }

    async fn groups(&self) -> Result<Vec<GroupRecord>, StoreError> {
        SqlStore::groups(self).await
    }

    async fn set_group(
        &self,
        group: &str,
        settings: loopgate_core::assign::GroupSettings,
        actor: &str,
        now: Timestamp,
    ) -> Result<GroupRecord, StoreError> {
        SqlStore::set_group(self, group, settings, actor, now).await
    }

    async fn group_notifications(&self) -> Result<Vec<GroupNotifications>, StoreError> {
        self.read(notifications::groups).await
    }

    async fn set_group_notifications(
        &self,
        settings: GroupNotifications,
        actor: &str,
        now: Timestamp,
    ) -> Result<GroupNotifications, StoreError> {
        let actor = actor.to_owned();
        let set = self
            .write_plain(move |conn| notifications::set_group(conn, &settings, &actor, now))
            .await;
        self.inner.no_notifications.forget();
        set
    }

    async fn enqueue_notifications(
        &self,
        now: Timestamp,
        warn: Option<f64>,
        limit: u32,
    ) -> Result<u32, StoreError> {
        if !self
            .outbox_has_work(&self.inner.no_notifications, move |conn| {
                notifications::has_work(conn, now, warn)
            })
            .await?
        {
            return Ok(0);
        }
        self.write_plain(move |conn| notifications::enqueue(conn, now, warn, limit))
            .await
    }

    async fn due_notifications(
        &self,
        now: Timestamp,
        skip: Vec<loopgate_core::Channel>,
        limit: u32,
    ) -> Result<Vec<DueNotification>, StoreError> {
        self.read(move |conn| notifications::due(conn, now, &skip, limit))
            .await
    }

    async fn record_notifications(
        &self,
        results: Vec<NotificationResult>,
    ) -> Result<(), StoreError> {
        self.write_plain(move |conn| notifications::record(conn, &results))
            .await
    }

    async fn notifications(
        &self,
        filter: NotificationFilter,
    ) -> Result<Paged<NotificationRecord>, StoreError> {
        self.read(move |conn| notifications::list(conn, &filter))
            .await
    }

    async fn notification(&self, id: i64) -> Result<Option<NotificationRecord>, StoreError> {
        self.read(move |conn| notifications::one(conn, id)).await
    }

    async fn slack_messages(&self, task: &TaskId) -> Result<Vec<String>, StoreError> {
        let task = task.clone();
        self.read(move |conn| notifications::slack_messages(conn, task.as_str()))
            .await
    }

    async fn prune_notifications(&self, before: Timestamp, limit: u32) -> Result<u32, StoreError> {
        self.write_plain(move |conn| notifications::prune(conn, before, limit))
            .await
    }

    async fn create_decision_link(&self, link: DecisionLink) -> Result<(), StoreError> {
        self.write_plain(move |conn| notifications::create_link(conn, &link))
            .await
    }

    async fn decision_link(&self, hash: &str) -> Result<Option<DecisionLink>, StoreError> {
        let hash = hash.to_owned();
        self.read(move |conn| notifications::link(conn, &hash))
            .await
    }

    async fn use_decision_link(&self, hash: &str, now: Timestamp) -> Result<bool, StoreError> {
        let hash = hash.to_owned();
        self.write_plain(move |conn| notifications::use_link(conn, &hash, now))
            .await
    }

    async fn user_for_slack(
        &self,
        slack_user_id: &str,
        email: Option<String>,
    ) -> Result<Option<UserRecord>, StoreError> {
        let slack = slack_user_id.to_owned();
        self.read(move |conn| notifications::user_for_slack(conn, &slack, email.as_deref()))
            .await
    }

    async fn rebuild_analytics(&self) -> Result<(), StoreError> {
        self.write_plain(counts::rebuild).await
    }

    async fn disagreements(
        &self,
        filter: AnalyticsFilter,
        limit: u32,
    ) -> Result<Vec<ProposalId>, StoreError> {
        self.read(move |conn| {
            counts::disagreements(conn, &filter, limit)?
                .iter()
                .map(|id| q::parse(id, ProposalId::parse))
                .collect()
        })
        .await
    }

    async fn attribute_keys(&self, system: &SystemId) -> Result<Vec<String>, StoreError> {
        SqlStore::attribute_keys(self, system).await
    }

    async fn label_rows(
        &self,
        filter: AnalyticsFilter,
        after_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<LabelRow>, StoreError> {
        self.read(move |conn| q::label_rows(conn, &filter, after_seq.unwrap_or(0), limit))
            .await
    }

    fn watch_commits(&self, callback: Box<dyn Fn() + Send + Sync>) {
        SqlStore::watch_commits(self, callback);
    }

    fn watch_queued(&self, callback: Box<dyn Fn() + Send + Sync>) {
        SqlStore::watch_queued(self, callback);
    }

    fn watch_settled(&self, callback: Box<dyn Fn(&ProposalId) + Send + Sync>) {
        SqlStore::watch_settled(self, callback);
    }

    fn leads(&self) -> bool {
        SqlStore::leads(self)
    }

    fn sequences_later(&self) -> bool {
        SqlStore::sequences_later(self)
    }

    fn write_stats(&self) -> crate::WriteStats {
        self.inner.health.stats()
    }

    async fn settle_log(&self) -> Result<(), StoreError> {
        self.settle_events().await
    }

    fn writer_state(&self) -> crate::WriterState {
        SqlStore::writer_state(self)
    }

    #[expect(clippy::panic, reason = "what the test simulates")]
    async fn crash_writer_for_tests(&self) {
        let _: Result<(), StoreError> = self
            .write_plain(|_| panic!("the writer crashes, as a test asked"))
            .await;
        // The thread marks itself stopped just after the job's answer is dropped.
        while SqlStore::writer_state(self) != crate::WriterState::Stopped {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn fail_writes_for_tests(&self, fail: bool) {
        SqlStore::fail_writes_for_tests(self, fail);
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| {
            conn.query_row("SELECT 1", params![], |row| row.get::<_, i64>(0))
                .map(|_| ())
        })
        .await
    }
}
