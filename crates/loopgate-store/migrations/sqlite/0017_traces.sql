-- Traces (docs/operations.md, "Traces"): a proposal keeps the W3C trace
-- context of its submission, so that the spans of its review, decisions
-- and delivery, made by other requests and other replicas, join its trace.
-- Ids and flags only (`00-<trace id>-<span id>-<flags>`), never a payload.
ALTER TABLE proposals ADD COLUMN trace_context TEXT;
