-- The view also names the consent record in force (its id), so a record's status is read from
-- the one definition instead of being worked out again by the service. (CREATE OR REPLACE may
-- only add columns at the end: person_id stays first.)
CREATE OR REPLACE VIEW active_consents AS
SELECT person_id, id
FROM consents
WHERE withdrawn_at IS NULL
  AND (expires_at IS NULL OR expires_at > now());
