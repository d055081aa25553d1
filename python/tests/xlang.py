"""The Python side of the cross-language tests (run by capi_test.go).

  xlang.py produce ROOT SHM TOPIC N       push N events (pattern below)
  xlang.py consume ROOT SHM TOPIC N       read them zero-copy, check every byte and ID
  xlang.py frames ROOT SHM TOPIC N W H    read N float32 frames of examples/c/simulation.c
                                          zero-copy (into numpy when it is there)

Event i: metadata {"i": i}, ID i, (i % 5) * 1000 + 3 bytes of data, byte k
being (i * 31 + k * 7) & 0xff. Each command prints "ok N" when all is well.
"""

import os
import struct
import sys

from diaspora_shm.api import Driver, FullDataSelector

try:
    import numpy
except ImportError:
    numpy = None
if os.environ.get("XLANG_NO_NUMPY"):
    numpy = None  # the memoryview path, as where numpy is missing


def pattern(i):
    return bytes((i * 31 + k * 7) & 0xFF for k in range((i % 5) * 1000 + 3))


def driver(root, shm):
    return Driver(backend="shm", options={"root_path": root, "shm_path": shm})


def produce(root, shm, topic, n):
    t = driver(root, shm).open_topic(topic)
    p = t.producer("python")
    futures = [p.push({"i": i}, bytearray(pattern(i)) if i % 2 else pattern(i)) for i in range(n)]
    assert p.flush().wait(timeout_ms=60000), "flush timed out"
    ids = [f.wait(timeout_ms=60000) for f in futures]
    assert ids == list(range(n)), f"IDs {ids[:10]}..."
    print(f"ok {n}")


def consume(root, shm, topic, n):
    t = driver(root, shm).open_topic(topic)
    c = t.consumer("python", data_selector=FullDataSelector)
    for i in range(n):
        e = c.pull().wait(timeout_ms=60000)
        assert e is not None, f"no event {i} within 60 s"
        assert e.event_id == i, f"event {i} has ID {e.event_id}"
        assert e.metadata == {"i": i}, f"event {i}: metadata {e.metadata}"
        got = b"".join(bytes(v) for v in e.data)
        assert got == pattern(i), f"event {i}: {len(got)} bytes differ"
        e.acknowledge()
    print(f"ok {n}")


def shm_ranges(shm):
    """Address ranges of this process's mappings of files under shm."""
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[5].startswith(os.path.realpath(shm)):
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                out.append((lo, hi))
    return out


def frames(root, shm, topic, n, w, h):
    t = driver(root, shm).open_topic(topic)
    c = t.consumer("python-frames", data_selector=FullDataSelector)
    print("ready", flush=True)  # attached: the ring keeps every frame for us
    pixels = w * h
    for i in range(n):
        e = c.pull().wait(timeout_ms=120000)
        assert e is not None and e.event_id == i, f"frame {i}: {e}"
        assert e.metadata == {"frame": i, "width": w, "height": h}, e.metadata
        assert len(e.data) == 1 and len(e.data[0]) == pixels * 4, [len(v) for v in e.data]
        view = e.data[0]
        if numpy is not None:
            a = numpy.frombuffer(view, dtype=numpy.float32).reshape(h, w)
            addr = a.__array_interface__["data"][0]
            assert any(lo <= addr < hi for lo, hi in shm_ranges(shm)), "the frame is not in the shared memory"
            want = ((i * 131 + numpy.arange(pixels)) % 4093).astype(numpy.float32).reshape(h, w)
            assert numpy.array_equal(a, want), f"frame {i} differs"
        else:
            for k in range(0, pixels, 4099):
                (v,) = struct.unpack_from("<f", view, k * 4)
                assert v == float((i * 131 + k) % 4093), f"frame {i} pixel {k} is {v}"
        e.acknowledge()
    print(f"ok {n}" + ("" if numpy is not None else " (memoryview: numpy is missing)"))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "produce":
        produce(args[0], args[1], args[2], int(args[3]))
    elif cmd == "consume":
        consume(args[0], args[1], args[2], int(args[3]))
    elif cmd == "frames":
        frames(args[0], args[1], args[2], int(args[3]), int(args[4]), int(args[5]))
    else:
        sys.exit(f"unknown command {cmd}")
