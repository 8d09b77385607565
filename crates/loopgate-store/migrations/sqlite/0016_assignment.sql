-- Assignment and delegation (docs/api.md, "Assignment and delegation"): how a reviewer
-- group's tasks find a member, who a task is reserved for, and who stands
-- in for a member who is away.

-- A group without a row pools its tasks. `last_turn` is the member whose
-- turn came last (round robin continues after them).
CREATE TABLE group_settings (
    grp TEXT PRIMARY KEY,
    assignment TEXT NOT NULL CHECK (assignment IN ('pool', 'round_robin', 'least_loaded')),
    return_after_ms BIGINT NOT NULL,
    last_turn TEXT,
    updated_at BIGINT NOT NULL
);
-- The assignee (a username), the away member it was meant for, and when
-- the task returns to the pool unless opened (NULL once opened).
ALTER TABLE tasks ADD COLUMN assignee TEXT;
ALTER TABLE tasks ADD COLUMN delegated_from TEXT;
ALTER TABLE tasks ADD COLUMN return_at BIGINT;
CREATE INDEX tasks_returning ON tasks (return_at) WHERE return_at IS NOT NULL AND state IN ('open', 'claimed');
-- Covering for least_loaded's count of open assigned tasks per member.
CREATE INDEX tasks_assigned ON tasks (assignee, state, return_at) WHERE assignee IS NOT NULL AND state IN ('open', 'claimed');
-- Away until then (epoch ms), and the username who stands in meanwhile.
ALTER TABLE users ADD COLUMN away_until BIGINT;
ALTER TABLE users ADD COLUMN delegate TEXT;
-- Proposals the AI made together (an agent's parallel tool calls) share a
-- batch; the queue shows their tasks as one group.
ALTER TABLE proposals ADD COLUMN batch TEXT;
