"""The `retailklip` command (main.py) and its sub-commands: serve, import, reindex, model
administration, blob garbage collection. The top layer: may import everything.
"""
