"""The SQL repository: products, reference images and their vectors, product sets
("catalogues"), scope queries. One transaction per call; committed writes are announced to
the index through a protocol, never applied here. May import db/ and below.
"""
