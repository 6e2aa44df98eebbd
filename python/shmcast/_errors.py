"""The exceptions shmcast raises. Each message comes from the core library and says what
to do next; the classes also derive from the closest built-in exception, so
``except FileNotFoundError`` or ``except TimeoutError`` work as expected."""


class ShmcastError(Exception):
    """Base class of every shmcast error."""


class Disconnected(ShmcastError):
    """The producer closed the stream and every message was received."""


class ProducerDied(ShmcastError):
    """The producer died without closing the stream; every committed message was received.
    A new producer may take the segment over (``Producer.open_or_create``); a consumer that
    keeps receiving goes on with its messages, without a gap or a duplicate."""


class Evicted(ShmcastError):
    """The producer evicted this consumer (presumed dead or stalled); open a new one."""


class Lagged(ShmcastError):
    """A lossy consumer fell behind: the producer overwrote ``lost`` messages before they
    were read. The next receive goes on at the oldest message still in the ring."""

    def __init__(self, message: str, lost: int) -> None:
        super().__init__(message)
        self.lost = lost


class Corrupt(ShmcastError):
    """A record in the ring is corrupt (a peer wrote into the segment outside the
    protocol)."""


class Timeout(ShmcastError, TimeoutError):
    """The deadline passed: nothing was sent or received. From
    ``Producer.wait_for_consumers``, ``attached`` is how many consumers were attached then."""


class MessageTooLarge(ShmcastError, ValueError):
    """The message exceeds the segment's maximum message size; nothing was sent."""


class InvalidName(ShmcastError, ValueError):
    """The segment name is not 1 to 200 bytes of ``[A-Za-z0-9._-]`` not starting with ``.``."""


class InvalidConfig(ShmcastError, ValueError):
    """Capacity, maximum message size or consumer count is not acceptable."""


class AlreadyExists(ShmcastError, FileExistsError):
    """A segment with this name or path exists already (``shmcast.remove`` a stale one)."""


class NotFound(ShmcastError, FileNotFoundError):
    """No segment with this name or path exists: start the producer first."""


class ForeignOwner(ShmcastError, PermissionError):
    """The segment belongs to another user (pass ``allow_foreign_owner=True`` if intended)."""


class BadSegment(ShmcastError):
    """The segment failed validation: not a shmcast segment, another layout version,
    truncated, or a corrupt header (``force_remove`` removes such leftovers)."""


class NoFreeSlot(ShmcastError):
    """Every consumer slot of the segment is taken by a live consumer."""


class ProducerAlive(ShmcastError):
    """``Producer.open``, ``Producer.open_or_create``, ``remove``: the segment's producer is
    still alive."""


class OptionMismatch(ShmcastError, ValueError):
    """Taking a segment over (``Producer.open``, ``Producer.open_or_create``): a geometry
    option given (``option``, one of ``"capacity"``, ``"max_message"``, ``"max_consumers"``,
    ``"mode"``) differs from what the segment was created with: ``requested`` is what was
    asked for, ``found`` what the segment has. Leave the option out (``None``) to accept
    the segment's, or remove the segment to create it anew."""

    def __init__(self, message: str, option: str, requested: int, found: int) -> None:
        super().__init__(message)
        self.option = option
        self.requested = requested
        self.found = found


class AttachRace(ShmcastError):
    """The producer kept lapping the start position while the consumer attached; retry."""


class MessageHeld(ShmcastError, BufferError):
    """A message or reservation is still exported (a ``memoryview``, or an object made from
    one such as a NumPy array, is alive): release it before receiving, sending or closing."""


class Exhausted(ShmcastError):
    """The stream reached the largest position a segment supports (2^62 bytes over its
    lifetime): create a new segment."""


class Forked(ShmcastError):
    """The handle was inherited by a process forked from its owner: it belongs to the parent.
    Open a new one in this process."""


class ShmcastOSError(ShmcastError, OSError):
    """The operating system refused (the message names the call and the OS error)."""


__all__ = [
    "ShmcastError",
    "Disconnected",
    "ProducerDied",
    "Evicted",
    "Lagged",
    "Corrupt",
    "Forked",
    "Exhausted",
    "Timeout",
    "MessageTooLarge",
    "InvalidName",
    "InvalidConfig",
    "AlreadyExists",
    "NotFound",
    "ForeignOwner",
    "BadSegment",
    "NoFreeSlot",
    "ProducerAlive",
    "OptionMismatch",
    "AttachRace",
    "MessageHeld",
    "ShmcastOSError",
]
