-- Erasure on disk (docs/erasure.md): ANALYZE (autovacuum runs it) copies sampled values of
-- every column into the catalog pg_statistic: names as histogram bounds, embeddings into its
-- TOAST table, client addresses as most common values. Those copies outlive an erasure of the
-- rows they came from. No query needs the statistics of these columns (names are only matched
-- with ILIKE on a sequential scan, embeddings through the HNSW index), so none are collected.
ALTER TABLE people
    ALTER COLUMN display_name SET STATISTICS 0,
    ALTER COLUMN external_ref SET STATISTICS 0;
ALTER TABLE consents
    ALTER COLUMN evidence_client_address SET STATISTICS 0,
    ALTER COLUMN evidence_user_agent SET STATISTICS 0;
ALTER TABLE faces
    ALTER COLUMN embedding SET STATISTICS 0;

-- ANALYZE leaves the statistics already collected in place: remove them (only a superuser may
-- write pg_statistic; the embedded server's role is one). The post-erasure scrub's
-- VACUUM FULL pg_statistic then removes the dead rows from the catalog's files.
DO $$
BEGIN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        DELETE FROM pg_statistic s
        USING pg_attribute a
        WHERE a.attrelid = s.starelid AND a.attnum = s.staattnum
          AND (a.attrelid, a.attname) IN (
              ('people'::regclass, 'display_name'), ('people'::regclass, 'external_ref'),
              ('consents'::regclass, 'evidence_client_address'),
              ('consents'::regclass, 'evidence_user_agent'),
              ('faces'::regclass, 'embedding'));
    ELSE
        RAISE NOTICE 'not a superuser: statistics already collected on personal columns stay until an administrator deletes them from pg_statistic';
    END IF;
END
$$;
