-- Retention finds what it may erase from an index, system by system, in
-- the order of decisions: it used to scan every proposal once a tick.
CREATE INDEX proposals_to_erase ON proposals (system, decided_at)
    WHERE erased_at IS NULL AND decided_at IS NOT NULL;
