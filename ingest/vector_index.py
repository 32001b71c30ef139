"""The dense index of a build: exact inner product for a course, HNSW for a department's worth.

    index = build_vector_index(vectors, hnsw_threshold=100_000)  # IndexFlatIP below the threshold, else HNSW
    faiss.write_index(index, path); index = faiss.read_index(path)  # both kinds round-trip, efSearch included
    scores, rows = search_index(index, queries, k, allowed=mask)   # top-k among the allowed rows

Vectors are L2-normalised, so inner product is cosine similarity. Both kinds use the inner-product
metric and answer `index.search` the same way: the flat index exactly, HNSW approximately (recall@10
0.999 against exact search on a million clustered vectors at the parameters below, p50 1.2 ms on
one thread against flat's 56 ms; `benchmarks/retrieval_latency.py` measures both).

Below `hnsw_threshold` rows an exact scan costs a few milliseconds and is right by construction, so
only a larger index pays HNSW's build time (on 2 cores: 55 s at 100k rows, 24 minutes at a million)
and extra memory (the graph links, about HNSW_M * 8 bytes a row: 1.81 GiB against flat's 1.43 GiB
at a million rows).

Filters. `tutor/retrieve.py` filters rows (kinds, the lecture schedule) by passing
`faiss.SearchParameters(sel=faiss.IDSelectorBitmap(...))` to `index.search`; both kinds accept it
as is. The flat index then scores only the allowed rows. HNSW walks its graph as usual and keeps
only allowed rows in its results, with the efSearch stored in the index: right while most rows are
allowed, short of results when few are (a homework check that allows only assignments and
solutions): at a million rows recall@10 is 1.000 with half the rows allowed, 0.90 with a tenth and
0.26 with 1%. `search_index` handles that case: on HNSW it raises efSearch in proportion to the
rows filtered out (0.967 at a tenth, 12 ms), and when fewer than EXACT_SHARE of the rows are
allowed it scans just those rows exactly, through the HNSW index's own flat storage (no second copy
of the vectors; 1.000 at 1%, 7 ms).
"""

from __future__ import annotations

import math

import faiss
import numpy as np

from ingest import defaults

# A flat scan costs about 57 ms a million rows on one thread (5.6 ms at 100k, 11.9 ms at 200k):
# below 100k it stays under the 10 ms target and is exact, so only a larger index pays HNSW.
DEFAULT_HNSW_THRESHOLD = defaults.HNSW_THRESHOLD
# Measured with benchmarks/retrieval_latency.py on 1M clustered 384-d vectors, one search thread:
# M=32, efConstruction=100 built in 7 min (2 cores) but reached recall@10 0.974 at efSearch 128 and
# 0.982 at 256 (1.4 ms); M=48, efConstruction=200 took 21-24 min and reached 0.999 at efSearch 128
# (1.2 ms p50), 0.989 at 64 (0.6 ms), 1.000 at 256 (2.3 ms); its rare misses are whole queries that
# ended in the wrong cluster. An IVF index (4096 lists) built in 44 s but reached only 0.923 at 128
# probes (7 ms).
HNSW_M = 48                  # neighbours per node: recall, memory (about 8 bytes each a row), build time
HNSW_EF_CONSTRUCTION = 200   # candidates while inserting: graph quality and build time grow with it
HNSW_EF_SEARCH = 128         # candidates while searching: the recall/latency dial, stored in the index
MAX_EF_SEARCH = 1024         # the most a filtered search raises efSearch to
EXACT_SHARE = 0.05           # below this share of allowed rows, a filtered HNSW search scans them exactly


def index_kind(rows: int, hnsw_threshold: int = DEFAULT_HNSW_THRESHOLD) -> str:
    """'flat' or 'hnsw': what `build_vector_index` builds for this many rows."""
    return "hnsw" if rows >= hnsw_threshold else "flat"


def build_vector_index(vectors: np.ndarray, dimension: int | None = None,
                       hnsw_threshold: int = DEFAULT_HNSW_THRESHOLD) -> faiss.Index:
    """An inner-product index over `vectors` (row i gets id i): IndexFlatIP, or IndexHNSWFlat from
    `hnsw_threshold` rows up. `dimension` is needed only when `vectors` is empty and shapeless."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dimension = int(dimension or vectors.shape[1])
    if len(vectors) and vectors.shape[1] != dimension:
        raise ValueError(f"vectors have {vectors.shape[1]} dimensions, the index {dimension}")
    if index_kind(len(vectors), hnsw_threshold) == "flat":
        index = faiss.IndexFlatIP(dimension)
    else:
        index = faiss.IndexHNSWFlat(dimension, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    if len(vectors):
        index.add(vectors)
    return index


def search_index(index: faiss.Index, queries: np.ndarray, k: int,
                 allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`index.search(queries, k)` among the rows where `allowed` (a bool per row) is true; rows
    not found are -1, as faiss returns them."""
    queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    if allowed is None or allowed.all():
        return index.search(queries, k)
    share = float(allowed.mean())
    bitmap = np.packbits(allowed.astype(np.uint8), bitorder="little")  # must outlive the search
    selector = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bitmap))
    hnsw = _as_hnsw(index)
    if hnsw is None:
        return index.search(queries, k, params=faiss.SearchParameters(sel=selector))
    if share < EXACT_SHARE:
        storage = faiss.downcast_index(hnsw.storage)
        return storage.search(queries, k, params=faiss.SearchParameters(sel=selector))
    ef = min(MAX_EF_SEARCH, max(k, math.ceil(hnsw.hnsw.efSearch / share)))
    return index.search(queries, k, params=faiss.SearchParametersHNSW(sel=selector, efSearch=ef))


def _as_hnsw(index: faiss.Index):
    index = faiss.downcast_index(index)
    return index if isinstance(index, faiss.IndexHNSW) else None
