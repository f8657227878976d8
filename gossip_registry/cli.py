"""The gossip-registry command (placeholder until the CLI lands)."""


def main() -> None:
    raise SystemExit("gossip-registry: not built yet")
