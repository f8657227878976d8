"""What the client library raises, in one place.

Every failure the client reports is a ``ClientError``, so a caller that only
wants "discovery or the call failed" catches one type. The subclasses say
whose fault it was: the registry nodes (``NoNodeAvailable``), the service's
instances (``NoInstanceAvailable``, ``CallFailed``) or the request we made
(``RegistryError``, a 4xx that no other node would answer differently).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "BadResponse",
    "CallFailed",
    "ClientError",
    "NoInstanceAvailable",
    "NoNodeAvailable",
    "RegistryError",
]


class ClientError(Exception):
    """Base of every error the client library raises."""


class NoNodeAvailable(ClientError):
    """No registry node answered; ``failures`` has one line per node tried."""

    def __init__(self, failures: Sequence[str]) -> None:
        self.failures = list(failures)
        super().__init__("no registry node answered: " + "; ".join(self.failures))


class RegistryError(ClientError):
    """A node refused the query (4xx): asking another node would give the same answer."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        """The node's own ``error`` text, which names the field at fault."""
        super().__init__(f"registry answered {status}: {message}")


class BadResponse(ClientError):
    """A node answered with something that is not the API's shape (a proxy, a wrong port).

    Treated like an unreachable node: the client fails over to the next one.
    """


class NoInstanceAvailable(ClientError):
    """The registry lists no instance of the service matching the query."""


class CallFailed(ClientError):
    """Every attempt of ``request`` failed before an instance answered.

    ``attempts`` has one line per instance tried; the last transport error is
    chained as ``__cause__``.
    """

    def __init__(self, service: str, attempts: Sequence[str]) -> None:
        self.service = service
        self.attempts = list(attempts)
        super().__init__(f"{service}: no instance answered: " + "; ".join(self.attempts))
