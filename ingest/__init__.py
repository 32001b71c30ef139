"""Course folder -> searchable index: loaders per format, chunker, embedder, index store.

Entry point: `ingest.pipeline.ingest_course`. Imports nothing from the other packages.

Importing any part of the project imports this package first, so this is the one place that makes
the process offline: no model-hub look-ups, no analytics (each only where the user has not set it).
"""

import os

OFFLINE_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
    "TOKENIZERS_PARALLELISM": "false",
}
for _name, _value in OFFLINE_ENVIRONMENT.items():
    os.environ.setdefault(_name, _value)
