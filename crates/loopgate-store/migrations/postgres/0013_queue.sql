-- The review queue in queue order (docs/operations.md, "The queue at
-- size"): active tasks only, so that a reviewer's page is read from an
-- index in order and costs the same with a hundred or a million open
-- tasks. Per group, and for those who see every group.
CREATE INDEX tasks_active ON tasks (grp, seq) WHERE state IN ('open', 'claimed');
CREATE INDEX tasks_active_all ON tasks (seq) WHERE state IN ('open', 'claimed');
