// check.h: the checks of the C test programs. A failed check prints what
// failed, with the library's last error, and counts in failures (from any
// thread); main exits 1 when there were any.
#ifndef DSHM_TEST_CHECK_H
#define DSHM_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

#include "diaspora_shm.h"

static int failures;

#define CHECK(cond, ...)                                                                  \
	do {                                                                                  \
		if (!(cond)) {                                                                    \
			fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);      \
			fprintf(stderr, __VA_ARGS__);                                                 \
			fprintf(stderr, " (last error: %s)\n", dshm_last_error());                    \
			__atomic_add_fetch(&failures, 1, __ATOMIC_SEQ_CST);                           \
		}                                                                                 \
	} while (0)

#define OK(call) CHECK((call) == DSHM_OK, "%s", #call)
#define IS(call, code) CHECK((call) == (code), "%s should give %s", #call, #code)
// A failing call's message names what was wrong.
#define SAYS(text) CHECK(strstr(dshm_last_error(), text) != NULL, "message should mention \"%s\"", text)

#endif
