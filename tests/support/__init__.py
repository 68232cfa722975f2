"""Helpers the tests (and bench/drill_*.py) share: paths, databases, servers.

Plain functions and classes, no fixtures: `tests/conftest.py` builds its fixtures from these,
and the drills import them so a change in how a server starts is made once.
"""
