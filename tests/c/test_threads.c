/* One store handle used from several threads at once (pthreads).
 *
 * Alice's store is shared by every thread:
 * - PEERS threads each hold a conversation with their own peer (whose
 *   store only that thread touches): Alice encrypts, the peer decrypts and
 *   answers, Alice decrypts the answer;
 * - SENDERS threads encrypt to the same address ("carol") concurrently;
 *   afterwards Carol decrypts every message, in an interleaved order, which
 *   shows that no two messages shared a counter or a chain state;
 * - one thread reads and writes other parts of Alice's store meanwhile
 *   (save, bundles, prekeys, safety numbers, trust);
 * - every thread also checks that its error detail is its own.
 * At the end Alice's store is saved, restored, and still has every session. */

#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>

#include "check.h"

#define PEERS 4
#define ROUNDS 40
#define SENDERS 3
#define PER_SENDER 40

static rk_store *g_alice;
static rk_store *g_peers[PEERS];
static pthread_mutex_t g_count_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_thread_fail = 0;
/* Every worker waits here, so that they all start at once. */
static pthread_barrier_t g_start;

/* Counted under a lock: the CHECK macros' counters are not thread-safe. */
static void thread_check(int ok, const char *what, int who) {
    if (!ok) {
        pthread_mutex_lock(&g_count_lock);
        g_thread_fail++;
        fprintf(stderr, "thread %d: FAIL %s (%s)\n", who, what, last_err());
        pthread_mutex_unlock(&g_count_lock);
    }
}

/* Each thread's error detail is its own. */
static void own_error_detail(int who) {
    char name[32];
    snprintf(name, sizeof name, "nobody-%d", who);
    rk_public_key *k = NULL;
    rk_status st = rk_store_trusted_identity(g_alice, name, &k);
    thread_check(st == RK_STATUS_NO_TRUSTED_IDENTITY, "trusted_identity(nobody)", who);
    thread_check(strstr(last_err(), name) != NULL, "error detail is this thread's", who);
}

static void *conversation(void *arg) {
    int i = (int)(intptr_t)arg;
    char name[16];
    snprintf(name, sizeof name, "peer%d", i);
    pthread_barrier_wait(&g_start);
    for (int r = 0; r < ROUNDS; r++) {
        char text[64];
        snprintf(text, sizeof text, "round %d to %s", r, name);
        uint32_t type = 0;
        rk_bytes ct = {NULL, 0};
        rk_status st = rk_store_encrypt(g_alice, name, 1, (const uint8_t *)text, strlen(text),
                                        &type, &ct);
        thread_check(st == RK_STATUS_OK, "alice encrypt", i);
        if (st != RK_STATUS_OK) {
            return NULL;
        }
        rk_bytes pt = {NULL, 0};
        st = rk_store_decrypt(g_peers[i], "alice", 1, type, ct.ptr, ct.len, &pt);
        thread_check(st == RK_STATUS_OK, "peer decrypt", i);
        rk_bytes_free(ct);
        if (st != RK_STATUS_OK) {
            return NULL;
        }
        thread_check(pt.len == strlen(text) && memcmp(pt.ptr, text, pt.len) == 0,
                     "peer plaintext", i);
        rk_bytes_free(pt);

        snprintf(text, sizeof text, "reply %d from %s", r, name);
        st = rk_store_encrypt(g_peers[i], "alice", 1, (const uint8_t *)text, strlen(text), &type,
                              &ct);
        thread_check(st == RK_STATUS_OK, "peer encrypt", i);
        if (st != RK_STATUS_OK) {
            return NULL;
        }
        st = rk_store_decrypt(g_alice, name, 1, type, ct.ptr, ct.len, &pt);
        thread_check(st == RK_STATUS_OK, "alice decrypt", i);
        rk_bytes_free(ct);
        if (st == RK_STATUS_OK) {
            thread_check(pt.len == strlen(text) && memcmp(pt.ptr, text, pt.len) == 0,
                         "alice plaintext", i);
            rk_bytes_free(pt);
        }
        if (r % 5 == 0) {
            own_error_detail(i);
        }
    }
    return NULL;
}

typedef struct {
    int who;
    uint32_t types[PER_SENDER];
    rk_bytes msgs[PER_SENDER];
} sender_t;

static void *sender(void *arg) {
    sender_t *s = arg;
    pthread_barrier_wait(&g_start);
    for (int k = 0; k < PER_SENDER; k++) {
        char text[64];
        snprintf(text, sizeof text, "sender %d message %d", s->who, k);
        rk_status st = rk_store_encrypt(g_alice, "carol", 1, (const uint8_t *)text, strlen(text),
                                        &s->types[k], &s->msgs[k]);
        thread_check(st == RK_STATUS_OK, "concurrent encrypt to carol", 100 + s->who);
        if (st != RK_STATUS_OK) {
            s->msgs[k] = (rk_bytes){NULL, 0};
        }
    }
    return NULL;
}

static void *other_work(void *arg) {
    (void)arg;
    pthread_barrier_wait(&g_start);
    for (int r = 0; r < 10; r++) {
        rk_bytes b = {NULL, 0};
        rk_status st = rk_store_save(g_alice, &b);
        thread_check(st == RK_STATUS_OK, "save", 200);
        if (st == RK_STATUS_OK) {
            rk_store *copy = NULL;
            st = rk_store_restore(b.ptr, b.len, &copy);
            thread_check(st == RK_STATUS_OK, "restore a concurrent save", 200);
            rk_store_free(copy);
            rk_bytes_free(b);
        }
        rk_bundle *bundle = NULL;
        st = rk_store_create_bundle(g_alice, 1, (uint64_t)r, &bundle);
        thread_check(st == RK_STATUS_OK, "create_bundle", 200);
        rk_bundle_free(bundle);
        rk_bytes recs = {NULL, 0};
        st = rk_store_generate_prekeys(g_alice, 3, &recs);
        thread_check(st == RK_STATUS_OK, "generate_prekeys", 200);
        rk_bytes_free(recs);
        rk_fingerprint *fp = NULL;
        st = rk_store_safety_number(g_alice, "peer0", (const uint8_t *)"a", 1,
                                    (const uint8_t *)"b", 1, 100, 2, &fp);
        thread_check(st == RK_STATUS_OK, "safety_number", 200);
        rk_fingerprint_free(fp);
        bool has = false;
        st = rk_store_has_session(g_alice, "peer1", 1, &has);
        thread_check(st == RK_STATUS_OK && has, "has_session", 200);
        own_error_detail(200);
    }
    return NULL;
}

int main(void) {
    REQUIRE(rk_store_new(1, &g_alice));
    rk_store *carol = NULL;
    REQUIRE(rk_store_new(1, &carol));
    for (int i = 0; i < PEERS; i++) {
        char name[16];
        snprintf(name, sizeof name, "peer%d", i);
        REQUIRE(rk_store_new(1, &g_peers[i]));
        rk_bundle *b = NULL;
        REQUIRE(rk_store_create_bundle(g_peers[i], 1, 0, &b));
        REQUIRE(rk_store_process_bundle(g_alice, name, 1, b));
        rk_bundle_free(b);
    }
    rk_bundle *cb = NULL;
    REQUIRE(rk_store_create_bundle(carol, 1, 0, &cb));
    REQUIRE(rk_store_process_bundle(g_alice, "carol", 1, cb));
    rk_bundle_free(cb);

    pthread_t conv[PEERS], send[SENDERS], other;
    static sender_t senders[SENDERS];
    REQUIRE(pthread_barrier_init(&g_start, NULL, PEERS + SENDERS + 1) == 0 ? RK_STATUS_OK
                                                                          : RK_STATUS_INTERNAL);
    for (int i = 0; i < PEERS; i++) {
        TRUE(pthread_create(&conv[i], NULL, conversation, (void *)(intptr_t)i) == 0);
    }
    for (int i = 0; i < SENDERS; i++) {
        senders[i].who = i;
        TRUE(pthread_create(&send[i], NULL, sender, &senders[i]) == 0);
    }
    TRUE(pthread_create(&other, NULL, other_work, NULL) == 0);
    for (int i = 0; i < PEERS; i++) {
        pthread_join(conv[i], NULL);
    }
    for (int i = 0; i < SENDERS; i++) {
        pthread_join(send[i], NULL);
    }
    pthread_join(other, NULL);
    pthread_barrier_destroy(&g_start);
    TRUE(g_thread_fail == 0);

    /* Carol decrypts every concurrently made message, interleaving senders
     * and going backwards within each: every one decrypts exactly once. */
    int decrypted = 0;
    for (int k = PER_SENDER - 1; k >= 0; k--) {
        for (int i = 0; i < SENDERS; i++) {
            rk_bytes pt = {NULL, 0};
            rk_bytes m = senders[i].msgs[k];
            char want[64];
            snprintf(want, sizeof want, "sender %d message %d", i, k);
            rk_status st = rk_store_decrypt(carol, "alice", 1, senders[i].types[k], m.ptr, m.len,
                                            &pt);
            if (st == RK_STATUS_OK) {
                decrypted++;
                TRUE(pt.len == strlen(want) && memcmp(pt.ptr, want, pt.len) == 0);
                rk_bytes_free(pt);
            } else {
                fprintf(stderr, "carol: message %d of sender %d: %s (%s)\n", k, i,
                        rk_status_str(st), last_err());
            }
            EXPECT(rk_store_decrypt(carol, "alice", 1, senders[i].types[k], m.ptr, m.len, &pt),
                   RK_STATUS_DUPLICATE_MESSAGE);
            rk_bytes_free(m);
        }
    }
    TRUE(decrypted == SENDERS * PER_SENDER);

    /* Alice's store survived intact: save, restore, every session there. */
    rk_bytes saved = {NULL, 0};
    REQUIRE(rk_store_save(g_alice, &saved));
    rk_store *back = NULL;
    CHECK(rk_store_restore(saved.ptr, saved.len, &back));
    rk_bytes_free(saved);
    for (int i = 0; i < PEERS; i++) {
        char name[16];
        snprintf(name, sizeof name, "peer%d", i);
        bool has = false;
        CHECK(rk_store_has_session(back, name, 1, &has));
        TRUE(has);
    }
    rk_store_free(back);

    for (int i = 0; i < PEERS; i++) {
        rk_store_free(g_peers[i]);
    }
    rk_store_free(carol);
    rk_store_free(g_alice);
    return finish("test_threads");
}
