"""The sans-I/O protocol core: no sockets, clocks, sleeps or global randomness.

Callers pass ``now`` (seconds, any monotonic origin) and a seeded
``random.Random``; the core answers with effects for the caller to carry out.
"""
