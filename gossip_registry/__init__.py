"""gossip_registry: a service registry replicated to every node by SWIM gossip."""

__all__: list[str] = []
