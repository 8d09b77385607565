-- The audit log's queue is moved into the log in queue order (`id`), not
-- (xid, id) below the cluster's oldest running transaction: writers queue
-- their events at their commit, after every lock they take, so that the
-- queue's order is the order of commits (ARCHITECTURE.md, "Concurrent
-- writers"). A step no longer waits for transactions still running in
-- other databases of the cluster.
DROP INDEX event_queue_order;
ALTER TABLE event_queue DROP COLUMN xid;
