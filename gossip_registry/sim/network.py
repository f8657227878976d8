"""The simulated network: how long a datagram or a stream takes, and whether it arrives.

Theory of operation. Nodes are small integers here (the cluster maps names to
them); this module owns the link model, the partitions and the one random
source it is handed, and knows nothing of protocols, processes or the event
heap. The engine asks two questions: "a datagram goes src -> dst: when does
it arrive, if at all?" and "a stream leg goes src -> dst: how long does it
take, and does it make it before the stream times out?"

Datagrams (UDP). Each datagram is independent:

- delay = median_delay * exp(N(0, sigma)): lognormal, so the median is
  ``median_delay``, the tail is long and no delay is ever negative;
  reordering falls out of independent delays;
- lost with probability ``loss`` (uniform, per datagram); no duplication,
  no corruption (a corrupt datagram is a lost one once the checksum fails).

Streams (TCP). A stream exchange is a handful of segments, each one a
datagram under the same link model, except that TCP retransmits: a lost
segment is resent after an RTO that starts at ``rto_initial`` (200 ms, the
Linux minimum) and doubles on each further loss of that segment. The legs
are:

- request leg, requester -> receiver: SYN (a->b), SYN-ACK (b->a), then the
  request's data segments (a->b), one per ``mss`` bytes. Its time is three
  one-way delays plus every retransmission penalty;
- reply leg, receiver -> requester: the reply's data segments (b->a), one
  one-way delay plus penalties.

Data segments are pipelined (one one-way delay for all of them) but each can
be lost and each loss adds its RTOs serially: pessimistic, and bandwidth is
not modelled. If the time from the request to the reply exceeds
``stream_timeout`` (default 10 s, memberlist's TCPTimeout) the stream fails
at exactly the timeout. A stream needs both directions, so any cut between
the two ends (even one-way) fails it, at the timeout, like a connect that
never hears back. A crashed process on a live host refuses at once: the
requester learns after one round trip.

Partitions. ``partition(a, b)`` blocks a->b and b->a (only a->b if
``one_way``); several may coexist; ``isolate(n)`` cuts n from everyone;
``heal()`` removes them all. Cuts apply to datagrams in flight only at send
time: a datagram already sent is delivered (it was "on the wire").
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class LinkModel:
    """Delay, loss and TCP parameters of a link (or of every link, as the default).

    ``stream_timeout``, ``rto_initial`` and ``mss`` are taken from the default
    link only; a per-link override changes delay and loss.
    """

    median_delay: float = 0.001
    """Median one-way datagram delay, seconds. LAN: ~0.1-1 ms; WAN: 10-100 ms."""
    sigma: float = 0.5
    """Spread of the lognormal in log space; 0 means every delay is the median."""
    loss: float = 0.0
    """Probability that a datagram (or a TCP segment's transmission) is lost, 0..1."""
    stream_timeout: float = 10.0
    """A stream that has not completed after this many seconds fails (memberlist's TCPTimeout)."""
    rto_initial: float = 0.2
    """First TCP retransmission timeout; doubles on each further loss of the same segment."""
    mss: int = 1448
    """TCP payload bytes per segment; a frame of n bytes is ceil(n / mss) segments."""

    def __post_init__(self) -> None:
        if not (self.median_delay > 0 and math.isfinite(self.median_delay)):
            raise ValueError(f"median_delay must be positive, got {self.median_delay!r}")
        if not (self.sigma >= 0 and math.isfinite(self.sigma)):
            raise ValueError(f"sigma must be >= 0, got {self.sigma!r}")
        if not 0.0 <= self.loss <= 1.0:
            raise ValueError(f"loss must be within [0, 1], got {self.loss!r}")
        if not (self.stream_timeout > 0 and math.isfinite(self.stream_timeout)):
            raise ValueError(f"stream_timeout must be positive, got {self.stream_timeout!r}")
        if not (self.rto_initial > 0 and math.isfinite(self.rto_initial)):
            raise ValueError(f"rto_initial must be positive, got {self.rto_initial!r}")
        if self.mss < 1:
            raise ValueError(f"mss must be positive, got {self.mss!r}")

    def with_(self, **changes: object) -> LinkModel:
        return replace(self, **changes)  # type: ignore[arg-type]

    def quantile(self, q: float) -> float:
        """The q-quantile of the one-way datagram delay, in seconds (0 < q < 1)."""
        return self.median_delay * math.exp(self.sigma * _normal_quantile(q))

    def describe(self) -> str:
        """One line stating the model, for benchmark reports and failure messages."""
        return (
            f"datagram delay lognormal: median {self.median_delay * 1e3:.3g} ms, "
            f"sigma {self.sigma:g} (p99 {self.quantile(0.99) * 1e3:.3g} ms); "
            f"loss {self.loss:.3g} uniform per datagram; "
            f"streams: segments lost like datagrams, RTO {self.rto_initial * 1e3:.3g} ms "
            f"doubling, timeout {self.stream_timeout:g} s; cuts fail streams at the timeout, "
            f"a crashed peer refuses after one RTT"
        )


def _normal_quantile(q: float) -> float:
    """Inverse CDF of N(0, 1) by bisection on erf; used only for describe()."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile must be within (0, 1), got {q!r}")
    lo, hi = -10.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


class Network:
    """Link parameters, per-link overrides and cuts between numbered nodes.

    Args:
        link: the default link model, for every pair without an override.
        rng: the simulation's random source; this class draws every delay
            and every loss from it, so a run is fixed by the seed.

    The counters (``sent``, ``lost``, ``cut``) count datagrams only.
    """

    def __init__(self, link: LinkModel, rng: random.Random) -> None:
        self._rng = rng
        self._overrides: dict[tuple[int, int], LinkModel] = {}
        self._partitions: list[tuple[frozenset[int], frozenset[int], bool]] = []
        self._isolated: set[int] = set()
        self._has_cuts = False
        self.sent = 0
        self.lost = 0
        self.cut = 0
        self.link = link

    # Configuration.

    @property
    def link(self) -> LinkModel:
        return self._link

    @link.setter
    def link(self, link: LinkModel) -> None:
        self._link = link
        # Unpacked for the per-datagram fast path.
        self._mu = math.log(link.median_delay)
        self._sigma = link.sigma
        self._loss = link.loss

    @property
    def stream_timeout(self) -> float:
        return self._link.stream_timeout

    def set_loss(self, p: float) -> None:
        """Change the default loss probability from now on (per-link overrides keep theirs)."""
        self.link = self._link.with_(loss=p)

    def set_override(self, src: int, dst: int, link: LinkModel | None) -> None:
        """Give the directed link src -> dst its own delay and loss; None removes it."""
        if link is None:
            self._overrides.pop((src, dst), None)
        else:
            self._overrides[(src, dst)] = link

    def partition(self, a: Iterable[int], b: Iterable[int], *, one_way: bool = False) -> None:
        """Block a -> b, and b -> a unless ``one_way``. Adds to any existing cuts."""
        self._partitions.append((frozenset(a), frozenset(b), one_way))
        self._has_cuts = True

    def isolate(self, node: int) -> None:
        """Cut ``node`` from every other node, in both directions."""
        self._isolated.add(node)
        self._has_cuts = True

    def unisolate(self, node: int) -> None:
        """Undo ``isolate(node)``; partitions stay."""
        self._isolated.discard(node)
        self._has_cuts = bool(self._partitions or self._isolated)

    def heal(self) -> None:
        """Remove every partition and isolation (overrides and loss stay)."""
        self._partitions.clear()
        self._isolated.clear()
        self._has_cuts = False

    # Questions the engine asks.

    def blocked(self, src: int, dst: int) -> bool:
        """Whether the directed path src -> dst is cut right now."""
        if not self._has_cuts or src == dst:
            return False
        if src in self._isolated or dst in self._isolated:
            return True
        for a, b, one_way in self._partitions:
            if src in a and dst in b:
                return True
            if not one_way and src in b and dst in a:
                return True
        return False

    def datagram(self, src: int, dst: int) -> float | None:
        """The delay of one datagram src -> dst, or None if it is lost or cut.

        The hottest function of a simulation: kept flat on purpose.
        """
        self.sent += 1
        if self._has_cuts and self.blocked(src, dst):
            self.cut += 1
            return None
        link = self._overrides.get((src, dst)) if self._overrides else None
        if link is None:
            loss, mu, sigma = self._loss, self._mu, self._sigma
        else:
            loss, mu, sigma = link.loss, math.log(link.median_delay), link.sigma
        rng = self._rng
        if loss and rng.random() < loss:
            self.lost += 1
            return None
        if sigma:
            return math.exp(rng.gauss(mu, sigma))
        return math.exp(mu)

    def one_way(self, src: int, dst: int) -> float:
        """A one-way delay src -> dst ignoring loss (a FIN or RST that gets through)."""
        link = self._overrides.get((src, dst), self._link) if self._overrides else self._link
        if link.sigma:
            return float(link.median_delay * math.exp(self._rng.gauss(0.0, link.sigma)))
        return link.median_delay

    def round_trip(self, a: int, b: int) -> float:
        """One RTT a -> b -> a: how long a connection refused by a live host takes to fail."""
        return self.one_way(a, b) + self.one_way(b, a)

    def stream_leg(
        self, src: int, dst: int, nbytes: int, *, handshake: bool, budget: float
    ) -> float | None:
        """Time for one leg of a stream exchange, or None if it cannot finish within ``budget``.

        The request leg (``handshake=True``) is SYN src->dst, SYN-ACK dst->src,
        then the data src->dst; the reply leg is the data alone. Each segment
        is lost with its link's loss probability and resent after an RTO that
        doubles per loss; penalties add up serially.
        """
        segments = max(1, -(-nbytes // self._link.mss))
        total = self.one_way(src, dst)
        penalty = self._retransmits(src, dst, segments, budget)
        if handshake:
            total += self.one_way(dst, src) + self.one_way(src, dst)
            penalty += self._retransmits(dst, src, 1, budget)
            penalty += self._retransmits(src, dst, 1, budget)
        total += penalty
        return None if total > budget else total

    def _retransmits(self, src: int, dst: int, segments: int, budget: float) -> float:
        """Sum of RTO waits for ``segments`` segments on src -> dst; stops past ``budget``."""
        link = self._overrides.get((src, dst), self._link) if self._overrides else self._link
        loss = link.loss
        if not loss:
            return 0.0
        rng = self._rng
        rto0 = self._link.rto_initial
        penalty = 0.0
        for _ in range(segments):
            rto = rto0
            while rng.random() < loss:
                penalty += rto
                rto *= 2
                if penalty > budget:
                    return penalty
        return penalty
