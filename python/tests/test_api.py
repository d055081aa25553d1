"""Tests of diaspora_shm.api: the upstream names and conventions, the
zero-copy extension, and answers to bad input. Run with pytest or
``python3 -m unittest discover python/tests`` (PYTHONPATH=python, after
``make python`` or with DIASPORA_SHM_LIB set)."""

import array
import gc
import multiprocessing
import os
import shutil
import tempfile
import time
import unittest

from diaspora_shm.api import (
    AdaptiveBatchSize,
    ByteArrayAllocator,
    ClientException,
    Consumer,
    DataDescriptor,
    Driver,
    Event,
    EventBatch,
    Exception,
    FullDataSelector,
    Ordering,
    PartitionSelector,
    Producer,
    Serializer,
    ThreadPool,
    TopicHandle,
    Validator,
)

try:
    import numpy
except ImportError:  # the memoryview path is tested either way
    numpy = None


def _shm_base():
    return "/dev/shm" if os.path.isdir("/dev/shm") else None


class Base(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="dshm-py-root-")
        self.shm = tempfile.mkdtemp(prefix="dshm-py-", dir=_shm_base())
        self.options = {"root_path": self.root, "shm_path": self.shm}
        self.driver = Driver(backend="shm", options=self.options)
        self.name = f"topic_{time.time_ns()}"
        self.driver.create_topic(self.name, options={"ring_size": "4MiB"})
        self.topic = self.driver.open_topic(self.name)

    def tearDown(self):
        self.driver.close()
        gc.collect()
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.shm, ignore_errors=True)

    def produce(self, n, data=lambda i: b"", topic=None):
        p = (topic or self.topic).producer("p")
        ids = [p.push({"index": i, "value": f"event_{i}"}, data(i)).wait() for i in range(n)]
        self.assertTrue(p.flush().wait())
        return ids


class TestDriver(Base):
    def test_exception_is_a_runtime_error(self):
        self.assertIs(ClientException, Exception)
        self.assertTrue(issubclass(Exception, RuntimeError))

    def test_create_open_exists_list(self):
        with self.assertRaises(Exception) as cm:
            self.driver.create_topic(self.name)
        self.assertIn(self.name, str(cm.exception))
        with self.assertRaises(Exception):
            self.driver.open_topic("missing")
        self.assertTrue(self.driver.topic_exists(self.name))
        self.assertFalse(self.driver.topic_exists("missing"))
        self.driver.create_topic("checked", options={"num_partitions": 3},
                                 validator=Validator.from_metadata(type="schema", schema={"type": "object", "required": ["x"]}),
                                 partition_selector=PartitionSelector.from_metadata(type="default"),
                                 serializer=Serializer.from_metadata())
        topics = self.driver.list_topics()
        self.assertIsInstance(topics, dict)
        self.assertEqual(topics["checked"]["num_partitions"], 3)
        self.assertIsInstance(topics["checked"]["validator"], dict)
        t = self.driver.open_topic("checked")
        self.assertEqual(len(t.partitions), 3)
        self.assertEqual(t.validator.metadata["type"], "schema")
        p = t.producer("p")
        with self.assertRaises(Exception):
            p.push({"y": 1}).wait()
        self.assertIsInstance(p.push({"x": 1}).wait(), int)

    def test_new_and_bad_options(self):
        d = Driver.new("shm", self.options)
        self.assertTrue(d.topic_exists(self.name))
        d.close()
        with self.assertRaises(Exception) as cm:
            Driver(backend="shm", options={"no_such_option": 1})
        self.assertIn("no_such_option", str(cm.exception))
        with self.assertRaises(Exception):
            Driver(backend="nosuch")
        with self.assertRaises(Exception):
            Driver(backend="shm", options={"root_path": object()})

    def test_thread_pools(self):
        self.assertIsInstance(self.driver.default_thread_pool, ThreadPool)
        tp = self.driver.make_thread_pool(3)
        self.assertEqual(tp.thread_count, 3)
        c = self.topic.consumer("c", thread_pool=tp)
        self.assertIs(c.thread_pool, tp)

    def test_closed_driver(self):
        self.driver.close()
        with self.assertRaises(Exception):
            self.driver.topic_exists(self.name)
        self.driver.close()  # twice is fine


class TestProducer(Base):
    def test_producer_attributes(self):
        p = self.topic.producer("sim", batch_size=16, max_num_batches=3, ordering=Ordering.Loose)
        self.assertIsInstance(p, Producer)
        self.assertIs(p.topic, self.topic)
        self.assertIsInstance(self.topic, TopicHandle)
        self.assertEqual((p.name, p.batch_size, p.max_num_batches, p.ordering), ("sim", 16, 3, Ordering.Loose))
        self.assertIsNotNone(p.thread_pool)
        self.assertEqual(self.topic.producer().batch_size, AdaptiveBatchSize)

    def test_push_kinds_of_data(self):
        p = self.topic.producer("p")
        a = array.array("i", range(10))
        futures = [
            p.push({"k": "dict"}),
            p.push('{"k": "string"}', b"bytes"),
            p.push({"k": "list"}, [b"ab", bytearray(b"cd"), memoryview(b"ef")]),
            p.push({"k": "array"}, a, partition=0),
        ]
        if numpy is not None:
            futures.append(p.push({"k": "numpy"}, numpy.arange(4, dtype=numpy.float32)))
        ids = [f.wait(timeout_ms=10000) for f in futures]
        self.assertEqual(ids, list(range(len(futures))))
        self.assertTrue(all(f.completed for f in futures))
        c = self.topic.consumer("c")
        evs = [c.pull().wait(timeout_ms=10000) for _ in futures]
        self.assertEqual([e.metadata["k"] for e in evs[:4]], ["dict", "string", "list", "array"])
        self.assertEqual(bytes(evs[1].data[0]), b"bytes")
        self.assertEqual(bytes(evs[2].data[0]), b"abcdef")
        self.assertEqual(bytes(evs[3].data[0]), a.tobytes())
        if numpy is not None:
            self.assertEqual(bytes(evs[4].data[0]), numpy.arange(4, dtype=numpy.float32).tobytes())

    def test_bad_pushes(self):
        p = self.topic.producer("p")
        with self.assertRaises(Exception):
            p.push("not json").wait()
        with self.assertRaises(Exception):
            p.push({"x": object()})
        with self.assertRaises(Exception) as cm:
            p.push({}, memoryview(b"abcdef")[::2])
        self.assertIn("contiguous", str(cm.exception))
        with self.assertRaises(Exception):
            p.push({}, 42)
        with self.assertRaises(Exception):
            p.push({}, partition=-1)
        with self.assertRaises(Exception):
            self.topic.producer("q", batch_size=0)
        with self.assertRaises(Exception):
            self.topic.producer("q", ordering="strict")
        with self.assertRaises(Exception):
            self.topic.producer("q", thread_pool="pool")
        p.close()
        with self.assertRaises(Exception):
            p.push({})

    def test_buffers_are_held_until_pushed(self):
        p = self.topic.producer("p", batch_size=64)
        for i in range(200):
            p.push({"i": i}, bytearray(b"%05d" % i) * 100)  # futures and buffers dropped at once
        gc.collect()
        self.assertTrue(p.flush().wait())
        c = self.topic.consumer("c")
        for i in range(200):
            e = c.pull().wait(timeout_ms=10000)
            self.assertEqual(bytes(e.data[0]), (b"%05d" % i) * 100)


class TestConsumer(Base):
    def test_consumer_attributes(self):
        c = self.topic.consumer("c")
        self.assertIsInstance(c, Consumer)
        self.assertEqual(c.name, "c")
        self.assertIs(c.topic, self.topic)
        self.assertIsNotNone(c.thread_pool)
        self.assertGreater(c.batch_size, 0)
        self.assertGreater(c.max_num_batches, 0)

    def test_iterate_until_the_end(self):
        self.produce(10)
        self.topic.mark_as_complete()
        got = 0
        for event in self.topic.consumer("c"):
            self.assertIsInstance(event, Event)
            self.assertEqual(event.event_id, got)
            self.assertEqual(event.metadata, {"index": got, "value": f"event_{got}"})
            self.assertEqual(event.partition["id"], 0)
            event.acknowledge()
            got += 1
        self.assertEqual(got, 10)

    def test_pull_futures(self):
        c = self.topic.consumer("c")
        f = c.pull()
        self.assertIsNone(f.wait(timeout_ms=10))
        self.assertFalse(f.completed())
        self.produce(2)
        e = f.wait(timeout_ms=10000)  # the same future, waited again
        self.assertEqual(e.event_id, 0)
        self.assertTrue(f.completed())
        self.assertEqual(c.pull().wait().event_id, 1)
        self.topic.mark_as_complete()
        self.assertIsNone(c.pull().wait(timeout_ms=10000).event_id)

    def test_acknowledged_position_survives(self):
        self.produce(5)
        c = self.topic.consumer("c")
        for _ in range(3):
            e = c.pull().wait()
        e.acknowledge()
        c.close()
        c = self.topic.consumer("c")
        self.assertEqual(c.pull().wait().event_id, 3)

    def test_default_consumer_copies_all_data(self):
        self.produce(3, data=lambda i: bytes([i]) * 1000)
        c = self.topic.consumer("c")
        e = c.pull().wait()
        self.assertIsInstance(e.data, list)
        self.assertEqual(bytes(e.data[0]), b"\0" * 1000)
        e.acknowledge()
        c.close()
        del c
        gc.collect()
        self.assertEqual(bytes(e.data[0]), b"\0" * 1000)  # the event's own memory

    def test_selector_and_allocator(self):
        self.produce(1, data=lambda i: b"hello world")

        def selector(md, d):
            self.assertEqual(d.size, 11)
            return d.make_sub_view(offset=6, size=100)

        def allocator(md, d):
            return [bytearray(d.size)]

        c = self.topic.consumer("c", data_selector=selector, data_allocator=allocator)
        e = next(iter(c))
        self.assertEqual(len(e.data), 1)
        self.assertIsInstance(e.data[0], bytearray)
        self.assertEqual(e.data[0], b"world")
        self.assertIs(c.data_selector, selector)
        c = self.topic.consumer("c2", data_selector=FullDataSelector, data_allocator=ByteArrayAllocator)
        self.assertEqual(c.pull().wait().data, [bytearray(b"hello world")])

    def test_zero_copy_views(self):
        self.produce(2, data=lambda i: bytes(range(i, i + 64)))
        c = self.topic.consumer("c", data_selector=lambda md, d: d.make_stride_view(offset=1, num_blocks=3, block_size=2, gap_size=4))
        e = c.pull().wait()
        self.assertTrue(all(isinstance(v, memoryview) and v.readonly for v in e.data))
        self.assertEqual(b"".join(bytes(v) for v in e.data), bytes([1, 2, 7, 8, 13, 14]))
        with self.assertRaises(TypeError):
            e.data[0][0] = 9
        c.close()
        # After the consumer closed, a view reads (zeros or the old bytes) but never faults.
        self.assertEqual(len(bytes(e.data[0])), 2)
        self.driver.close()
        gc.collect()
        self.assertEqual(len(bytes(e.data[0])), 2)

    def test_iterating_zero_copy_events_keeps_them_whole(self):
        self.produce(300, data=lambda i: bytes([i % 251]) * (i % 7 + 1))
        self.topic.mark_as_complete()
        c = self.topic.consumer("c", data_selector=FullDataSelector)
        kept = list(c)  # events of several batches, their views alive after the loop
        self.assertEqual([e.event_id for e in kept], list(range(300)))
        gc.collect()
        for i, e in enumerate(kept):
            self.assertEqual(len(e.data), 1)
            self.assertTrue(e.data[0].readonly)
            self.assertEqual(bytes(e.data[0]), bytes([i % 251]) * (i % 7 + 1))
            self.assertEqual(e.metadata["index"], i)
        views = [e.data[0] for e in kept]
        del kept
        gc.collect()  # the views alone keep the events' memory
        self.assertEqual(bytes(views[299]), bytes([299 % 251]) * (299 % 7 + 1))

    def test_iterated_zero_copy_events_are_whole_events(self):
        # Iterating a zero-copy consumer makes its events from batch pulls
        # (no handle each): they still acknowledge, describe themselves and
        # keep their data, also in pieces, past the consumer's close.
        self.produce(40, data=lambda i: bytes(range(i, i + 16)))
        stride = lambda md, d: d.make_stride_view(offset=1, num_blocks=2, block_size=2, gap_size=3)
        for name, sel in (("all", FullDataSelector), ("stride", stride)):
            c = self.topic.consumer(name, data_selector=sel)
            kept = []
            for e in c.events(timeout_ms=200):
                self.assertIsInstance(e, Event)
                self.assertEqual(e.partition["id"], 0)
                self.assertEqual(e.metadata, {"index": e.event_id, "value": f"event_{e.event_id}"})
                self.assertIn(f"event_id={e.event_id}", repr(e))
                kept.append(e)
                if e.event_id == 9:
                    e.acknowledge()
                    break
            c.close()
            self.assertEqual([e.event_id for e in kept], list(range(10)))
            gc.collect()
            want = (lambda i: bytes(range(i, i + 16))) if sel is FullDataSelector else (lambda i: bytes([i + 1, i + 2, i + 6, i + 7]))
            self.assertEqual([b"".join(bytes(v) for v in e.data) for e in kept], [want(i) for i in range(10)])
            # The name resumes after the acknowledged event.
            c = self.topic.consumer(name, data_selector=sel)
            self.assertEqual(next(c.events(timeout_ms=200)).event_id, 10)
            c.close()

    def test_a_loop_left_early_loses_no_event(self):
        # An iteration takes events from the library by batches: those it
        # did not hand out when the loop was left are the next pull's,
        # iteration's, batch's or process's, in order, for every kind of
        # consumer (events of batches, or of a handle each).
        self.produce(300, data=lambda i: bytes([i % 256]) * 8)
        for name, kw in (("zero-copy", {"data_selector": FullDataSelector}), ("copying", {})):
            c = self.topic.consumer(name, **kw)
            got = []
            for ev in c:
                got.append(ev.event_id)
                if ev.event_id == 5:
                    break
            got.append(c.pull().wait().event_id)
            for ev in c.events(timeout_ms=1000):
                got.append(ev.event_id)
                if ev.event_id == 10:
                    break
            b = next(c.batches(timeout_ms=1000, max_events=4))
            self.assertEqual(b.event_ids, [11, 12, 13, 14])
            self.assertEqual([bytes(v) for v in b.buffers], [bytes([i]) * 8 for i in range(11, 15)])
            self.assertEqual(b.metadata(0)["index"], 11)
            got += b.event_ids
            try:
                for ev in c:
                    got.append(ev.event_id)
                    if ev.event_id == 20:
                        raise KeyError("out of the loop")
            except KeyError:
                pass
            seen = []
            c.process(lambda e: seen.append(e.event_id), max_events=3, timeout_ms=1000)
            self.assertEqual(seen, [21, 22, 23], name)
            got += seen
            got += [e.event_id for e in c.events(timeout_ms=300)]
            self.assertEqual(got, list(range(300)), name)
            b.acknowledge()
            c.close()
            c = self.topic.consumer(name, **kw)
            self.assertEqual(c.pull().wait().event_id, 15)  # the batch's acknowledgement stored 14
            for ev in c:
                break
            c.close()
            with self.assertRaises(Exception):
                c.pull()  # closed, even with events left by the loop

    def test_selector_none_selects_nothing(self):
        self.produce(1, data=lambda i: b"abc")
        c = self.topic.consumer("c", data_selector=lambda md, d: None)
        self.assertEqual(c.pull().wait().data, [])

    def test_callback_errors_are_raised_by_the_pull(self):
        self.produce(2, data=lambda i: b"abc")

        class Boom(RuntimeError):
            pass

        def selector(md, d):
            raise Boom("no")

        c = self.topic.consumer("c", data_selector=selector)
        with self.assertRaises(Boom):
            c.pull().wait(timeout_ms=10000)
        c = self.topic.consumer("c2", data_selector=FullDataSelector, data_allocator=lambda md, d: [b"readonly"])
        with self.assertRaises(Exception) as cm:
            c.pull().wait(timeout_ms=10000)
        self.assertIn("writable", str(cm.exception))
        c = self.topic.consumer("c3", data_selector=lambda md, d: "whole")
        with self.assertRaises(Exception):
            c.pull().wait(timeout_ms=10000)
        with self.assertRaises(Exception):
            self.topic.consumer("c4", data_selector=42)

    def test_process(self):
        self.produce(20)
        seen = []
        c = self.topic.consumer("c")
        c.process(lambda e: seen.append(e.event_id), timeout_ms=100, max_events=5)
        self.assertEqual(seen, [0, 1, 2, 3, 4])
        pool = self.driver.make_thread_pool(2)
        c.process(lambda e: seen.append(e.event_id), timeout_ms=100, thread_pool=pool)
        self.assertEqual(sorted(seen), list(range(20)))

        def fails(e):
            raise ValueError("processor says no")

        c = self.topic.consumer("c2")
        with self.assertRaises(ValueError):
            c.process(fails, timeout_ms=100)

    def test_closed_consumer(self):
        c = self.topic.consumer("c")
        c.unsubscribe()
        with self.assertRaises(Exception):
            c.pull()
        with self.assertRaises(Exception):
            self.topic.consumer("c", targets=[5])


class TestBatches(Base):
    """Consumer.batches: events without an Event object each."""

    def test_batches_until_the_end(self):
        self.produce(600, data=lambda i: bytes([i % 251]) * (i % 5 + 1))
        self.topic.mark_as_complete()
        c = self.topic.consumer("c", data_selector=FullDataSelector)
        ids, sizes = [], 0
        for b in c.batches(timeout_ms=10000, max_events=100):
            self.assertIsInstance(b, EventBatch)
            self.assertTrue(1 <= len(b) <= 100)
            self.assertEqual(len(b.data), len(b))
            for i, (eid, d) in enumerate(zip(b.event_ids, b.data)):
                self.assertEqual(len(d), 1)
                self.assertTrue(d[0].readonly)
                self.assertEqual(bytes(d[0]), bytes([eid % 251]) * (eid % 5 + 1))
                self.assertEqual(b.metadata(i), {"index": eid, "value": f"event_{eid}"})
                sizes += len(d[0])
            self.assertEqual(b.partition(-1)["id"], 0)
            ids.extend(b.event_ids)
        self.assertEqual(ids, list(range(600)))  # the end marker is not an event of a batch
        self.assertEqual(sizes, sum(i % 5 + 1 for i in range(600)))

    def test_acknowledge_a_batch_or_one_event(self):
        self.produce(10, data=lambda i: b"z")
        c = self.topic.consumer("c", data_selector=FullDataSelector)
        b = next(c.batches(timeout_ms=10000, max_events=4))
        self.assertEqual(b.event_ids, [0, 1, 2, 3])
        b.acknowledge(1)
        c.close()
        c = self.topic.consumer("c", data_selector=FullDataSelector)
        b = next(c.batches(timeout_ms=10000, max_events=20))
        self.assertEqual(b.event_ids[0], 2)  # resumes after event 1
        b.acknowledge()  # all of it
        c.close()
        c = self.topic.consumer("c", data_selector=FullDataSelector)
        self.assertEqual(list(c.batches(timeout_ms=50)), [])
        with self.assertRaises(IndexError):
            b.metadata(len(b))
        with self.assertRaises(Exception):
            next(c.batches(max_events=0))

    def test_default_consumer_and_selections_in_batches(self):
        self.produce(5, data=lambda i: bytes(range(i, i + 16)))
        self.topic.mark_as_complete()
        copied = [d for b in self.topic.consumer("copy").batches(timeout_ms=10000) for d in b.data]
        self.assertEqual([bytes(d[0]) for d in copied], [bytes(range(i, i + 16)) for i in range(5)])
        self.assertFalse(copied[0][0].readonly)  # the default consumer's copy is its own
        strided = self.topic.consumer("stride", data_selector=lambda md, d: d.make_stride_view(offset=1, num_blocks=2, block_size=2, gap_size=3))
        got = [b"".join(bytes(v) for v in d) for b in strided.batches(timeout_ms=10000) for d in b.data]
        self.assertEqual(got, [bytes([i + 1, i + 2, i + 6, i + 7]) for i in range(5)])
        alloc = self.topic.consumer("alloc", data_selector=FullDataSelector, data_allocator=ByteArrayAllocator)
        got = [d for b in alloc.batches(timeout_ms=10000) for d in b.data]
        self.assertEqual(got, [[bytearray(range(i, i + 16))] for i in range(5)])

    def test_a_batch_takes_every_ready_event_up_to_its_max(self):
        # One pass over a partition hands out 64 events; the batch takes
        # more passes while events are ready.
        self.produce(300, data=lambda i: b"e")
        c = self.topic.consumer("c", data_selector=FullDataSelector)
        sizes = [len(b) for b in c.batches(timeout_ms=200, max_events=256)]
        self.assertEqual(sizes, [256, 44])

    def test_buffers_one_per_event(self):
        self.produce(6, data=lambda i: b"" if i % 3 == 0 else bytes(range(i, i + 12)))
        c = self.topic.consumer("fast", data_selector=FullDataSelector)
        b = next(c.batches(timeout_ms=10000, max_events=3))
        b = next(c.batches(timeout_ms=10000, max_events=2))  # events 3 and 4: 4 has data, 3 none
        self.assertEqual(b.event_ids, [3, 4])
        self.assertEqual(bytes(b.buffers[0]), b"")
        self.assertIs(b.buffers[1], b.data[1][0])
        b = next(c.batches(timeout_ms=10000, max_events=1))  # one piece each: buffers made first
        self.assertIs(b.data[0][0], b.buffers[0])
        self.assertTrue(b.buffers[0].readonly)
        self.assertEqual(bytes(b.buffers[0]), bytes(range(5, 17)))
        self.topic.mark_as_complete()
        want = [b"" if i % 3 == 0 else bytes(range(i, i + 12)) for i in range(6)]
        zc = [b for b in self.topic.consumer("zc", data_selector=FullDataSelector).batches(timeout_ms=10000)]
        bufs = [v for b in zc for v in b.buffers]
        self.assertEqual([bytes(v) for v in bufs], want)
        self.assertEqual([len(d) for b in zc for d in b.data], [0 if i % 3 == 0 else 1 for i in range(6)])
        strided = self.topic.consumer("stride", data_selector=lambda md, d: d.make_stride_view(offset=1, num_blocks=2, block_size=2, gap_size=3) if d.size else None)
        got = [bytes(v) for b in strided.batches(timeout_ms=10000) for v in b.buffers]
        self.assertEqual(got, [b"" if i % 3 == 0 else bytes([i + 1, i + 2, i + 6, i + 7]) for i in range(6)])
        alloc = self.topic.consumer("alloc", data_selector=FullDataSelector, data_allocator=ByteArrayAllocator)
        got = [v for b in alloc.batches(timeout_ms=10000) for v in b.buffers]
        self.assertEqual([bytes(v) for v in got], want)
        self.assertIsInstance(got[1], bytearray)  # the allocator's own buffer

    def test_readme_loop_with_events_without_data(self):
        self.produce(6, data=lambda i: b"" if i % 3 == 0 else b"x" * i)
        self.topic.mark_as_complete()
        consumer = self.topic.consumer("c", data_selector=FullDataSelector)
        total = 0
        for batch in consumer.batches(timeout_ms=1000):
            for view in batch.buffers:  # per event, its data in one buffer
                total += len(view)
            batch.acknowledge()
        self.assertEqual(total, 1 + 2 + 4 + 5)
        again = self.topic.consumer("d", data_selector=FullDataSelector)
        total = 0
        for batch in again.batches(timeout_ms=1000):
            for buffers in batch.data:  # per event, as Event.data: [] when it has no data
                for view in buffers:
                    total += len(view)
        self.assertEqual(total, 1 + 2 + 4 + 5)

    def test_views_keep_the_batch_and_nothing_else_does(self):
        import weakref

        self.produce(50, data=lambda i: b"y" * 100)
        gc.disable()
        try:
            c = self.topic.consumer("c", data_selector=FullDataSelector)
            b = next(c.batches(timeout_ms=10000))
            views = [d[0] for d in b.data]
            owner = weakref.ref(b._o)
            del b
            self.assertIsNotNone(owner())  # the views keep it
            self.assertEqual(bytes(views[49]), b"y" * 100)
            del views
            self.assertIsNone(owner())  # no cycle: released by reference counting
        finally:
            gc.enable()
        c.close()
        self.driver.close()


class TestDataDescriptor(unittest.TestCase):
    def test_views(self):
        d = DataDescriptor("loc", 100)
        self.assertEqual((d.location, d.size, d.flatten()), ("loc", 100, [(0, 100)]))
        self.assertEqual(d.make_sub_view(offset=90, size=50).flatten(), [(90, 10)])
        self.assertEqual(d.make_sub_view(offset=100, size=5).size, 0)
        s = d.make_stride_view(offset=10, num_blocks=3, block_size=5, gap_size=5)
        self.assertEqual(s.flatten(), [(10, 5), (20, 5), (30, 5)])
        self.assertEqual(s.make_sub_view(offset=3, size=5).flatten(), [(13, 2), (20, 3)])
        with self.assertRaises(Exception):
            d.make_stride_view(offset=90, num_blocks=2, block_size=5, gap_size=5)
        u = d.make_unstructured_view(segments=[(0, 2), (2, 3), (50, 1)])
        self.assertEqual(u.flatten(), [(0, 5), (50, 1)])
        for bad in ([(5, 2), (4, 1)], [(99, 2)], [(-1, 1)]):
            with self.assertRaises(Exception):
                d.make_unstructured_view(segments=bad)

    def test_rectangle_of_an_image(self):
        # rows 1..2, columns 1..2 of a 4x4 image of 1-byte pixels
        d = DataDescriptor("", 16)
        rows = d.make_sub_view(offset=4, size=8)
        rect = rows.make_stride_view(offset=1, num_blocks=2, block_size=2, gap_size=2)
        self.assertEqual(rect.flatten(), [(5, 2), (9, 2)])


def _child_calls(options, name, q):
    try:
        Driver(backend="shm", options=options).topic_exists(name)
        q.put("no error")
    except Exception as e:  # noqa: BLE001
        q.put(str(e))


class TestFork(Base):
    def test_forked_child_is_told_to_spawn(self):
        ctx = multiprocessing.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=_child_calls, args=(self.options, self.name, q))
        p.start()
        msg = q.get(timeout=60)
        p.join(60)
        self.assertIn("spawn", msg)

    def test_spawned_child_works(self):
        ctx = multiprocessing.get_context("spawn")
        q = ctx.Queue()
        p = ctx.Process(target=_child_calls, args=(self.options, self.name, q))
        p.start()
        self.assertEqual(q.get(timeout=120), "no error")
        p.join(60)


if __name__ == "__main__":
    unittest.main()


class TestReviewFindings(Base):
    """Behaviours a review found broken: each test failed before its fix."""

    def test_flush_of_another_thread_keeps_buffers_of_pushes_in_flight(self):
        import threading

        self.driver.create_topic("big", options={"ring_size": "64MiB"})
        t = self.driver.open_topic("big")
        p = t.producer("p", thread_pool=self.driver.make_thread_pool(1), batch_size=64)
        n = 1500

        def pusher():
            for i in range(n):
                p.push({"i": i}, bytearray([i % 251]) * (16 << 10))  # a temporary: the producer holds it

        th = threading.Thread(target=pusher)
        th.start()
        while th.is_alive():
            p.flush().wait()
        th.join()
        p.close()
        bad = 0
        c = t.consumer("c")
        for ev in c.events(timeout_ms=500):
            b = bytes(ev.data[0])
            bad += b.count(bytes([ev.metadata["i"] % 251])) != len(b)
        self.assertEqual(bad, 0)

    def test_events_before_a_failing_selector_are_delivered(self):
        self.produce(10, data=lambda i: b"x")

        def selector(md, d):
            if md["index"] == 5:
                raise KeyError("event 5")
            return d

        c = self.topic.consumer("c", data_selector=selector)
        got = []
        with self.assertRaises(KeyError):
            for ev in c.events(timeout_ms=1000):
                got.append(ev.event_id)
        self.assertEqual(got, [0, 1, 2, 3, 4])

    def test_a_dropped_consumer_frees_its_name_without_the_collector(self):
        self.produce(1, data=lambda i: b"x")
        gc.disable()
        try:
            c = self.topic.consumer("named", data_selector=lambda md, d: d)
            c.pull().wait()
            del c
            c = self.topic.consumer("named", data_selector=FullDataSelector)  # the name is free again
            self.assertIsNotNone(c.pull().wait(timeout_ms=1000))
        finally:
            gc.enable()

    def test_a_batch_is_released_when_its_events_are_gone(self):
        import weakref

        self.produce(50, data=lambda i: b"y" * 100)
        gc.disable()
        try:
            c = self.topic.consumer("c")
            evs = c._pull_batch(1000)
            views = [e.data[0] for e in evs]
            batch = weakref.ref(evs[0]._b)
            del evs
            self.assertIsNotNone(batch())  # the views keep it
            del views
            self.assertIsNone(batch())  # no cycle: gone by reference counting
        finally:
            gc.enable()

    def test_upstream_conventions(self):
        self.produce(1)
        e = self.topic.consumer("c").pull().wait()
        self.assertEqual([bytes(v) for v in e.data], [b""])  # the default consumer's (empty) buffer
        self.assertEqual(self.topic.consumer("all", targets=[]).pull().wait().event_id, 0)
        with self.assertRaises(Exception):
            self.topic.consumer("a", data_allocator=ByteArrayAllocator)
