-- One HNSW graph per large collection instead of one graph of every face (store::hnsw).
--
-- A collection of more than VISAGE_EXACT_SEARCH_MAX_FACES faces (default 20,000) gets a partial
-- index of its own faces, `faces_hnsw_<collection id in hex>`, which the service builds in the
-- background with CREATE INDEX CONCURRENTLY; smaller collections are searched exactly through
-- faces_collection_idx and need no graph. Until a large collection's graph is built, it is
-- searched exactly: slower, never wrong. The shared graph is dropped here rather than kept
-- beside the new ones: every enrolment would otherwise insert into both.
DROP INDEX IF EXISTS faces_embedding_hnsw;
