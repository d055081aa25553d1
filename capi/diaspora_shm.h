/*
 * diaspora_shm.h: the C interface of diaspora-shm, event streaming between
 * the processes of one node through rings in shared memory (the Diaspora
 * Streaming API).
 *
 * Link with -ldiaspora_shm (built by `make lib`, or
 * `go build -buildmode=c-shared -o libdiaspora_shm.so ./capi`).
 *
 * Conventions
 *
 * - Every call returns a status: DSHM_OK (0) or a negative DSHM_E* code.
 *   On failure dshm_last_error() gives a message naming what was wrong; it
 *   belongs to the calling thread and stays until that thread's next failure.
 * - Objects are handles: 64-bit numbers, never pointers, never reused. A
 *   handle that was closed or released, one of another kind, or 0 gives
 *   DSHM_EHANDLE; no call crashes on a bad handle or a NULL pointer.
 * - Strings are NUL-terminated UTF-8. Options, configurations and metadata
 *   are JSON text; NULL options mean the defaults.
 * - Timeouts are in milliseconds; a negative timeout waits forever, 0 does
 *   not wait.
 * - Threads: every call may be made from any thread. Handles of drivers,
 *   topics, producers and consumers may be shared between threads; an event,
 *   future or claim handle is used by one thread at a time. A batch handle
 *   may be shared (its release must come after every other use).
 * - Memory returned by the library (metadata, data segments) belongs to it
 *   and is valid until the handle it came from is released; buffers given to
 *   it (data to push, allocator buffers) stay the caller's, and must stay
 *   valid for as long as each call says.
 * - fork(): the library runs threads that do not survive fork. In a child
 *   forked after the library was loaded every call fails with DSHM_EFORK;
 *   start children with posix_spawn/exec (Python: multiprocessing's "spawn"
 *   start method) and load the library there.
 */
#ifndef DIASPORA_SHM_H
#define DIASPORA_SHM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes. */
enum {
	DSHM_OK = 0,
	DSHM_ERROR = -1,     /* any other failure; see dshm_last_error() */
	DSHM_EINVAL = -2,    /* an invalid argument (NULL pointer, bad value) */
	DSHM_EHANDLE = -3,   /* not a live handle of the kind the call takes */
	DSHM_ETIMEOUT = -4,  /* nothing within the timeout; the call may be retried */
	DSHM_ECLOSED = -5,   /* the object (or its driver) was closed */
	DSHM_ENOTFOUND = -6, /* no topic of that name */
	DSHM_EEXISTS = -7,   /* a topic of that name exists */
	DSHM_EJSON = -8,     /* text that is not valid JSON */
	DSHM_EINVALID = -9,  /* metadata refused by the topic's validator */
	DSHM_ENOTSUP = -10,  /* the driver cannot do this */
	DSHM_ERANGE = -11,   /* an output buffer too small; the needed size is returned */
	DSHM_EFORK = -12,    /* called in a child forked after the library was loaded */
	DSHM_ESTOP = -13     /* a processor asked dshm_consumer_process to stop */
};

/* The ID of the event that marks the end of a stream (UINT64_MAX). */
#define DSHM_NO_MORE_EVENTS UINT64_MAX
/* Let the topic's partition selector choose the partition. */
#define DSHM_ANY_PARTITION (-1)
/* A timeout that waits forever. */
#define DSHM_FOREVER (-1)

typedef uint64_t dshm_driver;
typedef uint64_t dshm_topic;
typedef uint64_t dshm_producer;
typedef uint64_t dshm_consumer;
typedef uint64_t dshm_event;
typedef uint64_t dshm_future;
typedef uint64_t dshm_claim;
typedef uint64_t dshm_thread_pool;
typedef uint64_t dshm_batch;

/* A piece of event data: pushed from, or read in place. */
typedef struct {
	const void *data;
	size_t size;
} dshm_segment;

/* Writable memory an allocator hands to the library. */
typedef struct {
	void *data;
	size_t size;
} dshm_buffer;

/* A byte range of an event's data. */
typedef struct {
	size_t offset;
	size_t size;
} dshm_range;

/* What an event is; filled by dshm_event_get_info. The strings are NUL-
 * terminated and valid until the event is released. */
typedef struct {
	uint64_t id;            /* DSHM_NO_MORE_EVENTS for the end of a stream */
	size_t partition;       /* index of the partition it came from */
	const char *metadata;   /* the metadata as JSON text */
	size_t metadata_size;   /* its length, without the NUL */
	const char *partition_info; /* the partition's information as JSON */
	size_t data_size;       /* bytes of data selected, in all segments */
	size_t num_segments;    /* segments of that data (dshm_event_segments) */
	dshm_segment first;     /* the first of them ({NULL, 0} when none) */
} dshm_event_info;

/* A data selector, called for every event a consumer takes: given its
 * metadata (JSON, not NUL-terminated) and the size of its data, it writes
 * up to cap ranges to select (in increasing order, not overlapping) and
 * their count to *n (0: no data). It returns DSHM_OK, or DSHM_ERANGE with
 * *n set to the ranges it needs (it is called again with room for them),
 * or any other negative value to fail the pull. Ranges past the end of the
 * data are an error of the pull. */
typedef int (*dshm_selector_fn)(void *ctx, const char *metadata, size_t metadata_size,
                                size_t data_size, dshm_range *ranges, size_t cap, size_t *n);

/* A data allocator: given the metadata and the size of the selected data,
 * it writes up to cap buffers that hold it (their sizes add up to at least
 * size) and their count to *n; the library copies the selected bytes into
 * them. The buffers stay the allocator's: they must stay valid until the
 * event is released. Returns as a selector does. */
typedef int (*dshm_allocator_fn)(void *ctx, const char *metadata, size_t metadata_size,
                                 size_t size, dshm_buffer *buffers, size_t cap, size_t *n);

/* An event processor for dshm_consumer_process. It owns ev (release it
 * when done). Return DSHM_OK to go on, DSHM_ESTOP to stop, or another
 * negative value to stop with an error. It must not close the driver, the
 * consumer or the pool it runs on (closing waits for the processor). */
typedef int (*dshm_processor_fn)(void *ctx, dshm_event ev);

/* ---- errors and the library ---- */

/* The message of the calling thread's last failure ("" if none). Valid
 * until that thread's next call into the library. */
const char *dshm_last_error(void);
/* The library's version, as "MAJOR.MINOR.PATCH". */
const char *dshm_version(void);

/* ---- drivers ---- */

/* Opens a driver: backend "shm" (or another driver built into the library),
 * options its JSON options, e.g. {"root_path": "/scratch/me/topics"}. */
int dshm_driver_open(const char *backend, const char *options_json, dshm_driver *out);
/* Closes the driver and everything opened through it. Zero-copy data of
 * events still held reads as zeros afterwards; it never faults. Not from a
 * processor or a callback of the library's (it waits for them). */
int dshm_driver_close(dshm_driver d);
/* The driver's default thread pool, and a new pool of count threads
 * (0: work runs in the calling thread). Releasing a pool's handle forgets
 * it; its threads stop when the driver closes. */
int dshm_driver_default_thread_pool(dshm_driver d, dshm_thread_pool *out);
int dshm_driver_make_thread_pool(dshm_driver d, size_t count, dshm_thread_pool *out);
int dshm_thread_pool_count(dshm_thread_pool p, size_t *count);
int dshm_thread_pool_release(dshm_thread_pool p);

/* ---- topics ---- */

/* Creates a topic. options_json: topic options (e.g. {"num_partitions": 4,
 * "durability": "async"}); validator_json, selector_json, serializer_json:
 * plug-in configurations such as {"type": "schema", "schema": {...}};
 * NULL for each default. */
int dshm_topic_create(dshm_driver d, const char *name, const char *options_json,
                      const char *validator_json, const char *selector_json,
                      const char *serializer_json);
int dshm_topic_exists(dshm_driver d, const char *name, int *exists);
/* Writes the JSON object of all topics and their configurations into buf
 * (NUL-terminated) and its length to *len; DSHM_ERANGE when cap is too
 * small, with *len the length it needs (without the NUL). */
int dshm_topic_list(dshm_driver d, char *buf, size_t cap, size_t *len);
int dshm_topic_open(dshm_driver d, const char *name, dshm_topic *out);
/* The topic's partitions: their count, and a JSON array of their
 * information (written as dshm_topic_list does). */
int dshm_topic_num_partitions(dshm_topic t, size_t *n);
int dshm_topic_partitions(dshm_topic t, char *buf, size_t cap, size_t *len);
/* The topic's plug-in configurations, as one JSON object with the keys
 * "validator", "partition_selector" and "serializer". */
int dshm_topic_plugins(dshm_topic t, char *buf, size_t cap, size_t *len);
/* Ends the topic's stream: consumers that read every event get an event
 * with ID DSHM_NO_MORE_EVENTS instead of waiting. */
int dshm_topic_mark_complete(dshm_topic t);
/* Releases the handle; producers and consumers made from it go on. */
int dshm_topic_release(dshm_topic t);

/* ---- producers ---- */

/* Makes a producer; a NULL or empty name is made up ("c-PID-N").
 * args_json (NULL for defaults):
 *   {"batch_size": N or "adaptive", "max_num_batches": N,
 *    "ordering": "strict" | "loose", "thread_pool": <pool handle>,
 *    "options": {...}} */
int dshm_producer_open(dshm_topic t, const char *name, const char *args_json, dshm_producer *out);
/* Pushes an event: metadata (JSON text of metadata_size bytes) and the data
 * in num_segments pieces (none: NULL, 0), to a partition or
 * DSHM_ANY_PARTITION. The data must stay valid until the push completes.
 * With out, *out is a future of the event's ID (dshm_future_wait_id);
 * with out NULL the push is not tracked, and its failure is reported by
 * the next dshm_producer_flush. An untracked push of a small event (1 KiB
 * of metadata and data at most, in 8 segments at most) made while the
 * producer streams is copied into a queue of the library and written with
 * the pushes around it, up to 64 at a time (a call into the library costs
 * more than such a push); every other call on the producer writes the
 * queue first, and what a burst leaves in it is written by a goroutine of
 * the library once 20 us old; late, milliseconds, when the threads calling
 * into the library hold all of Go's Ps (README: GOMAXPROCS), so flush
 * after a burst that must arrive at once. The data must stay valid until
 * the push completes all the same: a push that finds the producer idle is
 * not copied. Its bad
 * arguments (metadata that is not JSON, NULL pointers, a negative
 * partition) are still this call's errors; what only the topic can refuse
 * (its validator) is the next flush's, as for any untracked push. A
 * process that exits without dshm_producer_flush or _close (or
 * dshm_driver_close) loses what the queue holds, as it loses what the
 * producer has not written yet. When the ring is full, the push that
 * writes the queue waits for room for each of its pushes (up to the
 * topic's push_timeout each); a flush with a timeout leaves a queue that
 * another thread is writing to that thread. */
int dshm_producer_push(dshm_producer p, const char *metadata, size_t metadata_size,
                       const dshm_segment *segments, size_t num_segments, int64_t partition,
                       dshm_future *out);
/* One push of dshm_producer_push_many. */
typedef struct {
	const char *metadata;
	size_t metadata_size;
	const dshm_segment *segments;
	size_t num_segments;
	int64_t partition; /* or DSHM_ANY_PARTITION */
} dshm_push;

/* Pushes n events with one call, in order, as n dshm_producer_push calls
 * would (the way to push small events: the call into the library costs
 * about as much as the push itself). With futures, futures[i] gets push
 * i's; with futures NULL the pushes are untracked. *pushed (may be NULL)
 * gets how many were pushed: on a bad argument the call stops there and
 * fails, the pushes before it made. */
int dshm_producer_push_many(dshm_producer p, const dshm_push *pushes, size_t n, dshm_future *futures,
                            size_t *pushed);
/* Writes out every push made so far and waits (up to timeout_ms) for them;
 * returns the first failure of an untracked push since the last flush. */
int dshm_producer_flush(dshm_producer p, int64_t timeout_ms);
/* Flushes, then closes the producer. */
int dshm_producer_close(dshm_producer p);

/* Zero-copy produce: reserves size bytes of data for one event in the ring
 * and points *data at them; write them, then commit (or abort). */
int dshm_producer_claim(dshm_producer p, const char *metadata, size_t metadata_size,
                        size_t size, int64_t partition, dshm_claim *out, void **data);
/* Validates and publishes the claimed event; *id (may be NULL) gets its ID.
 * The claim handle is gone after the call, except on DSHM_ETIMEOUT: the
 * commit is under way and the handle stays; commit it again to wait for
 * the result. */
int dshm_claim_commit(dshm_claim c, int64_t timeout_ms, uint64_t *id);
/* Gives the space back: no event is published. The handle is gone after. */
int dshm_claim_abort(dshm_claim c);

/* ---- futures ---- */

/* Waits for a push: *id (may be NULL) gets the event's ID. DSHM_ETIMEOUT
 * leaves the future pending, to be waited again. */
int dshm_future_wait_id(dshm_future f, int64_t timeout_ms, uint64_t *id);
/* Waits for a pull (dshm_consumer_pull_async): *ev gets the event. */
int dshm_future_wait_event(dshm_future f, int64_t timeout_ms, dshm_event *ev);
/* *done = 1 when the future has its result, else 0. */
int dshm_future_completed(dshm_future f, int *done);
int dshm_future_release(dshm_future f);

/* ---- consumers ---- */

/* Makes a consumer of the topic under a name (a name's position survives
 * restarts). args_json (NULL for defaults):
 *   {"batch_size": N or "adaptive", "max_num_batches": N,
 *    "targets": [partition, ...], "thread_pool": <pool handle>,
 *    "data": "none" | "all" | "copy",
 *            (without a selector: metadata only; all data, in place; all
 *             data copied into memory of the library's that the event's
 *             release frees)
 *    "options": {...}}
 * selector (may be NULL: then "data" decides) picks the data of each event;
 * allocator (may be NULL) gives memory to copy it into. Without an
 * allocator the data segments of an event point into the shared memory
 * itself (no copy), valid until the event is acknowledged or the consumer
 * closes. Past that they stay readable but may show other events' bytes
 * (the ring reuses the space); they never fault, and once the driver
 * closes they read zeros. ctx is passed to both. */
int dshm_consumer_open(dshm_topic t, const char *name, const char *args_json,
                       dshm_selector_fn selector, dshm_allocator_fn allocator, void *ctx,
                       dshm_consumer *out);
/* Takes the next event, waiting up to timeout_ms: DSHM_ETIMEOUT when none
 * came (the next pull gets the one that is on its way). */
int dshm_consumer_pull(dshm_consumer c, int64_t timeout_ms, dshm_event *ev);
/* Takes up to max events with one call: waits up to timeout_ms for the
 * first, then takes those ready at once behind it. Fills events[0..*n) with
 * their handles and, when infos is not NULL, infos[0..*n) as
 * dshm_event_get_info does. DSHM_ETIMEOUT when none came. */
int dshm_consumer_pull_batch(dshm_consumer c, int64_t timeout_ms, size_t max, dshm_event *events,
                             dshm_event_info *infos, size_t *n);
/* Starts a pull; its future gives the event (dshm_future_wait_event). */
int dshm_consumer_pull_async(dshm_consumer c, dshm_future *out);
/* Calls processor for each event until timeout_ms passes without one, the
 * end of the stream, max_events (0: no limit), or the processor stops.
 * With pool (0: the consumer's), the processor runs on the pool's threads. */
int dshm_consumer_process(dshm_consumer c, dshm_processor_fn processor, void *ctx,
                          int64_t timeout_ms, uint64_t max_events, dshm_thread_pool pool);
/* Unsubscribes and closes: the consumer's events no longer hold ring space. */
int dshm_consumer_close(dshm_consumer c);

/* ---- batches: many events, one handle ----
 * For small events: a batch costs one handle and one arena of C memory,
 * where dshm_consumer_pull_batch makes a handle per event. Its events have
 * no handles of their own; they are numbered 0..n-1 in the batch. */

/* Takes up to max events as dshm_consumer_pull_batch does (waits up to
 * timeout_ms for the first, then takes those ready at once behind it) into
 * one batch: *batch gets its handle, infos[0..*n) what each event is (as
 * dshm_event_get_info gives it; every pointer valid until the batch is
 * released). DSHM_ETIMEOUT when none came (*batch is 0 then). The last
 * event may be the end of the stream (id DSHM_NO_MORE_EVENTS). */
int dshm_batch_pull(dshm_consumer c, int64_t timeout_ms, size_t max, dshm_batch *batch,
                    dshm_event_info *infos, size_t *n);
/* Writes the data segments of event i of the batch, as dshm_event_segments. */
int dshm_batch_segments(dshm_batch b, size_t i, dshm_segment *out, size_t cap, size_t *n);
/* For bindings that make one view of memory per event (Python's
 * EventBatch.buffers), where arithmetic per event costs more than the
 * call: writes to *base the lowest address of the data of events 0..n-1 of
 * the batch, and to starts[i] and ends[i] where event i's data begins and
 * ends, as offsets from *base. DSHM_ERANGE when one of them has no data
 * or more than one segment (nothing written: see dshm_batch_segments). */
int dshm_batch_spans(dshm_batch b, size_t n, uint64_t *base, uint64_t *starts, uint64_t *ends);
/* For dshm_batch_acknowledge: every event of the batch. */
#define DSHM_WHOLE_BATCH SIZE_MAX

/* Acknowledges event i of the batch (and every earlier one of its
 * partition); i = DSHM_WHOLE_BATCH acknowledges the last event of each
 * partition in the batch, that is all of it. */
int dshm_batch_acknowledge(dshm_batch b, size_t i);
/* Frees the batch: its metadata, and its data when the consumer copies
 * ("data": "copy"). Zero-copy data stays readable until acknowledged, as
 * an event's does. */
int dshm_batch_release(dshm_batch b);

/* ---- events ---- */

int dshm_event_get_info(dshm_event ev, dshm_event_info *out);
/* Writes the event's data segments (up to cap) and their count to *n;
 * DSHM_ERANGE when cap is too small (*n = the count). */
int dshm_event_segments(dshm_event ev, dshm_segment *out, size_t cap, size_t *n);
/* Copies size bytes of the event's data from offset into dst; *copied
 * (may be NULL) gets how many there were. */
int dshm_event_read(dshm_event ev, size_t offset, void *dst, size_t size, size_t *copied);
/* This event and every earlier one of its partition are done for the
 * consumer's name: a restarted consumer of that name resumes after it. */
int dshm_event_acknowledge(dshm_event ev);
/* Frees the handle (and the library's copy of its metadata). Zero-copy data
 * stays readable until acknowledged. */
int dshm_event_release(dshm_event ev);
/* Releases n handles with one call; the first that is not a live event
 * handle is reported, after the others are released. */
int dshm_event_release_many(const dshm_event *events, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* DIASPORA_SHM_H */
