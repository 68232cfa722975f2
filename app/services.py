"""Everything a request needs, built once by the app's lifespan and injected into routes."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.catalogue.products import Catalogue
from app.encoder.loading import ServingEncoder
from app.index.shards import ShardSet
from app.recognition.scopes import ScopeResolver
from app.runtime.inference import Inference
from app.settings import Settings


@dataclass
class Services:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    encoder: ServingEncoder
    inference: Inference
    shards: ShardSet
    catalogue: Catalogue
    scopes: ScopeResolver
