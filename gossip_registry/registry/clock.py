"""Hybrid logical clock: version stamps that follow wall time yet never run backwards.

Theory of operation (Kulkarni et al., "Logical Physical Clocks and Consistent
Snapshots in Globally Distributed Databases", 2014, section 3): a stamp is one
integer, ``(physical_ms << 16) | logical``. The high part is wall-clock
milliseconds, so stamps from different nodes compare roughly like real time and
a tombstone's age can be read off its stamp (``stamp_wall``). The low 16 bits
are a counter that keeps stamps strictly increasing when the wall clock stands
still or steps backwards (NTP correction, VM migration): ``tick`` returns
``max(wall_ms << 16, last + 1)``, so at worst it counts on from the last stamp.
If the counter would pass 16 bits it carries into the millisecond part; the
stamp then runs slightly ahead of wall time, which is harmless because the
only promise is monotonicity.

``observe`` folds in a stamp seen from a peer, so this node's next write is
ordered after every write it has seen: a delete issued here after reading a
remote registration always beats that registration, whatever the two wall
clocks say (this is the causality half of "last writer wins").

Rules: this module never reads the time. The caller passes wall-clock seconds
in, which is what lets the simulator and the tests drive it deterministically.
It imports nothing from the package.

What can go wrong: a peer whose clock is far in the future drags every clock
that observes its stamps forward with it (stamps stay correct and monotonic,
but ``stamp_wall`` then overstates the time of later writes and tombstones
expire late). Bounding accepted drift is the caller's policy, not this
module's.
"""

from __future__ import annotations

import math

LOGICAL_BITS = 16
"""Width of the logical counter in the low bits of a stamp."""

LOGICAL_MASK = (1 << LOGICAL_BITS) - 1


def _wall_ms(wall: float) -> int:
    """Wall-clock seconds to whole milliseconds.

    Rounded to nearest rather than floored so that ``make_stamp(stamp_wall(s))``
    gives back ``s`` exactly: ``ms / 1000 * 1000`` can land a hair below ``ms``
    in binary floating point, and flooring would lose a millisecond. Rounding
    is monotonic, so stamps still follow the wall clock's order.

    Raises:
        ValueError: ``wall`` is negative, NaN or infinite (a caller bug).
    """
    if not math.isfinite(wall) or wall < 0:
        raise ValueError(f"wall time must be a finite, non-negative number of seconds: {wall!r}")
    return round(wall * 1000)


def make_stamp(wall: float, logical: int = 0) -> int:
    """Build the stamp for wall-clock time ``wall`` (seconds) and counter ``logical``.

    Args:
        wall: wall-clock seconds since the epoch; kept to millisecond precision.
        logical: the low 16-bit counter, 0..65535.

    Returns:
        ``(wall_ms << 16) | logical``.

    Raises:
        ValueError: negative or non-finite ``wall``, or ``logical`` outside 16 bits.
    """
    if not 0 <= logical <= LOGICAL_MASK:
        raise ValueError(f"logical counter must fit in {LOGICAL_BITS} bits: {logical!r}")
    return (_wall_ms(wall) << LOGICAL_BITS) | logical


def stamp_wall(stamp: int) -> float:
    """The physical part of ``stamp`` as wall-clock seconds (the logical part dropped).

    Raises:
        ValueError: ``stamp`` is negative.
    """
    if stamp < 0:
        raise ValueError(f"stamp must be non-negative: {stamp!r}")
    return (stamp >> LOGICAL_BITS) / 1000


class HybridClock:
    """One node's hybrid logical clock.

    ``last`` is the highest stamp issued or observed. Persisting it and passing
    it back to ``__init__`` after a restart keeps stamps increasing even if the
    wall clock came back earlier than it was before; without that, a restarted
    node could reissue a stamp it already used (``Entry`` still orders such a
    pair, but arbitrarily by content rather than by which write came later).
    """

    __slots__ = ("last",)

    def __init__(self, last: int = 0) -> None:
        if last < 0:
            raise ValueError(f"stamp must be non-negative: {last!r}")
        self.last: int = last

    def tick(self, wall: float) -> int:
        """Issue a stamp for a local write at wall-clock time ``wall`` (seconds).

        Returns:
            A stamp strictly greater than every stamp issued or observed so far,
            equal to ``make_stamp(wall)`` whenever the wall clock is ahead of them.

        Raises:
            ValueError: negative or non-finite ``wall``.
        """
        stamp = max(_wall_ms(wall) << LOGICAL_BITS, self.last + 1)
        self.last = stamp
        return stamp

    def observe(self, stamp: int) -> None:
        """Record a stamp seen from a peer, so that later ticks are ordered after it.

        Raises:
            ValueError: ``stamp`` is negative.
        """
        if stamp < 0:
            raise ValueError(f"stamp must be non-negative: {stamp!r}")
        if stamp > self.last:
            self.last = stamp

    def __repr__(self) -> str:
        return f"HybridClock(last={self.last!r})"
