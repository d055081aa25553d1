// Declarations shared by the two halves of libdiaspora_shm (shim.c and the
// Go package); not part of the public interface.
#ifndef DIASPORA_SHM_INTERNAL_H
#define DIASPORA_SHM_INTERNAL_H

#include "diaspora_shm.h"

#define DSHM_VERSION_STRING "0.3.0"

// Kinds of handles, for dshmgo_release.
enum {
	DSHM__KIND_POOL = 1,
	DSHM__KIND_TOPIC = 2,
	DSHM__KIND_FUTURE = 3,
	DSHM__KIND_EVENT = 4,
	DSHM__KIND_BATCH = 5
};

void dshm__set_error(const char *msg, size_t len);
int dshm__call_selector(dshm_selector_fn f, void *ctx, const char *md, size_t mdlen, size_t size,
                        dshm_range *ranges, size_t cap, size_t *n);
int dshm__call_allocator(dshm_allocator_fn f, void *ctx, const char *md, size_t mdlen, size_t size,
                         dshm_buffer *bufs, size_t cap, size_t *n);
int dshm__call_processor(dshm_processor_fn f, void *ctx, dshm_event ev);

// The push queue of untracked one-push calls (pushqueue.c).
typedef struct dshm__queue dshm__queue;
int dshm__queue_push(dshm_producer p, const char *md, size_t md_len, const dshm_segment *segs, size_t nsegs,
                     int64_t partition);
int dshm__queue_drain(dshm_producer p, int try);
void dshm__queue_drain_all(void);
int dshm__queue_close(dshm_producer p);
void dshm__queue_forget(dshm_producer p);
int dshm__queue_tail(dshm_producer p);
int dshm__json_ok(const char *s, size_t n);

#endif
