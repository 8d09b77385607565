//! What each command does.

use std::sync::Arc;

use anyhow::Context as _;
use loopgate_client::{Client, TaskQuery};
use loopgate_proto as proto;
use loopgate_server::{Config, SystemClock};
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::cli::{
    Cli, Command, Decide, ReviewCommand, SubmitArgs, SystemCommand, SystemRef, UserCommand, UserRef,
};
use crate::config::FileConfig;

pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    let file = FileConfig::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve(args) => {
            init_logging();
            let (config, bind) = file.server_config(&args)?;
            serve(config, bind).await
        }
        Command::Demo(args) => {
            init_logging();
            let (config, bind) = file.server_config(&args.serve)?;
            let history = (!args.no_history).then_some((args.history, args.seed));
            crate::demo::run(config, bind, args.rate, history).await
        }
        Command::System(command) => system(&file, command).await,
        Command::User(command) => user(&file, command).await,
        Command::Policy(command) => crate::policy::run(&file, command).await,
        Command::Submit(args) => submit(&file, args).await,
        Command::Review(command) => review(&file, command).await,
        Command::Audit(command) => crate::audit::run(&file, command).await,
        Command::Erase(command) => crate::audit::erase(&file, command).await,
        Command::Report(command) => crate::report::report(&file, command).await,
        Command::Export(command) => crate::report::export(&file, command).await,
        Command::Webhook(command) => crate::webhook::run(&file, command).await,
        Command::Group(command) => crate::notify::group(&file, command).await,
        Command::Notifications(command) => crate::notify::notifications(&file, command).await,
        Command::Mcp(args) => crate::mcp::run(&file, args).await,
        Command::Bench(args) => crate::bench::run(args).await,
        Command::LatencyRelay(args) => {
            tokio::task::spawn_blocking(move || crate::relay::run(&args)).await?
        }
        Command::Migrate(args) => crate::database::migrate(&file, args).await,
        Command::Backup(args) => crate::database::backup(&file, args).await,
        Command::MigrateData(args) => crate::database::migrate_data(args).await,
    }
}

async fn serve(config: Config, bind: std::net::SocketAddr) -> anyhow::Result<()> {
    let started = loopgate_server::start(config, Arc::new(SystemClock)).await?;
    if let Some(token) = &started.generated_admin_token {
        out!(
            "First start: created user `admin` with API token (shown once, store it now):\n  {token}"
        );
    }
    if let Some(password) = &started.generated_admin_password {
        out!("The web UI password of `admin` (shown once; change it under Account):\n  {password}");
    }
    let listener = TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let address = listener.local_addr()?;
    out!("loopgate listening on http://{address}");
    tracing::info!(%address, "loopgate is serving");
    loopgate_server::serve(listener, started.app, shutdown_signal())
        .await
        .context("the server stopped")?;
    tracing::info!("loopgate stopped");
    Ok(())
}

/// Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => (),
        () = terminate => (),
    }
}

pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match std::env::var("LOOPGATE_LOG_FORMAT").as_deref() {
        Ok("json") => builder.json().try_init(),
        _ => builder.try_init(),
    };
}

async fn system(file: &FileConfig, command: SystemCommand) -> anyhow::Result<()> {
    match command {
        SystemCommand::List(args) => {
            let page = file.client(&args.remote)?.systems().await?;
            for system in page.items {
                let status = json_name(&system.status);
                out!(
                    "{:<24} {:<10} {:<13} {:<8} {}",
                    system.id,
                    json_name(&system.risk_tier),
                    json_name(&system.oversight),
                    status,
                    system.name
                );
            }
            Ok(())
        }
        SystemCommand::Create {
            id,
            name,
            owner,
            purpose,
            risk_tier,
            oversight,
            remote,
        } => {
            let create = proto::CreateSystem {
                id,
                name,
                owner,
                purpose,
                risk_tier: from_name(&risk_tier, "risk tier")?,
                oversight: from_name(&oversight, "oversight mode")?,
                shape: None,
            };
            print_json(&file.client(&remote)?.create_system(&create).await?)
        }
        SystemCommand::Pause(args) => set_status(file, args, proto::SystemStatus::Paused).await,
        SystemCommand::Resume(args) => set_status(file, args, proto::SystemStatus::Active).await,
        SystemCommand::Shape {
            id,
            file: path,
            remote,
        } => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read `{}`", path.display()))?;
            let shape: Value = match text.trim_start().starts_with('{') {
                true => serde_json::from_str(&text)
                    .with_context(|| format!("`{}` is not valid JSON", path.display()))?,
                false => yaml_serde::from_str(&text)
                    .with_context(|| format!("`{}` is not valid YAML", path.display()))?,
            };
            let patch = proto::UpdateSystem {
                shape: Some(shape),
                ..Default::default()
            };
            let system = file.client(&remote)?.update_system(&id, &patch).await?;
            out!(
                "`{}` declares its actions; `loopgate policy schema` shows the schema",
                system.id
            );
            Ok(())
        }
        SystemCommand::Retention { id, period, remote } => {
            set_retention(file, &id, period, &remote).await
        }
        SystemCommand::Key {
            id,
            credential,
            remote,
        } => {
            let key = file
                .client(&remote)?
                .issue_key(&id, &credential.body())
                .await?;
            out!(
                "API key `{}` for `{}` (shown once{}):\n  {}",
                key.id,
                key.owner,
                expiry(key.expires_at.as_deref()),
                key.secret
            );
            Ok(())
        }
        SystemCommand::Keys(args) => print_json(&file.client(&args.remote)?.keys(&args.id).await?),
        SystemCommand::RevokeKey { id, key_id, remote } => {
            let key = file.client(&remote)?.revoke_key(&id, &key_id).await?;
            out!("API key `{}` of `{}` is revoked.", key.id, key.owner);
            Ok(())
        }
    }
}

/// Sets or clears a system's retention period.
async fn set_retention(
    file: &FileConfig,
    id: &str,
    period: String,
    remote: &crate::cli::Remote,
) -> anyhow::Result<()> {
    let patch = proto::UpdateSystem {
        retention: Some(period),
        ..Default::default()
    };
    print_json(&file.client(remote)?.update_system(id, &patch).await?)
}

/// The kill switch: pause or resume a system.
async fn set_status(
    file: &FileConfig,
    args: SystemRef,
    status: proto::SystemStatus,
) -> anyhow::Result<()> {
    let patch = proto::UpdateSystem {
        status: Some(status),
        ..Default::default()
    };
    print_json(
        &file
            .client(&args.remote)?
            .update_system(&args.id, &patch)
            .await?,
    )
}

async fn user(file: &FileConfig, command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::List(args) => {
            for user in file.client(&args.remote)?.users().await?.items {
                let roles: Vec<String> = user.roles.iter().map(json_name).collect();
                out!(
                    "{:<30} {:<16} {:<30} {}",
                    user.id,
                    user.username,
                    roles.join(","),
                    user.groups.join(",")
                );
            }
            Ok(())
        }
        UserCommand::Create {
            username,
            roles,
            groups,
            email,
            slack_user_id,
            remote,
        } => {
            let mut parsed = Vec::new();
            for role in &roles {
                parsed.push(from_name(role, "role")?);
            }
            let create = proto::CreateUser {
                password: None,
                username,
                roles: parsed,
                groups,
                email,
                slack_user_id,
            };
            print_json(&file.client(&remote)?.create_user(&create).await?)
        }
        UserCommand::Contact {
            id,
            email,
            slack_user_id,
            remote,
        } => {
            if email.is_none() && slack_user_id.is_none() {
                anyhow::bail!("give --email, --slack-user-id or both");
            }
            let patch = proto::UpdateUser {
                email,
                slack_user_id,
                ..Default::default()
            };
            print_json(&file.client(&remote)?.update_user(&id, &patch).await?)
        }
        UserCommand::Notify {
            id,
            email,
            slack,
            remote,
        } => {
            let patch = proto::UpdateUser {
                notify: Some(proto::NotifyPrefs {
                    email: crate::notify::parse_pref(&email)?,
                    slack: crate::notify::parse_pref(&slack)?,
                }),
                ..Default::default()
            };
            print_json(&file.client(&remote)?.update_user(&id, &patch).await?)
        }
        UserCommand::Away {
            id,
            until,
            delegate,
            remote,
        } => {
            if until.is_none() && delegate.is_none() {
                anyhow::bail!("say `--until` or `--delegate` (or both)");
            }
            let patch = proto::UpdateUser {
                away_until: until,
                delegate,
                ..Default::default()
            };
            print_json(&file.client(&remote)?.update_user(&id, &patch).await?)
        }
        UserCommand::Password {
            id,
            revoke_tokens,
            remote,
        } => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("cannot read the password from stdin")?;
            let password = line.trim_end_matches(['\r', '\n']).to_owned();
            if password.is_empty() {
                anyhow::bail!(
                    "no password on stdin: pipe it in, e.g. `read -s P; echo \"$P\" | loopgate user password ID`"
                );
            }
            let patch = proto::UpdateUser {
                password: Some(password),
                revoke_tokens,
                ..Default::default()
            };
            let user = file.client(&remote)?.update_user(&id, &patch).await?;
            out!(
                "Password set for `{}`; their sessions were ended{}.",
                user.username,
                if revoke_tokens {
                    " and their tokens revoked"
                } else {
                    ""
                }
            );
            Ok(())
        }
        UserCommand::Token {
            id,
            credential,
            remote,
        } => {
            let token = file
                .client(&remote)?
                .issue_token(&id, &credential.body())
                .await?;
            out!(
                "API token `{}` for `{}` (shown once{}):\n  {}",
                token.id,
                token.owner,
                expiry(token.expires_at.as_deref()),
                token.secret
            );
            Ok(())
        }
        UserCommand::Tokens(args) => {
            print_json(&file.client(&args.remote)?.tokens(&args.id).await?)
        }
        UserCommand::RevokeToken {
            id,
            token_id,
            remote,
        } => {
            let token = file.client(&remote)?.revoke_token(&id, &token_id).await?;
            out!("Token `{}` of `{}` is revoked.", token.id, token.owner);
            Ok(())
        }
        UserCommand::Disable(args) => set_disabled(file, args, true).await,
        UserCommand::Enable(args) => set_disabled(file, args, false).await,
    }
}

async fn set_disabled(file: &FileConfig, args: UserRef, disabled: bool) -> anyhow::Result<()> {
    let patch = proto::UpdateUser {
        disabled: Some(disabled),
        ..Default::default()
    };
    let user = file
        .client(&args.remote)?
        .update_user(&args.id, &patch)
        .await?;
    if disabled {
        out!(
            "`{}` is disabled: their sessions ended and their tokens are refused.",
            user.username
        );
    } else {
        out!("`{}` is enabled.", user.username);
    }
    Ok(())
}

/// `, expires …` for a credential that expires.
fn expiry(expires_at: Option<&str>) -> String {
    expires_at.map_or_else(String::new, |at| format!(", expires {at}"))
}

async fn submit(file: &FileConfig, args: SubmitArgs) -> anyhow::Result<()> {
    let client = file.client(&args.remote)?;
    let proposal: proto::SubmitProposal = match &args.file {
        Some(path) => {
            let text = match path.to_str() {
                Some("-") => {
                    std::io::read_to_string(std::io::stdin()).context("cannot read stdin")?
                }
                _ => std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read `{}`", path.display()))?,
            };
            serde_json::from_str(&text)
                .with_context(|| format!("`{}` is not a valid proposal", path.display()))?
        }
        None => {
            let Some(action) = args.action.clone() else {
                anyhow::bail!("pass --action (or --file with a whole proposal)")
            };
            let Some(subject) = args.subject.as_deref() else {
                anyhow::bail!("pass --subject TYPE:ID")
            };
            let Some((type_, id)) = subject.split_once(':') else {
                anyhow::bail!("--subject must be TYPE:ID, e.g. Account:acct-1")
            };
            proto::SubmitProposal {
                system: args.system.clone(),
                action,
                subject: proto::Subject {
                    type_: type_.to_owned(),
                    id: id.to_owned(),
                    attributes: Default::default(),
                },
                input: parse_json("--input", &args.input)?,
                output: parse_json("--output", &args.output)?,
                confidence: args.confidence,
                explanation: None,
                model: None,
                context: match parse_json("--context", &args.context)? {
                    Value::Object(map) => map,
                    _ => anyhow::bail!("--context must be a JSON object"),
                },
                idempotency_key: args.idempotency_key.clone(),
                batch: None,
            }
        }
    };
    let submitted = client.submit(&proposal, None).await?;
    let done = match (args.wait, submitted.resolution.is_some()) {
        (true, false) => {
            eprintln!("waiting for review of {} …", submitted.id);
            client.wait(&submitted.id).await?
        }
        _ => submitted,
    };
    print_json(&done)
}

async fn review(file: &FileConfig, command: ReviewCommand) -> anyhow::Result<()> {
    match command {
        ReviewCommand::List {
            group,
            mine,
            remote,
        } => {
            let page = file
                .client(&remote)?
                .tasks(&TaskQuery {
                    group,
                    mine,
                    ..Default::default()
                })
                .await?;
            if page.items.is_empty() {
                out!("no open tasks");
            }
            for task in page.items {
                let due = task.due_at.unwrap_or_else(|| "-".to_owned());
                let assignee = task
                    .assignee
                    .map(|who| format!(" assigned to {who}"))
                    .unwrap_or_default();
                out!(
                    "{:<30} {:<20} {:<18} {:<16} {}/{} due {}{}",
                    task.id,
                    task.system,
                    task.action,
                    task.group,
                    task.approvals,
                    task.required,
                    due,
                    assignee
                );
            }
            Ok(())
        }
        ReviewCommand::Show(args) => {
            let client = file.client(&args.remote)?;
            let task = client.task(&args.id).await?;
            let proposal = client.proposal(&task.proposal_id, None).await?;
            print_json(&serde_json::json!({"task": task, "proposal": proposal}))
        }
        ReviewCommand::Claim(args) => {
            print_json(&file.client(&args.remote)?.claim(&args.id).await?)
        }
        ReviewCommand::Approve {
            decide: args,
            grant_for,
            grant_uses,
            grant_scope,
        } => {
            let grant = grant_for.map(|for_| proto::GrantOffer {
                for_,
                uses: grant_uses,
                scope: match grant_scope.as_str() {
                    "same_subject" => proto::GrantScope::SameSubject,
                    _ => proto::GrantScope::SameOutput,
                },
            });
            let verdict = proto::Verdict::Approve;
            let request = Request {
                output: None,
                message: None,
                grant,
            };
            decide(file, args, verdict, request).await
        }
        ReviewCommand::Grants {
            all,
            system,
            remote,
        } => {
            let client = file.client(&remote)?;
            let grants = client.grants(system.as_deref(), all).await?;
            print_json(&grants)
        }
        ReviewCommand::RevokeGrant { id, remote } => {
            let grant = file.client(&remote)?.revoke_grant(&id).await?;
            out!(
                "revoked {}: it approved {} proposal(s)",
                grant.id,
                grant.used
            );
            Ok(())
        }
        ReviewCommand::Reject(args) => {
            decide(file, args, proto::Verdict::Reject, Request::default()).await
        }
        ReviewCommand::Escalate(args) => {
            decide(file, args, proto::Verdict::Escalate, Request::default()).await
        }
        ReviewCommand::Modify {
            decide: args,
            output,
        } => {
            let output = Some(parse_json("--output", &output)?);
            let request = Request {
                output,
                ..Request::default()
            };
            decide(file, args, proto::Verdict::Modify, request).await
        }
        ReviewCommand::Batch {
            verdict,
            ids,
            rationale,
            remote,
        } => {
            let client: Client = file.client(&remote)?;
            let verdict = match verdict.as_str() {
                "reject" => proto::Verdict::Reject,
                _ => proto::Verdict::Approve,
            };
            let mut items = Vec::with_capacity(ids.len());
            for id in ids {
                // The digest each task stands for now, as `approve` reads it.
                let task = client.task(&id).await?;
                items.push(proto::BatchDecisionItem {
                    task_id: id,
                    verdict,
                    rationale: rationale.clone(),
                    output: None,
                    labels: None,
                    message: None,
                    grant: None,
                    seen_digest: task.digest,
                });
            }
            let answer = client
                .decide_many(&proto::BatchDecisionRequest { items })
                .await?;
            print_json(&answer)?;
            let failed: Vec<String> = answer
                .items
                .iter()
                .filter_map(|it| {
                    it.error
                        .as_ref()
                        .map(|e| format!("{}: {}", it.task_id, e.detail))
                })
                .collect();
            if !failed.is_empty() {
                anyhow::bail!(
                    "{} of {} could not be decided: {}",
                    failed.len(),
                    answer.items.len(),
                    failed.join("; ")
                );
            }
            Ok(())
        }
        ReviewCommand::Respond {
            decide: args,
            message,
        } => {
            let request = Request {
                message: Some(message),
                ..Request::default()
            };
            decide(file, args, proto::Verdict::Respond, request).await
        }
    }
}

/// What a decision carries besides its verdict and rationale.
#[derive(Debug, Default)]
struct Request {
    output: Option<Value>,
    message: Option<String>,
    grant: Option<proto::GrantOffer>,
}

async fn decide(
    file: &FileConfig,
    args: Decide,
    verdict: proto::Verdict,
    extra: Request,
) -> anyhow::Result<()> {
    let client: Client = file.client(&args.remote)?;
    let task = client.task(&args.id).await?;
    let proposal = client.proposal(&task.proposal_id, None).await?;
    let request = proto::DecisionRequest {
        verdict,
        rationale: args.rationale,
        output: extra.output,
        labels: None,
        message: extra.message,
        grant: extra.grant,
        seen_digest: proposal.digest,
    };
    let response = client.decide(&args.id, &request).await?;
    let status = json_name(&response.proposal.status);
    out!(
        "{} {}: task {} is {}, proposal {} is {status}",
        json_name(&verdict),
        args.id,
        response.task.id,
        json_name(&response.task.state),
        response.proposal.id
    );
    Ok(())
}

fn parse_json(flag: &str, text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).with_context(|| format!("{flag} is not valid JSON"))
}

pub(crate) fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    out!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// The wire name of an enum value.
pub(crate) fn json_name(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(name)) => name,
        _ => String::from("?"),
    }
}

/// Parses an enum from its wire name.
fn from_name<T: serde::de::DeserializeOwned>(name: &str, what: &str) -> anyhow::Result<T> {
    serde_json::from_value(Value::String(name.to_owned()))
        .map_err(|_| anyhow::anyhow!("`{name}` is not a {what}"))
}
