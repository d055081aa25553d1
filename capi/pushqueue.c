// The push queue: untracked one-push calls (dshm_producer_push with out
// NULL) of small events wait here, per producer, and cross into Go many at
// a time. A call from C into Go costs 0.2-0.3 us, more than the push of a
// small event, so one crossing a push held such a producer to ~0.4x a Go
// producer's rate.
//
// A queued push's metadata and data are copied here at once (the queue's
// memory is reused once it is written; Go copies them again, since a
// thread-pool producer reads a push after the call returned), and checked
// as far as the call's errors go: what Go would refuse at once
// (metadata that may not be JSON, a NULL pointer, a negative partition) is
// not queued but pushed through Go, which says what was wrong. The queue
// crosses into Go when it holds QUEUE_PUSHES pushes or QUEUE_BYTES bytes,
// when a push finds its first push LINGER_NS old (looked at halfway), when any other call on
// the producer comes (flush, close, a tracked push, push_many, claim: they
// see every earlier push written first), and from a goroutine of the
// producer that drains a queue nobody pushes to any more (the tail of a
// burst). A push that finds the queue empty and the producer idle (nothing
// pushed for GAP_NS) goes to Go at once, as the driver's own stage does: a
// producer that pushes now and then pays no latency for the queue.

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "_cgo_export.h"

#define QUEUE_PUSHES 64
#define QUEUE_BYTES (64 << 10)
#define QUEUE_ONE 1024 // metadata + data bytes of a push that may be queued
#define QUEUE_SEGMENTS 8
#define LINGER_NS 20000
#define GAP_NS 2000

typedef struct {
	size_t md_off, md_len, data_off, data_len;
	int64_t partition;
} queued;

struct dshm__queue {
	pthread_mutex_t mu;
	_Atomic uint64_t p; // the producer; 0 once it closed (the queue is then free for another)
	int parked;         // the producer's drain goroutine waits for a wake
	size_t n;
	int64_t first_ns, last_ns;
	char *bytes;
	size_t used, cap;
	queued q[QUEUE_PUSHES];
	struct dshm__queue *next;
};

// Queues are never freed: a closed producer's is reused by the next, and a
// thread's cached pointer stays a queue (checked against the producer it
// is for) whatever happened meanwhile.
static pthread_mutex_t queues_mu = PTHREAD_MUTEX_INITIALIZER;
static dshm__queue *queues;
static __thread dshm__queue *last_queue;
// live counts the queues in use: a process that never queues (Python's
// pushes are all tracked) takes no lock to find none.
static atomic_int live;

#define BUSY ((dshm__queue *)1) // find with try: another thread holds the queue

static int64_t mono_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int lock(dshm__queue *q, int try) {
	if (try) {
		return pthread_mutex_trylock(&q->mu) == 0;
	}
	pthread_mutex_lock(&q->mu);
	return 1;
}

// find returns p's queue locked, or NULL; with create, a new one (for a
// producer Go has just accepted a push of) when p has none; with try, BUSY
// rather than wait for a queue another thread holds (it may be writing
// into a full ring for as long as 64 pushes' timeouts).
static dshm__queue *find(dshm_producer p, int create, int try) {
	if (p == 0 || (!create && atomic_load(&live) == 0)) {
		return NULL;
	}
	dshm__queue *q = last_queue;
	if (q != NULL && atomic_load_explicit(&q->p, memory_order_relaxed) == p) {
		if (!lock(q, try)) {
			return BUSY;
		}
		if (atomic_load_explicit(&q->p, memory_order_relaxed) == p) {
			return q;
		}
		pthread_mutex_unlock(&q->mu);
	}
	pthread_mutex_lock(&queues_mu);
	dshm__queue *free_q = NULL;
	for (q = queues; q != NULL; q = q->next) {
		uint64_t qp = atomic_load(&q->p);
		if (qp == p) {
			break;
		}
		if (qp == 0 && free_q == NULL) {
			free_q = q;
		}
	}
	if (q == NULL && create) {
		q = free_q;
		if (q == NULL && (q = calloc(1, sizeof *q)) != NULL) {
			pthread_mutex_init(&q->mu, NULL);
			q->next = queues;
			queues = q;
		}
		if (q != NULL) {
			pthread_mutex_lock(&q->mu);
			q->n = q->used = 0;
			q->parked = 1;
			q->first_ns = q->last_ns = mono_ns();
			atomic_store(&q->p, p);
			atomic_fetch_add(&live, 1);
			pthread_mutex_unlock(&q->mu);
		}
	}
	pthread_mutex_unlock(&queues_mu);
	if (q == NULL) {
		return NULL;
	}
	if (!lock(q, try)) {
		return BUSY;
	}
	if (atomic_load(&q->p) != p) { // closed meanwhile
		pthread_mutex_unlock(&q->mu);
		return NULL;
	}
	last_queue = q;
	return q;
}

// drain_locked pushes what q holds through Go, in order; the failures of
// single pushes are the next flush's to report, as for any untracked push.
// With tail (the end of a burst: nobody pushes to write them), Go writes
// them into the ring at once too, rather than stage them for its linger.
static int drain_locked(dshm__queue *q, int tail) {
	if (q->n == 0) {
		return DSHM_OK;
	}
	dshm_push pushes[QUEUE_PUSHES];
	dshm_segment segs[QUEUE_PUSHES];
	for (size_t i = 0; i < q->n; i++) {
		queued *e = &q->q[i];
		segs[i] = (dshm_segment){q->bytes + e->data_off, e->data_len};
		// No metadata is NULL, as it came (a pointer to 0 bytes is not JSON).
		pushes[i] = (dshm_push){e->md_len > 0 ? q->bytes + e->md_off : NULL, e->md_len, &segs[i],
		                        e->data_len > 0 ? 1 : 0, e->partition};
	}
	size_t n = q->n;
	q->n = q->used = 0;
	int rc = dshmgo_producer_push_queued(atomic_load(&q->p), pushes, n, tail);
	q->last_ns = mono_ns(); // pushes that follow at once are queued
	return rc;
}

// dshm__queue_drain writes what p's queue holds: every other call on the
// producer makes it first. With try (a flush with a timeout) it leaves a
// queue that another thread is writing to that thread.
int dshm__queue_drain(dshm_producer p, int try) {
	dshm__queue *q = find(p, 0, try);
	if (q == NULL || q == BUSY) {
		return DSHM_OK;
	}
	int rc = drain_locked(q, 0);
	pthread_mutex_unlock(&q->mu);
	return rc;
}

// dshm__queue_drain_all writes what every queue holds: a driver closing
// closes its producers, and what their queues hold was pushed before.
void dshm__queue_drain_all(void) {
	pthread_mutex_lock(&queues_mu);
	dshm__queue *all = queues; // queues are only ever added at the head
	pthread_mutex_unlock(&queues_mu);
	for (dshm__queue *q = all; q != NULL; q = q->next) {
		uint64_t p = atomic_load(&q->p);
		if (p != 0) {
			dshm__queue_drain(p, 0);
		}
	}
}

// release_locked frees q for another producer.
static void release_locked(dshm__queue *q) {
	atomic_store(&q->p, 0);
	atomic_fetch_sub(&live, 1);
	free(q->bytes);
	q->bytes = NULL;
	q->cap = q->n = q->used = 0;
	if (last_queue == q) {
		last_queue = NULL;
	}
}

// dshm__queue_close drains p's queue and frees it for another producer;
// pushes to p that come after go to Go, which says p is closed.
int dshm__queue_close(dshm_producer p) {
	dshm__queue *q = find(p, 0, 0);
	if (q == NULL) {
		return DSHM_OK;
	}
	int rc = drain_locked(q, 0);
	release_locked(q);
	pthread_mutex_unlock(&q->mu);
	return rc;
}

// dshm__queue_forget frees p's queue without writing it: p's driver closed
// (after dshm__queue_drain_all), and p with it.
void dshm__queue_forget(dshm_producer p) {
	dshm__queue *q = find(p, 0, 0);
	if (q != NULL) {
		release_locked(q);
		pthread_mutex_unlock(&q->mu);
	}
}

// dshm__queue_tail is the producer's drain goroutine's look at its queue:
// it drains a queue whose first push is linger old, and says whether the
// queue holds pushes or another thread holds it (1: look again later), is
// empty (0: the goroutine parks, and the next push queued wakes it), or is
// gone (-1: the producer closed).
int dshm__queue_tail(dshm_producer p) {
	dshm__queue *q = find(p, 0, 1);
	if (q == BUSY) {
		return 1;
	}
	if (q == NULL) {
		return -1;
	}
	if (q->n > 0 && mono_ns() - q->first_ns >= LINGER_NS) {
		drain_locked(q, 1); // a failure is the next flush's, as for any untracked push
	}
	int open = q->n > 0;
	if (!open) {
		q->parked = 1;
	}
	pthread_mutex_unlock(&q->mu);
	return open;
}

// json_value checks one JSON value at s[*i] (RFC 8259), conservatively:
// bytes >= 0x80 and nesting deeper than 64 are left to Go (0), so that
// what this accepts Go accepts too; anything else may be queued.
static int json_value(const char *s, size_t n, size_t *i, int depth);

static void json_space(const char *s, size_t n, size_t *i) {
	while (*i < n && (s[*i] == ' ' || s[*i] == '\t' || s[*i] == '\n' || s[*i] == '\r')) {
		(*i)++;
	}
}

static int json_string(const char *s, size_t n, size_t *i) {
	(*i)++; // the quote
	while (*i < n) {
		unsigned char c = (unsigned char)s[(*i)++];
		if (c == '"') {
			return 1;
		}
		if (c < 0x20 || c >= 0x80) {
			return 0;
		}
		if (c == '\\') {
			if (*i >= n) {
				return 0;
			}
			c = (unsigned char)s[(*i)++];
			if (c == 'u') {
				for (int k = 0; k < 4; k++, (*i)++) {
					if (*i >= n) {
						return 0;
					}
					unsigned char h = (unsigned char)s[*i];
					if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') || (h >= 'A' && h <= 'F'))) {
						return 0;
					}
				}
			} else if (strchr("\"\\/bfnrt", c) == NULL || c == 0) {
				return 0;
			}
		}
	}
	return 0;
}

static int digits(const char *s, size_t n, size_t *i) {
	size_t start = *i;
	while (*i < n && s[*i] >= '0' && s[*i] <= '9') {
		(*i)++;
	}
	return *i > start;
}

static int json_number(const char *s, size_t n, size_t *i) {
	if (s[*i] == '-') {
		(*i)++;
	}
	if (*i < n && s[*i] == '0') {
		(*i)++;
	} else if (!digits(s, n, i)) {
		return 0;
	}
	if (*i < n && s[*i] == '.') {
		(*i)++;
		if (!digits(s, n, i)) {
			return 0;
		}
	}
	if (*i < n && (s[*i] == 'e' || s[*i] == 'E')) {
		(*i)++;
		if (*i < n && (s[*i] == '+' || s[*i] == '-')) {
			(*i)++;
		}
		if (!digits(s, n, i)) {
			return 0;
		}
	}
	return 1;
}

static int json_literal(const char *s, size_t n, size_t *i, const char *lit) {
	size_t k = strlen(lit);
	if (n - *i < k || memcmp(s + *i, lit, k) != 0) {
		return 0;
	}
	*i += k;
	return 1;
}

static int json_value(const char *s, size_t n, size_t *i, int depth) {
	json_space(s, n, i);
	if (*i >= n) {
		return 0;
	}
	switch (s[*i]) {
	case '{':
	case '[': {
		char close = s[*i] == '{' ? '}' : ']';
		int object = close == '}';
		if (depth >= 64) {
			return 0;
		}
		(*i)++;
		json_space(s, n, i);
		if (*i < n && s[*i] == close) {
			(*i)++;
			return 1;
		}
		for (;;) {
			if (object) {
				json_space(s, n, i);
				if (*i >= n || s[*i] != '"' || !json_string(s, n, i)) {
					return 0;
				}
				json_space(s, n, i);
				if (*i >= n || s[*i] != ':') {
					return 0;
				}
				(*i)++;
			}
			if (!json_value(s, n, i, depth + 1)) {
				return 0;
			}
			json_space(s, n, i);
			if (*i >= n) {
				return 0;
			}
			if (s[*i] == close) {
				(*i)++;
				return 1;
			}
			if (s[*i] != ',') {
				return 0;
			}
			(*i)++;
		}
	}
	case '"':
		return json_string(s, n, i);
	case 't':
		return json_literal(s, n, i, "true");
	case 'f':
		return json_literal(s, n, i, "false");
	case 'n':
		return json_literal(s, n, i, "null");
	default:
		if (s[*i] == '-' || (s[*i] >= '0' && s[*i] <= '9')) {
			return json_number(s, n, i);
		}
		return 0;
	}
}

int dshm__json_ok(const char *s, size_t n) {
	size_t i = 0;
	if (!json_value(s, n, &i, 0)) {
		return 0;
	}
	json_space(s, n, &i);
	return i == n;
}

// queueable says whether a push can wait in the queue: what Go would
// refuse at once is pushed through Go, which says what was wrong.
static int queueable(const char *md, size_t md_len, const dshm_segment *segs, size_t nsegs,
                     int64_t partition, size_t *data_len) {
	// Metadata of 0 bytes at a pointer is not JSON: Go says so.
	if (nsegs > QUEUE_SEGMENTS || md_len > QUEUE_ONE || (nsegs > 0 && segs == NULL) ||
	    (md == NULL && md_len > 0) || (md != NULL && md_len == 0) ||
	    (partition != DSHM_ANY_PARTITION && (partition < 0 || partition > ((int64_t)1 << 31)))) {
		return 0;
	}
	size_t total = 0;
	for (size_t k = 0; k < nsegs; k++) {
		// Each bounded before the sum, which must not wrap.
		if ((segs[k].size > 0 && segs[k].data == NULL) || segs[k].size > QUEUE_ONE) {
			return 0;
		}
		total += segs[k].size;
		if (total > QUEUE_ONE) {
			return 0;
		}
	}
	if (md_len + total > QUEUE_ONE) {
		return 0;
	}
	if (md_len > 0 && !(md_len == 2 && md[0] == '{' && md[1] == '}') && !dshm__json_ok(md, md_len)) {
		return 0;
	}
	*data_len = total;
	return 1;
}

int dshm__queue_push(dshm_producer p, const char *md, size_t md_len, const dshm_segment *segs,
                     size_t nsegs, int64_t partition) {
	size_t data_len = 0;
	if (!queueable(md, md_len, segs, nsegs, partition, &data_len)) {
		int rc = dshm__queue_drain(p, 0);
		if (rc != DSHM_OK) {
			return rc;
		}
		return dshmgo_producer_push(p, (char *)md, md_len, (dshm_segment *)segs, nsegs, partition, NULL);
	}
	// The clock is read when the queue is empty and halfway, not for
	// every push: read every push, it took 13% of the producer's samples
	// in a profile on this VM.
	dshm__queue *q = find(p, 0, 0);
	int64_t now = q == NULL || q->n % (QUEUE_PUSHES / 2) == 0 ? mono_ns() : q->last_ns;
	if (q == NULL || (q->n == 0 && now - q->last_ns > GAP_NS)) {
		// The producer's first push, or one after a pause: at once. The
		// pause is counted from the end of this push (a push into Go can
		// take longer than the pause: measured from its start, a stream
		// would never be queued).
		if (q != NULL) {
			pthread_mutex_unlock(&q->mu);
		}
		int rc = dshmgo_producer_push(p, (char *)md, md_len, (dshm_segment *)segs, nsegs, partition, NULL);
		if (rc == DSHM_OK && (q = find(p, q == NULL, 0)) != NULL) {
			q->last_ns = mono_ns();
			pthread_mutex_unlock(&q->mu);
		}
		return rc;
	}
	size_t need = md_len + data_len;
	if (q->cap - q->used < need) {
		if (q->cap < QUEUE_BYTES) {
			size_t cap = q->cap == 0 ? 4096 : q->cap * 2;
			while (cap < q->used + need) {
				cap *= 2;
			}
			char *b = realloc(q->bytes, cap); // on failure the old buffer stands
			if (b == NULL) {
				int rc = drain_locked(q, 0);
				pthread_mutex_unlock(&q->mu);
				if (rc != DSHM_OK) {
					return rc;
				}
				return dshmgo_producer_push(p, (char *)md, md_len, (dshm_segment *)segs, nsegs, partition, NULL);
			}
			q->bytes = b;
			q->cap = cap;
		} else {
			int rc = drain_locked(q, 0);
			if (rc != DSHM_OK) {
				pthread_mutex_unlock(&q->mu);
				return rc;
			}
		}
	}
	queued *e = &q->q[q->n];
	e->md_off = q->used;
	e->md_len = md_len;
	if (md_len > 0) {
		memcpy(q->bytes + q->used, md, md_len);
	}
	q->used += md_len;
	e->data_off = q->used;
	e->data_len = data_len;
	for (size_t k = 0; k < nsegs; k++) {
		if (segs[k].size > 0) {
			memcpy(q->bytes + q->used, segs[k].data, segs[k].size);
			q->used += segs[k].size;
		}
	}
	e->partition = partition;
	if (q->n++ == 0) {
		q->first_ns = now;
	}
	q->last_ns = now; // as of the last clock read
	int rc = DSHM_OK, wake = 0;
	if (q->n == QUEUE_PUSHES || now - q->first_ns >= LINGER_NS) {
		rc = drain_locked(q, 0);
	} else if (q->parked) {
		q->parked = 0;
		wake = 1;
	}
	pthread_mutex_unlock(&q->mu);
	if (wake) {
		dshmgo_producer_queue_wake(p);
	}
	return rc;
}
