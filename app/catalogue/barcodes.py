"""Products' barcodes in SQL: GTIN-14 strings (app/barcodes/gtin.py normalises them), each held
by one product. Every read goes to SQL, so a code registered through one replica names its
product on every other at once; there is nothing to keep in step."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.catalogue.errors import BarcodeNotFound, BarcodeTaken
from app.db.tables import Product, ProductBarcode


def holders(session: Session, gtins: Sequence[str]) -> dict[str, str]:
    """gtin -> sku of the product holding it, for those held."""
    if not gtins:
        return {}
    rows = session.execute(
        select(ProductBarcode.gtin, Product.sku)
        .join(Product, Product.id == ProductBarcode.product_id)
        .where(ProductBarcode.gtin.in_(sorted(set(gtins))))
    ).all()
    return {gtin: sku for gtin, sku in rows}


def attach(session: Session, product: Product, gtins: Sequence[str]) -> None:
    """Give the product these codes (those it holds already are kept); raises BarcodeTaken
    for a code another product holds. In the caller's transaction."""
    wanted = sorted(set(gtins))
    taken = {g: s for g, s in holders(session, wanted).items() if s != product.sku}
    if taken:
        gtin = min(taken)
        raise BarcodeTaken(gtin, taken[gtin])
    own = {b.gtin for b in product.barcode_links}
    for gtin in wanted:
        if gtin not in own:
            product.barcode_links.append(ProductBarcode(gtin=gtin, product_id=product.id))


def detach(session: Session, product_id: int, sku: str, gtin: str) -> None:
    """Raises BarcodeNotFound when the product does not hold the code."""
    gone = session.execute(
        delete(ProductBarcode)
        .where(ProductBarcode.gtin == gtin, ProductBarcode.product_id == product_id)
        .returning(ProductBarcode.gtin)
        .execution_options(synchronize_session=False)
    ).first()
    if gone is None:
        raise BarcodeNotFound(sku, gtin)


class BarcodeReads:
    """Which products hold codes read from photos (a classification's lookup)."""

    def __init__(self, session_factory: Callable[[], Session]) -> None:
        self.session_factory = session_factory

    def holders(self, gtins: Sequence[str]) -> dict[str, str]:
        with self.session_factory() as session:
            return holders(session, gtins)
