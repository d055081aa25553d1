"""diaspora_shm.api: a drop-in for the module ``diaspora_stream.api`` of the
Diaspora Streaming API's Python binding, over the rings of diaspora-shm.

Change ``from diaspora_stream.api import ...`` to
``from diaspora_shm.api import ...`` and open ``Driver(backend="shm",
options={...})``; the rest of the code stays.

Beyond upstream: a consumer with a data selector and no allocator gets
``Event.data`` as read-only memoryviews of the shared memory itself (no
copy; ``numpy.frombuffer`` over them copies nothing either), valid until the
event is acknowledged or the consumer closes. Such a view never points at
unmapped memory: past that it may show other events' bytes (the ring
reuses the space), and after the driver closes it reads zeros.

The library's threads do not survive ``fork``: in a child forked after this
module was imported (``multiprocessing``'s default start method on Linux)
every call raises an Exception saying so. Use
``multiprocessing.set_start_method("spawn")``.
"""

import collections
import ctypes
import enum
import json
import sys
import threading
import weakref

from . import _lib
from ._lib import Exception, lib  # noqa: A004 - the upstream name

__all__ = [
    "AdaptiveBatchSize",
    "ByteArrayAllocator",
    "ClientException",
    "Consumer",
    "DataDescriptor",
    "Driver",
    "Event",
    "EventBatch",
    "Exception",
    "FullDataSelector",
    "InfiniteEvents",
    "Ordering",
    "PartitionSelector",
    "Producer",
    "Serializer",
    "ThreadPool",
    "TopicHandle",
    "Validator",
]

ClientException = Exception

AdaptiveBatchSize = 2**64 - 1
InfiniteEvents = 2**64 - 1
_NO_MORE = _lib.NO_MORE_EVENTS


class Ordering(enum.Enum):
    Strict = 0
    Loose = 1


def _dumps(obj):
    return json.dumps(obj, separators=(",", ":"))


def _json_arg(obj, what):
    if obj is None:
        return None
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj)
    if isinstance(obj, str):
        return obj.encode()
    try:
        return _dumps(obj).encode()
    except (TypeError, ValueError) as e:
        raise Exception(f"diaspora_shm: {what} is not JSON-serializable: {e}", _lib.EINVAL) from None


def _live(obj, what):
    h = getattr(obj, "_h", 0)
    if not h:
        raise Exception(f"diaspora_shm: the {what} is closed", _lib.ECLOSED)
    return h


def _release(fn, h):
    """Releases a handle from a finalizer: quietly, also after fork."""
    if h and not sys.is_finalizing():
        try:
            fn(h)
        except BaseException:  # noqa: BLE001 - a finalizer must not raise
            pass


# ---- plug-in configurations ----


class _Plugin:
    """A plug-in configuration, {"type": name, ...}, kept in the topic."""

    _kind = "plug-in"

    def __init__(self, metadata):
        if not isinstance(metadata, dict):
            raise Exception(f"diaspora_shm: a {self._kind} configuration must be a dict, not {type(metadata).__name__}", _lib.EINVAL)
        self.metadata = dict(metadata)

    @classmethod
    def from_metadata(cls, metadata=None, **kwargs):
        md = dict(metadata or {})
        md.update(kwargs)
        md.setdefault("type", "default")
        return cls(md)

    def __repr__(self):
        return f"{type(self).__name__}({self.metadata!r})"


class Validator(_Plugin):
    _kind = "validator"


class Serializer(_Plugin):
    _kind = "serializer"


class PartitionSelector(_Plugin):
    _kind = "partition selector"


# ---- data descriptors ----


class DataDescriptor:
    """Where an event's data lives and which of its bytes are selected.
    Views are relative to the view they are made from, so they compose."""

    __slots__ = ("_location", "_base", "_segs", "_size")

    def __init__(self, location="", size=0):
        if size < 0:
            raise Exception(f"diaspora_shm: DataDescriptor size {size} is negative", _lib.EINVAL)
        self._location = location
        self._base = size
        self._segs = [(0, size)] if size > 0 else []
        self._size = size

    @property
    def size(self):
        return self._size

    @property
    def location(self):
        return self._location

    def flatten(self):
        """The selected (offset, size) ranges of the base data, in order."""
        return list(self._segs)

    def __repr__(self):
        return f"DataDescriptor(location={self._location!r}, size={self._size}, segments={self._segs})"

    def __eq__(self, other):
        return isinstance(other, DataDescriptor) and (self._location, self._base, self._segs) == (
            other._location, other._base, other._segs)

    def _empty(self):
        d = DataDescriptor(self._location, 0)
        d._base = self._base
        return d

    def _compose(self, ranges):
        out = self._empty()
        i, start = 0, 0
        for off, size in ranges:
            while size > 0:
                while off >= start + self._segs[i][1]:
                    start += self._segs[i][1]
                    i += 1
                p_off, p_size = self._segs[i]
                within = off - start
                n = min(size, p_size - within)
                s = (p_off + within, n)
                out._size += n
                if out._segs and out._segs[-1][0] + out._segs[-1][1] == s[0]:
                    out._segs[-1] = (out._segs[-1][0], out._segs[-1][1] + n)
                else:
                    out._segs.append(s)
                off += n
                size -= n
        return out

    def make_sub_view(self, *, offset, size):
        """size bytes from offset; past the end gives an empty view, a size
        past the end is clipped."""
        if offset < 0 or size < 0:
            raise Exception(f"diaspora_shm: sub-view (offset {offset}, size {size}): negative value", _lib.EINVAL)
        if offset >= self._size or size == 0:
            return self._empty()
        return self._compose([(offset, min(size, self._size - offset))])

    def make_stride_view(self, *, offset, num_blocks, block_size, gap_size):
        """num_blocks blocks of block_size bytes, gap_size apart, from offset;
        a view running past the end is an error."""
        def bad(why):
            return Exception(
                f"diaspora_shm: strided view (offset {offset}, {num_blocks} blocks of {block_size}, "
                f"gap {gap_size}) over {self._size} bytes: {why}", _lib.EINVAL)
        if min(offset, num_blocks, block_size, gap_size) < 0:
            raise bad("negative value")
        if num_blocks == 0 or block_size == 0:
            if offset > self._size:
                raise bad("offset past the end")
            return self._empty()
        if offset + num_blocks * block_size + (num_blocks - 1) * gap_size > self._size:
            raise bad("runs past the end")
        stride = block_size + gap_size
        return self._compose([(offset + i * stride, block_size) for i in range(num_blocks)])

    def make_unstructured_view(self, *, segments):
        """The given (offset, size) segments: increasing, not overlapping,
        within the view; adjacent ones merge."""
        ranges, end = [], 0
        for i, seg in enumerate(segments):
            off, size = seg
            def bad(why):
                return Exception(
                    f"diaspora_shm: unstructured view over {self._size} bytes: segment {i} "
                    f"(offset {off}, size {size}): {why}", _lib.EINVAL)
            if off < 0 or size < 0:
                raise bad("negative value")
            if off < end:
                raise bad("overlaps or comes before the previous segment")
            if off > self._size or size > self._size - off:
                raise bad("runs past the end")
            if size == 0:
                continue
            ranges.append((off, size))
            end = off + size
        if not ranges:
            return self._empty()
        return self._compose(ranges)


def FullDataSelector(metadata, descriptor):
    """Selects all of an event's data."""
    return descriptor


def ByteArrayAllocator(metadata, descriptor):
    """One new bytearray of the selected size."""
    return [bytearray(descriptor.size)]


# ---- thread pools ----


class ThreadPool:
    """A pool of the library's threads (0: work runs in the calling thread)."""

    def __init__(self, handle):
        self._h = handle

    @property
    def thread_count(self):
        n = _lib.size_t()
        _lib.check(lib.dshm_thread_pool_count(_live(self, "thread pool"), ctypes.byref(n)))
        return n.value

    def __del__(self):
        _release(lib.dshm_thread_pool_release, getattr(self, "_h", 0))


# ---- driver ----


class Driver:
    """An open driver: backend "shm" with the options of the Go driver
    (root_path, shm_path)."""

    def __init__(self, *, backend="shm", options=None):
        self._h = 0
        h = _lib.u64()
        _lib.check(lib.dshm_driver_open(str(backend).encode(), _json_arg(options or {}, "options"), ctypes.byref(h)))
        self._h = h.value
        self._default_pool = None

    @staticmethod
    def new(name, metadata=None):
        """The upstream factory: Driver.new("shm", {...})."""
        return Driver(backend=name, options=metadata)

    def close(self):
        h, self._h = self._h, 0
        if h:
            _lib.check(lib.dshm_driver_close(h))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        _release(lib.dshm_driver_close, getattr(self, "_h", 0))

    def create_topic(self, name, *, options=None, validator=None, partition_selector=None, serializer=None):
        def cfg(p, cls):
            if p is None:
                return None
            if isinstance(p, dict):
                p = cls(p)
            if not isinstance(p, cls):
                raise Exception(f"diaspora_shm: create_topic: want a {cls.__name__}, not {type(p).__name__}", _lib.EINVAL)
            return _json_arg(p.metadata, cls.__name__)
        _lib.check(lib.dshm_topic_create(
            _live(self, "driver"), str(name).encode(), _json_arg(options or {}, "options"),
            cfg(validator, Validator), cfg(partition_selector, PartitionSelector), cfg(serializer, Serializer)))

    def open_topic(self, name):
        h = _lib.u64()
        _lib.check(lib.dshm_topic_open(_live(self, "driver"), str(name).encode(), ctypes.byref(h)))
        return TopicHandle(self, h.value, str(name))

    def topic_exists(self, name):
        e = ctypes.c_int()
        _lib.check(lib.dshm_topic_exists(_live(self, "driver"), str(name).encode(), ctypes.byref(e)))
        return bool(e.value)

    def list_topics(self):
        return json.loads(_lib.read_text(lib.dshm_topic_list, _live(self, "driver"), "list_topics"))

    def make_thread_pool(self, count):
        h = _lib.u64()
        _lib.check(lib.dshm_driver_make_thread_pool(_live(self, "driver"), int(count), ctypes.byref(h)))
        return ThreadPool(h.value)

    @property
    def default_thread_pool(self):
        if self._default_pool is None:
            h = _lib.u64()
            _lib.check(lib.dshm_driver_default_thread_pool(_live(self, "driver"), ctypes.byref(h)))
            self._default_pool = ThreadPool(h.value)
        return self._default_pool


# ---- topics ----


class TopicHandle:
    def __init__(self, driver, handle, name):
        self._driver = driver
        self._h = handle
        self._name = name
        self._partitions = None
        self._plugins = None

    def __del__(self):
        _release(lib.dshm_topic_release, getattr(self, "_h", 0))

    @property
    def name(self):
        return self._name

    @property
    def driver(self):
        return self._driver

    @property
    def partitions(self):
        if self._partitions is None:
            self._partitions = json.loads(_lib.read_text(lib.dshm_topic_partitions, _live(self, "topic"), "partitions"))
        return [dict(p) for p in self._partitions]

    def _plugin(self, key, cls):
        if self._plugins is None:
            self._plugins = json.loads(_lib.read_text(lib.dshm_topic_plugins, _live(self, "topic"), "plugins"))
        return cls(self._plugins[key])

    @property
    def validator(self):
        return self._plugin("validator", Validator)

    @property
    def partition_selector(self):
        return self._plugin("partition_selector", PartitionSelector)

    @property
    def serializer(self):
        return self._plugin("serializer", Serializer)

    def mark_as_complete(self):
        _lib.check(lib.dshm_topic_mark_complete(_live(self, "topic")))

    def producer(self, name="", *, batch_size=AdaptiveBatchSize, max_num_batches=2,
                 ordering=Ordering.Strict, thread_pool=None, options=None):
        args = _common_args(batch_size, max_num_batches, thread_pool, options)
        if not isinstance(ordering, Ordering):
            raise Exception(f"diaspora_shm: ordering {ordering!r}: want Ordering.Strict or Ordering.Loose", _lib.EINVAL)
        args["ordering"] = "loose" if ordering is Ordering.Loose else "strict"
        h = _lib.u64()
        _lib.check(lib.dshm_producer_open(_live(self, "topic"), str(name).encode(), _dumps(args).encode(), ctypes.byref(h)))
        return Producer(self, h.value, name, batch_size, max_num_batches, ordering, thread_pool)

    def consumer(self, name, *, data_selector=None, data_allocator=None, batch_size=AdaptiveBatchSize,
                 max_num_batches=2, thread_pool=None, targets=None, options=None):
        return Consumer(self, name, data_selector, data_allocator, batch_size, max_num_batches,
                        thread_pool, targets, options)


def _common_args(batch_size, max_num_batches, thread_pool, options):
    args = {}
    if batch_size == AdaptiveBatchSize or batch_size is None:
        args["batch_size"] = "adaptive"
    elif isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size > 0:
        args["batch_size"] = batch_size
    else:
        raise Exception(f"diaspora_shm: batch_size {batch_size!r}: want a positive int or AdaptiveBatchSize", _lib.EINVAL)
    if not isinstance(max_num_batches, int) or isinstance(max_num_batches, bool) or max_num_batches < 1:
        raise Exception(f"diaspora_shm: max_num_batches {max_num_batches!r}: want a positive int", _lib.EINVAL)
    args["max_num_batches"] = max_num_batches
    if thread_pool is not None:
        if not isinstance(thread_pool, ThreadPool):
            raise Exception(f"diaspora_shm: thread_pool: want a ThreadPool, not {type(thread_pool).__name__}", _lib.EINVAL)
        args["thread_pool"] = _live(thread_pool, "thread pool")
    if options:
        if not isinstance(options, dict):
            raise Exception(f"diaspora_shm: options: want a dict, not {type(options).__name__}", _lib.EINVAL)
        args["options"] = options
    return args


# ---- producers ----


class _Push:
    """One push in flight: its future handle and the buffers it reads."""

    __slots__ = ("h", "bufs", "done", "__weakref__")

    def __init__(self, h, bufs):
        self.h, self.bufs, self.done = h, bufs, False

    def completed(self):
        if self.done:
            return True
        d = ctypes.c_int()
        _lib.check(lib.dshm_future_completed(self.h, ctypes.byref(d)))
        if d.value:
            self.finish()
        return self.done

    def finish(self):
        self.done = True
        for b in self.bufs:
            b.release()
        self.bufs = ()

    def __del__(self):
        _release(lib.dshm_future_release, self.h)


class PushFuture:
    """The future of a push: wait() gives the event ID."""

    __slots__ = ("_push", "_id")

    def __init__(self, push):
        self._push, self._id = push, None

    def wait(self, *, timeout_ms=-1):
        """The event's ID, or None when the push is not done within timeout_ms
        (negative: wait forever)."""
        if self._id is not None:
            return self._id
        v = _lib.u64()
        rc = lib.dshm_future_wait_id(self._push.h, int(timeout_ms), ctypes.byref(v))
        if rc == _lib.TIMEOUT:
            return None
        self._push.finish()
        _lib.check(rc, "push")
        self._id = v.value
        return self._id

    @property
    def completed(self):
        return self._push.completed()


class FlushFuture:
    __slots__ = ("_p", "_done")

    def __init__(self, producer, done):
        self._p, self._done = producer, done

    def wait(self, *, timeout_ms=-1):
        """True once every earlier push is written; False on timeout."""
        if self._done:
            return True
        rc = lib.dshm_producer_flush(_live(self._p, "producer"), int(timeout_ms))
        if rc == _lib.TIMEOUT:
            return False
        _lib.check(rc, "flush")
        self._p._prune()  # only what completed: another thread may have pushed since
        self._done = True
        return True

    @property
    def completed(self):
        return self._done or self.wait(timeout_ms=0)


class Producer:
    def __init__(self, topic, handle, name, batch_size, max_num_batches, ordering, thread_pool):
        self._topic = topic
        self._h = handle
        self._name = name
        self._batch_size = batch_size
        self._max_num_batches = max_num_batches
        self._ordering = ordering
        self._thread_pool = thread_pool
        self._inflight = collections.deque()  # pushes whose buffers are held
        self._lock = threading.RLock()

    name = property(lambda self: self._name)
    topic = property(lambda self: self._topic)
    batch_size = property(lambda self: self._batch_size)
    max_num_batches = property(lambda self: self._max_num_batches)
    ordering = property(lambda self: self._ordering)

    @property
    def thread_pool(self):
        return self._thread_pool if self._thread_pool is not None else self._topic.driver.default_thread_pool

    def push(self, metadata, data=None, *, partition=None):
        """Pushes an event: metadata a dict (or any JSON value) or a JSON
        string; data one buffer-protocol object or a list of them, held
        until the push is done."""
        h = _live(self, "producer")
        md = metadata.encode() if isinstance(metadata, str) else _json_arg(metadata, "metadata")
        if data is None:
            parts = ()
        elif isinstance(data, (list, tuple)):
            parts = data
        else:
            parts = (data,)
        bufs = [_lib.HeldBuffer(p, what=f"data segment {i}") for i, p in enumerate(parts)]
        segs = (_lib.Segment * max(len(bufs), 1))()
        for i, b in enumerate(bufs):
            segs[i].data, segs[i].size = b.address, b.size
        if partition is None:
            part = _lib.ANY_PARTITION
        elif isinstance(partition, int) and not isinstance(partition, bool) and partition >= 0:
            part = partition
        else:
            for b in bufs:
                b.release()
            raise Exception(f"diaspora_shm: partition {partition!r}: want a non-negative int or None", _lib.EINVAL)
        f = _lib.u64()
        rc = lib.dshm_producer_push(h, md, len(md), segs, len(bufs), part, ctypes.byref(f))
        if rc != _lib.OK:
            for b in bufs:
                b.release()
            _lib.check(rc, "push")
        p = _Push(f.value, bufs)
        if bufs:
            with self._lock:
                self._inflight.append(p)
                if len(self._inflight) > 64:
                    self._prune()
        return PushFuture(p)

    def _prune(self, all_done=False):
        """Lets go of the buffers of completed pushes, oldest first."""
        with self._lock:
            q = self._inflight
            while q and (all_done or q[0].completed()):
                q.popleft().finish()

    def flush(self):
        """Writes out every push so far; the future's wait() says when done."""
        rc = lib.dshm_producer_flush(_live(self, "producer"), 0)
        if rc == _lib.TIMEOUT:
            return FlushFuture(self, False)
        _lib.check(rc, "flush")
        self._prune()  # only what completed: another thread may have pushed since
        return FlushFuture(self, True)

    def close(self):
        h, self._h = self._h, 0
        if h:
            try:
                _lib.check(lib.dshm_producer_close(h))
            finally:
                self._prune(all_done=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        # Close first: it waits for the pushes, whose buffers go after. At
        # interpreter exit nothing is closed, so nothing is let go either.
        if sys.is_finalizing():
            return
        _release(lib.dshm_producer_close, getattr(self, "_h", 0))
        for p in getattr(self, "_inflight", ()):
            p.finish()


# ---- consumers ----

# One huge array type: a view of n bytes at an address is a slice of it, so
# no ctypes type is made per size. 2**47 bytes cover the user address space.
_WINDOW = 1 << 47
_Window = ctypes.c_char * _WINDOW


def _window_at(address, owner):
    arr = _Window.from_address(address)
    arr._owner = owner  # keeps the event(s) (and the memory) alive with the views
    return arr


def _view(address, size, owner, readonly):
    mv = memoryview(_window_at(address, owner)).cast("B")[:size]
    return mv.toreadonly() if readonly else mv


class _EventHandle:
    """Owns an event handle; released when the Event and its views are gone."""

    __slots__ = ("h",)

    def __init__(self, h):
        self.h = h

    def __del__(self):
        _release(lib.dshm_event_release, self.h)


class _Batch:
    """Owns the handles of a batch of events; released, with one call, when
    every Event of the batch and every view of their data are gone."""

    __slots__ = ("handles", "n", "__weakref__")

    def __init__(self, handles, n):
        self.handles, self.n = handles, n

    def __del__(self):
        if self.n and not sys.is_finalizing():
            try:
                lib.dshm_event_release_many(self.handles, self.n)
            except BaseException:  # noqa: BLE001 - a finalizer must not raise
                pass


# Words of an event's info (dshm_event_info as 8-byte words).
_ID, _PART, _MDP, _MDL, _PINFO, _DSIZE, _NSEG, _D0, _D0L = range(9)


class Event:
    """An event: metadata (dict), data (list of buffers), event_id (None at
    the end of the stream), partition (dict). Its data stays valid while the
    Event or any view of its data exists (zero-copy views: until the event
    is acknowledged)."""

    # _r: the info words; _b: what owns the handle (a batch or the handle
    # itself); _md, _data, _partition: filled when first asked for.
    __slots__ = ("_r", "_b", "_h", "_c", "_md", "_data", "_partition")

    def __init__(self, consumer, h):
        owner = _EventHandle(h)
        info = _lib.EventInfo()
        _lib.check(lib.dshm_event_get_info(h, ctypes.byref(info)))
        self._r = (ctypes.c_uint64 * _lib.INFO_WORDS).from_address(ctypes.addressof(info))[:]
        self._b, self._h, self._c = owner, h, consumer
        if consumer._allocator is not None:
            self._data = consumer._event_data(self)

    @property
    def event_id(self):
        i = self._r[_ID]
        return None if i == _NO_MORE else i

    @property
    def metadata(self):
        md = getattr(self, "_md", None)
        if md is None:
            r = self._r
            md = self._md = json.loads(ctypes.string_at(r[_MDP], r[_MDL])) if r[_MDL] else {}
        return md

    @property
    def data(self):
        try:
            return self._data
        except AttributeError:  # not made with the batch: made once, here
            d = self._data = self._c._event_data(self)
            return d

    @property
    def partition(self):
        p = getattr(self, "_partition", None)
        if p is None:
            r = self._r
            p = self._partition = json.loads(ctypes.string_at(r[_PINFO])) if r[_PINFO] else {}
        return p

    def acknowledge(self):
        """This event and every earlier one of its partition are done for
        the consumer's name."""
        if self._r[_ID] == _NO_MORE:
            return
        _lib.check(lib.dshm_event_acknowledge(self._h), "acknowledge")

    def __repr__(self):
        r = self._r
        return f"Event(event_id={self.event_id}, metadata={ctypes.string_at(r[_MDP], r[_MDL])!r})"


class _BatchEvent(Event):
    """An Event of a batch pull (a zero-copy consumer's iteration): its info
    words are read in the batch's when asked for, and the batch's handle is
    its handle; its data was made with the batch."""

    # _x: the EventBatch; _i: the event's index in it. data is a slot
    # here, not Event's property: read once an event in the loops this is
    # for, where a property call is a fifth of what an event costs.
    __slots__ = ("_x", "_i", "data")

    @property
    def event_id(self):
        return self._x._w[self._i * _lib.INFO_WORDS + _ID]

    @property
    def metadata(self):
        md = getattr(self, "_md", None)
        if md is None:
            md = self._md = self._x.metadata(self._i)
        return md

    @property
    def partition(self):
        p = getattr(self, "_partition", None)
        if p is None:
            p = self._partition = self._x.partition(self._i)
        return p

    def acknowledge(self):
        """This event and every earlier one of its partition are done for
        the consumer's name."""
        _lib.check(lib.dshm_batch_acknowledge(self._x._o.h, self._i), "acknowledge")

    def __repr__(self):
        j, r = self._i * _lib.INFO_WORDS, self._x._w
        return f"Event(event_id={r[j + _ID]}, metadata={ctypes.string_at(r[j + _MDP], r[j + _MDL])!r})"


class _BatchOwner:
    """Owns a batch handle; released when the EventBatch and every view of
    its data are gone."""

    __slots__ = ("h", "__weakref__")

    def __init__(self, h):
        self.h = h

    def __del__(self):
        _release(lib.dshm_batch_release, self.h)


class EventBatch:
    """The events of one pull, without an Event object each (beyond
    upstream, from Consumer.batches): for small events, where making an
    Event per event is most of what a Python consumer spends. len(batch)
    events; event_ids, data (for each event a list of buffers, as
    Event.data) and buffers (for each event one buffer) are lists in the
    events' order; metadata(i) and partition(i) are dicts, made when asked
    for. Data views keep the batch's memory alive, as an Event's do
    (zero-copy views: until the event is acknowledged)."""

    # _w: the info words of the pull (a memoryview of uint64 over the
    # library's infos array): read where needed, since turning every word
    # into a Python int costs more than the rest of a small event. One of
    # _data and _bufs is made by the pull, the other when asked for.
    __slots__ = ("_o", "_w", "_n", "_data", "_bufs")

    def __len__(self):
        return self._n

    @property
    def data(self):
        """For each event the list of its data's buffers, as Event.data."""
        if self._data is None:
            self._data = [[v] for v in self._bufs]
        return self._data

    @property
    def buffers(self):
        """For each event its data as one buffer: the view (or buffer) of
        its one piece, an empty view when it has none, and the pieces
        joined into one bytes object (a copy) when it has several. The
        cheapest way through a batch of small events: no list per event."""
        if self._bufs is None:
            empty = memoryview(b"")
            self._bufs = [d[0] if len(d) == 1 else b"".join(d) if d else empty for d in self._data]
        return self._bufs

    @property
    def event_ids(self):
        return self._w[_ID:self._n * _lib.INFO_WORDS:_lib.INFO_WORDS].tolist()

    def _index(self, i):
        i = int(i)
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(f"diaspora_shm: event {i} of a batch of {self._n}")
        return i * _lib.INFO_WORDS

    def metadata(self, i):
        """The metadata of event i, as a dict."""
        j, r = self._index(i), self._w
        return json.loads(ctypes.string_at(r[j + _MDP], r[j + _MDL])) if r[j + _MDL] else {}

    def partition(self, i):
        """The information of event i's partition, as a dict."""
        j, r = self._index(i), self._w
        return json.loads(ctypes.string_at(r[j + _PINFO])) if r[j + _PINFO] else {}

    def acknowledge(self, i=None):
        """Acknowledges event i (and every earlier one of its partition);
        without i, every event of the batch."""
        k = 2**64 - 1 if i is None else self._index(i) // _lib.INFO_WORDS
        _lib.check(lib.dshm_batch_acknowledge(self._o.h, k), "acknowledge")

    def _event(self, i):
        """Event i of the batch, as an Event."""
        ev = _BatchEvent.__new__(_BatchEvent)
        ev._x, ev._i, ev.data = self, i, self.data[i]
        return ev

    def __repr__(self):
        return f"EventBatch({self._n} events)"


class _EventListBatch(EventBatch):
    """An EventBatch of Event objects: those an abandoned iteration did not
    hand out, for the next batches()."""

    __slots__ = ("_evs",)

    def __init__(self, evs):
        self._evs, self._n, self._data, self._bufs = evs, len(evs), [e.data for e in evs], None

    @property
    def event_ids(self):
        return [e.event_id for e in self._evs]

    def metadata(self, i):
        return self._evs[self._index(i) // _lib.INFO_WORDS].metadata

    def partition(self, i):
        return self._evs[self._index(i) // _lib.INFO_WORDS].partition

    def acknowledge(self, i=None):
        if i is not None:
            self._evs[self._index(i) // _lib.INFO_WORDS].acknowledge()
            return
        done = set()  # the last event of each partition covers the others
        for e in reversed(self._evs):
            p = e.partition.get("id")
            if p not in done:
                done.add(p)
                e.acknowledge()


class PullFuture:
    __slots__ = ("_c", "_h", "_event")

    def __init__(self, consumer, h):
        self._c, self._h, self._event = consumer, h, None

    def wait(self, *, timeout_ms=-1):
        """The next Event, or None when none came within timeout_ms (the
        future may be waited again)."""
        if self._event is not None:
            return self._event
        ev = _lib.u64()
        rc = lib.dshm_future_wait_event(self._h, int(timeout_ms), ctypes.byref(ev))
        if rc == _lib.TIMEOUT:
            return None
        if rc != _lib.OK:
            self._c._raise_callback_error()  # the pull failed in a callback: its exception
            _lib.check(rc, "pull")
        self._event = Event(self._c, ev.value)
        return self._event

    def completed(self):
        if self._event is not None:
            return True
        d = ctypes.c_int()
        _lib.check(lib.dshm_future_completed(self._h, ctypes.byref(d)))
        return bool(d.value)

    def __del__(self):
        _release(lib.dshm_future_release, getattr(self, "_h", 0))


def _weak_callback(consumer, method):
    """A callback that reaches the consumer without keeping it alive: the
    consumer holds the callback, and a cycle would keep a dropped consumer
    (and its name) open until the garbage collector ran."""
    ref = weakref.ref(consumer)

    def call(*args):
        c = ref()
        return method(c, *args) if c is not None else -1

    return call


class Consumer:
    def __init__(self, topic, name, selector, allocator, batch_size, max_num_batches, thread_pool, targets, options):
        self._h = 0
        self._topic = topic
        self._name = name
        self._selector = selector
        self._allocator = allocator
        self._batch_size = batch_size
        self._max_num_batches = max_num_batches
        self._thread_pool = thread_pool
        self._error = None  # an exception raised in a callback, re-raised by the pull
        self._allocated = {}  # address of an allocation → the allocator's buffers
        self._lock = threading.Lock()
        # Events of a batch that an abandoned iteration did not hand out:
        # the next pull, iteration, batch or process hands them out first.
        self._left = collections.deque()
        args = _common_args(batch_size, max_num_batches, thread_pool, options)
        if targets:  # None or [] is every partition, as upstream
            args["targets"] = [int(t) for t in targets]
        if allocator is not None and selector is None:
            raise Exception("diaspora_shm: a data_allocator needs a data_selector (FullDataSelector for all the data)", _lib.EINVAL)
        sel_cb = _lib.SELECTOR()
        alloc_cb = _lib.ALLOCATOR()
        self._zero_copy = False
        self._copy = selector is None and allocator is None
        if self._copy:
            args["data"] = "copy"  # upstream loads all the data into memory of the event's
        elif selector is FullDataSelector:
            args["data"] = "all"
        elif selector is not None:
            if not callable(selector):
                raise Exception("diaspora_shm: data_selector is not callable", _lib.EINVAL)
            sel_cb = _lib.SELECTOR(_weak_callback(self, Consumer._select))
        if allocator is not None:
            if not callable(allocator):
                raise Exception("diaspora_shm: data_allocator is not callable", _lib.EINVAL)
            alloc_cb = _lib.ALLOCATOR(_weak_callback(self, Consumer._allocate))
        elif selector is not None:
            self._zero_copy = True
        self._callbacks = (sel_cb, alloc_cb)  # alive as long as the consumer
        h = _lib.u64()
        _lib.check(lib.dshm_consumer_open(_live(topic, "topic"), str(name).encode(), _dumps(args).encode(),
                                          sel_cb, alloc_cb, None, ctypes.byref(h)))
        self._h = h.value

    name = property(lambda self: self._name)
    topic = property(lambda self: self._topic)
    batch_size = property(lambda self: self._batch_size)
    max_num_batches = property(lambda self: self._max_num_batches)
    data_selector = property(lambda self: self._selector)
    data_allocator = property(lambda self: self._allocator)

    @property
    def thread_pool(self):
        return self._thread_pool if self._thread_pool is not None else self._topic.driver.default_thread_pool

    # Callbacks from the library; an exception is kept for the pull to raise.

    def _select(self, ctx, md, md_size, size, ranges, cap, n):
        try:
            meta = json.loads(ctypes.string_at(md, md_size)) if md_size else {}
            d = self._selector(meta, DataDescriptor("", size))
            if d is None:
                n[0] = 0
                return _lib.OK
            if not isinstance(d, DataDescriptor):
                raise Exception(f"diaspora_shm: the data selector returned a {type(d).__name__}, not a DataDescriptor or None", _lib.EINVAL)
            segs = d.flatten()
            n[0] = len(segs)
            if len(segs) > cap:
                return _lib.ERANGE
            for i, (off, sz) in enumerate(segs):
                ranges[i].offset, ranges[i].size = off, sz
            return _lib.OK
        except BaseException as e:  # noqa: BLE001 - raised again by the pull
            self._error = e
            return -1

    def _allocate(self, ctx, md, md_size, size, bufs, cap, n):
        try:
            meta = json.loads(ctypes.string_at(md, md_size)) if md_size else {}
            objs = self._allocator(meta, DataDescriptor("", size))
            if not isinstance(objs, (list, tuple)):
                raise Exception(f"diaspora_shm: the data allocator returned a {type(objs).__name__}, not a list of buffers", _lib.EINVAL)
            if len(objs) > cap:
                n[0] = len(objs)
                return _lib.ERANGE
            held = [_lib.HeldBuffer(o, writable=True, what=f"allocator buffer {i}") for i, o in enumerate(objs)]
            for i, b in enumerate(held):
                bufs[i].data, bufs[i].size = b.address, b.size
            n[0] = len(held)
            first = next((b.address for b in held if b.size), None)
            if first is not None:
                with self._lock:
                    self._allocated[first] = (list(objs), held)
            return _lib.OK
        except BaseException as e:  # noqa: BLE001 - raised again by the pull
            self._error = e
            return -1

    def _raise_callback_error(self):
        e, self._error = self._error, None
        if e is not None:
            raise e

    def _event_data(self, ev):
        """The data of an event: the allocator's buffers, or views of the
        library's memory, each keeping the event's memory alive."""
        r, owner = ev._r, ev._b
        nseg, first, first_size = r[_NSEG], r[_D0], r[_D0L]
        if nseg == 0:
            # The default consumer hands out its buffer, empty or not, as upstream.
            return [memoryview(b"")] if self._copy and r[_ID] != _NO_MORE else []
        if self._allocator is not None:
            with self._lock:
                objs, held = self._allocated.pop(first, ([], []))
            for b in held:
                b.release()
            return objs
        if nseg == 1:
            return [_view(first, first_size, owner, readonly=self._zero_copy)]
        segs = (_lib.Segment * nseg)()
        n = _lib.size_t()
        _lib.check(lib.dshm_event_segments(ev._h, segs, nseg, ctypes.byref(n)))
        return [_view(s.data, s.size, owner, readonly=self._zero_copy) for s in segs[: n.value]]

    _BATCH = 256

    def _pull_batch(self, timeout_ms):
        """Events of one library call, or [] on timeout."""
        k = self._BATCH
        handles = (_lib.u64 * k)()
        infos = (_lib.EventInfo * k)()
        n = _lib.size_t()
        rc = lib.dshm_consumer_pull_batch(_live(self, "consumer"), int(timeout_ms), k, handles, infos, ctypes.byref(n))
        if rc == _lib.TIMEOUT:
            return []
        if rc != _lib.OK:
            # The events before a failing callback came in earlier batches
            # (rc OK); this pull is the failing event's turn.
            self._raise_callback_error()
            _lib.check(rc, "pull")
        n = n.value
        batch = _Batch(handles, n)
        w = _lib.INFO_WORDS
        flat = (ctypes.c_uint64 * (w * n)).from_address(ctypes.addressof(infos))[:]
        hs = handles[:n]
        window = None  # a local: kept on the batch it would make a cycle with the views
        if self._allocator is None:
            firsts = [flat[j + _D0] for j in range(0, w * n, w) if flat[j + _D0L]]
            if firsts:
                base = min(firsts)
                win = memoryview(_window_at(base, batch)).cast("B")
                window = base, (win.toreadonly() if self._zero_copy else win)
        out = []
        new = Event.__new__
        if window is not None:
            base, win = window
        for i in range(n):
            ev = new(Event)
            r = flat[i * w:i * w + w]
            ev._r, ev._b, ev._h, ev._c = r, batch, hs[i], self
            if window is not None and r[_NSEG] == 1:
                # The common case inline: one segment, a slice of the window.
                off = r[_D0] - base
                if off + r[_D0L] <= _WINDOW:
                    ev._data = [win[off:off + r[_D0L]]]
            out.append(ev)
        if self._allocator is not None:
            for ev in out:
                ev._data = self._event_data(ev)
        return out

    def _pull_view(self, timeout_ms, k):
        """One library call's events as an EventBatch (None on timeout),
        and whether the stream ended."""
        infos = (_lib.EventInfo * k)()
        bh = _lib.u64()
        n = _lib.size_t()
        rc = lib.dshm_batch_pull(_live(self, "consumer"), int(timeout_ms), k, ctypes.byref(bh), infos, ctypes.byref(n))
        if rc == _lib.TIMEOUT:
            return None, False
        if rc != _lib.OK:
            self._raise_callback_error()
            _lib.check(rc, "pull")
        owner = _BatchOwner(bh.value)
        w, n = _lib.INFO_WORDS, n.value
        flat = memoryview(infos).cast("B").cast("Q")
        ended = flat[(n - 1) * w + _ID] == _NO_MORE
        if ended:
            n -= 1
        b = EventBatch()
        b._o, b._w, b._n, b._data, b._bufs = owner, flat, n, None, None
        if self._allocator is not None:
            data = []
            for j in range(0, n * w, w):
                with self._lock:
                    objs, held = self._allocated.pop(flat[j + _D0], ([], []))
                for h in held:
                    h.release()
                data.append(objs)
        elif n and lib.dshm_batch_spans(owner.h, n, ctypes.byref(base := _lib.u64()),
                                        spans := (ctypes.c_uint64 * (2 * n))(),
                                        ctypes.byref(spans, 8 * n)) == _lib.OK:
            # The common case, one piece each: slices of one window from
            # the lowest of them, at offsets the library worked out (the
            # arithmetic costs Python more per event than the slice).
            win = memoryview(_window_at(base.value, owner)).cast("B")
            if self._zero_copy:
                win = win.toreadonly()
            se = memoryview(spans).cast("B").cast("Q")
            b._bufs = [win[x:y] for x, y in zip(se[:n].tolist(), se[n:].tolist())]
            return b, ended
        else:
            data = []
            for i in range(n):
                j = i * w
                nseg = flat[j + _NSEG]
                if nseg == 0:
                    data.append([memoryview(b"")] if self._copy else [])
                elif nseg == 1:
                    data.append([_view(flat[j + _D0], flat[j + _D0L], owner, readonly=self._zero_copy)])
                else:
                    segs = (_lib.Segment * nseg)()
                    got = _lib.size_t()
                    _lib.check(lib.dshm_batch_segments(owner.h, i, segs, nseg, ctypes.byref(got)))
                    data.append([_view(s.data, s.size, owner, readonly=self._zero_copy) for s in segs[: got.value]])
        b._data = data
        return b, ended

    def batches(self, timeout_ms=-1, max_events=256):
        """EventBatch after EventBatch of up to max_events events, until
        none comes within timeout_ms or the stream ends (beyond upstream:
        no Event per event, for streams of small events)."""
        k = int(max_events)
        if k < 1:
            raise Exception(f"diaspora_shm: batches of {k} events", _lib.EINVAL)
        if self._left:
            _live(self, "consumer")
        while self._left:
            evs = [self._left.popleft() for _ in range(min(k, len(self._left)))]
            yield _EventListBatch(evs)
        while True:
            b, ended = self._pull_view(timeout_ms, k)
            if b is None:
                return
            if len(b):
                yield b
            if ended:
                return

    def events(self, timeout_ms=-1):
        """Events until none comes within timeout_ms or the stream ends,
        taken from the library in batches."""
        left = self._left
        if left:
            _live(self, "consumer")
        while left:
            yield left.popleft()
        if self._zero_copy:
            # Events of batch pulls: no handle per event (their memory is
            # the ring's, released by acknowledgements, not by the events).
            new = _BatchEvent.__new__
            while True:
                b, ended = self._pull_view(timeout_ms, self._BATCH)
                if b is None:
                    return
                i = -1
                try:
                    if b._data is None:
                        for i, v in enumerate(b._bufs):
                            ev = new(_BatchEvent)
                            ev._x, ev._i, ev.data = b, i, [v]
                            yield ev
                    else:
                        for i, d in enumerate(b._data):
                            ev = new(_BatchEvent)
                            ev._x, ev._i, ev.data = b, i, d
                            yield ev
                except GeneratorExit:
                    # The loop was left (break, an exception, the iterator
                    # dropped): the events it did not get are the next's.
                    left.extend(b._event(k) for k in range(i + 1, len(b)))
                    raise
                if ended:
                    return
        while True:
            evs = self._pull_batch(timeout_ms)
            if not evs:
                return
            i = -1
            try:
                for i, ev in enumerate(evs):
                    if ev._r[_ID] == _NO_MORE:
                        return
                    yield ev
            except GeneratorExit:
                left.extend(ev for ev in evs[i + 1:] if ev._r[_ID] != _NO_MORE)
                raise

    def pull(self):
        """Starts taking the next event; the future's wait() gives it."""
        if self._left:
            _live(self, "consumer")
            ready = PullFuture(self, 0)
            ready._event = self._left.popleft()
            return ready
        f = _lib.u64()
        _lib.check(lib.dshm_consumer_pull_async(_live(self, "consumer"), ctypes.byref(f)))
        return PullFuture(self, f.value)

    def __iter__(self):
        return self.events()

    def process(self, processor, *, timeout_ms=-1, max_events=InfiniteEvents, thread_pool=None):
        """Calls processor(event) for each event until timeout_ms passes
        without one, the stream ends, max_events were processed, or the
        processor raises (the exception is raised here)."""
        if not callable(processor):
            raise Exception("diaspora_shm: processor is not callable", _lib.EINVAL)
        errors = []

        def call(ctx, h):
            try:
                processor(Event(self, h))
                return _lib.OK
            except StopIteration:
                return _lib.ESTOP
            except BaseException as e:  # noqa: BLE001 - raised again below
                errors.append(e)
                return -1

        mx = 0 if max_events is None or max_events >= InfiniteEvents else int(max_events)
        while self._left:  # events a left iteration did not hand out come first
            _live(self, "consumer")
            try:
                processor(self._left.popleft())
            except StopIteration:
                return
            if mx:
                mx -= 1
                if mx == 0:
                    return
        cb = _lib.PROCESSOR(call)
        pool = _live(thread_pool, "thread pool") if thread_pool is not None else 0
        rc = lib.dshm_consumer_process(_live(self, "consumer"), cb, None, int(timeout_ms), mx, pool)
        if errors:
            raise errors[0]
        self._raise_callback_error()
        _lib.check(rc, "process")

    def unsubscribe(self):
        self.close()

    def close(self):
        h, self._h = self._h, 0
        if h:
            _lib.check(lib.dshm_consumer_close(h))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        _release(lib.dshm_consumer_close, getattr(self, "_h", 0))
