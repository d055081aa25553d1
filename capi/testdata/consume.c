// consume.c: reads N events of one partition and checks every ID and byte.
//   consume ROOT SHM TOPIC N
// Event i: metadata {"i": i}, ID i, data of (i % 5) * 1000 + 3 bytes where
// byte k is (i * 31 + k * 7) & 0xff. Prints "ok N".

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diaspora_shm.h"

static int fail(const char *what, int rc) {
	fprintf(stderr, "consume: %s: status %d: %s\n", what, rc, dshm_last_error());
	return 1;
}

int main(int argc, char **argv) {
	if (argc != 5) {
		fprintf(stderr, "usage: consume ROOT SHM TOPIC N\n");
		return 2;
	}
	long n = atol(argv[4]);
	char options[4096];
	snprintf(options, sizeof options, "{\"root_path\": \"%s\", \"shm_path\": \"%s\"}", argv[1], argv[2]);
	dshm_driver d;
	dshm_topic t;
	dshm_consumer c;
	int rc;
	if ((rc = dshm_driver_open("shm", options, &d)) != DSHM_OK) return fail("driver", rc);
	if ((rc = dshm_topic_open(d, argv[3], &t)) != DSHM_OK) return fail("topic", rc);
	if ((rc = dshm_consumer_open(t, "c-consumer", "{\"data\": \"all\"}", NULL, NULL, NULL, &c)) != DSHM_OK)
		return fail("consumer", rc);
	for (long i = 0; i < n; i++) {
		dshm_event ev;
		dshm_event_info info;
		if ((rc = dshm_consumer_pull(c, 30000, &ev)) != DSHM_OK) return fail("pull", rc);
		if ((rc = dshm_event_get_info(ev, &info)) != DSHM_OK) return fail("info", rc);
		char want[64];
		snprintf(want, sizeof want, "{\"i\":%ld}", i);
		size_t size = (size_t)(i % 5) * 1000 + 3;
		if (info.id != (uint64_t)i || strcmp(info.metadata, want) != 0 || info.data_size != size) {
			fprintf(stderr, "consume: event %ld: id %llu metadata %s size %zu\n", i,
			        (unsigned long long)info.id, info.metadata, info.data_size);
			return 1;
		}
		dshm_segment segs[8];
		size_t nseg;
		if ((rc = dshm_event_segments(ev, segs, 8, &nseg)) != DSHM_OK) return fail("segments", rc);
		size_t k = 0;
		for (size_t s = 0; s < nseg; s++) {
			const unsigned char *p = segs[s].data;
			for (size_t j = 0; j < segs[s].size; j++, k++) {
				if (p[j] != (unsigned char)((i * 31 + (long)k * 7) & 0xff)) {
					fprintf(stderr, "consume: event %ld byte %zu is %u\n", i, k, p[j]);
					return 1;
				}
			}
		}
		if ((rc = dshm_event_acknowledge(ev)) != DSHM_OK) return fail("acknowledge", rc);
		dshm_event_release(ev);
	}
	dshm_consumer_close(c);
	dshm_topic_release(t);
	dshm_driver_close(d);
	printf("ok %ld\n", n);
	return 0;
}
