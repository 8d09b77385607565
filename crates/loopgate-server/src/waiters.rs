//! Wakes long-polls the moment a proposal is resolved.
//!
//! A waiter subscribes before it reads the store, so a resolution committed
//! between the read and the wait still wakes it. Entries are dropped when the
//! proposal resolves or the last waiter leaves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use loopgate_core::ProposalId;
use loopgate_store::ProposalRecord;
use tokio::sync::watch;

/// What a resolution sends: the committed record when the resolver has it.
type Resolved = Option<Arc<ProposalRecord>>;

/// Waiters by proposal.
#[derive(Clone, Default)]
pub(crate) struct Waiters {
    map: Arc<Mutex<HashMap<ProposalId, watch::Sender<Resolved>>>>,
}

/// One waiter; leaves on drop.
pub(crate) struct Subscription {
    waiters: Waiters,
    id: ProposalId,
    receiver: Option<watch::Receiver<Resolved>>,
}

impl Waiters {
    /// Subscribes to `id`'s resolution.
    pub(crate) fn subscribe(&self, id: &ProposalId) -> Subscription {
        let receiver = match self.map.lock() {
            Ok(mut map) => Some(
                map.entry(id.clone())
                    .or_insert_with(|| watch::channel(None).0)
                    .subscribe(),
            ),
            Err(_) => None,
        };
        Subscription {
            waiters: self.clone(),
            id: id.clone(),
            receiver,
        }
    }

    /// Wakes every waiter of `id`, handing them the committed record if given.
    pub(crate) fn resolved(&self, id: &ProposalId, record: Option<&ProposalRecord>) {
        let sender = match self.map.lock() {
            Ok(mut map) => map.remove(id),
            Err(_) => None,
        };
        if let Some(sender) = sender {
            sender.send_replace(record.map(|it| Arc::new(it.clone())));
        }
    }

    /// Number of proposals with waiters (for metrics).
    pub(crate) fn len(&self) -> usize {
        self.map.lock().map(|map| map.len()).unwrap_or(0)
    }
}

impl Subscription {
    /// Completes when the proposal is resolved, with the record when the resolver sent it.
    pub(crate) async fn changed(&mut self) -> Resolved {
        match &mut self.receiver {
            Some(receiver) => match receiver.changed().await {
                Ok(()) => receiver.borrow_and_update().clone(),
                Err(_) => None,
            },
            None => std::future::pending().await,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.receiver.take());
        if let Ok(mut map) = self.waiters.map.lock() {
            let unused = map
                .get(&self.id)
                .is_some_and(|sender| sender.receiver_count() == 0);
            if unused {
                map.remove(&self.id);
            }
        }
    }
}
