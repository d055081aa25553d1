"""analysis.py: a Python analysis of the frames examples/c/simulation.c
produces: each frame is read in place from the shared memory (numpy over
it copies nothing; without numpy, a memoryview), its mean printed, then
acknowledged so that the ring can take the next frames.

    PYTHONPATH=python python3 examples/python/analysis.py ROOT SHM TOPIC
"""

import struct
import sys

from diaspora_shm.api import Driver, FullDataSelector

try:
    import numpy
except ImportError:
    numpy = None

root, shm, topic_name = sys.argv[1:4]
driver = Driver(backend="shm", options={"root_path": root, "shm_path": shm})
topic = driver.open_topic(topic_name)
consumer = topic.consumer("analysis", data_selector=FullDataSelector)

frames = 0
for event in consumer:  # until the simulation marks the stream complete
    md = event.metadata
    pixels = event.data[0]  # a read-only view of the ring itself
    if numpy is not None:
        image = numpy.frombuffer(pixels, dtype=numpy.float32).reshape(md["height"], md["width"])
        mean = float(image.mean(dtype=numpy.float64))
    else:
        values = struct.unpack_from(f"<{md['width'] * md['height']}f", pixels)
        mean = sum(values) / len(values)
    print(f"frame {md['frame']}: mean {mean:.3f}")
    event.acknowledge()  # the view is not to be used after this
    frames += 1
print(f"analysed {frames} frames")
