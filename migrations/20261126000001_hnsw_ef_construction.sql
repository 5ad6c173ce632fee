-- The HNSW graph built with ef_construction = 128 instead of pgvector's default 64.
-- Measured at 1M faces on this 2-core machine (BENCHMARKS.md, "Recognize by embedding"):
-- recall@1 at ef_search = 100 rises from 0.973 to 0.988, and the service's default
-- ef_search = 150 reaches 0.995 with p99 8 ms. The build costs about 20% more time.
-- (A migration never changes once applied: this one rebuilds the index instead.)
DROP INDEX IF EXISTS faces_embedding_hnsw;
CREATE INDEX faces_embedding_hnsw ON faces
    USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 128);
