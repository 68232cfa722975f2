"""The review queue's use case: which classifications a person should see, and keeping them.

`RETAILKLIP_REVIEW`: `off` (the default) keeps nothing; `ambiguous` keeps every answer that is
not `confident` (ambiguous or unknown); `all` keeps every answer. What is kept is the photo (or,
for a `boxes` request, the box's crop) with the top candidates, in a queue bounded by count and
age (app/catalogue/review_queue.py); shelf photos may show people, so nothing is kept unless
the operator opts in. Keeping runs after the answer is sent (the route's background task):
it never delays a classification.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Literal

from app.catalogue.review_queue import QueuedPhoto, ReviewQueue
from app.encoder.boxes import Box, pixel_boxes
from app.encoder.decode import decode_photo
from app.recognition.search import Verdict

ReviewMode = Literal["off", "ambiguous", "all"]
CANDIDATES = 3  # suggestions kept per item

log = logging.getLogger(__name__)


@dataclass
class Review:
    mode: ReviewMode
    queue: ReviewQueue
    max_pixels: int

    def wants(self, verdict: Verdict) -> bool:
        if self.mode == "all":
            return True
        return self.mode == "ambiguous" and verdict.tier != "confident"

    def keep(self, data: bytes, verdict: Verdict, box: Box | None = None) -> int | None:
        """Blocking (decode, crop, file and SQL writes): run it off the event loop. A failure
        is logged, never raised: the answer has gone out already."""
        try:
            return self._keep(data, verdict, box)
        except Exception:
            log.exception("keeping a classification for review failed")
            return None

    def _keep(self, data: bytes, verdict: Verdict, box: Box | None) -> int | None:
        if box is not None:
            photo = decode_photo(data, self.max_pixels)
            [rect] = pixel_boxes([box], photo.width, photo.height)
            buffer = io.BytesIO()
            photo.region(rect).save(buffer, format="JPEG", quality=90)
            data = buffer.getvalue()
        top = verdict.matches[0].score if verdict.matches else None
        return self.queue.add(
            QueuedPhoto(
                data=data,
                model_id=verdict.model,
                verdict=verdict.tier,
                top_score=top,
                margin=verdict.margin,
                candidates=[
                    {"sku": h.sku, "name": h.name, "score": h.score}
                    for h in verdict.matches[:CANDIDATES]
                ],
                box=None if box is None else list(box),
            )
        )
