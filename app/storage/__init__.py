"""Bytes on disk: the content-addressed blob store, atomic file writes, the record of an
accepted upload. Imports nothing of the service.
"""
