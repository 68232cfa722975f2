"""What the routes use, built once by the app's lifespan (app/main.py) and injected through
app/api/deps.py: the use cases' façades, and the request limits."""

from __future__ import annotations

from dataclasses import dataclass

from app.recognition.catalogue import Catalogue
from app.recognition.classify import Classifier
from app.recognition.registration import Registrar
from app.recognition.review import Review
from app.recognition.shelf import ShelfAudit
from app.runtime.health import Health
from app.settings import Limits


@dataclass(frozen=True)
class Services:
    limits: Limits
    classifier: Classifier  # photo -> verdict
    shelf: ShelfAudit  # shelf photo -> products found, named, placed, counted, checked
    registrar: Registrar  # photos -> references (new products, more photos, confirmations)
    catalogue: Catalogue  # products and images read, deleted, grouped; look-alikes
    review: Review  # the review queue
    health: Health  # readiness and gauges
