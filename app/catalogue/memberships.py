"""Catalogue membership writes made inside another write's transaction.

Every membership change bumps the one `catalogue_epochs` row in the same transaction, which is
what invalidates cached search scopes (app/recognition/scopes.py) in every process sharing the
database.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete
from sqlalchemy.orm import Session

from app.db.dialect import upsert
from app.db.session import rowcount
from app.db.tables import CatalogueEpoch, ProductCatalogue


def bump_catalogue_epoch(session: Session) -> None:
    stmt = upsert(session, CatalogueEpoch).values(id=1, epoch=1)
    session.execute(
        stmt.on_conflict_do_update(index_elements=["id"], set_={"epoch": CatalogueEpoch.epoch + 1})
    )


def add_memberships(session: Session, product_id: int, names: Iterable[str]) -> None:
    unique = sorted(set(names))
    if unique:
        session.add_all(ProductCatalogue(product_id=product_id, catalogue=n) for n in unique)
        session.flush()
        bump_catalogue_epoch(session)


def drop_memberships(session: Session, product_id: int) -> None:
    """Explicit rather than left to the foreign key's cascade, so it does not depend on
    SQLite's foreign_keys pragma (and a reused product id never inherits catalogues)."""
    removed = session.execute(
        delete(ProductCatalogue)
        .where(ProductCatalogue.product_id == product_id)
        .execution_options(synchronize_session=False)
    )
    if rowcount(removed):
        bump_catalogue_epoch(session)
