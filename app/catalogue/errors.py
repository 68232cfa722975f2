"""What the repository refuses, as data: the HTTP layer words and numbers them
(app/api/errors.py), nothing here knows a status code."""

from __future__ import annotations


class ProductNotFound(LookupError):
    def __init__(self, sku: str) -> None:
        super().__init__(sku)
        self.sku = sku


class ImageNotFound(LookupError):
    def __init__(self, sku: str, image_id: int) -> None:
        super().__init__(sku, image_id)
        self.sku = sku
        self.image_id = image_id


class ReviewItemNotFound(LookupError):
    """No such item: never kept, dropped by the queue's bounds, or confirmed or rejected by
    someone else first."""

    def __init__(self, item_id: int) -> None:
        super().__init__(item_id)
        self.item_id = item_id


class ProductExists(Exception):
    def __init__(self, sku: str) -> None:
        super().__init__(sku)
        self.sku = sku


class ConcurrentWrite(Exception):
    """Two writes to one product's images raced and this one lost; a retry will do."""

    def __init__(self, sku: str) -> None:
        super().__init__(sku)
        self.sku = sku


class UnknownCatalogue(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class UnknownMetadataKey(LookupError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class BarcodeTaken(Exception):
    """The code is another product's (`holder`): one code names one product."""

    def __init__(self, gtin: str, holder: str) -> None:
        super().__init__(gtin, holder)
        self.gtin = gtin
        self.holder = holder


class BarcodeNotFound(LookupError):
    def __init__(self, sku: str, gtin: str) -> None:
        super().__init__(sku, gtin)
        self.sku = sku
        self.gtin = gtin
