"""ctypes bindings of libdiaspora_shm (see diaspora_shm.h), and the
exception every failure raises."""

import ctypes
import os
import sys

__all__ = ["lib", "Exception", "check", "TIMEOUT", "ERANGE", "ESTOP", "NO_MORE_EVENTS"]

_builtin_exception = Exception


class Exception(RuntimeError):  # noqa: A001 - the upstream name
    """An error of the library; the message names what was wrong. ``code``
    is the DSHM_E* status of the failed call."""

    def __init__(self, message, code=-1):
        super().__init__(message)
        self.code = code


OK = 0
EINVAL = -2
EHANDLE = -3
TIMEOUT = -4
ECLOSED = -5
ERANGE = -11
EFORK = -12
ESTOP = -13
NO_MORE_EVENTS = 2**64 - 1
ANY_PARTITION = -1


def _find_library():
    env = os.environ.get("DIASPORA_SHM_LIB")
    if env:
        return env
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libdiaspora_shm.so")
    if os.path.exists(here):
        return here
    return "libdiaspora_shm.so"  # the dynamic linker's search path


def _load():
    path = _find_library()
    try:
        return ctypes.CDLL(path)
    except OSError as e:
        raise ImportError(
            f"diaspora_shm: cannot load {path}: {e}; build it with `make python` "
            "(or set DIASPORA_SHM_LIB to the library's path)"
        ) from None


lib = _load()

u64 = ctypes.c_uint64
i64 = ctypes.c_int64
size_t = ctypes.c_size_t
c_int = ctypes.c_int
vp = ctypes.c_void_p
cp = ctypes.c_char_p
P = ctypes.POINTER


class Segment(ctypes.Structure):
    _fields_ = [("data", vp), ("size", size_t)]


class Buffer(ctypes.Structure):
    _fields_ = [("data", vp), ("size", size_t)]


class Range(ctypes.Structure):
    _fields_ = [("offset", size_t), ("size", size_t)]


class EventInfo(ctypes.Structure):
    _fields_ = [
        ("id", u64),
        ("partition", size_t),
        ("metadata", vp),
        ("metadata_size", size_t),
        ("partition_info", cp),
        ("data_size", size_t),
        ("num_segments", size_t),
        ("first_data", vp),
        ("first_size", size_t),
    ]


INFO_WORDS = ctypes.sizeof(EventInfo) // 8  # every field is 8 bytes wide


SELECTOR = ctypes.CFUNCTYPE(c_int, vp, vp, size_t, size_t, P(Range), size_t, P(size_t))
ALLOCATOR = ctypes.CFUNCTYPE(c_int, vp, vp, size_t, size_t, P(Buffer), size_t, P(size_t))
PROCESSOR = ctypes.CFUNCTYPE(c_int, vp, u64)

_protos = {
    "dshm_last_error": (cp, []),
    "dshm_version": (cp, []),
    "dshm_driver_open": (c_int, [cp, cp, P(u64)]),
    "dshm_driver_close": (c_int, [u64]),
    "dshm_driver_default_thread_pool": (c_int, [u64, P(u64)]),
    "dshm_driver_make_thread_pool": (c_int, [u64, size_t, P(u64)]),
    "dshm_thread_pool_count": (c_int, [u64, P(size_t)]),
    "dshm_thread_pool_release": (c_int, [u64]),
    "dshm_topic_create": (c_int, [u64, cp, cp, cp, cp, cp]),
    "dshm_topic_exists": (c_int, [u64, cp, P(c_int)]),
    "dshm_topic_list": (c_int, [u64, vp, size_t, P(size_t)]),
    "dshm_topic_open": (c_int, [u64, cp, P(u64)]),
    "dshm_topic_num_partitions": (c_int, [u64, P(size_t)]),
    "dshm_topic_partitions": (c_int, [u64, vp, size_t, P(size_t)]),
    "dshm_topic_plugins": (c_int, [u64, vp, size_t, P(size_t)]),
    "dshm_topic_mark_complete": (c_int, [u64]),
    "dshm_topic_release": (c_int, [u64]),
    "dshm_producer_open": (c_int, [u64, cp, cp, P(u64)]),
    "dshm_producer_push": (c_int, [u64, cp, size_t, P(Segment), size_t, i64, P(u64)]),
    "dshm_producer_flush": (c_int, [u64, i64]),
    "dshm_producer_close": (c_int, [u64]),
    "dshm_future_wait_id": (c_int, [u64, i64, P(u64)]),
    "dshm_future_wait_event": (c_int, [u64, i64, P(u64)]),
    "dshm_future_completed": (c_int, [u64, P(c_int)]),
    "dshm_future_release": (c_int, [u64]),
    "dshm_consumer_open": (c_int, [u64, cp, cp, SELECTOR, ALLOCATOR, vp, P(u64)]),
    "dshm_consumer_pull": (c_int, [u64, i64, P(u64)]),
    "dshm_consumer_pull_async": (c_int, [u64, P(u64)]),
    "dshm_consumer_pull_batch": (c_int, [u64, i64, size_t, P(u64), P(EventInfo), P(size_t)]),
    "dshm_event_release_many": (c_int, [P(u64), size_t]),
    "dshm_batch_pull": (c_int, [u64, i64, size_t, P(u64), P(EventInfo), P(size_t)]),
    "dshm_batch_segments": (c_int, [u64, size_t, P(Segment), size_t, P(size_t)]),
    "dshm_batch_spans": (c_int, [u64, size_t, P(u64), vp, vp]),  # starts, ends: into one array
    "dshm_batch_acknowledge": (c_int, [u64, size_t]),
    "dshm_batch_release": (c_int, [u64]),
    "dshm_consumer_process": (c_int, [u64, PROCESSOR, vp, i64, u64, u64]),
    "dshm_consumer_close": (c_int, [u64]),
    "dshm_event_get_info": (c_int, [u64, P(EventInfo)]),
    "dshm_event_segments": (c_int, [u64, P(Segment), size_t, P(size_t)]),
    "dshm_event_acknowledge": (c_int, [u64]),
    "dshm_event_release": (c_int, [u64]),
}
for _name, (_res, _args) in _protos.items():
    _f = getattr(lib, _name)
    _f.restype, _f.argtypes = _res, _args


def last_error():
    return lib.dshm_last_error().decode("utf-8", "replace")


def check(rc, what=None):
    """Raises the calling thread's last error unless rc is DSHM_OK."""
    if rc != OK:
        msg = last_error()
        if what:
            msg = f"{what}: {msg}"
        raise Exception(msg, rc)


def read_text(fn, handle, what):
    """Calls a (handle, buf, cap, *len) text getter with room enough."""
    n = size_t(0)
    cap = 4096
    while True:
        buf = ctypes.create_string_buffer(cap)
        rc = fn(handle, buf, cap, ctypes.byref(n))
        if rc == ERANGE and n.value + 1 > cap:
            cap = n.value + 1
            continue
        check(rc, what)
        return buf.raw[: n.value].decode("utf-8")


# Py_buffer, to view any buffer-protocol object (bytes included) in place.
class Py_buffer(ctypes.Structure):
    _fields_ = [
        ("buf", vp),
        ("obj", vp),  # a reference PyBuffer_Release drops
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", c_int),
        ("ndim", c_int),
        ("format", cp),
        ("shape", P(ctypes.c_ssize_t)),
        ("strides", P(ctypes.c_ssize_t)),
        ("suboffsets", P(ctypes.c_ssize_t)),
        ("internal", vp),
    ]


PyBUF_WRITABLE = 0x0001
PyBUF_ANY_CONTIGUOUS = 0x0080 | 0x0018  # with PyBUF_STRIDES
_get_buffer = ctypes.pythonapi.PyObject_GetBuffer
_get_buffer.argtypes = [ctypes.py_object, P(Py_buffer), c_int]
_get_buffer.restype = c_int
_release_buffer = ctypes.pythonapi.PyBuffer_Release
_release_buffer.argtypes = [P(Py_buffer)]
_release_buffer.restype = None


class HeldBuffer:
    """A contiguous buffer of any object, held until release()."""

    __slots__ = ("view", "held")

    def __init__(self, obj, writable=False, what="buffer"):
        self.view = Py_buffer()
        self.held = False
        flags = PyBUF_ANY_CONTIGUOUS | (PyBUF_WRITABLE if writable else 0)
        try:
            _get_buffer(obj, ctypes.byref(self.view), flags)
        except TypeError:
            raise Exception(f"diaspora_shm: {what} of type {type(obj).__name__} does not support the buffer protocol", EINVAL) from None
        except BufferError as e:
            kind = "writable and contiguous" if writable else "contiguous"
            raise Exception(f"diaspora_shm: {what} of type {type(obj).__name__} is not {kind}: {e}", EINVAL) from None
        self.held = True

    @property
    def address(self):
        return self.view.buf or 0

    @property
    def size(self):
        return self.view.len

    def release(self):
        if self.held:
            self.held = False
            _release_buffer(ctypes.byref(self.view))

    def __del__(self):
        if sys.is_finalizing():
            return
        self.release()
