-- The one definition of a consent in force: neither withdrawn nor expired. Every query that
-- may only see consented people (matching, listing matchable people, the purge of expired
-- consents, adding faces) asks this view. A view rather than a SQL function: the planner
-- inlines a view into the query, where a function with a subquery would run once per row.
CREATE VIEW active_consents AS
SELECT person_id
FROM consents
WHERE withdrawn_at IS NULL
  AND (expires_at IS NULL OR expires_at > now());
