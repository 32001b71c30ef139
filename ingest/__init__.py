"""Course folder -> searchable index: loaders per format, chunker, embedder, index store.

Entry point: `ingest.pipeline.ingest_course`. Imports nothing from the other packages.
"""
