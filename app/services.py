"""Everything a request needs, built once by the app's lifespan and injected into routes."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.catalog import Catalog
from app.encoder.runtime import Encoder
from app.index.shards import ShardSet
from app.inference import InferenceRuntime
from app.metrics import Metrics
from app.scopes import ScopeResolver
from app.settings import Settings


@dataclass
class Services:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    encoder: Encoder
    inference: InferenceRuntime
    shards: ShardSet
    catalog: Catalog
    metrics: Metrics
    scopes: ScopeResolver
