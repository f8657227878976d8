"""``python -m gossip_registry``: the ``gossip-registry`` command.

``up`` starts its agents this way (``sys.executable -m gossip_registry``) so
that they run under the same interpreter and package as ``up`` itself,
whether or not the console script is on PATH.
"""

from gossip_registry.cli import main

if __name__ == "__main__":
    main()
