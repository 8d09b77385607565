-- The AI's output as submitted, kept when a reviewer modifies `output`, so
-- that labeled exports can pair what the AI proposed with what people
-- decided. NULL for proposals stored before this migration (read as
-- `output`). Erasure clears it with the other payloads.
ALTER TABLE proposals ADD COLUMN ai_output TEXT;
