"""`retailklip models` and `retailklip drop-model`: which models hold vectors in SQL, who serves
them, and dropping one once nothing uses it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session
from tqdm import tqdm

from app.db.migrate import open_database
from app.db.session import make_session_factory, rowcount
from app.db.tables import ChangeLogEntry, Embedding, LogHead, ReferenceImage, Replica
from app.settings import Settings

DROP_BATCH = 5000  # images per DELETE: short transactions, progress to watch


def model_table(session: Session, live_s: float) -> list[tuple[str, int, int, int]]:
    """(model, images with a vector of it, images without, replicas seen within live_s)."""
    since = datetime.now(UTC) - timedelta(seconds=live_s)
    counts = dict(
        session.execute(
            select(Embedding.model_id, func.count())
            .where(Embedding.code == 0)
            .group_by(Embedding.model_id)
        ).all()
    )
    live = dict(
        session.execute(
            select(Replica.model_id, func.count())
            .where(Replica.seen_at >= since)
            .group_by(Replica.model_id)
        ).all()
    )
    images = session.scalar(select(func.count()).select_from(ReferenceImage)) or 0
    models = sorted(set(counts) | set(live))
    return [(m, counts.get(m, 0), images - counts.get(m, 0), live.get(m, 0)) for m in models]


def run_models(settings: Settings, live_s: float) -> int:
    engine = open_database(settings.storage.database_url, settings.storage.auto_migrate)
    with make_session_factory(engine)() as session:
        rows = model_table(session, live_s)
    engine.dispose()
    print(f"{'model':<48} {'images':>9} {'missing':>9} {'replicas':>9}")
    for model, have, missing, live in rows:
        print(f"{model:<48} {have:>9} {missing:>9} {live:>9}")
    return 0


def run_drop_model(settings: Settings, model_id: str, live_s: float, force: bool) -> int:
    """Delete every vector and log entry of `model_id`. Refused while a replica on it has
    reported within `live_s` seconds (it would serve an emptying index), unless forced."""
    engine = open_database(settings.storage.database_url, settings.storage.auto_migrate)
    session_factory = make_session_factory(engine)
    since = datetime.now(UTC) - timedelta(seconds=live_s)
    with session_factory() as session:
        users = session.scalar(
            select(func.count())
            .select_from(Replica)
            .where(Replica.model_id == model_id, Replica.seen_at >= since)
        )
        total = session.scalar(
            select(func.count()).select_from(Embedding).where(Embedding.model_id == model_id)
        )
    if users and not force:
        print(
            f"refusing: {users} replica(s) served {model_id} in the last {live_s:.0f} s; "
            "switch them to another model first (or --force)"
        )
        engine.dispose()
        return 1
    dropped = 0
    with tqdm(total=total or 0, desc=f"dropping {model_id}", unit="vec") as bar:
        while True:
            with session_factory() as session:
                batch = list(
                    session.scalars(
                        select(Embedding.image_id)
                        .where(Embedding.model_id == model_id)
                        .distinct()
                        .limit(DROP_BATCH)
                    )
                )
                if not batch:
                    break
                gone = rowcount(
                    session.execute(
                        delete(Embedding).where(
                            Embedding.model_id == model_id, Embedding.image_id.in_(batch)
                        )
                    )
                )
                session.commit()
            dropped += gone or 0
            bar.update(gone or 0)
    with session_factory() as session:
        for table in (ChangeLogEntry, LogHead, Replica):
            session.execute(delete(table).where(table.model_id == model_id))
        session.commit()
    engine.dispose()
    print(f"dropped {dropped} vectors of {model_id}")
    return 0


__all__ = ["model_table", "run_drop_model", "run_models"]
