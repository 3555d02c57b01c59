/* The 100-byte round trip of benches/protocol.rs (op/roundtrip_100B) through
 * the C ABI: Alice encrypts 100 bytes for Bob, Bob decrypts them, both
 * outputs are freed. No DH turn (Alice keeps sending on one chain).
 *
 *   c_roundtrip [--quick]   prints {"c_roundtrip_100B_us": <median>}
 */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ratchetkit.h"

#define CHECK(call)                                                            \
    do {                                                                       \
        rk_status s_ = (call);                                                 \
        if (s_ != RK_STATUS_OK) {                                              \
            char msg_[256];                                                    \
            size_t n_ = 0;                                                     \
            if (rk_last_error_message(msg_, sizeof msg_, &n_) != RK_STATUS_OK) \
                msg_[0] = 0;                                                   \
            fprintf(stderr, "%s:%d: %s: %s (%s)\n", __FILE__, __LINE__, #call, \
                    rk_status_str(s_), msg_);                                  \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* `from` (known to `to` as from_name) sends 100 bytes; `to` decrypts. */
static void send(rk_store *from, const char *from_name, rk_store *to,
                 const char *to_name, const uint8_t *pt) {
    uint32_t type = 0;
    rk_bytes ct, out;
    CHECK(rk_store_encrypt(from, to_name, 1, pt, 100, &type, &ct));
    CHECK(rk_store_decrypt(to, from_name, 1, type, ct.ptr, ct.len, &out));
    rk_bytes_free(ct);
    rk_bytes_free(out);
}

static void round_trip(rk_store *alice, rk_store *bob, const uint8_t *pt) {
    send(alice, "alice", bob, "bob", pt);
}

int main(int argc, char **argv) {
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    long iters = quick ? 2000 : 200000;
    int runs = quick ? 3 : 9;
    uint8_t pt[100];
    memset(pt, 0x42, sizeof pt);

    rk_store *alice, *bob;
    rk_bundle *bundle;
    CHECK(rk_store_new(1, &alice));
    CHECK(rk_store_new(1, &bob));
    CHECK(rk_store_create_bundle(bob, 1, 0, &bundle));
    CHECK(rk_store_process_bundle(alice, "bob", 1, bundle));
    rk_bundle_free(bundle);
    /* First message and a reply: Alice then sends whisper messages. */
    round_trip(alice, bob, pt);
    send(bob, "bob", alice, "alice", pt);
    for (long i = 0; i < iters / 10; i++) round_trip(alice, bob, pt); /* warm up */

    double per[16];
    for (int r = 0; r < runs; r++) {
        /* A fresh chain position is irrelevant here: no skipped keys. */
        double t0 = now_us();
        for (long i = 0; i < iters; i++) round_trip(alice, bob, pt);
        per[r] = (now_us() - t0) / (double)iters;
    }
    qsort(per, runs, sizeof per[0], cmp);
    printf("{\"c_roundtrip_100B_us\": %.4f}\n", per[runs / 2]);
    rk_store_free(alice);
    rk_store_free(bob);
    return 0;
}
