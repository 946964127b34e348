"""Property-based tests (hypothesis): bad input gets a clear error, never a crash or a lost event.

Run them with ``pytest tests/fuzz``; the whole directory stays under a minute on two cores.
"""
