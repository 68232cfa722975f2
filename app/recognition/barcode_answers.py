"""When the photo shows a barcode: the product holding it is the answer, unless the image
disagrees strongly.

The codes read from the photo (app/runtime/code_reading.py, beside the classification) are
looked up in SQL (one query per request). A code some product holds makes that product the
first match, with its own score against the photo, and the verdict `confident`: a printed GTIN
is an exact answer. Two exceptions keep the image's answer:

- **strong disagreement**: the image alone is `confident` about another product (its calibrated
  thresholds: 95% precision where they were set) *and* the coded product scores under the
  request's unknown threshold. The code then stands in `barcodes` with its product, the matches
  stay the image's, and the verdict is `ambiguous`: a person should look (a sticker on the wrong
  product, a multipack showing a single's code);
- **out of scope**: the coded product is not in the request's catalogue or filter; or the photo
  shows codes of two different products (the verdict is then `ambiguous`, matches unchanged).

A code no product holds is reported with `sku: null`; with the review queue on, such a photo
is kept, and confirming it attaches the code to the product it is confirmed as.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace

import anyio.to_thread
import numpy as np

from app.catalogue.barcodes import BarcodeReads
from app.catalogue.errors import ProductNotFound
from app.catalogue.products import ProductStore
from app.index.shard_store import ShardStore
from app.recognition.search import CodeAnswer, Hit, Verdict
from app.runtime.code_reading import SeenCode
from app.runtime.inference import RawHits

Box = tuple[float, float, float, float]


@dataclass
class BarcodeAnswers:
    reads: BarcodeReads
    products: ProductStore
    store: ShardStore
    vectors_per_image: int

    async def settle(
        self,
        verdicts: Sequence[Verdict],
        hits: Sequence[RawHits],
        codes: Sequence[SeenCode],
        allowed: np.ndarray | None,
        threshold: float,
        top_k: int,
        boxes: Sequence[Box] | None = None,
    ) -> list[Verdict]:
        """Each verdict with the codes of its photo (or of its box: the codes whose centre lies
        in it), and the coded product put first where the rule above says so."""
        if not codes:
            return list(verdicts)
        gtins = sorted({c.gtin for c in codes if c.gtin is not None})
        holders = await anyio.to_thread.run_sync(self.reads.holders, gtins) if gtins else {}
        settled = []
        for i, verdict in enumerate(verdicts):
            own = codes if boxes is None else [c for c in codes if _inside(c.box, boxes[i])]
            answers = tuple(
                CodeAnswer(c.text, c.format, c.gtin, c.box, holders.get(c.gtin or "")) for c in own
            )
            settled.append(await self._settle(verdict, hits[i], answers, allowed, threshold, top_k))
        return settled

    async def _settle(
        self,
        verdict: Verdict,
        hits: RawHits,
        codes: tuple[CodeAnswer, ...],
        allowed: np.ndarray | None,
        threshold: float,
        top_k: int,
    ) -> Verdict:
        if not codes:
            return verdict
        coded = {c.sku for c in codes if c.sku is not None}
        if not coded:
            return replace(verdict, barcodes=codes)
        if len(coded) > 1:  # two products' codes in one photo: no exact answer
            tier = verdict.tier if verdict.unknown else "ambiguous"
            return replace(verdict, barcodes=codes, tier=tier)
        [sku] = coded
        found = await anyio.to_thread.run_sync(
            functools.partial(self._best_reference, sku, hits.vector, allowed)
        )
        if found is None:  # out of the request's scope (or deleted meanwhile)
            return replace(verdict, barcodes=codes)
        first = found
        top = verdict.matches[0] if verdict.matches else None
        if (
            verdict.tier == "confident"
            and top is not None
            and top.sku != sku
            and first.score < threshold
        ):  # strong disagreement
            return replace(verdict, barcodes=codes, tier="ambiguous")
        rest = [m for m in verdict.matches if m.sku != sku]
        # `margin` stays the image's: what the model made of the photo, for the review queue.
        return replace(
            verdict,
            matches=[first, *rest][:top_k],
            unknown=False,
            tier="confident",
            barcodes=codes,
        )

    def _best_reference(
        self, sku: str, vector: np.ndarray, allowed: np.ndarray | None
    ) -> Hit | None:
        """Blocking (SQL, FAISS): the product's best reference against the photo, within the
        request's scope; None when it has none there."""
        try:
            product = self.products.get_product(sku)
        except ProductNotFound:
            return None
        ids = np.array(product.image_ids, dtype=np.int64)
        if allowed is not None:
            ids = np.intersect1d(ids, allowed)
        if len(ids) == 0:
            return None
        k = len(ids) * self.vectors_per_image
        scores, found = self.store.search(vector[None].astype(np.float32), k, np.sort(ids))
        if found[0, 0] < 0:
            return None
        score = round(float(scores[0, 0]), 6)
        return Hit(sku=sku, name=product.name, score=score, image_id=int(found[0, 0]))


def _inside(box: tuple[int, int, int, int], region: Box) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return region[0] <= cx <= region[2] and region[1] <= cy <= region[3]
