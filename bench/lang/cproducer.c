// cproducer.c: the C producer of `bench lang`: pushes WARM + N events of
// SIZE bytes (each starting with its sequence number, as the Go producer's
// do) through libdiaspora_shm, untracked, and flushes at the end; one
// dshm_producer_push per event, or with "many" dshm_producer_push_many
// calls of 64.
//   cproducer ROOT SHM TOPIC N WARM SIZE [many]
// Prints RESULT {"events_per_s": ...} (the producer's own rate).

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "diaspora_shm.h"

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(const char *what, int rc) {
	fprintf(stderr, "cproducer: %s: status %d: %s\n", what, rc, dshm_last_error());
	return 1;
}

int main(int argc, char **argv) {
	if (argc != 7 && argc != 8) {
		fprintf(stderr, "usage: cproducer ROOT SHM TOPIC N WARM SIZE [many]\n");
		return 2;
	}
	int many = argc == 8 && strcmp(argv[7], "many") == 0;
	long n = atol(argv[4]), warm = atol(argv[5]);
	size_t size = (size_t)atol(argv[6]);
	char options[4096];
	snprintf(options, sizeof options, "{\"root_path\": \"%s\", \"shm_path\": \"%s\"}", argv[1], argv[2]);
	dshm_driver d;
	dshm_topic t;
	dshm_producer p;
	int rc;
	if ((rc = dshm_driver_open("shm", options, &d)) != DSHM_OK) return fail("driver", rc);
	if ((rc = dshm_topic_open(d, argv[3], &t)) != DSHM_OK) return fail("topic", rc);
	if ((rc = dshm_producer_open(t, "c-bench", NULL, &p)) != DSHM_OK) return fail("producer", rc);
	// A window of buffers, as the Go producer reuses its sources: a push
	// reads its data until it completes.
	enum { WINDOW = 4096 };
	unsigned char *arena = calloc(WINDOW, size < 16 ? 16 : size);
	double start = 0;
	enum { CHUNK = 64 };
	dshm_push pushes[CHUNK];
	dshm_segment segs[CHUNK];
	int queued = 0;
	for (long i = 0; i < warm + n; i++) {
		if (i == warm) {
			start = now();
		}
		if (i % WINDOW == 0 && i > 0) {
			if (queued > 0 && (rc = dshm_producer_push_many(p, pushes, (size_t)queued, NULL, NULL)) != DSHM_OK)
				return fail("push_many", rc);
			queued = 0;
			// Every buffer of the window is about to be reused.
			if ((rc = dshm_producer_flush(p, DSHM_FOREVER)) != DSHM_OK) return fail("flush", rc);
		}
		unsigned char *buf = arena + (size_t)(i % WINDOW) * size;
		uint64_t seq = (uint64_t)i, ts = 0;
		if (size >= 16) {
			memcpy(buf, &seq, 8);
			memcpy(buf + 8, &ts, 8);
		}
		if (many) {
			segs[queued] = (dshm_segment){buf, size};
			pushes[queued] = (dshm_push){"{}", 2, &segs[queued], 1, DSHM_ANY_PARTITION};
			if (++queued == CHUNK || i == warm + n - 1 || i + 1 == warm) {
				if ((rc = dshm_producer_push_many(p, pushes, (size_t)queued, NULL, NULL)) != DSHM_OK)
					return fail("push_many", rc);
				queued = 0;
			}
			continue;
		}
		dshm_segment seg = {buf, size};
		if ((rc = dshm_producer_push(p, "{}", 2, &seg, 1, DSHM_ANY_PARTITION, NULL)) != DSHM_OK) return fail("push", rc);
	}
	if ((rc = dshm_producer_flush(p, DSHM_FOREVER)) != DSHM_OK) return fail("flush", rc);
	double secs = now() - start;
	dshm_producer_close(p);
	dshm_topic_release(t);
	dshm_driver_close(d);
	printf("RESULT {\"n\": %ld, \"seconds\": %.6f, \"events_per_s\": %.1f}\n", n, secs, (double)n / secs);
	return 0;
}
