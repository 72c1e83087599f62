-- The controller looks for live attempts past their deadline every pass. Most jobs have no
-- time limit, so the live attempts it would otherwise read through `attempts_state` (every
-- running one, 10,000 on a full 10,000-GPU centre) are nearly all without a deadline: this
-- index holds only the attempts that have one.
CREATE INDEX attempts_deadline ON attempts (deadline) WHERE deadline IS NOT NULL;
