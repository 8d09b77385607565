-- Verdict `respond` (docs/api.md): a reviewer's words sent back to the AI,
-- kept with the decision (erased with the proposal's payload; hashed in the
-- audit log like rationales). The proposal ends `returned`.
ALTER TABLE decisions ADD COLUMN message TEXT;
