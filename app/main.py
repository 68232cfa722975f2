"""The FastAPI application: the composition root. The lifespan builds every object once, each
from its own group of settings, and owns what runs in the background."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass

from fastapi import FastAPI
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from app.api import access, catalogues, classify, health, products, references, review, shelf
from app.api.console import install_console
from app.api.errors import install_error_handlers
from app.api.middleware import (
    ApiKeyMiddleware,
    BodyGuardMiddleware,
    ConcurrencyLimitMiddleware,
    MetricsMiddleware,
)
from app.api.openapi import contract_openapi
from app.barcodes.reader import BarcodeReader
from app.catalogue.barcodes import BarcodeReads
from app.catalogue.product_sets import ProductSets
from app.catalogue.products import ProductStore
from app.catalogue.review_queue import ReviewQueue
from app.catalogue.scope_queries import ScopeQueries
from app.db.changelog import HeadReader
from app.db.migrate import open_database
from app.db.session import make_session_factory
from app.detector.choice import load_detector
from app.encoder.decode import DecodeBudget
from app.encoder.identity import model_tiers
from app.encoder.loading import load_service_encoder
from app.encoder.onnx_graph import cpu_threads
from app.encoder.views import served_views
from app.recognition.barcode_answers import BarcodeAnswers
from app.recognition.catalogue import Catalogue
from app.recognition.classify import Classifier
from app.recognition.hit_names import HitNames
from app.recognition.registration import Registrar
from app.recognition.review import Review
from app.recognition.scopes import ScopeResolver
from app.recognition.shelf import ShelfAudit
from app.recognition.tiers import Tiers, served_tiers
from app.runtime.code_reading import CodeReading
from app.runtime.health import Health
from app.runtime.index_sync import IndexSync
from app.runtime.inference import Inference
from app.runtime.memory import return_large_frees
from app.runtime.metrics import ServiceMetrics
from app.runtime.requests_in_flight import RequestsInFlight
from app.services import Services
from app.settings import Settings
from app.storage.blobs import FileBlobStore

log = logging.getLogger("retailklip")


@dataclass(frozen=True)
class Running:
    """What the lifespan starts and stops around the routes' `Services`."""

    services: Services
    engine: Engine
    inference: Inference
    index: IndexSync
    names: HitNames
    scopes: ScopeResolver
    codes: CodeReading | None


def build(settings: Settings, metrics: ServiceMetrics) -> Running:
    """Blocking start-up: schema, model (with warm-up), shards from files or SQL."""
    return_large_frees()
    storage, limits, choice = settings.storage, settings.limits, settings.model_choice
    storage.data_dir.mkdir(parents=True, exist_ok=True)
    engine = open_database(storage.database_url, storage.auto_migrate)
    session_factory = make_session_factory(engine)
    encoder = load_service_encoder(choice)
    log.info("model %s loaded on %s", encoder.model_id, encoder.device)
    detection = settings.detection
    detector = load_detector(detection.graph, cpu_threads())
    if detector is not None:
        log.info("detector %s loaded from %s", detector.model_id, detector.path)
    index = IndexSync.open(
        encoder.model_id,
        encoder.embed_dim,
        storage.shard_dir,
        session_factory,
        index_config=settings.index_config,
        log_retention_s=settings.sync.log_retention_s,
    )
    index.start()
    log.info("index ready: %d vectors in %d shards", index.size, len(index.store.shards))
    if not index.complete:
        log.warning("model %s: reindex incomplete; not ready until it finishes", encoder.model_id)
    # Every decode of an upload (the model's, the barcode reader's) shares one pixel budget.
    decode_budget = DecodeBudget(limits.decode_budget_pixels)
    inference = Inference(
        encoder,
        index.store,
        limits.max_image_pixels,
        settings.batching.size_for(str(encoder.device)),
        settings.batching.wait_ms,
        on_batch=metrics.batch_size.observe,
        on_stage=metrics.observe_stage,
        reference_views=served_views(choice.reference_views, encoder.preprocess.reference_views),
        decode_budget=decode_budget,
    )
    products = ProductStore(
        session_factory,
        FileBlobStore(storage.blob_dir),
        encoder.model_id,
        settings.sync.shard_capacity,
        committed=index.follower,
    )
    # The log head is read on a connection of its own (and on a thread of its own).
    head = HeadReader(engine, encoder.model_id)
    names = HitNames(index.store, products, head, head.close)
    scopes = ScopeResolver(ScopeQueries(session_factory, encoder.model_id))
    index.store.on_change(scopes.changed)
    calibrated = model_tiers(choice.model)
    tiers = served_tiers(
        None if calibrated is None else Tiers.from_json(calibrated),
        choice.confident_score,
        choice.confident_margin,
    )
    queue = ReviewQueue(
        session_factory,
        FileBlobStore(storage.review_dir),
        settings.review_queue.max_items,
        settings.review_queue.max_age_s,
    )
    per_image = inference.vectors_per_image
    reading = settings.barcode_reading
    codes = (
        CodeReading(
            BarcodeReader(reading.formats, reading.budget_ms),
            limits.max_image_pixels,
            decode_budget,
            reading.read_side,
            reading.threads,
        )
        if reading.enabled
        else None
    )
    answers = BarcodeAnswers(BarcodeReads(session_factory), products, index.store, per_image)
    classifier = Classifier(index, names, scopes, inference, tiers, codes, answers)
    services = Services(
        limits=limits,
        classifier=classifier,
        shelf=ShelfAudit(classifier, products, detector, detection.score, detection.max_boxes),
        registrar=Registrar(
            inference, products, index.store, names, queue, limits.duplicate_threshold
        ),
        catalogue=Catalogue(
            products,
            ProductSets(session_factory),
            index.store,
            names,
            per_image,
            limits.max_image_pixels,
        ),
        review=Review(
            settings.review_queue.mode,
            queue,
            limits.max_image_pixels,
            products,
            index.store,
            names,
            per_image,
        ),
        health=Health(
            engine,
            index,
            encoder,
            choice.model,
            None if tiers is None else asdict(tiers),
            None if detector is None else detector.model_id,
        ),
    )
    return Running(services, engine, inference, index, names, scopes, codes)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = ServiceMetrics()
    in_flight = RequestsInFlight()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        running = await run_in_threadpool(build, settings, metrics)
        running.inference.start()
        sync = settings.sync
        syncer = asyncio.create_task(
            running.index.keep_in_step(
                sync.interval_s,
                sync.persist_interval_s,
                listen=running.engine if sync.log_push else None,
            )
        )
        app.state.services = running.services
        try:
            yield
        finally:
            app.state.services = None
            syncer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await syncer
            await running.inference.stop()
            running.names.close()
            await run_in_threadpool(running.scopes.close)
            if running.codes is not None:
                running.codes.close()
            await run_in_threadpool(running.index.persist_dirty)
            running.engine.dispose()

    app = FastAPI(title="RetailKLIP", version="0.1.0", lifespan=lifespan)
    app.state.metrics = metrics
    app.state.services = None
    app.include_router(products.router)
    app.include_router(classify.router)
    app.include_router(shelf.router)
    app.include_router(catalogues.router)
    app.include_router(references.router)
    app.include_router(review.router)
    app.include_router(health.router)
    app.include_router(access.router)
    install_console(app)

    install_error_handlers(app)
    app.openapi = lambda: contract_openapi(app, settings)  # type: ignore[method-assign]

    # Outermost last: metrics see every answer, keys are checked before the body is read, a
    # refused request's body is drained under the size cap and the body deadline.
    limits = settings.limits
    app.add_middleware(
        ConcurrencyLimitMiddleware, max_in_flight=limits.max_concurrency, in_flight=in_flight
    )
    app.add_middleware(
        BodyGuardMiddleware,
        max_bytes=limits.max_upload_bytes,
        timeout_s=limits.body_timeout_s,
        min_rate=limits.body_min_rate,
    )
    app.add_middleware(ApiKeyMiddleware, keys=settings.auth)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
