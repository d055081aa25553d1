// queue.c: untracked one-push calls, which wait in the library's push
// queue, from two threads, between the producer's other calls. Run by
// capi_test.go (TestUntrackedPushesThroughTheQueue) as: queue ROOT SHM
// TOPIC [pool] (pool: the producer's pushes run on a thread pool, which
// reads them after the call returned), with a Go consumer reading the
// topic meanwhile. Each thread's events carry {"t":T,"i":I} and 16 bytes
// of pattern(T, I), from a buffer of their own (valid until the flush, as
// the header asks; the queue's memory is reused at once). It prints
// "TAIL" once it pushed 5 events {"tail":K} it does not flush, waits for a
// line on stdin, pushes 3 {"last":K} and closes the producer without a
// flush, then 3 {"drv":K} through another producer, and closes the driver.

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

#define PER_THREAD 3000

static dshm_producer prod;

static void pattern(int t, int i, unsigned char *b) {
	for (int k = 0; k < 16; k++) b[k] = (unsigned char)(t * 101 + i * 7 + k);
}

static void *pusher(void *arg) {
	int t = (int)(long)arg;
	static unsigned char bufs[2][PER_THREAD][16];
	char md[64];
	for (int i = 0; i < PER_THREAD; i++) {
		unsigned char *buf = bufs[t][i];
		int n = snprintf(md, sizeof md, i % 3 ? "{\"t\":%d,\"i\":%d}" : "{ \"t\" : %d , \"i\" : %d }", t, i);
		pattern(t, i, buf);
		dshm_segment seg = {buf, 16};
		if (t == 0 && i % 100 == 99) { // a tracked push: the queue is written before it
			dshm_future f;
			uint64_t id;
			OK(dshm_producer_push(prod, md, (size_t)n, &seg, 1, DSHM_ANY_PARTITION, &f));
			OK(dshm_future_wait_id(f, 10000, &id));
			OK(dshm_future_release(f));
		} else if (t == 0 && i % 250 == 249) { // push_many of one
			dshm_push one = {md, (size_t)n, &seg, 1, DSHM_ANY_PARTITION};
			OK(dshm_producer_push_many(prod, &one, 1, NULL, NULL));
		} else if (t == 1 && i % 400 == 399) { // a claim, written in place
			dshm_claim c;
			void *where;
			uint64_t id;
			OK(dshm_producer_claim(prod, md, (size_t)n, 16, DSHM_ANY_PARTITION, &c, &where));
			memcpy(where, buf, 16);
			OK(dshm_claim_commit(c, 10000, &id));
		} else {
			OK(dshm_producer_push(prod, md, (size_t)n, &seg, 1, i % 2, NULL));
		}
		if (t == 1 && i % 1000 == 500) {
			usleep(1000); // a pause: the next push goes to Go at once
		}
		if (t == 0 && i == PER_THREAD / 2) {
			// What Go would refuse at once is still refused at once,
			// and the queued pushes before it are not lost.
			IS(dshm_producer_push(prod, "{oops", 5, NULL, 0, DSHM_ANY_PARTITION, NULL), DSHM_EJSON);
			IS(dshm_producer_push(prod, "{\"a\":1}", 7, NULL, 0, -7, NULL), DSHM_EINVAL);
			IS(dshm_producer_push(prod, NULL, 3, NULL, 0, DSHM_ANY_PARTITION, NULL), DSHM_EINVAL);
			IS(dshm_producer_push(prod, "{}", 2, NULL, 1, DSHM_ANY_PARTITION, NULL), DSHM_EINVAL);
			IS(dshm_producer_push(prod, "{}", 0, NULL, 0, DSHM_ANY_PARTITION, NULL), DSHM_EJSON); // 0 bytes: not JSON
			dshm_segment wrap[2] = {{buf, 1}, {buf, SIZE_MAX}}; // sizes whose sum wraps to 0
			IS(dshm_producer_push(prod, "{}", 2, wrap, 2, DSHM_ANY_PARTITION, NULL), DSHM_EINVAL);
			OK(dshm_producer_push(prod, "{\"t\":3,\"\xc3\xa9\":1}", 14, NULL, 0, DSHM_ANY_PARTITION, NULL)); // to Go at once
		}
	}
	return NULL;
}

int main(int argc, char **argv) {
	if (argc != 4 && argc != 5) {
		fprintf(stderr, "usage: queue ROOT SHM TOPIC [pool]\n");
		return 2;
	}
	char opts[4096];
	snprintf(opts, sizeof opts, "{\"root_path\": \"%s\", \"shm_path\": \"%s\"}", argv[1], argv[2]);
	dshm_driver d;
	dshm_topic t;
	OK(dshm_driver_open("shm", opts, &d));
	OK(dshm_topic_open(d, argv[3], &t));
	char pargs[128] = "{}";
	dshm_thread_pool pool = 0;
	if (argc == 5) {
		OK(dshm_driver_make_thread_pool(d, 2, &pool));
		snprintf(pargs, sizeof pargs, "{\"thread_pool\": %llu}", (unsigned long long)pool);
	}
	OK(dshm_producer_open(t, "queued", pargs, &prod));
	pthread_t th[2];
	for (long k = 0; k < 2; k++) pthread_create(&th[k], NULL, pusher, (void *)k);
	for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
	OK(dshm_producer_flush(prod, 10000));

	// A push the topic's validator refuses fails in Go, after the queue:
	// the next flush reports it; the pushes around it are made.
	for (int k = 0; k < 3; k++) {
		OK(dshm_producer_push(prod, "{\"t\":2,\"i\":0}", 13, NULL, 0, 0, NULL));
		OK(dshm_producer_push(prod, "{\"bad\":1}", 9, NULL, 0, 0, NULL));
		OK(dshm_producer_push(prod, "{\"t\":2,\"i\":1}", 13, NULL, 0, 0, NULL));
	}
	CHECK(dshm_producer_flush(prod, 10000) != DSHM_OK && strstr(dshm_last_error(), "3 untracked") != NULL,
	      "the flush reports the 3 pushes the validator refused");
	OK(dshm_producer_flush(prod, 10000));

	// Events without metadata (NULL, 0: {}), queued like any other.
	static unsigned char nodata[10][8];
	for (int k = 0; k < 10; k++) {
		memset(nodata[k], 'a' + k, 8);
		dshm_segment seg = {nodata[k], 8};
		OK(dshm_producer_push(prod, NULL, 0, &seg, 1, 1, NULL));
	}
	OK(dshm_producer_flush(prod, 10000));

	// The tail of a burst is written without a flush.
	for (int k = 0; k < 5; k++) {
		char md[32];
		int n = snprintf(md, sizeof md, "{\"tail\":%d}", k);
		OK(dshm_producer_push(prod, md, (size_t)n, NULL, 0, 0, NULL));
	}
	printf("TAIL\n");
	fflush(stdout);
	char line[16];
	if (fgets(line, sizeof line, stdin) == NULL) {
		fprintf(stderr, "no line on stdin\n");
		return 1;
	}
	// Closing writes what is queued.
	for (int k = 0; k < 3; k++) {
		char md[32];
		int n = snprintf(md, sizeof md, "{\"last\":%d}", k);
		OK(dshm_producer_push(prod, md, (size_t)n, NULL, 0, 0, NULL));
	}
	OK(dshm_producer_close(prod));
	IS(dshm_producer_push(prod, "{}", 2, NULL, 0, 0, NULL), DSHM_EHANDLE);
	IS(dshm_producer_flush(prod, 0), DSHM_EHANDLE);
	// Closing the driver writes what its producers queued.
	dshm_producer p2;
	OK(dshm_producer_open(t, "queued2", NULL, &p2));
	for (int k = 0; k < 3; k++) {
		char md[32];
		int n = snprintf(md, sizeof md, "{\"drv\":%d}", k);
		OK(dshm_producer_push(p2, md, (size_t)n, NULL, 0, 0, NULL));
	}
	if (pool != 0) OK(dshm_thread_pool_release(pool));
	OK(dshm_topic_release(t));
	OK(dshm_driver_close(d));
	if (failures) {
		fprintf(stderr, "%d failures\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
