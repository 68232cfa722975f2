"""Everything a request needs, built once by the app's lifespan and injected into routes."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.catalogue.products import ProductStore
from app.encoder.loading import ServingEncoder
from app.recognition.classify import Classifier
from app.recognition.hit_names import HitNames
from app.recognition.review import Review
from app.recognition.scopes import ScopeResolver
from app.runtime.index_sync import IndexSync
from app.runtime.inference import Inference
from app.settings import Settings


@dataclass
class Services:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    encoder: ServingEncoder
    inference: Inference
    index: IndexSync
    products: ProductStore
    names: HitNames
    scopes: ScopeResolver
    classifier: Classifier
    review: Review

    @property
    def model_id(self) -> str:
        return self.index.store.model_id
