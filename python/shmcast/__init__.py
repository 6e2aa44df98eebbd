"""shmcast: lock-free broadcast messaging through shared memory (Linux).

One ``Producer`` writes variable-length messages into a ring in a shared-memory segment;
any number of ``Consumer`` objects, in any process, read every message in order. See the
package README for the guarantees; in short::

    import shmcast

    with shmcast.Producer("ticks", capacity=1 << 20) as p:   # /dev/shm/ticks
        p.send(b"hello")
        with p.reserve(8) as buf:                            # zero-copy write
            buf[:] = (42).to_bytes(8, "little")

    # in another process:
    with shmcast.Consumer("ticks") as c:
        with c.recv(timeout=1.0) as view:                    # zero-copy read, in place
            print(view.obj.seq, bytes(view))
        for message in c:                                    # bytes, until the producer closes
            ...

A lossless consumer's view points into the shared ring and keeps that space from the
producer until it is released (``view.release()``, or leaving the ``with`` block); the
consumer receives nothing else meanwhile (``MessageHeld``). ``recv_bytes`` copies.

A blocking receive that spins polls the next message's stamp alone and takes the message
straight from that loop (``tight_spin``, on by default): the lowest round trip.
``shmcast.Consumer("ticks", tight_spin=False)`` opts out, running the full poll on every
spin; it changes nothing with ``wait="sleep"`` or for a lossy consumer.

A producer service that survives restarts (its consumers too)::

    p = shmcast.Producer.open_or_create("ticks", capacity=1 << 20, remove_on_close=False)
    p.took_over, p.next_seq        # (False, 0) the first time; after a crash (True, n)
    p.wait_for_consumers(1, timeout=5.0)

    snapshot = shmcast.inspect("ticks")    # from anywhere, without attaching
    snapshot.producer.state                # ProducerState.LIVE
    [(c.pid, c.alive, c.lag_messages) for c in snapshot.consumers]
"""

from ._errors import (
    AlreadyExists,
    AttachRace,
    BadSegment,
    Corrupt,
    Forked,
    Exhausted,
    Disconnected,
    Evicted,
    ForeignOwner,
    InvalidConfig,
    InvalidName,
    Lagged,
    MessageHeld,
    MessageTooLarge,
    NoFreeSlot,
    NotFound,
    OptionMismatch,
    ProducerAlive,
    ProducerDied,
    ShmcastError,
    ShmcastOSError,
    Timeout,
)
from ._inspect import Lag, ProducerInfo, ProducerState, SlotInfo, SlotKind, Snapshot
from ._native import (
    MAX_NAME_LEN,
    Consumer,
    Message,
    Producer,
    Reservation,
    force_remove,
    inspect,
    remove,
    remove_path,
)

__all__ = [
    "Producer",
    "Reservation",
    "Consumer",
    "Message",
    "inspect",
    "Snapshot",
    "ProducerInfo",
    "ProducerState",
    "SlotInfo",
    "SlotKind",
    "Lag",
    "remove",
    "remove_path",
    "force_remove",
    "MAX_NAME_LEN",
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
