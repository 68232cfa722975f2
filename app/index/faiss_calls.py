"""The FAISS calls whose type stubs do not describe them, typed once here.

faiss-cpu ships SWIG stubs written from the C++ signatures, not from the Python wrappers the
package installs over them: `remove_ids(ndarray)`, `SearchParameters(sel=..., nprobe=...)`,
`index_factory` results (an `IndexIVF` once downcast), `invlists` that is never None on an
IVF index. Each function below states the type the wrapper really has, so mypy checks every
other line of app/index/ as it checks the rest of the service.
"""

from __future__ import annotations

from typing import Any, cast

import faiss
import numpy as np


def remove_ids(index: faiss.Index, ids: np.ndarray) -> int:
    """The Python wrapper takes an id array (the stub only knows IDSelector)."""
    return int(cast(Any, index).remove_ids(np.ascontiguousarray(ids, dtype=np.int64)))


def search_parameters(
    selector: faiss.IDSelector | None, nprobe: int | None = None
) -> faiss.SearchParameters:
    """Keyword construction, as the wrapper allows (the stubs see no arguments)."""
    if nprobe is None:
        params: faiss.SearchParameters = cast(Any, faiss.SearchParameters)(sel=selector)
    else:
        params = cast(Any, faiss.SearchParametersIVF)(sel=selector, nprobe=nprobe)
    return params


def new_ivf(d: int, nlist: int, codec: str) -> faiss.IndexIVF:
    """`index_factory("IVF<n>,<codec>")` downcast to its IVF class, k-means tuned for shards."""
    # The wrapper downcasts what index_factory builds: this is already the IVF class.
    ivf = cast(
        faiss.IndexIVF, faiss.index_factory(d, f"IVF{nlist},{codec}", faiss.METRIC_INNER_PRODUCT)
    )
    clustering: Any = cast(Any, ivf).cp
    clustering.niter = 10  # measured: recall@1 does not move past 10 k-means iterations
    clustering.max_points_per_centroid = 64  # bound training time: a sample of 64 x nlist
    clustering.min_points_per_centroid = 1  # small shards warn without this
    return ivf


def code_size(index: faiss.Index) -> int:
    return int(cast(Any, index).code_size)


def coarse_code_size(ivf: faiss.IndexIVF) -> int:
    return int(cast(Any, ivf).coarse_code_size())


def inverted_lists(ivf: faiss.IndexIVF) -> faiss.InvertedLists:
    lists = ivf.invlists
    assert lists is not None, "an IVF index always has inverted lists"
    return lists


def as_ivf(index: faiss.Index) -> faiss.IndexIVF:
    """A deserialised IVF index (the wrapper has downcast it already), typed as such."""
    return cast(faiss.IndexIVF, index)
