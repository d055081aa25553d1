// The C entry points of libdiaspora_shm. Each one refuses to run in a child
// forked after the library was loaded (the Go runtime's threads are not
// there: entering Go would hang), then calls its Go half (dshmgo_*).
// The calling thread's last error lives here too, in thread-local storage.

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "_cgo_export.h"

static volatile int dshm_forked;

static void dshm_on_fork_child(void) { dshm_forked = 1; }

__attribute__((constructor)) static void dshm_shim_init(void) {
	pthread_atfork(NULL, NULL, dshm_on_fork_child);
}

static __thread char *dshm_err;
static __thread size_t dshm_err_cap;

void dshm__set_error(const char *msg, size_t len) {
	if (len + 1 > dshm_err_cap) {
		size_t cap = len + 1 < 256 ? 256 : len + 1;
		char *p = realloc(dshm_err, cap);
		if (p == NULL) {
			return; // keep the old message rather than none
		}
		dshm_err = p;
		dshm_err_cap = cap;
	}
	memcpy(dshm_err, msg, len);
	dshm_err[len] = 0;
}

const char *dshm_last_error(void) { return dshm_err != NULL ? dshm_err : ""; }

const char *dshm_version(void) { return DSHM_VERSION_STRING; }

static int dshm_fork_error(void) {
	static const char msg[] =
		"diaspora_shm: this process was forked from one that had loaded libdiaspora_shm, "
		"and the library cannot run after fork; start the process with exec/posix_spawn "
		"(Python: multiprocessing.set_start_method(\"spawn\")) and load the library there";
	dshm__set_error(msg, sizeof msg - 1);
	return DSHM_EFORK;
}

#define GUARD                              \
	do {                                   \
		if (dshm_forked)                   \
			return dshm_fork_error();      \
	} while (0)

// Callbacks: Go cannot call a C function pointer itself.
int dshm__call_selector(dshm_selector_fn f, void *ctx, const char *md, size_t mdlen, size_t size,
                        dshm_range *ranges, size_t cap, size_t *n) {
	return f(ctx, md, mdlen, size, ranges, cap, n);
}

int dshm__call_allocator(dshm_allocator_fn f, void *ctx, const char *md, size_t mdlen, size_t size,
                         dshm_buffer *bufs, size_t cap, size_t *n) {
	return f(ctx, md, mdlen, size, bufs, cap, n);
}

int dshm__call_processor(dshm_processor_fn f, void *ctx, dshm_event ev) { return f(ctx, ev); }

int dshm_driver_open(const char *backend, const char *options_json, dshm_driver *out) {
	GUARD;
	return dshmgo_driver_open((char *)backend, (char *)options_json, out);
}

int dshm_driver_close(dshm_driver d) {
	GUARD;
	dshm__queue_drain_all(); // the driver closes its producers: what they queued first
	return dshmgo_driver_close(d);
}

int dshm_driver_default_thread_pool(dshm_driver d, dshm_thread_pool *out) {
	GUARD;
	return dshmgo_driver_default_thread_pool(d, out);
}

int dshm_driver_make_thread_pool(dshm_driver d, size_t count, dshm_thread_pool *out) {
	GUARD;
	return dshmgo_driver_make_thread_pool(d, count, out);
}

int dshm_thread_pool_count(dshm_thread_pool p, size_t *count) {
	GUARD;
	return dshmgo_thread_pool_count(p, count);
}

int dshm_thread_pool_release(dshm_thread_pool p) {
	GUARD;
	return dshmgo_release(p, DSHM__KIND_POOL);
}

int dshm_topic_create(dshm_driver d, const char *name, const char *options_json,
                      const char *validator_json, const char *selector_json,
                      const char *serializer_json) {
	GUARD;
	return dshmgo_topic_create(d, (char *)name, (char *)options_json, (char *)validator_json,
	                           (char *)selector_json, (char *)serializer_json);
}

int dshm_topic_exists(dshm_driver d, const char *name, int *exists) {
	GUARD;
	return dshmgo_topic_exists(d, (char *)name, exists);
}

int dshm_topic_list(dshm_driver d, char *buf, size_t cap, size_t *len) {
	GUARD;
	return dshmgo_topic_list(d, buf, cap, len);
}

int dshm_topic_open(dshm_driver d, const char *name, dshm_topic *out) {
	GUARD;
	return dshmgo_topic_open(d, (char *)name, out);
}

int dshm_topic_num_partitions(dshm_topic t, size_t *n) {
	GUARD;
	return dshmgo_topic_num_partitions(t, n);
}

int dshm_topic_partitions(dshm_topic t, char *buf, size_t cap, size_t *len) {
	GUARD;
	return dshmgo_topic_partitions(t, buf, cap, len);
}

int dshm_topic_plugins(dshm_topic t, char *buf, size_t cap, size_t *len) {
	GUARD;
	return dshmgo_topic_plugins(t, buf, cap, len);
}

int dshm_topic_mark_complete(dshm_topic t) {
	GUARD;
	return dshmgo_topic_mark_complete(t);
}

int dshm_topic_release(dshm_topic t) {
	GUARD;
	return dshmgo_release(t, DSHM__KIND_TOPIC);
}

int dshm_producer_open(dshm_topic t, const char *name, const char *args_json, dshm_producer *out) {
	GUARD;
	return dshmgo_producer_open(t, (char *)name, (char *)args_json, out);
}

int dshm_producer_push(dshm_producer p, const char *metadata, size_t metadata_size,
                       const dshm_segment *segments, size_t num_segments, int64_t partition,
                       dshm_future *out) {
	GUARD;
	if (out == NULL) {
		return dshm__queue_push(p, metadata, metadata_size, segments, num_segments, partition);
	}
	// What was pushed before is written before. (A failure of the queue's
	// is a closed handle's, which the call below reports, setting *out.)
	dshm__queue_drain(p, 0);
	return dshmgo_producer_push(p, (char *)metadata, metadata_size, (dshm_segment *)segments,
	                            num_segments, partition, out);
}

int dshm_producer_push_many(dshm_producer p, const dshm_push *pushes, size_t n, dshm_future *futures,
                            size_t *pushed) {
	GUARD;
	dshm__queue_drain(p, 0);
	return dshmgo_producer_push_many(p, (dshm_push *)pushes, n, futures, pushed);
}

int dshm_producer_flush(dshm_producer p, int64_t timeout_ms) {
	GUARD;
	// With a timeout, a queue another thread is writing (into a full ring,
	// it may take that thread 64 pushes' timeouts) is left to it.
	dshm__queue_drain(p, timeout_ms >= 0);
	return dshmgo_producer_flush(p, timeout_ms);
}

int dshm_producer_close(dshm_producer p) {
	GUARD;
	int rc = dshm__queue_close(p);
	int crc = dshmgo_producer_close(p);
	return crc != DSHM_OK ? crc : rc;
}

int dshm_producer_claim(dshm_producer p, const char *metadata, size_t metadata_size, size_t size,
                        int64_t partition, dshm_claim *out, void **data) {
	GUARD;
	dshm__queue_drain(p, 0);
	return dshmgo_producer_claim(p, (char *)metadata, metadata_size, size, partition, out, data);
}

int dshm_claim_commit(dshm_claim c, int64_t timeout_ms, uint64_t *id) {
	GUARD;
	return dshmgo_claim_commit(c, timeout_ms, id);
}

int dshm_claim_abort(dshm_claim c) {
	GUARD;
	return dshmgo_claim_abort(c);
}

int dshm_future_wait_id(dshm_future f, int64_t timeout_ms, uint64_t *id) {
	GUARD;
	return dshmgo_future_wait_id(f, timeout_ms, id);
}

int dshm_future_wait_event(dshm_future f, int64_t timeout_ms, dshm_event *ev) {
	GUARD;
	return dshmgo_future_wait_event(f, timeout_ms, ev);
}

int dshm_future_completed(dshm_future f, int *done) {
	GUARD;
	return dshmgo_future_completed(f, done);
}

int dshm_future_release(dshm_future f) {
	GUARD;
	return dshmgo_release(f, DSHM__KIND_FUTURE);
}

int dshm_consumer_open(dshm_topic t, const char *name, const char *args_json,
                       dshm_selector_fn selector, dshm_allocator_fn allocator, void *ctx,
                       dshm_consumer *out) {
	GUARD;
	return dshmgo_consumer_open(t, (char *)name, (char *)args_json, selector, allocator, ctx, out);
}

int dshm_consumer_pull(dshm_consumer c, int64_t timeout_ms, dshm_event *ev) {
	GUARD;
	return dshmgo_consumer_pull(c, timeout_ms, ev);
}

int dshm_consumer_pull_batch(dshm_consumer c, int64_t timeout_ms, size_t max, dshm_event *events,
                             dshm_event_info *infos, size_t *n) {
	GUARD;
	return dshmgo_consumer_pull_batch(c, timeout_ms, max, events, infos, n);
}

int dshm_batch_pull(dshm_consumer c, int64_t timeout_ms, size_t max, dshm_batch *batch,
                    dshm_event_info *infos, size_t *n) {
	GUARD;
	return dshmgo_batch_pull(c, timeout_ms, max, batch, infos, n);
}

int dshm_batch_segments(dshm_batch b, size_t i, dshm_segment *out, size_t cap, size_t *n) {
	GUARD;
	return dshmgo_batch_segments(b, i, out, cap, n);
}

int dshm_batch_spans(dshm_batch b, size_t n, uint64_t *base, uint64_t *starts, uint64_t *ends) {
	GUARD;
	return dshmgo_batch_spans(b, n, base, starts, ends);
}

int dshm_batch_acknowledge(dshm_batch b, size_t i) {
	GUARD;
	return dshmgo_batch_acknowledge(b, i);
}

int dshm_batch_release(dshm_batch b) {
	GUARD;
	return dshmgo_release(b, DSHM__KIND_BATCH);
}

int dshm_event_release_many(const dshm_event *events, size_t n) {
	GUARD;
	return dshmgo_event_release_many((dshm_event *)events, n);
}

int dshm_consumer_pull_async(dshm_consumer c, dshm_future *out) {
	GUARD;
	return dshmgo_consumer_pull_async(c, out);
}

int dshm_consumer_process(dshm_consumer c, dshm_processor_fn processor, void *ctx,
                          int64_t timeout_ms, uint64_t max_events, dshm_thread_pool pool) {
	GUARD;
	return dshmgo_consumer_process(c, processor, ctx, timeout_ms, max_events, pool);
}

int dshm_consumer_close(dshm_consumer c) {
	GUARD;
	return dshmgo_consumer_close(c);
}

int dshm_event_get_info(dshm_event ev, dshm_event_info *out) {
	GUARD;
	return dshmgo_event_get_info(ev, out);
}

int dshm_event_segments(dshm_event ev, dshm_segment *out, size_t cap, size_t *n) {
	GUARD;
	return dshmgo_event_segments(ev, out, cap, n);
}

int dshm_event_read(dshm_event ev, size_t offset, void *dst, size_t size, size_t *copied) {
	GUARD;
	return dshmgo_event_read(ev, offset, dst, size, copied);
}

int dshm_event_acknowledge(dshm_event ev) {
	GUARD;
	return dshmgo_event_acknowledge(ev);
}

int dshm_event_release(dshm_event ev) {
	GUARD;
	return dshmgo_release(ev, DSHM__KIND_EVENT);
}
