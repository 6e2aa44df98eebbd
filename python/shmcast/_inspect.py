"""What ``shmcast.inspect``, ``Producer.snapshot`` and ``Consumer.lag`` return: frozen
dataclasses (compare, print, ``dataclasses.asdict`` them) and string enums (which compare
equal to their values, ``ProducerState.LIVE == "live"``, and serialize as such to JSON)."""

import dataclasses
import enum
from typing import Any, Optional


class ProducerState(str, enum.Enum):
    """Whether a segment has a producer."""

    LIVE = "live"
    """A producer holds the segment's producer lock: it is alive."""
    CLOSED = "closed"
    """The producer closed the stream."""
    DIED = "died"
    """The producer died without closing the stream: a new one may take over
    (``Producer.open_or_create``)."""
    NONE = "none"
    """No producer ever attached (the segment is being created, or its creator died
    first)."""
    UNKNOWN = "unknown"
    """A state this version of the bindings does not know (a newer core)."""

    def __str__(self) -> str:
        return self.value


class SlotKind(str, enum.Enum):
    """How a consumer slot is used."""

    LOSSLESS = "lossless"
    """A lossless consumer reading in place: it gates the producer."""
    LOSSLESS_COPYING = "lossless-copying"
    """A lossless consumer that copies each message out (its producer evicts stuck
    consumers): it gates the producer until evicted."""
    LOSSY = "lossy"
    """A lossy consumer: it never gates the producer."""
    EVICTED = "evicted"
    """The producer evicted this consumer (dead, stuck, or an impossible cursor)."""
    UNKNOWN = "unknown"
    """A value no consumer writes (the slot table is corrupt; ``SlotInfo.raw_kind`` has
    it), or a kind this version of the bindings does not know."""

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass(frozen=True)
class ProducerInfo:
    """The producer's side of a ``Snapshot``."""

    state: ProducerState
    """Live, closed, died, or never attached."""
    pid: int
    """Process id of the last producer that attached (informational: liveness is
    ``state``, from a lock probe)."""
    tail: int
    """End of the committed stream (a stream position in bytes)."""
    next_seq: int
    """Sequence number of the next message."""
    claim: int
    """Upper bound of every position the producer may have written."""
    epoch: int
    """How many producers have attached (creation and takeovers)."""
    evicting: bool
    """Does the producer evict live consumers that gate it too long (``evict_after``)?"""


@dataclasses.dataclass(frozen=True)
class SlotInfo:
    """One consumer slot in use."""

    index: int
    """Slot index."""
    kind: SlotKind
    """How it is used."""
    pid: int
    """Process id of its owner (informational)."""
    alive: bool
    """Does a live process hold the slot's liveness lock? A dead owner's slot is reclaimed
    by the producer when it needs the space."""
    cursor: int
    """The position the consumer has released up to (lossless consumers publish it every
    eighth of the ring and whenever they run dry; lossy ones as often)."""
    lag_bytes: int
    """Bytes between ``cursor`` and the producer's tail."""
    lag_messages: Optional[int]
    """Messages between ``cursor`` and the tail, or ``None`` if the record at ``cursor`` is
    no longer in the ring (a lapped lossy consumer)."""
    gating: bool
    """Is this the consumer that holds the producer back: lossless, the slowest, and so far
    behind that the largest message no longer fits ahead of the tail?"""
    raw_kind: Optional[int] = None
    """With ``SlotKind.UNKNOWN`` from a corrupt slot table: the value found there."""


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What a segment looks like at one moment: read from shared memory that peers write
    concurrently, so a set of loads, not an atomic picture; values a peer could have
    corrupted are reported as found."""

    capacity: int
    """Ring capacity in bytes."""
    max_message: int
    """Largest message in bytes."""
    max_consumers: int
    """Size of the consumer slot table."""
    segment_size: int
    """Size of the whole segment in bytes."""
    owner_uid: Optional[int]
    """The owner's user id, for a mapped segment (consumers need read and write access)."""
    mode: Optional[int]
    """The permission bits of a named or path-backed segment."""
    producer: ProducerInfo
    """The producer."""
    consumers: tuple[SlotInfo, ...]
    """Every slot in use, by index."""

    @property
    def gating(self) -> Optional[SlotInfo]:
        """The consumer that holds the producer back, if one does."""
        return next((c for c in self.consumers if c.gating), None)

    def to_dict(self) -> dict[str, Any]:
        """The snapshot as plain dicts, lists and values (enums as their strings): ready for
        ``json.dumps``."""
        d = dataclasses.asdict(self)
        d["producer"]["state"] = self.producer.state.value
        d["consumers"] = [dict(c, kind=c["kind"].value) for c in d["consumers"]]
        return d


@dataclasses.dataclass(frozen=True)
class Lag:
    """How far a consumer is behind the producer (``Consumer.lag``)."""

    bytes: int
    """Bytes of the ring between the consumer's position and the producer's tail."""
    messages: Optional[int]
    """Messages between them, or ``None`` if the record at the consumer's position is no
    longer in the ring (a lapped lossy consumer: it learns the loss on its next receive)."""


__all__ = ["Snapshot", "ProducerInfo", "SlotInfo", "ProducerState", "SlotKind", "Lag"]
