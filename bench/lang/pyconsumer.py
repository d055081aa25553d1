"""The Python consumers of `bench lang`. Each prints READY once it can
receive, then RESULT {"events_per_s": ..., "mb_per_s": ...} timed from
event WARM to the last, as the Go consumer of the same run is.

  pyconsumer.py shm ROOT SHM TOPIC N WARM ACK       for ev in consumer (zero-copy views)
  pyconsumer.py frames ROOT SHM TOPIC N WARM ACK    the same, each event's data into numpy
  pyconsumer.py batches ROOT SHM TOPIC N WARM ACK   for b in consumer.batches(), its buffers (no Event per event)
  pyconsumer.py socket N WARM SIZE                  framed events from a Unix socket on fd 3
Every event's last data byte is read, and every ACKth event acknowledged.
"""

import json
import socket
import struct
import sys
import time


def result(n, secs, nbytes):
    print("RESULT " + json.dumps({"n": n, "seconds": secs, "events_per_s": n / secs, "mb_per_s": nbytes / secs / 1e6}), flush=True)


def ready_consumer(root, shm_path, topic):
    """A zero-copy consumer of the topic, once it can receive (READY said)."""
    from diaspora_shm.api import Driver, FullDataSelector

    d = Driver(backend="shm", options={"root_path": root, "shm_path": shm_path})
    c = d.open_topic(topic).consumer("py-bench", data_selector=FullDataSelector)
    print("READY", flush=True)
    return c


def shm(root, shm_path, topic, n, warm, ack_every, frames=False):
    if frames:
        import numpy
    c = ready_consumer(root, shm_path, topic)
    total, k, s, nbytes, start = n + warm, 0, 0, 0, 0.0
    for ev in c:
        if k == warm:
            start = time.perf_counter()
        data = ev.data[0]
        if frames:
            a = numpy.frombuffer(data, dtype=numpy.uint8)
            s += int(a[-1])
        else:
            s += data[-1]
        if k >= warm:
            nbytes += len(data)
        k += 1
        if k % ack_every == 0 or k == total:
            ev.acknowledge()
        if k == total:
            break
    result(n, time.perf_counter() - start, nbytes)


def batches(root, shm_path, topic, n, warm, ack_every):
    c = ready_consumer(root, shm_path, topic)
    total, k, s, nbytes, start = n + warm, 0, 0, 0, 0.0
    for b in c.batches(max_events=min(256, total)):
        for data in b.buffers:
            if k == warm:
                start = time.perf_counter()
            s += data[-1]
            if k >= warm:
                nbytes += len(data)
            k += 1
            if k == total:
                break
        if k // ack_every != (k - len(b)) // ack_every or k == total:
            b.acknowledge()  # every event of the batch, the ACKth among them
        if k == total:
            break
    result(n, time.perf_counter() - start, nbytes)


def sock(n, warm, size):
    conn = socket.socket(fileno=3)
    print("READY", flush=True)
    total, k, s, nbytes, start = n + warm, 0, 0, 0, 0.0
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    have, pos = 0, 0
    unpack = struct.Struct("<I").unpack_from
    while k < total:
        if have - pos < 4 or have - pos < 4 + unpack(buf, pos)[0]:
            # Move the partial frame to the front and read more.
            rest = have - pos
            buf[:rest] = buf[pos:have]
            pos, have = 0, rest
            got = conn.recv_into(view[have:])
            if got == 0:
                sys.exit(f"socket closed after {k} events")
            have += got
            continue
        (ln,) = unpack(buf, pos)
        data = view[pos + 4:pos + 4 + ln]
        pos += 4 + ln
        if k == warm:
            start = time.perf_counter()
        s += data[-1]
        if k >= warm:
            nbytes += len(data)
        k += 1
    result(n, time.perf_counter() - start, nbytes)


if __name__ == "__main__":
    cmd, a = sys.argv[1], sys.argv[2:]
    if cmd in ("shm", "frames"):
        shm(a[0], a[1], a[2], int(a[3]), int(a[4]), int(a[5]), frames=cmd == "frames")
    elif cmd == "batches":
        batches(a[0], a[1], a[2], int(a[3]), int(a[4]), int(a[5]))
    elif cmd == "socket":
        sock(int(a[0]), int(a[1]), int(a[2]))
    else:
        sys.exit(f"unknown command {cmd}")
