/* Minimal test harness for the C API tests: plain main() programs. */
#ifndef RK_TEST_CHECK_H
#define RK_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratchetkit.h"

static int g_pass = 0;
static int g_fail = 0;

/* The calling thread's last error detail (valid until the next call). */
static inline const char *last_err(void) {
    static _Thread_local char buf[1024];
    size_t len = 0;
    if (rk_last_error_message(buf, sizeof buf, &len) != RK_STATUS_OK) {
        snprintf(buf, sizeof buf, "<detail unavailable>");
    }
    return buf;
}

static inline void report_status(const char *file, int line, const char *expr, rk_status got,
                          rk_status want) {
    if (got == want) {
        g_pass++;
        return;
    }
    g_fail++;
    const char *detail = last_err();
    fprintf(stderr, "%s:%d: FAIL %s\n    got %u (%s: %s), want %u (%s)\n", file, line, expr,
            (unsigned)got, rk_status_str(got), detail, (unsigned)want, rk_status_str(want));
}

/* The call must return `want`. */
#define EXPECT(call, want) report_status(__FILE__, __LINE__, #call, (call), (want))
/* The call must succeed. */
#define CHECK(call) EXPECT(call, RK_STATUS_OK)
/* The call must succeed, or the test stops (later steps depend on it). */
#define REQUIRE(call)                                                         \
    do {                                                                      \
        int before_ = g_fail;                                                 \
        CHECK(call);                                                          \
        if (g_fail != before_) {                                              \
            fprintf(stderr, "%s:%d: required step failed, stopping\n",        \
                    __FILE__, __LINE__);                                      \
            exit(1);                                                          \
        }                                                                     \
    } while (0)
/* A plain condition. */
#define TRUE(cond)                                                            \
    do {                                                                      \
        if (cond) {                                                           \
            g_pass++;                                                         \
        } else {                                                              \
            g_fail++;                                                         \
            fprintf(stderr, "%s:%d: FAIL %s\n", __FILE__, __LINE__, #cond);   \
        }                                                                     \
    } while (0)

/* An rk_bytes that is recognisably "not written". */
#define UNTOUCHED_BYTES ((rk_bytes){(uint8_t *)(uintptr_t)0x1, 4242})
#define IS_UNTOUCHED(b) ((b).ptr == (uint8_t *)(uintptr_t)0x1 && (b).len == 4242)

/* A malloc'd copy of a buffer (so it can outlive rk_bytes_free). */
typedef struct {
    uint8_t *data;
    size_t len;
} buf_t;

static inline buf_t take(rk_bytes b) {
    buf_t out = {malloc(b.len ? b.len : 1), b.len};
    if (out.data == NULL) {
        abort();
    }
    memcpy(out.data, b.ptr, b.len);
    rk_bytes_free(b);
    return out;
}

static inline int buf_eq(buf_t a, buf_t b) {
    return a.len == b.len && memcmp(a.data, b.data, a.len) == 0;
}

static inline void buf_free(buf_t *b) {
    free(b->data);
    b->data = NULL;
    b->len = 0;
}

static inline int finish(const char *name) {
    printf("%s: %d passed, %d failed\n", name, g_pass, g_fail);
    return g_fail == 0 ? 0 : 1;
}

#endif
