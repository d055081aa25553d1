// api_test.c: the C interface end to end in one process, and its answers to
// bad input. Run by capi_test.go as: api_test ROOT SHM
// Every check prints what failed and exits 1.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

static char opts[4096];

// A selector of bytes [2, 6) and [10, 12) of every event.
static int pick(void *ctx, const char *md, size_t mdlen, size_t size, dshm_range *r, size_t cap, size_t *n) {
	(void)md, (void)mdlen;
	*(int *)ctx += 1;
	if (size < 12) {
		*n = 0;
		return DSHM_OK;
	}
	if (cap < 2) {
		*n = 2;
		return DSHM_ERANGE;
	}
	r[0].offset = 2, r[0].size = 4;
	r[1].offset = 10, r[1].size = 2;
	*n = 2;
	return DSHM_OK;
}

static char arena[1 << 16];
static size_t arena_used;

// An allocator handing out pieces of a static arena, in two buffers.
static int carve(void *ctx, const char *md, size_t mdlen, size_t size, dshm_buffer *b, size_t cap, size_t *n) {
	(void)ctx, (void)md, (void)mdlen, (void)cap;
	if (arena_used + size > sizeof arena) {
		return -100;
	}
	size_t half = size / 2;
	b[0].data = arena + arena_used, b[0].size = half;
	b[1].data = arena + arena_used + half, b[1].size = size - half;
	arena_used += size;
	*n = 2;
	return DSHM_OK;
}

static int refuse(void *ctx, const char *md, size_t mdlen, size_t size, dshm_range *r, size_t cap, size_t *n) {
	(void)ctx, (void)md, (void)mdlen, (void)size, (void)r, (void)cap, (void)n;
	return -42;
}

struct seen {
	int count;
	uint64_t last;
};

static int count_events(void *ctx, dshm_event ev) {
	struct seen *s = ctx;
	dshm_event_info info;
	if (dshm_event_get_info(ev, &info) != DSHM_OK) {
		return -1;
	}
	s->count++;
	s->last = info.id;
	dshm_event_release(ev);
	return s->count == 3 ? DSHM_ESTOP : DSHM_OK;
}

static void fill(unsigned char *p, size_t n, unsigned seed) {
	for (size_t i = 0; i < n; i++) {
		p[i] = (unsigned char)(seed * 31 + i * 7);
	}
}

int main(int argc, char **argv) {
	if (argc != 3) {
		fprintf(stderr, "usage: api_test ROOT SHM\n");
		return 2;
	}
	snprintf(opts, sizeof opts, "{\"root_path\": \"%s\", \"shm_path\": \"%s\"}", argv[1], argv[2]);

	dshm_driver d = 0;
	// Bad input to the driver.
	IS(dshm_driver_open("shm", opts, NULL), DSHM_EINVAL);
	IS(dshm_driver_open(NULL, opts, &d), DSHM_EINVAL);
	IS(dshm_driver_open("nosuch", opts, &d), DSHM_ERROR);
	SAYS("nosuch");
	IS(dshm_driver_open("shm", "{not json", &d), DSHM_EJSON);
	IS(dshm_driver_open("shm", "{\"bogus_option\": 1}", &d), DSHM_EINVAL);
	SAYS("bogus_option");
	CHECK(d == 0, "a failed open leaves the handle 0");
	OK(dshm_driver_open("shm", opts, &d));

	// Topics.
	OK(dshm_topic_create(d, "frames", "{\"num_partitions\": 2, \"ring_size\": \"1MiB\"}", NULL, NULL, NULL));
	IS(dshm_topic_create(d, "frames", NULL, NULL, NULL, NULL), DSHM_EEXISTS);
	SAYS("frames");
	OK(dshm_topic_create(d, "checked", NULL,
	                     "{\"type\": \"schema\", \"schema\": {\"type\": \"object\", \"required\": [\"step\"]}}",
	                     NULL, NULL));
	IS(dshm_topic_create(d, "bad", NULL, "{\"type\": \"nosuch\"}", NULL, NULL), DSHM_EINVAL);
	SAYS("nosuch");
	int exists = -1;
	OK(dshm_topic_exists(d, "frames", &exists));
	CHECK(exists == 1, "frames exists");
	OK(dshm_topic_exists(d, "other", &exists));
	CHECK(exists == 0, "other does not exist");
	size_t len = 0;
	IS(dshm_topic_list(d, NULL, 0, &len), DSHM_ERANGE);
	CHECK(len > 0, "the list's length is given");
	char *list = malloc(len + 1);
	OK(dshm_topic_list(d, list, len + 1, &len));
	CHECK(strstr(list, "\"frames\"") && strstr(list, "\"checked\""), "list: %s", list);
	free(list);

	dshm_topic t = 0, tc = 0;
	IS(dshm_topic_open(d, "missing", &t), DSHM_ENOTFOUND);
	SAYS("missing");
	OK(dshm_topic_open(d, "frames", &t));
	OK(dshm_topic_open(d, "checked", &tc));
	size_t np = 0;
	OK(dshm_topic_num_partitions(t, &np));
	CHECK(np == 2, "2 partitions, got %zu", np);
	char buf[1024];
	OK(dshm_topic_partitions(t, buf, sizeof buf, &len));
	CHECK(strstr(buf, "\"id\":1") != NULL, "partitions: %s", buf);
	OK(dshm_topic_plugins(tc, buf, sizeof buf, &len));
	CHECK(strstr(buf, "schema") != NULL, "plugins: %s", buf);

	// Producing.
	dshm_producer p = 0;
	IS(dshm_producer_open(t, "sim", "{\"batch_size\": 0}", &p), DSHM_EINVAL);
	IS(dshm_producer_open(t, "sim", "{\"ordering\": \"sideways\"}", &p), DSHM_EINVAL);
	SAYS("sideways");
	IS(dshm_producer_open(t, "sim", "{\"batchsize\": 4}", &p), DSHM_EINVAL);
	SAYS("batchsize");
	OK(dshm_producer_open(t, "sim", "{\"batch_size\": 8, \"ordering\": \"strict\"}", &p));

	enum { N = 40, SIZE = 1000 };
	static unsigned char data[N][SIZE];
	uint64_t ids[N];
	for (int i = 0; i < N; i++) {
		fill(data[i], SIZE, (unsigned)i);
		char md[64];
		int mdlen = snprintf(md, sizeof md, "{\"i\": %d}", i);
		dshm_segment segs[2] = {{data[i], 300}, {data[i] + 300, SIZE - 300}};
		dshm_future f = 0;
		OK(dshm_producer_push(p, md, (size_t)mdlen, segs, 2, i % 2, &f));
		OK(dshm_future_wait_id(f, 10000, &ids[i]));
		int done = 0;
		OK(dshm_future_completed(f, &done));
		CHECK(done == 1, "a waited push is completed");
		OK(dshm_future_release(f));
		IS(dshm_future_release(f), DSHM_EHANDLE); // double release
	}
	// Bad pushes.
	IS(dshm_producer_push(p, "{oops", 5, NULL, 0, DSHM_ANY_PARTITION, NULL), DSHM_EJSON);
	IS(dshm_producer_push(p, NULL, 3, NULL, 0, DSHM_ANY_PARTITION, NULL), DSHM_EINVAL);
	dshm_segment nullseg = {NULL, 10};
	IS(dshm_producer_push(p, "{}", 2, &nullseg, 1, DSHM_ANY_PARTITION, NULL), DSHM_EINVAL);
	IS(dshm_producer_push(p, "{}", 2, NULL, 1, DSHM_ANY_PARTITION, NULL), DSHM_EINVAL);
	IS(dshm_producer_push(p, "{}", 2, NULL, 0, -7, NULL), DSHM_EINVAL);

	// A refused event: the validator's error code. An untracked push that
	// fails is reported by the next flush, once.
	dshm_producer pc = 0;
	OK(dshm_producer_open(tc, "", NULL, &pc)); // a name is made up
	dshm_future f = 0;
	OK(dshm_producer_push(pc, "{\"nostep\": 1}", 13, NULL, 0, DSHM_ANY_PARTITION, &f));
	IS(dshm_future_wait_id(f, 10000, NULL), DSHM_EINVALID);
	OK(dshm_future_release(f));
	OK(dshm_producer_push(pc, "{\"nostep\": 2}", 13, NULL, 0, DSHM_ANY_PARTITION, NULL));
	OK(dshm_producer_push(pc, "{\"step\": 3}", 11, NULL, 0, DSHM_ANY_PARTITION, NULL));
	IS(dshm_producer_flush(pc, 10000), DSHM_EINVALID);
	SAYS("1 untracked push(es) failed");
	OK(dshm_producer_flush(pc, 10000));
	OK(dshm_producer_close(pc));
	IS(dshm_producer_push(pc, "{}", 2, NULL, 0, DSHM_ANY_PARTITION, NULL), DSHM_EHANDLE);

	// Several pushes with one call; a bad one stops the call there.
	{
		dshm_topic tm = 0;
		dshm_producer pm = 0;
		OK(dshm_topic_create(d, "many", NULL, NULL, NULL, NULL));
		OK(dshm_topic_open(d, "many", &tm));
		OK(dshm_producer_open(tm, "many", NULL, &pm));
		dshm_segment one = {data[0], 10};
		dshm_push many[3] = {
			{"{\"m\": 0}", 8, &one, 1, 0},
			{"{\"m\": 1}", 8, NULL, 0, 0},
			{"{\"m\": 2}", 8, NULL, 0, DSHM_ANY_PARTITION},
		};
		dshm_future fs[3];
		size_t pushed = 9;
		OK(dshm_producer_push_many(pm, many, 3, fs, &pushed));
		CHECK(pushed == 3, "pushed %zu", pushed);
		uint64_t a = 0, b = 0;
		OK(dshm_future_wait_id(fs[0], 10000, &a));
		OK(dshm_future_wait_id(fs[2], 10000, &b));
		CHECK(b == a + 2, "ids %llu then %llu", (unsigned long long)a, (unsigned long long)b);
		for (int k = 0; k < 3; k++) OK(dshm_future_release(fs[k]));
		many[1].metadata = "{bad";
		many[1].metadata_size = 4;
		IS(dshm_producer_push_many(pm, many, 3, NULL, &pushed), DSHM_EJSON);
		CHECK(pushed == 1, "pushed %zu before the bad one", pushed);
		SAYS("push 1");
		IS(dshm_producer_push_many(pm, NULL, 3, NULL, &pushed), DSHM_EINVAL);
		// Sizes that cannot be: refused before anything is read or allocated.
		static dshm_push huge[4096];
		for (int k = 0; k < 4096; k++) huge[k] = (dshm_push){"{}", (size_t)1 << 31, NULL, 0, 0};
		IS(dshm_producer_push_many(pm, huge, 4096, NULL, &pushed), DSHM_EINVAL);
		huge[0].metadata_size = ((size_t)1 << 31) - 1;
		IS(dshm_producer_push_many(pm, huge, 4096, NULL, &pushed), DSHM_EINVAL);
		IS(dshm_producer_push(pm, "{}", (size_t)1 << 31, NULL, 0, 0, NULL), DSHM_EINVAL);
		OK(dshm_producer_flush(pm, 10000));
		OK(dshm_producer_close(pm));
		OK(dshm_topic_release(tm));
	}

	// The library reuses a call's memory (the pushes' metadata and segment
	// lists) once its pushes completed. A thread pool's producer reads them
	// after the calls returned: every event must arrive whole, from calls
	// of several pushes and single pushes, tracked or not, interleaved.
	{
		enum { R = 3000, RS = 24, CALL = 7 };
		static unsigned char rdata[R][RS];
		static char rmd[R][32];
		static dshm_future rf[R];
		static unsigned char seen[R];
		size_t nf = 0;
		dshm_topic tr = 0;
		dshm_producer pr = 0;
		dshm_thread_pool pool = 0;
		OK(dshm_topic_create(d, "recycled", NULL, NULL, NULL, NULL));
		OK(dshm_topic_open(d, "recycled", &tr));
		OK(dshm_driver_make_thread_pool(d, 2, &pool));
		char pargs[128];
		snprintf(pargs, sizeof pargs, "{\"thread_pool\": %llu}", (unsigned long long)pool);
		OK(dshm_producer_open(tr, "recycler", pargs, &pr));
		dshm_push calls[CALL];
		dshm_segment csegs[CALL][2];
		size_t queued = 0, calls_made = 0;
		for (int i = 0; i < R; i++) {
			fill(rdata[i], RS, (unsigned)i * 7919u);
			int mdlen = snprintf(rmd[i], sizeof rmd[i], "{\"r\": %d}", i);
			if (i % 10 < 7) {
				csegs[queued][0] = (dshm_segment){rdata[i], 10};
				csegs[queued][1] = (dshm_segment){rdata[i] + 10, RS - 10};
				calls[queued] = (dshm_push){rmd[i], (size_t)mdlen, csegs[queued], 2, DSHM_ANY_PARTITION};
				if (++queued < CALL && i % 10 != 6) continue;
				int tracked = calls_made++ % 3 == 0;
				OK(dshm_producer_push_many(pr, calls, queued, tracked ? rf + nf : NULL, NULL));
				if (tracked) nf += queued;
				queued = 0;
				continue;
			}
			dshm_segment one = {rdata[i], RS};
			OK(dshm_producer_push(pr, rmd[i], (size_t)mdlen, &one, 1, DSHM_ANY_PARTITION, i % 10 == 9 ? &rf[nf++] : NULL));
		}
		OK(dshm_producer_flush(pr, 10000));
		for (size_t k = 0; k < nf; k++) {
			OK(dshm_future_wait_id(rf[k], 10000, NULL));
			OK(dshm_future_release(rf[k]));
		}
		dshm_consumer cr = 0;
		OK(dshm_consumer_open(tr, "recycled-reader", "{\"data\": \"all\"}", NULL, NULL, NULL, &cr));
		int whole = 0;
		for (int k = 0; k < R; k++) {
			dshm_event ev = 0;
			OK(dshm_consumer_pull(cr, 10000, &ev));
			dshm_event_info info;
			OK(dshm_event_get_info(ev, &info));
			int r = -1;
			if (sscanf(info.metadata, "{\"r\":%d}", &r) == 1 && r >= 0 && r < R && !seen[r]) {
				seen[r] = 1;
				dshm_segment segs[2];
				size_t n = 0, off = 0;
				OK(dshm_event_segments(ev, segs, 2, &n));
				int same = 1;
				for (size_t j = 0; j < n; j++) {
					same &= off + segs[j].size <= RS && memcmp(segs[j].data, rdata[r] + off, segs[j].size) == 0;
					off += segs[j].size;
				}
				whole += same && off == RS;
			} else {
				CHECK(0, "event %d: metadata %s is no push's, or a second time", k, info.metadata);
			}
			OK(dshm_event_release(ev));
		}
		CHECK(whole == R, "%d of %d events arrived whole", whole, R);
		OK(dshm_consumer_close(cr));
		OK(dshm_producer_close(pr));
		OK(dshm_thread_pool_release(pool));
		OK(dshm_topic_release(tr));
	}

	// Untracked failures spread over many calls, several pushes a call and
	// one, are each counted once by the flush after them.
	{
		dshm_producer pf = 0;
		OK(dshm_producer_open(tc, "counted", NULL, &pf));
		dshm_push calls[7];
		size_t queued = 0;
		for (int i = 0; i < 280; i++) {
			calls[queued++] = i % 10 == 3 ? (dshm_push){"{\"nostep\": 1}", 13, NULL, 0, DSHM_ANY_PARTITION}
			                             : (dshm_push){"{\"step\": 1}", 11, NULL, 0, DSHM_ANY_PARTITION};
			if (queued == 7) {
				OK(dshm_producer_push_many(pf, calls, queued, NULL, NULL));
				queued = 0;
			}
		}
		for (int i = 0; i < 300; i++) {
			if (i % 5 == 0) OK(dshm_producer_push(pf, "{\"nostep\": 2}", 13, NULL, 0, DSHM_ANY_PARTITION, NULL));
			else OK(dshm_producer_push(pf, "{\"step\": 2}", 11, NULL, 0, DSHM_ANY_PARTITION, NULL));
		}
		IS(dshm_producer_flush(pf, 10000), DSHM_EINVALID);
		SAYS("88 untracked push(es) failed");
		OK(dshm_producer_flush(pf, 10000));
		OK(dshm_producer_close(pf));
	}

	// Zero-copy produce.
	dshm_claim cl = 0;
	void *where = NULL;
	OK(dshm_producer_claim(p, "{\"claimed\": true}", 17, 64, 0, &cl, &where));
	CHECK(where != NULL, "a claim gives its memory");
	memset(where, 0xab, 64);
	uint64_t claimed_id = 0;
	OK(dshm_claim_commit(cl, 10000, &claimed_id));
	IS(dshm_claim_commit(cl, 10000, NULL), DSHM_EHANDLE);
	OK(dshm_producer_claim(p, "{}", 2, 16, 0, &cl, &where));
	OK(dshm_claim_abort(cl));
	IS(dshm_claim_abort(cl), DSHM_EHANDLE);
	IS(dshm_producer_claim(p, "{}", 2, 16, 0, NULL, &where), DSHM_EINVAL);
	OK(dshm_producer_flush(p, 10000));

	// Wrong kinds and dead handles.
	IS(dshm_producer_push(t, "{}", 2, NULL, 0, DSHM_ANY_PARTITION, NULL), DSHM_EHANDLE);
	SAYS("is a topic, not a producer");
	IS(dshm_producer_push(0, "{}", 2, NULL, 0, DSHM_ANY_PARTITION, NULL), DSHM_EHANDLE);
	IS(dshm_producer_push(987654321, "{}", 2, NULL, 0, DSHM_ANY_PARTITION, NULL), DSHM_EHANDLE);
	IS(dshm_event_release(p), DSHM_EHANDLE);
	IS(dshm_topic_release(p), DSHM_EHANDLE);

	// Consuming everything, zero-copy, with the "all" flag.
	dshm_consumer c = 0;
	IS(dshm_consumer_open(t, "ana", "{\"data\": \"some\"}", NULL, NULL, NULL, &c), DSHM_EINVAL);
	IS(dshm_consumer_open(t, NULL, NULL, NULL, NULL, NULL, &c), DSHM_EINVAL);
	OK(dshm_consumer_open(t, "ana", "{\"data\": \"all\", \"targets\": [0]}", NULL, NULL, NULL, &c));
	for (int i = 0; i < N; i += 2) {
		dshm_event ev = 0;
		OK(dshm_consumer_pull(c, 10000, &ev));
		dshm_event_info info;
		OK(dshm_event_get_info(ev, &info));
		CHECK(info.id == ids[i], "event %d: id %llu, want %llu", i, (unsigned long long)info.id,
		      (unsigned long long)ids[i]);
		CHECK(info.partition == 0, "partition %zu", info.partition);
		char want[64];
		snprintf(want, sizeof want, "{\"i\":%d}", i);
		CHECK(strcmp(info.metadata, want) == 0 && info.metadata_size == strlen(want), "metadata %s, want %s",
		      info.metadata, want);
		CHECK(strstr(info.partition_info, "\"id\":0") != NULL, "partition info %s", info.partition_info);
		CHECK(info.data_size == SIZE, "data size %zu", info.data_size);
		dshm_segment segs[4];
		size_t n = 0;
		IS(dshm_event_segments(ev, segs, 0, &n), DSHM_ERANGE);
		OK(dshm_event_segments(ev, segs, 4, &n));
		size_t off = 0;
		for (size_t k = 0; k < n; k++) {
			CHECK(memcmp(segs[k].data, data[i] + off, segs[k].size) == 0, "event %d segment %zu differs", i, k);
			off += segs[k].size;
		}
		CHECK(off == SIZE, "segments add up to %zu", off);
		unsigned char back[16];
		size_t got = 0;
		OK(dshm_event_read(ev, SIZE - 10, back, sizeof back, &got));
		CHECK(got == 10 && memcmp(back, data[i] + SIZE - 10, 10) == 0, "read back %zu bytes", got);
		OK(dshm_event_acknowledge(ev));
		OK(dshm_event_release(ev));
		IS(dshm_event_release(ev), DSHM_EHANDLE);
		IS(dshm_event_get_info(ev, &info), DSHM_EHANDLE);
	}
	dshm_event ev = 0;
	OK(dshm_consumer_pull(c, 10000, &ev)); // the claimed event, partition 0
	dshm_event_info info;
	OK(dshm_event_get_info(ev, &info));
	CHECK(info.id == claimed_id && info.data_size == 64, "claimed event %llu of %zu bytes",
	      (unsigned long long)info.id, info.data_size);
	// A consumer closed while its event is held: the handle still answers,
	// its data reads zeros or the old bytes, never faults.
	OK(dshm_consumer_close(c));
	OK(dshm_event_get_info(ev, &info));
	unsigned char tmp[64];
	OK(dshm_event_read(ev, 0, tmp, sizeof tmp, NULL));
	IS(dshm_event_acknowledge(ev), DSHM_ECLOSED);
	OK(dshm_event_release(ev));
	IS(dshm_consumer_pull(c, 0, &ev), DSHM_EHANDLE);

	// Nothing there: a timeout, then the pull that was on its way.
	OK(dshm_consumer_open(t, "late", "{\"targets\": [1]}", NULL, NULL, NULL, &c));
	for (int i = 1; i < N; i += 2) {
		OK(dshm_consumer_pull(c, 10000, &ev));
		OK(dshm_event_get_info(ev, &info));
		CHECK(info.data_size == 0 && info.num_segments == 0, "metadata only: %zu bytes", info.data_size);
		OK(dshm_event_release(ev));
	}
	IS(dshm_consumer_pull(c, 20, &ev), DSHM_ETIMEOUT);
	OK(dshm_producer_push(p, "{\"late\": 1}", 11, NULL, 0, 1, NULL));
	OK(dshm_producer_flush(p, 10000));
	OK(dshm_consumer_pull(c, 10000, &ev));
	OK(dshm_event_get_info(ev, &info));
	CHECK(strcmp(info.metadata, "{\"late\":1}") == 0, "late event %s", info.metadata);
	OK(dshm_event_release(ev));
	dshm_future pf = 0;
	OK(dshm_consumer_pull_async(c, &pf));
	IS(dshm_future_wait_event(pf, 10, &ev), DSHM_ETIMEOUT);
	IS(dshm_future_wait_id(pf, 10, NULL), DSHM_EINVAL);
	OK(dshm_producer_push(p, "{\"later\": 2}", 12, NULL, 0, 1, NULL));
	OK(dshm_producer_flush(p, 10000));
	OK(dshm_future_wait_event(pf, 10000, &ev));
	dshm_event again = 0;
	IS(dshm_future_wait_event(pf, 10000, &again), DSHM_EINVAL); // handed out once
	CHECK(again == 0, "a failed call leaves its handle 0");
	OK(dshm_future_release(pf));
	OK(dshm_event_release(ev));
	OK(dshm_consumer_close(c));

	// A selector and an allocator.
	int calls = 0;
	OK(dshm_consumer_open(t, "sel", "{\"targets\": [0]}", pick, carve, &calls, &c));
	OK(dshm_consumer_pull(c, 10000, &ev));
	OK(dshm_event_get_info(ev, &info));
	CHECK(calls >= 1, "the selector was called");
	CHECK(info.data_size == 6 && info.num_segments == 2, "selected %zu bytes in %zu", info.data_size,
	      info.num_segments);
	dshm_segment segs[2];
	size_t n = 0;
	OK(dshm_event_segments(ev, segs, 2, &n));
	CHECK((char *)segs[0].data >= arena && (char *)segs[0].data < arena + sizeof arena,
	      "the data is in the allocator's memory");
	unsigned char sel[6];
	OK(dshm_event_read(ev, 0, sel, 6, NULL));
	CHECK(memcmp(sel, data[0] + 2, 4) == 0 && memcmp(sel + 4, data[0] + 10, 2) == 0, "selected bytes differ");
	OK(dshm_event_release(ev));
	OK(dshm_consumer_close(c));

	// A selector that fails fails the pull, naming it.
	OK(dshm_consumer_open(t, "refused", NULL, refuse, NULL, NULL, &c));
	IS(dshm_consumer_pull(c, 10000, &ev), DSHM_ERROR);
	SAYS("-42");
	OK(dshm_consumer_close(c));

	// Process, stopped by the processor after 3 events.
	struct seen s = {0, 0};
	OK(dshm_consumer_open(t, "proc", NULL, NULL, NULL, NULL, &c));
	OK(dshm_consumer_process(c, count_events, &s, 10000, 0, 0));
	CHECK(s.count == 3, "processed %d", s.count);
	IS(dshm_consumer_process(c, NULL, NULL, 0, 0, 0), DSHM_EINVAL);
	OK(dshm_consumer_close(c));

	// Batches: up to 8 events with one call, released with one call.
	OK(dshm_consumer_open(t, "batch", "{\"targets\": [0], \"data\": \"all\"}", NULL, NULL, NULL, &c));
	dshm_event evs[8];
	dshm_event_info infos[8];
	size_t got = 0, total = 0;
	uint64_t prev = 0;
	IS(dshm_consumer_pull_batch(c, 1000, 0, evs, infos, &got), DSHM_EINVAL);
	while (total < N / 2) {
		size_t room = N / 2 - total < 8 ? N / 2 - total : 8; // the claimed event comes after
		OK(dshm_consumer_pull_batch(c, 10000, room, evs, infos, &got));
		CHECK(got >= 1 && got <= room, "a batch of %zu", got);
		for (size_t k = 0; k < got; k++, total++) {
			CHECK(infos[k].id == ids[2 * total] && (total == 0 || infos[k].id > prev), "batch event %zu: id %llu",
			      total, (unsigned long long)infos[k].id);
			CHECK(infos[k].num_segments == 1 && infos[k].first.size == SIZE &&
			          memcmp(infos[k].first.data, data[2 * total], SIZE) == 0,
			      "batch event %zu: data", total);
			prev = infos[k].id;
		}
		OK(dshm_event_release_many(evs, got));
		IS(dshm_event_release_many(evs, got), DSHM_EHANDLE);
	}
	OK(dshm_consumer_close(c));

	// A batch: the same events under one handle, "all" data in place and
	// "copy" data that the batch's release frees.
	const char *modes[2] = {"{\"targets\": [0], \"data\": \"all\"}", "{\"targets\": [0], \"data\": \"copy\"}"};
	for (int m = 0; m < 2; m++) {
		char name[16];
		snprintf(name, sizeof name, "batched%d", m);
		OK(dshm_consumer_open(t, name, modes[m], NULL, NULL, NULL, &c));
		dshm_batch b = 7;
		IS(dshm_batch_pull(c, 1000, 0, &b, infos, &got), DSHM_EINVAL);
		IS(dshm_batch_pull(c, 1000, 8, NULL, infos, &got), DSHM_EINVAL);
		IS(dshm_batch_pull(c, 1000, 8, &b, NULL, &got), DSHM_EINVAL);
		total = 0;
		while (total < N / 2) {
			size_t room = N / 2 - total < 8 ? N / 2 - total : 8;
			OK(dshm_batch_pull(c, 10000, room, &b, infos, &got));
			CHECK(b != 0 && got >= 1 && got <= room, "a batch of %zu", got);
			for (size_t k = 0; k < got; k++, total++) {
				CHECK(infos[k].id == ids[2 * total], "batch %d event %zu: id %llu", m, total,
				      (unsigned long long)infos[k].id);
				CHECK(infos[k].partition == 0 && strstr(infos[k].partition_info, "\"id\"") != NULL,
				      "batch %d event %zu: partition %zu %s", m, total, infos[k].partition, infos[k].partition_info);
				CHECK(infos[k].num_segments == 1 && infos[k].first.size == SIZE &&
				          memcmp(infos[k].first.data, data[2 * total], SIZE) == 0,
				      "batch %d event %zu: data", m, total);
				dshm_segment one[1];
				size_t ns = 0;
				OK(dshm_batch_segments(b, k, one, 1, &ns));
				CHECK(ns == 1 && one[0].data == infos[k].first.data, "batch segments of event %zu", total);
				IS(dshm_batch_segments(b, k, NULL, 0, &ns), DSHM_ERANGE);
			}
			// The same data as offsets from the lowest address of it.
			uint64_t base = 0, starts[8], ends[8], lowest = UINT64_MAX;
			OK(dshm_batch_spans(b, got, &base, starts, ends));
			for (size_t k = 0; k < got; k++) {
				CHECK(base + starts[k] == (uint64_t)(uintptr_t)infos[k].first.data && ends[k] - starts[k] == SIZE,
				      "batch %d: span %zu [%llu, %llu) from %llx", m, k, (unsigned long long)starts[k],
				      (unsigned long long)ends[k], (unsigned long long)base);
				lowest = starts[k] < lowest ? starts[k] : lowest;
			}
			CHECK(lowest == 0, "the spans start at the lowest address: %llu", (unsigned long long)lowest);
			IS(dshm_batch_spans(b, got + 1, &base, starts, ends), DSHM_EINVAL);
			IS(dshm_batch_spans(b, got, NULL, starts, ends), DSHM_EINVAL);
			IS(dshm_batch_spans(b, got, &base, NULL, ends), DSHM_EINVAL);
			IS(dshm_batch_segments(b, got, NULL, 0, &n), DSHM_EINVAL);
			IS(dshm_batch_acknowledge(b, got), DSHM_EINVAL);
			OK(dshm_batch_acknowledge(b, 0));
			OK(dshm_batch_acknowledge(b, DSHM_WHOLE_BATCH));
			OK(dshm_batch_release(b));
			IS(dshm_batch_release(b), DSHM_EHANDLE);
			IS(dshm_batch_acknowledge(b, 0), DSHM_EHANDLE);
			IS(dshm_batch_spans(b, 1, &base, starts, ends), DSHM_EHANDLE);
			IS(dshm_event_release(b), DSHM_EHANDLE); // a batch is not an event
		}
		// Then the claimed event (64 bytes, its metadata, partition 0).
		OK(dshm_batch_pull(c, 10000, 8, &b, infos, &got));
		CHECK(got == 1 && infos[0].id == claimed_id && infos[0].data_size == 64 &&
		          strcmp(infos[0].metadata, "{\"claimed\":true}") == 0 && infos[0].metadata_size == 16,
		      "the claimed event in a batch: %zu events, id %llu, %s", got, (unsigned long long)infos[0].id,
		      got ? infos[0].metadata : "");
		OK(dshm_batch_acknowledge(b, DSHM_WHOLE_BATCH));
		OK(dshm_batch_release(b));
		IS(dshm_batch_pull(c, 10, 8, &b, infos, &got), DSHM_ETIMEOUT);
		CHECK(b == 0 && got == 0, "a pull that timed out leaves 0 and 0");
		OK(dshm_consumer_close(c));
		// Acknowledged as a whole: the name resumes after the last.
		OK(dshm_consumer_open(t, name, modes[m], NULL, NULL, NULL, &c));
		IS(dshm_batch_pull(c, 10, 8, &b, infos, &got), DSHM_ETIMEOUT);
		OK(dshm_consumer_close(c));
	}

	// A batch over both partitions, acknowledged whole: that is the last
	// event of each, and the name resumes after both.
	{
		static dshm_event_info binfos[64];
		dshm_consumer cb = 0;
		dshm_batch bb = 0;
		size_t bgot = 0, seen[2] = {0, 0};
		int mixed = 0, rc;
		OK(dshm_consumer_open(t, "both", "{\"data\": \"all\"}", NULL, NULL, NULL, &cb));
		while ((rc = dshm_batch_pull(cb, 200, 64, &bb, binfos, &bgot)) == DSHM_OK) {
			int in[2] = {0, 0};
			for (size_t k = 0; k < bgot; k++) {
				size_t part = binfos[k].partition;
				char want[16];
				snprintf(want, sizeof want, "\"id\":%zu", part);
				CHECK(part < 2 && strstr(binfos[k].partition_info, want) != NULL, "event %zu: partition %zu, %s", k,
				      part, binfos[k].partition_info);
				if (part < 2) {
					in[part] = 1;
					seen[part]++;
				}
			}
			mixed |= in[0] && in[1];
			OK(dshm_batch_acknowledge(bb, DSHM_WHOLE_BATCH));
			OK(dshm_batch_release(bb));
		}
		IS(rc, DSHM_ETIMEOUT);
		// (the frames and the claimed event, and the few pushes of the checks above)
		CHECK(seen[0] >= N / 2 + 1 && seen[1] >= N / 2, "events of partitions 0 and 1: %zu and %zu", seen[0], seen[1]);
		CHECK(mixed, "a batch holds the ready events of both partitions");
		OK(dshm_consumer_close(cb));
		OK(dshm_consumer_open(t, "both", "{\"data\": \"all\"}", NULL, NULL, NULL, &cb));
		IS(dshm_batch_pull(cb, 10, 64, &bb, binfos, &bgot), DSHM_ETIMEOUT);
		OK(dshm_consumer_close(cb));
	}

	// Events without data have no span.
	{
		dshm_consumer cm = 0;
		dshm_batch bm = 0;
		uint64_t base = 0, starts[8], ends[8];
		OK(dshm_consumer_open(t, "no-data", "{\"targets\": [1]}", NULL, NULL, NULL, &cm));
		OK(dshm_batch_pull(cm, 10000, 8, &bm, infos, &got));
		CHECK(got >= 1 && infos[0].num_segments == 0, "a batch without data: %zu events", got);
		IS(dshm_batch_spans(bm, got, &base, starts, ends), DSHM_ERANGE);
		CHECK(strstr(dshm_last_error(), "event 0") != NULL, "the error names the event: %s", dshm_last_error());
		OK(dshm_batch_spans(bm, 0, &base, NULL, NULL));
		OK(dshm_batch_release(bm));
		OK(dshm_consumer_close(cm));
	}

	// The end of the stream.
	OK(dshm_producer_close(p));
	OK(dshm_topic_mark_complete(t));
	OK(dshm_consumer_open(t, "end", "{\"targets\": [1]}", NULL, NULL, NULL, &c));
	uint64_t last = 0;
	for (;;) {
		OK(dshm_consumer_pull(c, 10000, &ev));
		OK(dshm_event_get_info(ev, &info));
		OK(dshm_event_release(ev));
		if (info.id == DSHM_NO_MORE_EVENTS) {
			break;
		}
		last = info.id;
	}
	CHECK(last > 0, "read to the end");
	OK(dshm_consumer_close(c));

	// Thread pools.
	dshm_thread_pool tp = 0;
	size_t count = 9;
	OK(dshm_driver_make_thread_pool(d, 2, &tp));
	OK(dshm_thread_pool_count(tp, &count));
	CHECK(count == 2, "pool of %zu", count);
	OK(dshm_thread_pool_release(tp));
	IS(dshm_thread_pool_count(tp, &count), DSHM_EHANDLE);

	// fork: the child's calls fail at once with DSHM_EFORK, no hang.
	pid_t pid = fork();
	if (pid == 0) {
		int rc = dshm_topic_exists(d, "frames", &exists);
		_exit(rc == DSHM_EFORK && strstr(dshm_last_error(), "spawn") ? 0 : 1);
	}
	int wst = 0;
	waitpid(pid, &wst, 0);
	CHECK(WIFEXITED(wst) && WEXITSTATUS(wst) == 0, "the forked child got DSHM_EFORK");
	OK(dshm_topic_exists(d, "frames", &exists)); // the parent goes on

	OK(dshm_topic_release(t));
	OK(dshm_topic_release(tc));
	OK(dshm_driver_close(d));
	IS(dshm_driver_close(d), DSHM_EHANDLE);
	CHECK(strcmp(dshm_version(), "") != 0, "a version");

	if (failures) {
		fprintf(stderr, "%d checks failed\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
