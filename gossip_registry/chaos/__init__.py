"""Chaos testing against real agent processes: hosts, faults, scenarios, history, checker, report.

``scripts/chaos.py`` is the command line; ``tests/integration/test_chaos_smoke.py``
runs the short form in CI. The checker reads only the history file, so a saved
run can be judged again later (``scripts/chaos.py check FILE``).
"""
