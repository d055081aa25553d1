// simulation.c: a small "simulation" in C that produces float32 frames to a
// diaspora-shm topic, writing each frame straight into the shared ring
// (claim, fill, commit) with its metadata {"frame": i, "width": w,
// "height": h}, and ends the stream when done.
//
//   gcc -I capi -o simulation examples/c/simulation.c -Llib -ldiaspora_shm
//   ./simulation ROOT SHM TOPIC FRAMES WIDTH HEIGHT
//
// Pixel k of frame i holds (float)((i * 131 + k) % 4093), so that a
// consumer can check every value.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diaspora_shm.h"

static int fail(const char *what, int rc) {
	fprintf(stderr, "simulation: %s: status %d: %s\n", what, rc, dshm_last_error());
	return 1;
}

int main(int argc, char **argv) {
	if (argc != 7) {
		fprintf(stderr, "usage: simulation ROOT SHM TOPIC FRAMES WIDTH HEIGHT\n");
		return 2;
	}
	const char *topic_name = argv[3];
	long frames = atol(argv[4]), width = atol(argv[5]), height = atol(argv[6]);
	size_t frame_bytes = (size_t)width * (size_t)height * sizeof(float);

	char options[4096];
	snprintf(options, sizeof options, "{\"root_path\": \"%s\", \"shm_path\": \"%s\"}", argv[1], argv[2]);
	dshm_driver driver;
	int rc = dshm_driver_open("shm", options, &driver);
	if (rc != DSHM_OK) {
		return fail("open the driver", rc);
	}
	// A ring takes events of up to half its size: room for two frames and
	// their headers.
	size_t ring = 1 << 20;
	while (ring / 2 < frame_bytes + 4096) {
		ring *= 2;
	}
	char topic_options[256];
	snprintf(topic_options, sizeof topic_options, "{\"ring_size\": %zu}", ring);
	rc = dshm_topic_create(driver, topic_name, topic_options, NULL, NULL, NULL);
	if (rc != DSHM_OK && rc != DSHM_EEXISTS) {
		return fail("create the topic", rc);
	}
	dshm_topic topic;
	if ((rc = dshm_topic_open(driver, topic_name, &topic)) != DSHM_OK) {
		return fail("open the topic", rc);
	}
	dshm_producer producer;
	if ((rc = dshm_producer_open(topic, "simulation", NULL, &producer)) != DSHM_OK) {
		return fail("make the producer", rc);
	}
	for (long i = 0; i < frames; i++) {
		char md[128];
		int mdlen = snprintf(md, sizeof md, "{\"frame\": %ld, \"width\": %ld, \"height\": %ld}", i, width, height);
		dshm_claim claim;
		void *where;
		rc = dshm_producer_claim(producer, md, (size_t)mdlen, frame_bytes, DSHM_ANY_PARTITION, &claim, &where);
		if (rc != DSHM_OK) {
			return fail("claim a frame", rc);
		}
		float *pixels = where;
		for (size_t k = 0; k < (size_t)width * (size_t)height; k++) {
			pixels[k] = (float)((i * 131 + (long)k) % 4093);
		}
		uint64_t id;
		if ((rc = dshm_claim_commit(claim, DSHM_FOREVER, &id)) != DSHM_OK) {
			return fail("commit a frame", rc);
		}
		printf("frame %ld id %llu\n", i, (unsigned long long)id);
	}
	if ((rc = dshm_producer_close(producer)) != DSHM_OK) {
		return fail("close the producer", rc);
	}
	if ((rc = dshm_topic_mark_complete(topic)) != DSHM_OK) {
		return fail("end the stream", rc);
	}
	dshm_topic_release(topic);
	if ((rc = dshm_driver_close(driver)) != DSHM_OK) {
		return fail("close the driver", rc);
	}
	return 0;
}
