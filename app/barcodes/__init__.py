"""Barcodes in product photos: GTINs (check digits, normalisation) and a time-budgeted reader.

numpy, Pillow and zxing-cpp only (no web framework, no SQL, no torch); below the service's
use cases, beside encoder/ and detector/.
"""
