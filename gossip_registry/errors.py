"""The package's exception types, in one place to import them from.

Following h11's split (STYLE.md section 4): ``ConfigError`` is the caller's
mistake, raised before anything starts; ``CodecError`` is a peer's garbage,
raised only by the codec and caught by the receive loops, which drop and
count the datagram. Both subclass ``ValueError``, so code that only wants to
know "bad input" can catch that.
"""

from __future__ import annotations

from gossip_registry.core.codec import CodecError

__all__ = ["CodecError", "ConfigError"]


class ConfigError(ValueError):
    """A configuration we refuse to start with.

    The message says where (the file, then the key path such as
    ``nodes[2].gossip_port``) and what is wrong, so that a typo is fixed from
    the message alone instead of surfacing later as a node that never joins:
    ``cluster.toml: nodes[2].gossip_port: must be an integer 1..65535, got 'abc'``.

    Args:
        problem: what is wrong, naming the expected form and the value found.
        file: the configuration file, as the user named it; None when the
            value did not come from a file (a command-line flag, an API call).
        key: the key path inside the file; None for whole-file problems
            (unreadable, TOML syntax).
    """

    def __init__(self, problem: str, *, file: str | None = None, key: str | None = None) -> None:
        self.problem = problem
        self.file = file
        self.key = key
        super().__init__(": ".join(part for part in (file, key, problem) if part))
