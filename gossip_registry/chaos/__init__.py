"""Chaos testing against real agent processes: hosts, faults, scenarios, history, checker, report.

``cli.py`` is the ``gossip-registry-chaos`` command; ``tests/integration/test_chaos_smoke.py``
runs the short form in CI. The checker reads only the history file, so a saved
run can be judged again later (``gossip-registry-chaos check FILE``).
"""
