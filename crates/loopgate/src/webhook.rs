//! `loopgate webhook …`: a system's webhook endpoint, its delivery history
//! and manual redelivery.

use clap::Subcommand;
use loopgate_proto as proto;

use crate::cli::Remote;
use crate::commands::print_json;
use crate::config::FileConfig;

#[derive(Debug, Subcommand)]
pub(crate) enum WebhookCommand {
    /// Set (or change) a system's webhook; prints the signing secret.
    Set {
        /// System id.
        system: String,
        /// Where deliveries are POSTed.
        #[arg(long)]
        url: String,
        /// An event type to deliver (repeat for several) [default:
        /// proposal.resolved, proposal.overridden, task.created, task.escalated].
        #[arg(long = "type", value_name = "TYPE")]
        types: Vec<String>,
        /// A `whsec_…` secret to sign with [default: keep the current one, or generate one].
        #[arg(long, env = "LOOPGATE_WEBHOOK_SECRET", hide_env_values = true)]
        secret: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show a system's webhook (not its secret).
    Show {
        /// System id.
        system: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Remove a system's webhook; its pending deliveries fail.
    Remove {
        /// System id.
        system: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// List deliveries, newest first.
    Deliveries {
        /// System id.
        system: String,
        /// Only `pending`, `delivered` or `failed`.
        #[arg(long)]
        state: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show one delivery with every attempt.
    Delivery {
        /// System id.
        system: String,
        /// Delivery id (`msg_…`).
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Send a delivery again now.
    Redeliver {
        /// System id.
        system: String,
        /// Delivery id (`msg_…`).
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
}

pub(crate) async fn run(file: &FileConfig, command: WebhookCommand) -> anyhow::Result<()> {
    match command {
        WebhookCommand::Set {
            system,
            url,
            types,
            secret,
            remote,
        } => {
            let set = proto::SetWebhook {
                url,
                types: (!types.is_empty()).then_some(types),
                secret,
            };
            let webhook = file.client(&remote)?.set_webhook(&system, &set).await?;
            out!("webhook of `{}` set: {}", webhook.system, webhook.url);
            out!("events: {}", webhook.types.join(", "));
            if let Some(secret) = webhook.secret {
                out!("signing secret (verify `webhook-signature` with it):\n  {secret}");
            }
            Ok(())
        }
        WebhookCommand::Show { system, remote } => {
            print_json(&file.client(&remote)?.webhook(&system).await?)
        }
        WebhookCommand::Remove { system, remote } => {
            file.client(&remote)?.remove_webhook(&system).await?;
            out!("webhook of `{system}` removed");
            Ok(())
        }
        WebhookCommand::Deliveries {
            system,
            state,
            limit,
            remote,
        } => {
            let page = file
                .client(&remote)?
                .deliveries(&system, state.as_deref(), None, Some(limit))
                .await?;
            for d in page.items {
                let last = match (d.last_status, d.last_error) {
                    (_, Some(error)) => error,
                    (Some(status), None) => format!("HTTP {status}"),
                    (None, None) => String::new(),
                };
                out!(
                    "{:<12} {:<20} {:<10} {:>3}  {}  {}",
                    d.id,
                    d.kind,
                    d.state,
                    d.attempts,
                    d.subject,
                    last
                );
            }
            Ok(())
        }
        WebhookCommand::Delivery { system, id, remote } => {
            print_json(&file.client(&remote)?.delivery(&system, &id).await?)
        }
        WebhookCommand::Redeliver { system, id, remote } => {
            let delivery = file.client(&remote)?.redeliver(&system, &id).await?;
            out!(
                "{} queued again (attempts so far: {})",
                delivery.id,
                delivery.attempts
            );
            Ok(())
        }
    }
}
