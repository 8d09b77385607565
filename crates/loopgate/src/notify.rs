//! `loopgate group …` (how a reviewer group's tasks are assigned, what it
//! hears about) and
//! `loopgate notifications …` (every message's history).

use clap::Subcommand;
use loopgate_proto as proto;

use crate::cli::Remote;
use crate::commands::print_json;
use crate::config::FileConfig;

#[derive(Debug, Subcommand)]
pub(crate) enum GroupCommand {
    /// Every reviewer group you may see, with how its tasks are assigned.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// One group: assignment, the time to open a task, members.
    Show {
        /// Reviewer group.
        group: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// How a group's tasks find a reviewer (admins): `pool` (any member
    /// claims), `round_robin` (members in turn) or `least_loaded` (the
    /// fewest open tasks). An assigned task returns to the pool when its
    /// assignee does not open it within `--return-after`.
    Assign {
        /// Reviewer group.
        group: String,
        /// pool, round_robin or least_loaded.
        #[arg(long, value_parser = ["pool", "round_robin", "least_loaded"])]
        mode: String,
        /// How long an assignee has to open a task (`30m`, `PT1H`; 1m to 7d) [default: 30m].
        #[arg(long)]
        return_after: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show a group's notification settings, or change the ones given
    /// (the others stay as they are).
    Notify {
        /// Reviewer group.
        group: String,
        /// Addresses that get every event, comma separated (`""`: none).
        #[arg(long, value_delimiter = ',')]
        email: Option<Vec<String>>,
        /// Slack channel id (`C…`; `""`: none).
        #[arg(long)]
        slack_channel: Option<String>,
        /// Microsoft Teams workflow URL (`""`: none).
        #[arg(long)]
        teams_webhook: Option<String>,
        /// Events, comma separated: task.created, task.escalated, task.sla_warning.
        #[arg(long, value_delimiter = ',')]
        events: Option<Vec<String>>,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum NotificationsCommand {
    /// Messages to people, newest first.
    List {
        /// Only about this task.
        #[arg(long)]
        task: Option<String>,
        /// Only of this group.
        #[arg(long)]
        group: Option<String>,
        /// Only `pending`, `delivered` or `failed`.
        #[arg(long)]
        state: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        remote: Remote,
    },
    /// One message with every attempt.
    Show {
        /// Message id.
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
}

pub(crate) async fn group(file: &FileConfig, command: GroupCommand) -> anyhow::Result<()> {
    let (group, email, slack_channel, teams_webhook, events, remote) = match command {
        GroupCommand::List { remote } => return print_json(&file.client(&remote)?.groups().await?),
        GroupCommand::Show { group, remote } => {
            return print_json(&file.client(&remote)?.group(&group).await?);
        }
        GroupCommand::Assign {
            group,
            mode,
            return_after,
            remote,
        } => {
            let assignment = serde_json::from_value(serde_json::Value::String(mode))?;
            let settings = proto::SetGroup {
                assignment,
                return_after,
            };
            return print_json(&file.client(&remote)?.set_group(&group, &settings).await?);
        }
        GroupCommand::Notify {
            group,
            email,
            slack_channel,
            teams_webhook,
            events,
            remote,
        } => (group, email, slack_channel, teams_webhook, events, remote),
    };
    let client = file.client(&remote)?;
    let current = client.group_notifications(&group).await?;
    if email.is_none() && slack_channel.is_none() && teams_webhook.is_none() && events.is_none() {
        return print_json(&current);
    }
    let some = |v: String| Some(v).filter(|v| !v.is_empty());
    let settings = proto::SetGroupNotifications {
        email: email
            .map(|list| list.into_iter().filter(|a| !a.is_empty()).collect())
            .unwrap_or(current.email),
        slack_channel: slack_channel.map_or(current.slack_channel, some),
        teams_webhook: teams_webhook.map_or(current.teams_webhook, some),
        events: Some(events.unwrap_or(current.events)).filter(|e| !e.is_empty()),
    };
    print_json(&client.set_group_notifications(&group, &settings).await?)
}

pub(crate) async fn notifications(
    file: &FileConfig,
    command: NotificationsCommand,
) -> anyhow::Result<()> {
    match command {
        NotificationsCommand::List {
            task,
            group,
            state,
            limit,
            remote,
        } => print_json(
            &file
                .client(&remote)?
                .notifications(
                    task.as_deref(),
                    group.as_deref(),
                    state.as_deref(),
                    Some(limit),
                )
                .await?,
        ),
        NotificationsCommand::Show { id, remote } => {
            print_json(&file.client(&remote)?.notification(&id).await?)
        }
    }
}

/// `each`, `off`, `default`, or `digest:30` (every 30 minutes).
pub(crate) fn parse_pref(text: &str) -> anyhow::Result<proto::NotifyPref> {
    let pref = |mode| proto::NotifyPref {
        mode,
        every_minutes: None,
    };
    Ok(match text {
        "default" => pref(proto::NotifyMode::Default),
        "each" => pref(proto::NotifyMode::Each),
        "off" => pref(proto::NotifyMode::Off),
        other => match other.strip_prefix("digest:").map(str::parse::<u32>) {
            Some(Ok(minutes)) => proto::NotifyPref {
                mode: proto::NotifyMode::Digest,
                every_minutes: Some(minutes),
            },
            _ => anyhow::bail!(
                "`{other}` is not a choice: use default, each, off or digest:<minutes>"
            ),
        },
    })
}
