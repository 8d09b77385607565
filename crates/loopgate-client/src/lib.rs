//! A typed Rust client for the loopgate HTTP API, over the wire types of
//! `loopgate-proto`. It never depends on the server or the store.
//!
//! Submissions carry an idempotency key (one is made when the caller gives
//! none), so a retry after a dropped connection never makes a second proposal.
#![deny(missing_docs, rustdoc::broken_intra_doc_links)]

use std::time::Duration;

use loopgate_proto as proto;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a problem.
    #[error("{}{}", .0.detail, .0.help.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Problem(Box<proto::Problem>),
    /// The server could not be reached or answered something unexpected.
    #[error("{0}")]
    Transport(String),
}

impl ClientError {
    /// The problem's stable code, if the server answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Problem(problem) => Some(&problem.code),
            ClientError::Transport(_) => None,
        }
    }
}

/// A connection to one loopgate server with one credential.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
    retries: u32,
    /// Sent as `traceparent` with every request.
    traceparent: Option<reqwest::header::HeaderValue>,
}

/// Filters of the task queue.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TaskQuery {
    /// `open` (default), `claimed`, `done`, `expired`, `cancelled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Only this group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Only this system.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Page cursor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Page size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Only the tasks assigned to or claimed by the caller.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub mine: bool,
}

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:8460`) with a bearer token.
    pub fn new(base: &str, token: &str) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(Client {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http,
            retries: 3,
            traceparent: None,
        })
    }

    /// This client, sending `traceparent` (W3C Trace Context,
    /// `00-<trace id>-<span id>-<flags>`) with every request, so that the
    /// server's spans of what it sends join the caller's trace. A value
    /// that cannot be a header is not sent (the server ignores one that is
    /// not a valid trace context, and starts a trace of its own).
    pub fn with_traceparent(&self, traceparent: &str) -> Client {
        let mut client = self.clone();
        client.traceparent = reqwest::header::HeaderValue::from_str(traceparent)
            .ok()
            .filter(|_| traceparent.len() <= 256);
        client
    }

    /// A client for what needs no credential (the audit log's public key,
    /// and its checkpoints and proofs where `audit_public` is on).
    pub fn anonymous(base: &str) -> Result<Client, ClientError> {
        Client::new(base, "")
    }

    /// A request with the client's token, if it has one.
    fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, url);
        if let Some(traceparent) = &self.traceparent {
            request = request.header("traceparent", traceparent.clone());
        }
        if self.token.is_empty() {
            request
        } else {
            request.bearer_auth(&self.token)
        }
    }

    /// Submits a proposal; with `wait`, long-polls until it is resolved.
    pub async fn submit(
        &self,
        proposal: &proto::SubmitProposal,
        wait: Option<Duration>,
    ) -> Result<proto::Proposal, ClientError> {
        let mut proposal = proposal.clone();
        if proposal.idempotency_key.is_none() {
            proposal.idempotency_key = Some(format!("client-{}", ulid::Ulid::new()));
        }
        let path = format!("/v1/proposals{}", wait_query(wait));
        let mut attempt = 0;
        loop {
            match self.call(Method::POST, &path, Some(&proposal)).await {
                Err(ClientError::Transport(_)) if attempt < self.retries => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
                res => return res,
            }
        }
    }

    /// Reads a proposal; with `wait`, long-polls until it is resolved.
    pub async fn proposal(
        &self,
        id: &str,
        wait: Option<Duration>,
    ) -> Result<proto::Proposal, ClientError> {
        self.call::<(), _>(
            Method::GET,
            &format!("/v1/proposals/{id}{}", wait_query(wait)),
            None,
        )
        .await
    }

    /// Waits until the proposal is resolved, long-polling as long as it takes.
    pub async fn wait(&self, id: &str) -> Result<proto::Proposal, ClientError> {
        loop {
            let proposal = self.proposal(id, Some(Duration::from_secs(60))).await?;
            if proposal.resolution.is_some() {
                return Ok(proposal);
            }
        }
    }

    /// Withdraws a pending proposal.
    pub async fn cancel(&self, id: &str) -> Result<proto::Proposal, ClientError> {
        self.call::<(), _>(Method::POST, &format!("/v1/proposals/{id}/cancel"), None)
            .await
    }

    /// The caller's task queue.
    pub async fn tasks(&self, query: &TaskQuery) -> Result<proto::Page<proto::Task>, ClientError> {
        let query = query_string(&[
            ("state", query.state.clone()),
            ("group", query.group.clone()),
            ("system", query.system.clone()),
            ("cursor", query.cursor.clone()),
            ("limit", query.limit.map(|n| n.to_string())),
            ("mine", query.mine.then(|| "true".to_owned())),
        ]);
        self.call::<(), _>(Method::GET, &format!("/v1/tasks{query}"), None)
            .await
    }

    /// One task.
    pub async fn task(&self, id: &str) -> Result<proto::Task, ClientError> {
        self.call::<(), _>(Method::GET, &format!("/v1/tasks/{id}"), None)
            .await
    }

    /// Standing grants the caller may see, newest first (live ones unless `all`).
    pub async fn grants(
        &self,
        system: Option<&str>,
        all: bool,
    ) -> Result<proto::GrantList, ClientError> {
        let mut query = vec![("state", String::from(if all { "all" } else { "live" }))];
        if let Some(system) = system {
            query.push(("system", system.to_owned()));
        }
        let path = format!("/v1/grants?{}", encode_query(&query));
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// Revokes a standing grant.
    pub async fn revoke_grant(&self, id: &str) -> Result<proto::Grant, ClientError> {
        self.call::<(), _>(Method::DELETE, &format!("/v1/grants/{id}"), None)
            .await
    }

    /// Takes the lease on a task.
    pub async fn claim(&self, id: &str) -> Result<proto::Task, ClientError> {
        self.call::<(), _>(Method::POST, &format!("/v1/tasks/{id}/claim"), None)
            .await
    }

    /// Gives the lease back.
    pub async fn release(&self, id: &str) -> Result<proto::Task, ClientError> {
        self.call::<(), _>(Method::POST, &format!("/v1/tasks/{id}/release"), None)
            .await
    }

    /// Decides many tasks in one call; each item succeeds or fails alone.
    pub async fn decide_many(
        &self,
        batch: &proto::BatchDecisionRequest,
    ) -> Result<proto::BatchDecisionResponse, ClientError> {
        self.call(Method::POST, "/v1/tasks/decisions", Some(batch))
            .await
    }

    /// Decides a task.
    pub async fn decide(
        &self,
        id: &str,
        decision: &proto::DecisionRequest,
    ) -> Result<proto::DecisionResponse, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/tasks/{id}/decision"),
            Some(decision),
        )
        .await
    }

    /// Every system.
    pub async fn systems(&self) -> Result<proto::Page<proto::System>, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/systems", None).await
    }

    /// Registers a system.
    pub async fn create_system(
        &self,
        system: &proto::CreateSystem,
    ) -> Result<proto::System, ClientError> {
        self.call(Method::POST, "/v1/systems", Some(system)).await
    }

    /// Changes a system (pause, resume, oversight, …).
    pub async fn update_system(
        &self,
        id: &str,
        patch: &proto::UpdateSystem,
    ) -> Result<proto::System, ClientError> {
        self.call(Method::PATCH, &format!("/v1/systems/{id}"), Some(patch))
            .await
    }

    /// A new API key for a system, without a name or expiry.
    pub async fn create_key(&self, system: &str) -> Result<proto::IssuedSecret, ClientError> {
        self.issue_key(system, &proto::CreateCredential::default())
            .await
    }

    /// A new API key for a system, with a name and optional expiry.
    pub async fn issue_key(
        &self,
        system: &str,
        body: &proto::CreateCredential,
    ) -> Result<proto::IssuedSecret, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/systems/{system}/keys"),
            Some(body),
        )
        .await
    }

    /// A system's API keys (never their secrets).
    pub async fn keys(&self, system: &str) -> Result<proto::Page<proto::Credential>, ClientError> {
        self.call::<(), _>(Method::GET, &format!("/v1/systems/{system}/keys"), None)
            .await
    }

    /// Revokes a system's API key.
    pub async fn revoke_key(
        &self,
        system: &str,
        key_id: &str,
    ) -> Result<proto::Credential, ClientError> {
        let path = format!("/v1/systems/{system}/keys/{key_id}");
        self.call::<(), _>(Method::DELETE, &path, None).await
    }

    /// Every user.
    pub async fn users(&self) -> Result<proto::Page<proto::User>, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/users", None).await
    }

    /// Creates a user.
    pub async fn create_user(&self, user: &proto::CreateUser) -> Result<proto::User, ClientError> {
        self.call(Method::POST, "/v1/users", Some(user)).await
    }

    /// Changes a user's roles, groups or password.
    pub async fn update_user(
        &self,
        user_id: &str,
        patch: &proto::UpdateUser,
    ) -> Result<proto::User, ClientError> {
        self.call(Method::PATCH, &format!("/v1/users/{user_id}"), Some(patch))
            .await
    }

    /// A new personal token for a user, without a name or expiry.
    pub async fn create_token(&self, user_id: &str) -> Result<proto::IssuedSecret, ClientError> {
        self.issue_token(user_id, &proto::CreateCredential::default())
            .await
    }

    /// A new personal token for a user, with a name and optional expiry.
    pub async fn issue_token(
        &self,
        user_id: &str,
        body: &proto::CreateCredential,
    ) -> Result<proto::IssuedSecret, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/users/{user_id}/tokens"),
            Some(body),
        )
        .await
    }

    /// A user's personal tokens (never their secrets).
    pub async fn tokens(
        &self,
        user_id: &str,
    ) -> Result<proto::Page<proto::Credential>, ClientError> {
        self.call::<(), _>(Method::GET, &format!("/v1/users/{user_id}/tokens"), None)
            .await
    }

    /// Revokes a personal token.
    pub async fn revoke_token(
        &self,
        user_id: &str,
        token_id: &str,
    ) -> Result<proto::Credential, ClientError> {
        let path = format!("/v1/users/{user_id}/tokens/{token_id}");
        self.call::<(), _>(Method::DELETE, &path, None).await
    }

    /// Publishes a policy version.
    pub async fn publish_policy(
        &self,
        policy: &proto::PublishPolicy,
    ) -> Result<proto::PolicyVersion, ClientError> {
        self.call(Method::POST, "/v1/policies", Some(policy)).await
    }

    /// Every policy version, newest first.
    pub async fn policies(&self) -> Result<proto::Page<proto::PolicyVersion>, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/policies", None).await
    }

    /// One policy version.
    pub async fn policy(&self, version: &str) -> Result<proto::PolicyVersion, ClientError> {
        let path = format!("/v1/policies/{version}");
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// Makes a stored version live (rollback, promotion) or shadow.
    pub async fn activate_policy(
        &self,
        version: &str,
        body: &proto::ActivatePolicy,
    ) -> Result<proto::PolicyVersion, ClientError> {
        let path = format!("/v1/policies/{version}/activate");
        self.call(Method::POST, &path, Some(body)).await
    }

    /// Every activation, newest first.
    pub async fn policy_activations(&self) -> Result<Vec<proto::PolicyActivation>, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/policies/activations", None)
            .await
    }

    /// Schema errors and lint warnings for policy text.
    pub async fn validate_policy(
        &self,
        body: &proto::PublishPolicy,
    ) -> Result<proto::PolicyValidation, ClientError> {
        self.call(Method::POST, "/v1/policies/validate", Some(body))
            .await
    }

    /// The Cedar schema generated from the systems' declarations.
    pub async fn policy_schema(&self) -> Result<proto::PolicySchema, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/policies/schema", None)
            .await
    }

    /// Runs a case file on the server (with the registered systems' tiers).
    pub async fn test_policies(
        &self,
        body: &proto::TestPolicies,
    ) -> Result<proto::PolicyTestReport, ClientError> {
        self.call(Method::POST, "/v1/policies/test", Some(body))
            .await
    }

    /// Replays history under a draft; `progress(done, total)` sees each
    /// progress line of the stream.
    pub async fn replay_policies(
        &self,
        body: &proto::ReplayPolicies,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<proto::ReplayReport, ClientError> {
        let url = format!("{}/v1/policies/replay?stream=true", self.base);
        let response = self
            .request(Method::POST, &url)
            .json(body)
            .send()
            .await
            .map_err(|e| ClientError::Transport(format!("cannot reach {}: {e}", self.base)))?;
        let response = problem_or(response, &url).await?;
        let mut report = None;
        each_line(response, |line| {
            let line: proto::ReplayLine = serde_json::from_slice(line)
                .map_err(|e| ClientError::Transport(format!("unexpected replay line: {e}")))?;
            match line {
                proto::ReplayLine::Progress { done, total } => {
                    progress(done, total);
                    Ok(true)
                }
                proto::ReplayLine::Report(it) => {
                    report = Some(it);
                    Ok(false)
                }
                proto::ReplayLine::Error(problem) => Err(ClientError::Problem(Box::new(problem))),
            }
        })
        .await?;
        report.ok_or_else(|| {
            ClientError::Transport("the replay stream ended without a report".to_owned())
        })
    }

    /// One analytics report (`overview`, `calibration`, `qa`, `thresholds`,
    /// `fairness`, `agreement`) with its query parameters.
    pub async fn analytics<T: DeserializeOwned>(
        &self,
        report: &str,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        let path = format!("/v1/analytics/{report}?{}", encode_query(query));
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// Streams the labeled export, handing each record to `each`; returns
    /// how many there were.
    pub async fn export_labels(
        &self,
        query: &[(&str, String)],
        mut each: impl FnMut(proto::LabelRecord) -> Result<(), ClientError>,
    ) -> Result<u64, ClientError> {
        let url = format!("{}/v1/exports/labels?{}", self.base, encode_query(query));
        let response = self
            .request(Method::GET, &url)
            .send()
            .await
            .map_err(|e| ClientError::Transport(format!("cannot reach {}: {e}", self.base)))?;
        let response = problem_or(response, &url).await?;
        let mut n = 0;
        each_line(response, |line| {
            let value: serde_json::Value = serde_json::from_slice(line)
                .map_err(|e| ClientError::Transport(format!("unexpected export line: {e}")))?;
            if let Some(error) = value.get("error") {
                return Err(ClientError::Transport(format!("the server {error}")));
            }
            let record = serde_json::from_value(value)
                .map_err(|e| ClientError::Transport(format!("unexpected export line: {e}")))?;
            each(record)?;
            n += 1;
            Ok(true)
        })
        .await?;
        Ok(n)
    }

    /// What the shadow version disagreed on.
    pub async fn shadow_report(&self) -> Result<proto::ShadowReport, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/policies/shadow", None)
            .await
    }

    /// Stops shadow evaluation.
    pub async fn stop_shadow(&self, reason: &str) -> Result<(), ClientError> {
        let body = proto::StopShadow {
            reason: reason.to_owned(),
        };
        self.raw(Method::DELETE, "/v1/policies/shadow", Some(&body))
            .await
            .map(drop)
    }

    /// Erases a settled proposal's payloads and salt (admin).
    pub async fn erase(&self, id: &str, reason: &str) -> Result<proto::Proposal, ClientError> {
        let body = proto::EraseProposal {
            reason: reason.to_owned(),
        };
        self.call(
            Method::POST,
            &format!("/v1/proposals/{id}/erase"),
            Some(&body),
        )
        .await
    }

    /// A proposal's audit trail with inclusion proofs and its salt.
    pub async fn proposal_audit(&self, id: &str) -> Result<proto::ProposalAudit, ClientError> {
        self.call::<(), _>(Method::GET, &format!("/v1/proposals/{id}/audit"), None)
            .await
    }

    /// The audit log's verifier key.
    pub async fn audit_pubkey(&self) -> Result<String, ClientError> {
        let bytes = self
            .raw::<()>(Method::GET, "/v1/audit/pubkey", None)
            .await?;
        Ok(String::from_utf8_lossy(&bytes).trim_end().to_owned())
    }

    /// The newest signed checkpoint.
    pub async fn audit_checkpoint(&self) -> Result<String, ClientError> {
        let bytes = self
            .raw::<()>(Method::GET, "/v1/audit/checkpoint", None)
            .await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Sequences everything queued and signs a checkpoint now.
    pub async fn issue_checkpoint(&self) -> Result<String, ClientError> {
        let bytes = self
            .raw::<()>(Method::POST, "/v1/audit/checkpoint", None)
            .await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Stored checkpoints larger than `after`, smallest first.
    pub async fn audit_checkpoints(
        &self,
        after: u64,
    ) -> Result<proto::AuditCheckpoints, ClientError> {
        let path = format!("/v1/audit/checkpoints?after={after}");
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// A tile or entry bundle by its path under `tile/`.
    pub async fn audit_tile(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let path = format!("/v1/audit/tile/{path}");
        self.raw::<()>(Method::GET, &path, None).await
    }

    /// The inclusion proof of an entry in the tree of `size`.
    pub async fn inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> Result<proto::InclusionProof, ClientError> {
        let path = format!("/v1/audit/proof/inclusion?index={index}&size={size}");
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// The consistency proof between two tree sizes.
    pub async fn consistency_proof(
        &self,
        from: u64,
        to: u64,
    ) -> Result<proto::ConsistencyProof, ClientError> {
        let path = format!("/v1/audit/proof/consistency?from={from}&to={to}");
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// A system's webhook (without its secret).
    pub async fn webhook(&self, system: &str) -> Result<proto::Webhook, ClientError> {
        self.call::<(), _>(Method::GET, &format!("/v1/systems/{system}/webhook"), None)
            .await
    }

    /// Sets a system's webhook; the answer holds the signing secret.
    pub async fn set_webhook(
        &self,
        system: &str,
        webhook: &proto::SetWebhook,
    ) -> Result<proto::Webhook, ClientError> {
        self.call(
            Method::PUT,
            &format!("/v1/systems/{system}/webhook"),
            Some(webhook),
        )
        .await
    }

    /// Removes a system's webhook.
    pub async fn remove_webhook(&self, system: &str) -> Result<(), ClientError> {
        self.raw::<()>(
            Method::DELETE,
            &format!("/v1/systems/{system}/webhook"),
            None,
        )
        .await
        .map(drop)
    }

    /// A page of a system's webhook deliveries, newest first (`state`:
    /// `pending`, `delivered` or `failed`).
    pub async fn deliveries(
        &self,
        system: &str,
        state: Option<&str>,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<proto::Page<proto::Delivery>, ClientError> {
        let query = query_string(&[
            ("state", state.map(str::to_owned)),
            ("cursor", cursor.map(str::to_owned)),
            ("limit", limit.map(|n| n.to_string())),
        ]);
        let path = format!("/v1/systems/{system}/webhook/deliveries{query}");
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// One delivery (`msg_…`) with every attempt.
    pub async fn delivery(&self, system: &str, id: &str) -> Result<proto::Delivery, ClientError> {
        let path = format!("/v1/systems/{system}/webhook/deliveries/{id}");
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// Sends a delivery again now.
    pub async fn redeliver(&self, system: &str, id: &str) -> Result<proto::Delivery, ClientError> {
        let path = format!("/v1/systems/{system}/webhook/deliveries/{id}/redeliver");
        self.call::<(), _>(Method::POST, &path, None).await
    }

    /// Every reviewer group the caller may see, with how its tasks are assigned.
    pub async fn groups(&self) -> Result<proto::Page<proto::Group>, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/groups", None).await
    }

    /// One reviewer group.
    pub async fn group(&self, group: &str) -> Result<proto::Group, ClientError> {
        let path = format!("/v1/groups/{group}");
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// Sets how a reviewer group's tasks find a reviewer.
    pub async fn set_group(
        &self,
        group: &str,
        settings: &proto::SetGroup,
    ) -> Result<proto::Group, ClientError> {
        let path = format!("/v1/groups/{group}");
        self.call(Method::PUT, &path, Some(settings)).await
    }

    /// What a reviewer group hears about, and where.
    pub async fn group_notifications(
        &self,
        group: &str,
    ) -> Result<proto::GroupNotifications, ClientError> {
        let path = format!("/v1/groups/{group}/notifications");
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// Sets what a reviewer group hears about (replaces every setting).
    pub async fn set_group_notifications(
        &self,
        group: &str,
        settings: &proto::SetGroupNotifications,
    ) -> Result<proto::GroupNotifications, ClientError> {
        let path = format!("/v1/groups/{group}/notifications");
        self.call(Method::PUT, &path, Some(settings)).await
    }

    /// Messages to people, newest first.
    pub async fn notifications(
        &self,
        task: Option<&str>,
        group: Option<&str>,
        state: Option<&str>,
        limit: Option<u32>,
    ) -> Result<proto::Page<proto::Notification>, ClientError> {
        let query = query_string(&[
            ("task", task.map(str::to_owned)),
            ("group", group.map(str::to_owned)),
            ("state", state.map(str::to_owned)),
            ("limit", limit.map(|n| n.to_string())),
        ]);
        self.call::<(), _>(Method::GET, &format!("/v1/notifications{query}"), None)
            .await
    }

    /// One message with every attempt.
    pub async fn notification(&self, id: &str) -> Result<proto::Notification, ClientError> {
        self.call::<(), _>(Method::GET, &format!("/v1/notifications/{id}"), None)
            .await
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let bytes = self.raw(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            ClientError::Transport(format!("unexpected answer from {}{path}: {e}", self.base))
        })
    }

    async fn raw<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.request(method, &url);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::Transport(format!("cannot reach {}: {e}", self.base)))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        match serde_json::from_slice::<proto::Problem>(&bytes) {
            Ok(problem) => Err(ClientError::Problem(Box::new(problem))),
            Err(_) if status == StatusCode::NOT_FOUND => Err(ClientError::Transport(format!(
                "{url} was not found; is this a loopgate server?"
            ))),
            Err(_) => Err(ClientError::Transport(format!("{url} answered {status}"))),
        }
    }
}

/// `?k=v&…` of the pairs that have a value (empty without any).
fn query_string(pairs: &[(&str, Option<String>)]) -> String {
    let set: Vec<String> = pairs
        .iter()
        .filter_map(|(key, value)| value.as_ref().map(|value| format!("{key}={value}")))
        .collect();
    match set.is_empty() {
        true => String::new(),
        false => format!("?{}", set.join("&")),
    }
}

fn wait_query(wait: Option<Duration>) -> String {
    match wait {
        Some(wait) => format!("?wait={}ms", wait.as_millis()),
        None => String::new(),
    }
}

/// The response, or its problem document as the error.
async fn problem_or(
    response: reqwest::Response,
    url: &str,
) -> Result<reqwest::Response, ClientError> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| ClientError::Transport(e.to_string()))?;
    Err(match serde_json::from_slice::<proto::Problem>(&bytes) {
        Ok(problem) => ClientError::Problem(Box::new(problem)),
        Err(_) => ClientError::Transport(format!("{url} answered {status}")),
    })
}

/// Feeds each line of a streamed body to `f` until it returns `false` or
/// the body ends.
async fn each_line(
    mut response: reqwest::Response,
    mut f: impl FnMut(&[u8]) -> Result<bool, ClientError>,
) -> Result<(), ClientError> {
    let mut pending: Vec<u8> = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ClientError::Transport(e.to_string()))?
    {
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if !f(&line)? {
                return Ok(());
            }
        }
    }
    if !pending.iter().all(u8::is_ascii_whitespace) {
        f(&pending)?;
    }
    Ok(())
}

fn encode_query(query: &[(&str, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())))
        .finish()
}
