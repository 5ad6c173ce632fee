-- Collections (issue 15): independent galleries (sites, tenants, applications) in one service.
-- Every person, consent and face belongs to exactly one; API keys are scoped to one or more;
-- recognition searches one.
--
-- The collection id is part of every key a distributed PostgreSQL would shard on
-- (docs/scaling.md: Citus distributing people, consents and faces by collection_id):
-- consents and faces reference their person by (collection_id, person_id), so a row can never
-- sit in another collection than its person, and every join between them stays on one shard.
CREATE TABLE collections (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Existing data moves into the default collection.
INSERT INTO collections (id, name) VALUES ('00000000-0000-0000-0000-000000000001', 'default');

ALTER TABLE people
    ADD COLUMN collection_id uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000001'
        REFERENCES collections (id);
ALTER TABLE people ALTER COLUMN collection_id DROP DEFAULT;
ALTER TABLE people ADD CONSTRAINT people_collection_person_key UNIQUE (collection_id, id);
-- Listing a collection's people, oldest first.
CREATE INDEX people_collection_created_idx ON people (collection_id, created_at, id);

ALTER TABLE consents
    ADD COLUMN collection_id uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000001';
ALTER TABLE consents ALTER COLUMN collection_id DROP DEFAULT;
ALTER TABLE consents ADD CONSTRAINT consents_person_in_collection
    FOREIGN KEY (collection_id, person_id) REFERENCES people (collection_id, id) ON DELETE CASCADE;

ALTER TABLE faces
    ADD COLUMN collection_id uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000001';
ALTER TABLE faces ALTER COLUMN collection_id DROP DEFAULT;
ALTER TABLE faces ADD CONSTRAINT faces_person_in_collection
    FOREIGN KEY (collection_id, person_id) REFERENCES people (collection_id, id) ON DELETE CASCADE;
-- A small collection is searched exactly through this index instead of the HNSW graph of every
-- collection (store::search; BENCHMARKS.md "Collections").
CREATE INDEX faces_collection_idx ON faces (collection_id, model_id);

-- Keys: the collections a key may use. NULL means every collection, and only admin keys
-- created as such have it; every other existing key is scoped to the default collection.
ALTER TABLE api_keys ADD COLUMN collections uuid[];
UPDATE api_keys SET collections = ARRAY['00000000-0000-0000-0000-000000000001'::uuid]
WHERE NOT ('admin' = ANY (scopes));
ALTER TABLE api_keys ADD CONSTRAINT api_keys_collections_nonempty
    CHECK (collections IS NULL OR cardinality(collections) >= 1);
