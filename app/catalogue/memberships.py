"""Catalogue membership writes made inside another write's transaction.

A change to an existing product's memberships bumps the one `catalogue_epochs` row in the same
transaction, which is what invalidates cached catalogue scopes (app/recognition/scopes.py) in
every process sharing the database. A product created or deleted with its images does not: its
images' change-log entry, in the same transaction, is what updates the cached scopes, each only
by the images that entry names.
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


def add_memberships(
    session: Session, product_id: int, names: Iterable[str], *, bump: bool = True
) -> None:
    """`bump=False` only where the product's images enter the change log in this transaction."""
    unique = sorted(set(names))
    if unique:
        session.add_all(ProductCatalogue(product_id=product_id, catalogue=n) for n in unique)
        session.flush()
        if bump:
            bump_catalogue_epoch(session)


def drop_memberships(session: Session, product_id: int, *, bump: bool = True) -> None:
    """Explicit rather than left to the foreign key's cascade, so it does not depend on
    SQLite's foreign_keys pragma (and a reused product id never inherits catalogues).
    `bump=False` only where the product's images leave through the change log."""
    removed = session.execute(
        delete(ProductCatalogue)
        .where(ProductCatalogue.product_id == product_id)
        # The product's links may be loaded in this session (selectin): drop them there too,
        # or re-adding one of them clashes with its stale copy.
        .execution_options(synchronize_session="fetch")
    )
    if rowcount(removed) and bump:
        bump_catalogue_epoch(session)
