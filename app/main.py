"""The FastAPI application: lifespan owns the model, the database and the shards."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from app.api import access, catalogues, classify, health, products, references, review
from app.api.console import install_console
from app.api.errors import install_error_handlers
from app.api.middleware import (
    ApiKeyMiddleware,
    BodyGuardMiddleware,
    ConcurrencyLimitMiddleware,
    MetricsMiddleware,
)
from app.api.openapi import contract_openapi
from app.catalogue.products import ProductStore
from app.catalogue.review_queue import ReviewQueue
from app.catalogue.scope_queries import ScopeQueries
from app.db.changelog import HeadReader
from app.db.migrate import open_database
from app.db.session import make_session_factory
from app.encoder.decode import DecodeBudget
from app.encoder.identity import model_tiers
from app.encoder.loading import load_service_encoder
from app.recognition.classify import Classifier
from app.recognition.hit_names import HitNames
from app.recognition.review import Review
from app.recognition.scopes import ScopeResolver
from app.runtime.index_sync import IndexSync
from app.runtime.inference import Inference
from app.runtime.memory import return_large_frees
from app.runtime.metrics import ServiceMetrics
from app.runtime.requests_in_flight import RequestsInFlight
from app.services import Services
from app.settings import Settings
from app.storage.blobs import FileBlobStore

log = logging.getLogger("retailklip")


def build_services(settings: Settings, metrics: ServiceMetrics) -> Services:
    """Blocking start-up: schema, model (with warm-up), shards from files or SQL."""
    return_large_frees()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = open_database(settings.resolved_database_url, settings.auto_migrate)
    session_factory = make_session_factory(engine)
    encoder = load_service_encoder(settings)
    log.info("model %s loaded on %s", encoder.model_id, encoder.device)
    index = IndexSync.open(
        encoder.model_id,
        encoder.embed_dim,
        settings.resolved_shard_dir,
        session_factory,
        index_config=settings.index_config,
        log_retention_s=settings.change_log_retention_s,
    )
    index.start()
    log.info("index ready: %d vectors in %d shards", index.size, len(index.store.shards))
    if not index.complete:
        log.warning("model %s: reindex incomplete; not ready until it finishes", encoder.model_id)
    inference = Inference(
        encoder,
        settings.max_image_pixels,
        settings.resolved_max_batch(str(encoder.device)),
        settings.batch_wait_ms,
        on_batch=metrics.batch_size.observe,
        on_stage=metrics.observe_stage,
        reference_views=settings.resolved_reference_views(encoder.preprocess),
        decode_budget=DecodeBudget(settings.decode_budget_pixels),
    )
    products = ProductStore(
        session_factory,
        FileBlobStore(settings.resolved_blob_dir),
        encoder.model_id,
        settings.shard_capacity,
        committed=index.follower,
    )
    # The log head is read on a connection of its own (and on a thread of its own).
    head = HeadReader(engine, encoder.model_id)
    names = HitNames(index.store, products, head, head.close)
    scopes = ScopeResolver(ScopeQueries(session_factory, encoder.model_id))
    index.store.on_change(scopes.changed)
    tiers = settings.resolved_tiers(model_tiers(settings.model))
    classifier = Classifier(index, names, scopes, inference, tiers)
    queue = ReviewQueue(
        session_factory,
        FileBlobStore(settings.resolved_review_dir),
        settings.review_max_items,
        settings.review_max_age_s,
    )
    review = Review(settings.review, queue, settings.max_image_pixels)
    return Services(
        settings,
        engine,
        session_factory,
        encoder,
        inference,
        index,
        products,
        names,
        scopes,
        classifier,
        review,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = ServiceMetrics()
    in_flight = RequestsInFlight()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await run_in_threadpool(build_services, settings, metrics)
        services.inference.start()
        syncer = asyncio.create_task(
            services.index.keep_in_step(
                settings.sync_interval_s,
                settings.shard_persist_interval_s,
                listen=services.engine if settings.log_push else None,
            )
        )
        app.state.services = services
        try:
            yield
        finally:
            app.state.services = None
            syncer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await syncer
            await services.inference.stop()
            services.names.close()
            await run_in_threadpool(services.scopes.close)
            await run_in_threadpool(services.index.persist_dirty)
            services.engine.dispose()

    app = FastAPI(title="RetailKLIP", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.services = None
    app.include_router(products.router)
    app.include_router(classify.router)
    app.include_router(catalogues.router)
    app.include_router(references.router)
    app.include_router(review.router)
    app.include_router(health.router)
    app.include_router(access.router)
    install_console(app)

    install_error_handlers(app)
    app.openapi = lambda: contract_openapi(app, settings)  # type: ignore[method-assign]

    # Outermost last: metrics see every answer, keys are checked before the body is read, a
    # refused request's body is drained under the size cap.
    app.add_middleware(
        ConcurrencyLimitMiddleware, max_in_flight=settings.max_concurrency, in_flight=in_flight
    )
    app.add_middleware(
        BodyGuardMiddleware,
        max_bytes=settings.max_upload_bytes,
        timeout_s=settings.body_timeout_s,
        min_rate=settings.body_min_rate,
    )
    app.add_middleware(ApiKeyMiddleware, keys=settings.api_key_roles)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
