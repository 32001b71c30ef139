"""The ingest defaults, declared once: `IngestOptions`, `ChunkerSettings`, the vector index and the
`Settings` fields all read them from here (this module imports nothing, so settings stay cheap)."""

CHUNK_TOKENS = 200          # largest chunk, in embedder tokens
CHUNK_OVERLAP = 32          # tokens shared by consecutive chunks of a long section
MAX_FILE_MB = 100.0         # larger files are skipped at ingest
EMBEDDING_BACKEND = "torch"
HNSW_THRESHOLD = 100_000    # more chunks than this get an HNSW index (benchmarks/embedding_backends.py)
CODE_FRAMEWORK = "pytorch"  # the framework kept from multi-framework code tabs
FUSION = "weighted"         # how the index's dense and lexical rankings are fused (tutor/retrieve.py)
