-- visage schema: people with their consent records, face embeddings (pgvector), an audit log
-- that never holds embeddings, images or names, and hashed API keys.

CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE people (
    id            uuid PRIMARY KEY,
    display_name  text NOT NULL CHECK (char_length(display_name) BETWEEN 1 AND 200),
    external_ref  text CHECK (external_ref IS NULL OR char_length(external_ref) <= 200),
    created_at    timestamptz NOT NULL DEFAULT now()
);
-- Cursor pagination is ordered by (created_at, id).
CREATE INDEX people_created_idx ON people (created_at, id);

CREATE TABLE consents (
    id                       uuid PRIMARY KEY,
    person_id                uuid NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    policy_version           text NOT NULL CHECK (char_length(policy_version) BETWEEN 1 AND 100),
    policy_sha256            text NOT NULL CHECK (policy_sha256 ~ '^[0-9a-f]{64}$'),
    purpose                  text NOT NULL CHECK (char_length(purpose) BETWEEN 1 AND 500),
    granted_at               timestamptz NOT NULL,
    expires_at               timestamptz,
    withdrawn_at             timestamptz,
    evidence_method          text NOT NULL CHECK (char_length(evidence_method) BETWEEN 1 AND 100),
    evidence_client_address  text,
    evidence_user_agent      text,
    collected_by             text NOT NULL CHECK (char_length(collected_by) BETWEEN 1 AND 200),
    CHECK (expires_at IS NULL OR expires_at > granted_at)
);
CREATE INDEX consents_person_idx ON consents (person_id);
CREATE INDEX consents_expires_idx ON consents (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE faces (
    id          uuid PRIMARY KEY,
    person_id   uuid NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    model_id    text NOT NULL,
    embedding   vector(192) NOT NULL,
    quality     jsonb,
    source      text NOT NULL CHECK (source IN ('browser', 'upload')),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX faces_person_idx ON faces (person_id);
-- Approximate nearest neighbours by cosine distance (embeddings are unit length).
CREATE INDEX faces_embedding_hnsw ON faces USING hnsw (embedding vector_cosine_ops);

-- Who did what to which record, and how it ended. Subjects are opaque ids; no names, no
-- embeddings, no images, so entries may outlive an erasure.
CREATE TABLE audit_log (
    id       bigserial PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    actor    text NOT NULL,
    action   text NOT NULL,
    subject  text,
    outcome  text NOT NULL,
    detail   jsonb
);
CREATE INDEX audit_log_subject_idx ON audit_log (subject);

CREATE TABLE api_keys (
    id               uuid PRIMARY KEY,
    name             text NOT NULL,
    prefix           text NOT NULL,
    key_sha256       text NOT NULL UNIQUE,
    scopes           text[] NOT NULL,
    rate_per_minute  integer CHECK (rate_per_minute IS NULL OR rate_per_minute > 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    revoked_at       timestamptz
);
