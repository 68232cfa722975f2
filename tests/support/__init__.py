"""Helpers the tests share, and the one harness bench/ uses too: paths, databases, servers,
photos, report tables, and the failure drills (tests/support/drills/, run by test_drills.py).

Plain functions and classes, no fixtures: `tests/conftest.py` builds its fixtures from these.
Imports go one way: bench/ imports tests.support; nothing under tests/ imports bench/.
"""
