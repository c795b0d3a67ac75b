"""Benchmarks of the lambda service (``make bench`` / ``python -m benchmarks.run``).

See benchmarks/README.md for what is measured and how.
"""
