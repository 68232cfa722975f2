"""Benchmarks: each module prints a table; run them by hand from the repository root as
`python -m bench.<name>` (`--help` says what each measures). Numbers vary with the machine.

Live servers, databases, photos and tables come from the test suite's harness (tests.support:
`tests/support/servers.py` starts a server, waits for it to be ready and fails with its log
tail). Imports go one way: bench imports tests.support, nothing under tests/ imports bench.
Pass/fail checks belong in tests/ (the failure drills are tests/drills/test_drills.py).
"""
