"""Helpers the tests and the benchmarks under scripts/ share; not part of the installed package.

Scripts put the repository root on ``sys.path`` to import them.
"""
