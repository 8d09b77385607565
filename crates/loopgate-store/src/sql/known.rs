//! What the store remembers it read, for a short while, to skip reads.
//!
//! The outbox workers (webhooks, notifications) are woken by every commit
//! and first ask the store whether there is anything to queue. With no
//! webhooks or no group notifications set, which is most installations'
//! state, the answer is always no, yet each asking cost a reader
//! transaction, and on SQLite every reader transaction after a commit
//! starts from an emptied page cache.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a table found empty is believed empty without reading it
/// again. This process's own writes forget it at once; another process's
/// (a PostgreSQL replica's) are seen within this time, and the outbox
/// workers look again at least once a second anyway.
pub(crate) const TRUSTED_FOR: Duration = Duration::from_secs(1);

/// That a table was found empty, and when.
///
/// A read that found the table empty may be overtaken by a write that
/// fills it before the read reports: [`KnownEmpty::found_empty`] takes the
/// [`KnownEmpty::generation`] read before the read began, and is ignored if
/// a write forgot meanwhile.
#[derive(Debug, Default)]
pub(crate) struct KnownEmpty(Mutex<Belief>);

#[derive(Debug, Default)]
struct Belief {
    /// How many times a write forgot.
    generation: u64,
    /// When a read last found the table empty, unless a write forgot since.
    since: Option<Instant>,
}

impl KnownEmpty {
    /// Whether the table is known to be empty now.
    pub(crate) fn holds(&self) -> bool {
        self.0
            .lock()
            .is_ok_and(|belief| belief.since.is_some_and(|at| at.elapsed() < TRUSTED_FOR))
    }

    /// Taken before reading the table.
    pub(crate) fn generation(&self) -> u64 {
        self.0.lock().map_or(0, |belief| belief.generation)
    }

    /// A read begun at `generation` found the table empty.
    pub(crate) fn found_empty(&self, generation: u64) {
        if let Ok(mut belief) = self.0.lock()
            && belief.generation == generation
        {
            belief.since = Some(Instant::now());
        }
    }

    /// The table may have rows now: called once this process's write to it
    /// committed.
    pub(crate) fn forget(&self) {
        if let Ok(mut belief) = self.0.lock() {
            belief.generation += 1;
            belief.since = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_found_empty_is_believed_empty_until_a_write_forgets_it() {
        let known = KnownEmpty::default();
        assert!(!known.holds(), "nothing is known at first");
        let generation = known.generation();
        known.found_empty(generation);
        assert!(known.holds());
        known.forget();
        assert!(!known.holds());
    }

    #[test]
    fn a_read_overtaken_by_a_write_does_not_count() {
        let known = KnownEmpty::default();
        let generation = known.generation();
        // The read found nothing, but a write committed before it reported.
        known.forget();
        known.found_empty(generation);
        assert!(!known.holds());
        // The next read, begun after the write, counts.
        let generation = known.generation();
        known.found_empty(generation);
        assert!(known.holds());
    }

    #[test]
    fn belief_ends_after_the_trusted_time() {
        let known = KnownEmpty::default();
        if let Ok(mut belief) = known.0.lock() {
            belief.since = Instant::now().checked_sub(TRUSTED_FOR);
        }
        assert!(!known.holds());
    }
}
