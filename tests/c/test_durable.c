/* Durable stores (SQLite files) through the C API: open and create,
 * options, wrong keys, rekey, import of an in-memory store, a conversation
 * across close and reopen, two handles on one file, two-phase decrypt
 * (commit, discard, conflict), and the NULL/misuse matrix of every durable
 * function. Every file lives in a directory made by mkdtemp and removed at
 * the end. */

#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"

#define NP RK_STATUS_NULL_POINTER
#define UNTOUCHED_STORE ((rk_store *)(uintptr_t)0x1)
#define UNTOUCHED_PENDING ((rk_pending_decrypt *)(uintptr_t)0x1)

static char g_dir[256];

static void make_dir(void) {
    const char *base = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/rk-durable-XXXXXX", base && base[0] ? base : "/tmp");
    if (mkdtemp(g_dir) == NULL) {
        perror("mkdtemp");
        exit(1);
    }
}

/* Removes every file in the test directory, then the directory. */
static void remove_dir(void) {
    DIR *d = opendir(g_dir);
    if (d == NULL) {
        perror("opendir");
        g_fail++;
        return;
    }
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
        TRUE(unlink(p) == 0);
    }
    closedir(d);
    TRUE(rmdir(g_dir) == 0);
}

/* The path of `name` inside the test directory. */
typedef struct {
    char s[512];
} path_t;

static path_t path_of(const char *name) {
    path_t p;
    snprintf(p.s, sizeof p.s, "%s/%s", g_dir, name);
    return p;
}

static void fill_key(uint8_t key[RK_STORE_KEY_LEN], uint8_t seed) {
    for (size_t i = 0; i < RK_STORE_KEY_LEN; i++) {
        key[i] = (uint8_t)(seed + i * 13);
    }
}

static rk_store *open_at(const path_t *p, const uint8_t *key, const rk_store_options *o) {
    rk_store *s = UNTOUCHED_STORE;
    REQUIRE(rk_store_open(p->s, key, RK_STORE_KEY_LEN, o, &s));
    TRUE(s != NULL && s != UNTOUCHED_STORE);
    return s;
}

static rk_store *new_memory_store(uint32_t device) {
    rk_store *s = NULL;
    REQUIRE(rk_store_new(device, &s));
    return s;
}

static buf_t save_store(const rk_store *s) {
    rk_bytes b = UNTOUCHED_BYTES;
    REQUIRE(rk_store_save(s, &b));
    return take(b);
}

static bool same_identity(const rk_store *a, const rk_store *b) {
    rk_public_key *ka = NULL, *kb = NULL;
    REQUIRE(rk_store_identity_key(a, &ka));
    REQUIRE(rk_store_identity_key(b, &kb));
    bool eq = false;
    CHECK(rk_public_key_equals(ka, kb, &eq));
    rk_public_key_free(ka);
    rk_public_key_free(kb);
    return eq;
}

static bool is_durable(const rk_store *s) {
    bool d = false;
    CHECK(rk_store_is_durable(s, &d));
    return d;
}

/* A message on the wire. */
typedef struct {
    uint32_t type;
    buf_t bytes;
} msg_t;

static msg_t send(rk_store *from, const char *to, const char *text) {
    msg_t m = {0, {NULL, 0}};
    rk_bytes ct = UNTOUCHED_BYTES;
    REQUIRE(rk_store_encrypt(from, to, 1, (const uint8_t *)text, strlen(text), &m.type, &ct));
    m.bytes = take(ct);
    return m;
}

/* Decrypts `m` from (`from`, 1) and checks the plaintext. */
static void receive(rk_store *to, const char *from, const msg_t *m, const char *want) {
    rk_bytes pt = UNTOUCHED_BYTES;
    CHECK(rk_store_decrypt(to, from, 1, m->type, m->bytes.data, m->bytes.len, &pt));
    if (!IS_UNTOUCHED(pt)) {
        TRUE(pt.len == strlen(want) && memcmp(pt.ptr, want, pt.len) == 0);
        rk_bytes_free(pt);
    }
}

/* Decrypting `m` again is refused, and the store is unchanged. */
static void refused_duplicate(rk_store *to, const char *from, const msg_t *m) {
    buf_t before = save_store(to);
    rk_bytes pt = UNTOUCHED_BYTES;
    EXPECT(rk_store_decrypt(to, from, 1, m->type, m->bytes.data, m->bytes.len, &pt),
           RK_STATUS_DUPLICATE_MESSAGE);
    TRUE(IS_UNTOUCHED(pt));
    buf_t after = save_store(to);
    TRUE(buf_eq(before, after));
    buf_free(&before);
    buf_free(&after);
}

static void msg_free(msg_t *m) { buf_free(&m->bytes); }

/* `alice` starts a session with `bob` (name "bob") from a fresh bundle. */
static void start_session(rk_store *alice, rk_store *bob) {
    rk_bundle *b = NULL;
    REQUIRE(rk_store_create_bundle(bob, 1, 1700000000000ULL, &b));
    REQUIRE(rk_store_process_bundle(alice, "bob", 1, b));
    rk_bundle_free(b);
}

/* One message each way: both sides hold a confirmed session. */
static void converse(rk_store *alice, rk_store *bob, const char *a_text, const char *b_text) {
    msg_t m = send(alice, "bob", a_text);
    receive(bob, "alice", &m, a_text);
    msg_free(&m);
    m = send(bob, "alice", b_text);
    receive(alice, "bob", &m, b_text);
    msg_free(&m);
}

/* ---------------------------------------------------------------------- */

static void test_options_default(void) {
    rk_store_options o = rk_store_options_default();
    TRUE(o.create_device_id == 1);
    TRUE(o.durability == RK_DURABILITY_FULL);
    TRUE(o.busy_timeout_ms == 5000);
    TRUE(RK_DURABILITY_FULL == 0 && RK_DURABILITY_NORMAL == 1 && RK_STORE_KEY_LEN == 32);
    const uint32_t codes[] = {RK_STATUS_WRONG_STORE_KEY, RK_STATUS_STORE_CORRUPT,
                              RK_STATUS_STORE_BUSY, RK_STATUS_CONFLICT, RK_STATUS_STORAGE};
    const uint32_t numbers[] = {403, 404, 405, 406, 407};
    for (size_t i = 0; i < 5; i++) {
        TRUE(codes[i] == numbers[i]);
        const char *s = rk_status_str(codes[i]);
        TRUE(s != NULL && s[0] != '\0' && strcmp(s, "unknown status") != 0);
    }
}

static void test_open_create(void) {
    uint8_t key[RK_STORE_KEY_LEN], wrong[RK_STORE_KEY_LEN];
    fill_key(key, 1);
    fill_key(wrong, 1);
    wrong[31] ^= 0x01;
    path_t p = path_of("open.db");

    /* Created with the defaults: device 1, a fresh identity. */
    rk_store *s = open_at(&p, key, NULL);
    TRUE(is_durable(s));
    uint32_t device = 0, reg = 0, reg2 = 0;
    CHECK(rk_store_device_id(s, &device));
    TRUE(device == 1);
    CHECK(rk_store_registration_id(s, &reg));
    TRUE(reg >= 1 && reg <= 16380);
    rk_bundle *b = NULL;
    CHECK(rk_store_create_bundle(s, 1, 0, &b));
    rk_bundle_free(b);
    size_t prekeys = 0;
    CHECK(rk_store_prekey_count(s, &prekeys));
    TRUE(prekeys == 1);

    /* Reopened (creating off: the file holds a store): the same identity,
     * ids and prekeys. */
    rk_store_options o = rk_store_options_default();
    o.create_device_id = 0;
    rk_store *again = open_at(&p, key, &o);
    TRUE(same_identity(s, again));
    CHECK(rk_store_registration_id(again, &reg2));
    TRUE(reg2 == reg);
    rk_store_free(s);
    CHECK(rk_store_prekey_count(again, &prekeys));
    TRUE(prekeys == 1);
    rk_store_free(again);

    /* A wrong key: RK_STATUS_WRONG_STORE_KEY, nothing written out. */
    rk_store *out = UNTOUCHED_STORE;
    EXPECT(rk_store_open(p.s, wrong, sizeof wrong, NULL, &out), RK_STATUS_WRONG_STORE_KEY);
    TRUE(out == UNTOUCHED_STORE);
    TRUE(strlen(last_err()) > 0);

    /* A new file with creating off: RK_STATUS_STORAGE. */
    path_t none = path_of("none.db");
    EXPECT(rk_store_open(none.s, key, sizeof key, &o, &out), RK_STATUS_STORAGE);
    TRUE(out == UNTOUCHED_STORE);
    /* Another device id and normal durability. */
    path_t seven = path_of("seven.db");
    o.create_device_id = 7;
    o.durability = RK_DURABILITY_NORMAL;
    o.busy_timeout_ms = 100;
    s = open_at(&seven, key, &o);
    CHECK(rk_store_device_id(s, &device));
    TRUE(device == 7);
    TRUE(is_durable(s));
    rk_store_free(s);
    /* Reopening keeps the device id, whatever create_device_id says. */
    o.create_device_id = 9;
    s = open_at(&seven, key, &o);
    CHECK(rk_store_device_id(s, &device));
    TRUE(device == 7);
    rk_store_free(s);

    /* Bad options, keys, paths. */
    o = rk_store_options_default();
    o.durability = 2;
    EXPECT(rk_store_open(p.s, key, sizeof key, &o, &out), RK_STATUS_INVALID_ARGUMENT);
    o.durability = UINT32_MAX;
    EXPECT(rk_store_open(p.s, key, sizeof key, &o, &out), RK_STATUS_INVALID_ARGUMENT);
    EXPECT(rk_store_open(p.s, key, 31, NULL, &out), RK_STATUS_INVALID_KEY);
    EXPECT(rk_store_open(p.s, key, 33, NULL, &out), RK_STATUS_INVALID_KEY);
    EXPECT(rk_store_open(p.s, NULL, 0, NULL, &out), RK_STATUS_INVALID_KEY);
    EXPECT(rk_store_open(p.s, NULL, 32, NULL, &out), NP);
    EXPECT(rk_store_open(NULL, key, 32, NULL, &out), NP);
    EXPECT(rk_store_open(p.s, key, 32, NULL, NULL), NP);
    EXPECT(rk_store_open("\xff\xfe.db", key, 32, NULL, &out), RK_STATUS_INVALID_ARGUMENT);
    path_t missing = path_of("no/such/dir/x.db");
    EXPECT(rk_store_open(missing.s, key, 32, NULL, &out), RK_STATUS_STORAGE);
    EXPECT(rk_store_open(g_dir, key, 32, NULL, &out), RK_STATUS_STORAGE); /* a directory */
    TRUE(out == UNTOUCHED_STORE);

    /* A file that is not a database: RK_STATUS_STORE_CORRUPT. */
    path_t junk = path_of("junk.db");
    FILE *f = fopen(junk.s, "wb");
    if (f == NULL) {
        perror("fopen");
        exit(1);
    }
    for (int i = 0; i < 8192; i++) {
        fputc((i * 7 + 3) & 0xff, f);
    }
    fclose(f);
    EXPECT(rk_store_open(junk.s, key, 32, NULL, &out), RK_STATUS_STORE_CORRUPT);
    TRUE(out == UNTOUCHED_STORE);

    /* is_durable: an in-memory store is not; misuse. */
    rk_store *mem = new_memory_store(1);
    TRUE(!is_durable(mem));
    bool d = true;
    EXPECT(rk_store_is_durable(NULL, &d), NP);
    EXPECT(rk_store_is_durable(mem, NULL), NP);
    rk_bundle *bundle = NULL;
    REQUIRE(rk_store_create_bundle(mem, 0, 0, &bundle));
    EXPECT(rk_store_is_durable((const rk_store *)bundle, &d), RK_STATUS_INVALID_HANDLE);
    TRUE(d == true);
    rk_bundle_free(bundle);
    rk_store_free(mem);
}

static void test_conversation_across_reopen(void) {
    uint8_t key[RK_STORE_KEY_LEN];
    fill_key(key, 2);
    path_t p = path_of("bob.db");
    rk_store *alice = new_memory_store(1);
    rk_store *bob = open_at(&p, key, NULL);
    start_session(alice, bob);

    msg_t a1 = send(alice, "bob", "one");
    msg_t a2 = send(alice, "bob", "two (late)");
    msg_t a3 = send(alice, "bob", "three");
    TRUE(a1.type == RK_MESSAGE_TYPE_PREKEY);
    receive(bob, "alice", &a1, "one");
    receive(bob, "alice", &a3, "three"); /* a2's key is kept as skipped */
    msg_t b1 = send(bob, "alice", "hello alice");
    receive(alice, "bob", &b1, "hello alice");
    msg_t b2 = send(bob, "alice", "in flight over the restart");

    /* Bob's process ends: the handle is closed; everything is on disk. */
    rk_store_free(bob);
    bob = open_at(&p, key, NULL);
    bool has = false;
    CHECK(rk_store_has_session(bob, "alice", 1, &has));
    TRUE(has);
    size_t n = 0;
    CHECK(rk_store_session_count(bob, &n));
    TRUE(n == 1);
    uint32_t version = 0;
    CHECK(rk_store_session_version(bob, "alice", 1, &version));
    TRUE(version == RK_SESSION_VERSION_PQXDH);
    /* Messages decrypted before the restart are refused; the skipped one
     * decrypts once. */
    refused_duplicate(bob, "alice", &a1);
    refused_duplicate(bob, "alice", &a3);
    receive(bob, "alice", &a2, "two (late)");
    refused_duplicate(bob, "alice", &a2);
    receive(alice, "bob", &b2, "in flight over the restart");
    converse(alice, bob, "still there?", "yes, after a restart");

    /* Again with normal durability (a process end loses nothing). */
    msg_t a4 = send(alice, "bob", "before the second restart");
    receive(bob, "alice", &a4, "before the second restart");
    rk_store_free(bob);
    rk_store_options o = rk_store_options_default();
    o.durability = RK_DURABILITY_NORMAL;
    bob = open_at(&p, key, &o);
    refused_duplicate(bob, "alice", &a4);
    converse(alice, bob, "normal durability", "works the same");
    rk_store_free(bob);
    bob = open_at(&p, key, NULL);
    converse(alice, bob, "and back to full", "fine");
    refused_duplicate(bob, "alice", &a4);

    msg_free(&a1);
    msg_free(&a2);
    msg_free(&a3);
    msg_free(&a4);
    msg_free(&b1);
    msg_free(&b2);
    rk_store_free(alice);
    rk_store_free(bob);
}

static void test_rekey(void) {
    uint8_t k1[RK_STORE_KEY_LEN], k2[RK_STORE_KEY_LEN], k3[RK_STORE_KEY_LEN];
    fill_key(k1, 3);
    fill_key(k2, 4);
    fill_key(k3, 5);
    path_t p = path_of("rekey.db");
    rk_store *alice = new_memory_store(1);
    rk_store *bob = open_at(&p, k1, NULL);
    rk_store *other = open_at(&p, k1, NULL); /* a second handle on the file */
    start_session(alice, bob);
    converse(alice, bob, "before rekey", "ok");

    /* Misuse: nothing changes. */
    EXPECT(rk_store_rekey(bob, k3, 32, k2, 32), RK_STATUS_WRONG_STORE_KEY);
    EXPECT(rk_store_rekey(bob, k1, 31, k2, 32), RK_STATUS_INVALID_KEY);
    EXPECT(rk_store_rekey(bob, k1, 32, k2, 31), RK_STATUS_INVALID_KEY);
    EXPECT(rk_store_rekey(bob, k1, 32, NULL, 0), RK_STATUS_INVALID_KEY);
    EXPECT(rk_store_rekey(bob, NULL, 0, k2, 32), RK_STATUS_INVALID_KEY);
    EXPECT(rk_store_rekey(bob, NULL, 32, k2, 32), NP);
    EXPECT(rk_store_rekey(bob, k1, 32, NULL, 32), NP);
    EXPECT(rk_store_rekey(NULL, k1, 32, k2, 32), NP);
    EXPECT(rk_store_rekey(alice, k1, 32, k2, 32), RK_STATUS_INVALID_ARGUMENT);
    rk_bundle *bundle = NULL;
    REQUIRE(rk_store_create_bundle(alice, 0, 0, &bundle));
    EXPECT(rk_store_rekey((const rk_store *)bundle, k1, 32, k2, 32), RK_STATUS_INVALID_HANDLE);
    rk_bundle_free(bundle);

    CHECK(rk_store_rekey(bob, k1, 32, k2, 32));
    /* The old key is no longer the key, for a second rekey too. */
    EXPECT(rk_store_rekey(bob, k1, 32, k3, 32), RK_STATUS_WRONG_STORE_KEY);
    /* Both open handles keep working (the data key is unchanged). */
    converse(alice, bob, "after rekey", "still fine");
    converse(alice, other, "through the other handle", "same store");
    rk_store_free(other);
    rk_store_free(bob);

    rk_store *out = UNTOUCHED_STORE;
    EXPECT(rk_store_open(p.s, k1, 32, NULL, &out), RK_STATUS_WRONG_STORE_KEY);
    TRUE(out == UNTOUCHED_STORE);
    bob = open_at(&p, k2, NULL);
    converse(alice, bob, "reopened with the new key", "yes");
    /* Rekey through another handle, then back. */
    other = open_at(&p, k2, NULL);
    CHECK(rk_store_rekey(other, k2, 32, k3, 32));
    EXPECT(rk_store_rekey(bob, k2, 32, k1, 32), RK_STATUS_WRONG_STORE_KEY);
    CHECK(rk_store_rekey(bob, k3, 32, k1, 32));
    rk_store_free(other);
    rk_store_free(bob);
    bob = open_at(&p, k1, NULL);
    converse(alice, bob, "back to the first key", "fine");
    rk_store_free(bob);
    rk_store_free(alice);
}

static void test_import(void) {
    uint8_t key[RK_STORE_KEY_LEN];
    fill_key(key, 6);
    uint8_t pickle_key[RK_PICKLE_KEY_LEN];
    for (size_t i = 0; i < sizeof pickle_key; i++) {
        pickle_key[i] = (uint8_t)(200 - i);
    }
    rk_store *alice = new_memory_store(1);
    rk_store *bob = new_memory_store(1);
    start_session(alice, bob);
    converse(alice, bob, "before the save", "ok");
    msg_t late = send(bob, "alice", "in flight over the import");

    /* Alice's app kept her store as saved bytes: restore them, import. */
    rk_bytes sealed_b = UNTOUCHED_BYTES;
    REQUIRE(rk_store_save_encrypted(alice, pickle_key, sizeof pickle_key, &sealed_b));
    buf_t sealed = take(sealed_b);
    rk_store *restored = NULL;
    REQUIRE(rk_store_restore_encrypted(sealed.data, sealed.len, pickle_key, sizeof pickle_key,
                                       &restored));
    buf_t before = save_store(restored);

    path_t p = path_of("imported.db");
    rk_store *d = UNTOUCHED_STORE;
    REQUIRE(rk_store_import(p.s, key, sizeof key, NULL, restored, &d));
    buf_t after = save_store(restored);
    TRUE(buf_eq(before, after)); /* `from` is unchanged */
    buf_t durable_saved = save_store(d);
    TRUE(buf_eq(before, durable_saved)); /* the durable store holds the same */
    buf_free(&after);
    buf_free(&durable_saved);
    TRUE(is_durable(d));
    TRUE(!is_durable(restored));
    TRUE(same_identity(d, alice));
    uint32_t device = 0;
    CHECK(rk_store_device_id(d, &device));
    TRUE(device == 1);

    /* Importing into a file that holds a store, or from a durable store. */
    rk_store *out = UNTOUCHED_STORE;
    EXPECT(rk_store_import(p.s, key, sizeof key, NULL, restored, &out), RK_STATUS_STORAGE);
    path_t p2 = path_of("imported2.db");
    EXPECT(rk_store_import(p2.s, key, sizeof key, NULL, d, &out), RK_STATUS_INVALID_ARGUMENT);
    /* Misuse. */
    rk_store_options bad = rk_store_options_default();
    bad.durability = 7;
    EXPECT(rk_store_import(p2.s, key, sizeof key, &bad, restored, &out),
           RK_STATUS_INVALID_ARGUMENT);
    EXPECT(rk_store_import(NULL, key, 32, NULL, restored, &out), NP);
    EXPECT(rk_store_import(p2.s, NULL, 32, NULL, restored, &out), NP);
    EXPECT(rk_store_import(p2.s, key, 32, NULL, NULL, &out), NP);
    EXPECT(rk_store_import(p2.s, key, 32, NULL, restored, NULL), NP);
    EXPECT(rk_store_import(p2.s, key, 31, NULL, restored, &out), RK_STATUS_INVALID_KEY);
    EXPECT(rk_store_import("\xc3\x28", key, 32, NULL, restored, &out),
           RK_STATUS_INVALID_ARGUMENT);
    rk_bundle *bundle = NULL;
    REQUIRE(rk_store_create_bundle(bob, 0, 0, &bundle));
    EXPECT(rk_store_import(p2.s, key, 32, NULL, (const rk_store *)bundle, &out),
           RK_STATUS_INVALID_HANDLE);
    rk_bundle_free(bundle);
    TRUE(out == UNTOUCHED_STORE);
    /* With options: another file, normal durability. */
    rk_store_options o = rk_store_options_default();
    o.durability = RK_DURABILITY_NORMAL;
    CHECK(rk_store_import(p2.s, key, sizeof key, &o, restored, &out));
    if (out != UNTOUCHED_STORE) {
        TRUE(same_identity(out, alice));
        rk_store_free(out);
    }

    /* The imported store carries on the conversation, across a reopen. */
    receive(d, "bob", &late, "in flight over the import");
    converse(d, bob, "from the imported store", "welcome");
    rk_store_free(d);
    d = open_at(&p, key, NULL);
    refused_duplicate(d, "bob", &late);
    converse(d, bob, "after reopening it", "good");

    msg_free(&late);
    buf_free(&before);
    buf_free(&sealed);
    rk_store_free(d);
    rk_store_free(restored);
    rk_store_free(alice);
    rk_store_free(bob);
}

static void test_two_handles(void) {
    uint8_t key[RK_STORE_KEY_LEN];
    fill_key(key, 7);
    path_t p = path_of("shared.db");
    rk_store *h1 = open_at(&p, key, NULL);
    rk_store *h2 = open_at(&p, key, NULL);
    TRUE(same_identity(h1, h2));
    rk_store *alice = new_memory_store(1);
    start_session(alice, h1);

    /* Alice's messages are decrypted by the two handles in turn, and the
     * answers are encrypted by them in turn: one session, one chain. */
    char text[64];
    for (int i = 0; i < 6; i++) {
        rk_store *h = i % 2 ? h2 : h1;
        snprintf(text, sizeof text, "message %d from alice", i);
        msg_t m = send(alice, "bob", text);
        receive(h, "alice", &m, text);
        refused_duplicate(i % 2 ? h1 : h2, "alice", &m);
        msg_free(&m);
        snprintf(text, sizeof text, "answer %d from handle %d", i, i % 2 + 1);
        m = send(h, "alice", text);
        receive(alice, "bob", &m, text);
        msg_free(&m);
    }
    /* Two sends through different handles use successive keys. */
    msg_t x = send(h1, "alice", "first");
    msg_t y = send(h2, "alice", "second");
    TRUE(!buf_eq(x.bytes, y.bytes));
    receive(alice, "bob", &y, "second");
    receive(alice, "bob", &x, "first");
    msg_free(&x);
    msg_free(&y);
    /* A prekey made through one handle is seen by the other. */
    size_t c1 = 0, c2 = 0;
    rk_bytes rec = UNTOUCHED_BYTES;
    CHECK(rk_store_generate_prekeys(h1, 3, &rec));
    rk_bytes_free(rec);
    CHECK(rk_store_prekey_count(h1, &c1));
    CHECK(rk_store_prekey_count(h2, &c2));
    TRUE(c1 == c2 && c1 >= 3);
    rk_store_free(h1);
    converse(alice, h2, "one handle closed", "the other goes on");
    rk_store_free(h2);
    rk_store_free(alice);
}

static void test_pending(void) {
    uint8_t key[RK_STORE_KEY_LEN];
    fill_key(key, 8);
    path_t p = path_of("pending.db");
    rk_store *alice = new_memory_store(1);
    rk_store *bob = open_at(&p, key, NULL);
    rk_store *bob2 = open_at(&p, key, NULL);

    /* A first (prekey) message: nothing is written until the commit. */
    rk_bundle *bundle = NULL;
    REQUIRE(rk_store_create_bundle(bob, 1, 0, &bundle));
    REQUIRE(rk_store_process_bundle(alice, "bob", 1, bundle));
    rk_bundle_free(bundle);
    size_t prekeys = 0;
    CHECK(rk_store_prekey_count(bob, &prekeys));
    TRUE(prekeys == 1);
    msg_t first = send(alice, "bob", "first, two-phase");
    TRUE(first.type == RK_MESSAGE_TYPE_PREKEY);
    buf_t before = save_store(bob);
    rk_pending_decrypt *pd = UNTOUCHED_PENDING;
    REQUIRE(rk_store_decrypt_pending(bob, "alice", 1, first.type, first.bytes.data, first.bytes.len,
                                     &pd));
    rk_bytes pt = UNTOUCHED_BYTES;
    CHECK(rk_pending_decrypt_plaintext(pd, &pt));
    TRUE(pt.len == strlen("first, two-phase") && memcmp(pt.ptr, "first, two-phase", pt.len) == 0);
    rk_bytes_free(pt);
    pt = UNTOUCHED_BYTES;
    CHECK(rk_pending_decrypt_plaintext(pd, &pt)); /* as often as wanted */
    rk_bytes_free(pt);
    buf_t during = save_store(bob);
    TRUE(buf_eq(before, during));
    buf_free(&during);
    bool has = true;
    CHECK(rk_store_has_session(bob2, "alice", 1, &has));
    TRUE(!has);
    CHECK(rk_pending_decrypt_commit(pd));
    CHECK(rk_store_has_session(bob2, "alice", 1, &has));
    TRUE(has);
    CHECK(rk_store_prekey_count(bob2, &prekeys));
    TRUE(prekeys == 0);
    /* Spent: no plaintext, no second commit. */
    pt = UNTOUCHED_BYTES;
    EXPECT(rk_pending_decrypt_plaintext(pd, &pt), RK_STATUS_INVALID_ARGUMENT);
    TRUE(IS_UNTOUCHED(pt));
    EXPECT(rk_pending_decrypt_commit(pd), RK_STATUS_INVALID_ARGUMENT);
    rk_pending_decrypt_free(pd);
    refused_duplicate(bob, "alice", &first);
    refused_duplicate(bob2, "alice", &first);
    buf_free(&before);
    msg_free(&first);
    msg_t r = send(bob, "alice", "answer");
    receive(alice, "bob", &r, "answer");
    msg_free(&r);

    /* Discard: freed without a commit, the message decrypts again. */
    msg_t m = send(alice, "bob", "discarded once");
    before = save_store(bob);
    pd = NULL;
    REQUIRE(rk_store_decrypt_pending(bob, "alice", 1, m.type, m.bytes.data, m.bytes.len, &pd));
    rk_pending_decrypt_free(pd);
    buf_t after = save_store(bob);
    TRUE(buf_eq(before, after));
    buf_free(&before);
    buf_free(&after);
    /* ... twice, through both handles, then for real. */
    REQUIRE(rk_store_decrypt_pending(bob2, "alice", 1, m.type, m.bytes.data, m.bytes.len, &pd));
    rk_pending_decrypt_free(pd);
    receive(bob, "alice", &m, "discarded once");
    rk_pending_decrypt *dup = UNTOUCHED_PENDING;
    EXPECT(rk_store_decrypt_pending(bob2, "alice", 1, m.type, m.bytes.data, m.bytes.len, &dup),
           RK_STATUS_DUPLICATE_MESSAGE);
    TRUE(dup == UNTOUCHED_PENDING);
    msg_free(&m);

    /* Conflict: another handle decrypts a later message between the
     * pending decrypt and its commit. */
    msg_t m5 = send(alice, "bob", "five");
    msg_t m6 = send(alice, "bob", "six");
    REQUIRE(rk_store_decrypt_pending(bob, "alice", 1, m5.type, m5.bytes.data, m5.bytes.len, &pd));
    receive(bob2, "alice", &m6, "six");
    before = save_store(bob);
    EXPECT(rk_pending_decrypt_commit(pd), RK_STATUS_CONFLICT);
    after = save_store(bob);
    TRUE(buf_eq(before, after)); /* nothing written */
    buf_free(&before);
    buf_free(&after);
    EXPECT(rk_pending_decrypt_commit(pd), RK_STATUS_INVALID_ARGUMENT); /* spent */
    rk_pending_decrypt_free(pd);
    receive(bob, "alice", &m5, "five"); /* decrypts again, from the skipped key */
    refused_duplicate(bob, "alice", &m6);
    msg_free(&m5);
    msg_free(&m6);

    /* Both handles decrypt the same message: one commit wins. */
    msg_t m7 = send(alice, "bob", "seven");
    rk_pending_decrypt *p1 = NULL, *p2 = NULL;
    REQUIRE(rk_store_decrypt_pending(bob, "alice", 1, m7.type, m7.bytes.data, m7.bytes.len, &p1));
    REQUIRE(rk_store_decrypt_pending(bob2, "alice", 1, m7.type, m7.bytes.data, m7.bytes.len, &p2));
    CHECK(rk_pending_decrypt_commit(p2));
    EXPECT(rk_pending_decrypt_commit(p1), RK_STATUS_CONFLICT);
    rk_pending_decrypt_free(p1);
    rk_pending_decrypt_free(p2);
    refused_duplicate(bob, "alice", &m7);
    msg_free(&m7);

    /* A pending decrypt outlives the store handle it came from. */
    msg_t m8 = send(alice, "bob", "eight");
    REQUIRE(rk_store_decrypt_pending(bob, "alice", 1, m8.type, m8.bytes.data, m8.bytes.len, &pd));
    rk_store_free(bob);
    CHECK(rk_pending_decrypt_commit(pd));
    rk_pending_decrypt_free(pd);
    refused_duplicate(bob2, "alice", &m8);
    msg_free(&m8);
    bob = open_at(&p, key, NULL);
    converse(alice, bob, "after the pending decrypts", "all in order");

    /* Misuse: outputs untouched, store unchanged. */
    msg_t m9 = send(alice, "bob", "nine");
    before = save_store(bob);
    pd = UNTOUCHED_PENDING;
    const uint8_t *d9 = m9.bytes.data;
    size_t l9 = m9.bytes.len;
    EXPECT(rk_store_decrypt_pending(NULL, "alice", 1, m9.type, d9, l9, &pd), NP);
    EXPECT(rk_store_decrypt_pending(bob, NULL, 1, m9.type, d9, l9, &pd), NP);
    EXPECT(rk_store_decrypt_pending(bob, "alice", 1, m9.type, NULL, l9, &pd), NP);
    EXPECT(rk_store_decrypt_pending(bob, "alice", 1, m9.type, d9, l9, NULL), NP);
    EXPECT(rk_store_decrypt_pending(bob, "alice", 1, m9.type, NULL, 0, &pd),
           RK_STATUS_INVALID_MESSAGE);
    EXPECT(rk_store_decrypt_pending(bob, "alice", 1, 0, d9, l9, &pd), RK_STATUS_INVALID_ARGUMENT);
    EXPECT(rk_store_decrypt_pending(bob, "alice", 1, 1, d9, l9, &pd), RK_STATUS_INVALID_ARGUMENT);
    EXPECT(rk_store_decrypt_pending(bob, "alice", 1, 0x102, d9, l9, &pd),
           RK_STATUS_INVALID_ARGUMENT);
    EXPECT(rk_store_decrypt_pending(bob, "\xff", 1, m9.type, d9, l9, &pd),
           RK_STATUS_INVALID_ARGUMENT);
    EXPECT(rk_store_decrypt_pending(bob, "alice", 2, m9.type, d9, l9, &pd),
           RK_STATUS_NO_SESSION);
    EXPECT(rk_store_decrypt_pending(bob, "alice", 1, m9.type, d9, l9 - 1, &pd),
           RK_STATUS_INVALID_MESSAGE);
    m9.bytes.data[l9 - 1] ^= 0x01; /* the MAC */
    EXPECT(rk_store_decrypt_pending(bob, "alice", 1, m9.type, d9, l9, &pd),
           RK_STATUS_INVALID_MESSAGE);
    m9.bytes.data[l9 - 1] ^= 0x01;
    EXPECT(rk_store_decrypt_pending(alice, "bob", 1, m9.type, d9, l9, &pd),
           RK_STATUS_INVALID_ARGUMENT); /* an in-memory store */
    rk_bundle *not_store = NULL;
    REQUIRE(rk_store_create_bundle(alice, 0, 0, &not_store));
    EXPECT(rk_store_decrypt_pending((const rk_store *)not_store, "alice", 1, m9.type, d9, l9, &pd),
           RK_STATUS_INVALID_HANDLE);
    TRUE(pd == UNTOUCHED_PENDING);
    after = save_store(bob);
    TRUE(buf_eq(before, after));
    buf_free(&before);
    buf_free(&after);
    receive(bob, "alice", &m9, "nine");
    msg_free(&m9);

    pt = UNTOUCHED_BYTES;
    EXPECT(rk_pending_decrypt_plaintext(NULL, &pt), NP);
    EXPECT(rk_pending_decrypt_commit(NULL), NP);
    EXPECT(rk_pending_decrypt_plaintext((const rk_pending_decrypt *)not_store, &pt),
           RK_STATUS_INVALID_HANDLE);
    EXPECT(rk_pending_decrypt_commit((const rk_pending_decrypt *)not_store),
           RK_STATUS_INVALID_HANDLE);
    TRUE(IS_UNTOUCHED(pt));
    msg_t m10 = send(alice, "bob", "ten");
    REQUIRE(rk_store_decrypt_pending(bob, "alice", 1, m10.type, m10.bytes.data, m10.bytes.len,
                                     &pd));
    EXPECT(rk_pending_decrypt_plaintext(pd, NULL), NP);
    /* A pending decrypt is not a store, and a store is not one: a
     * wrong-type free is ignored. */
    size_t count = 0;
    EXPECT(rk_store_session_count((const rk_store *)pd, &count), RK_STATUS_INVALID_HANDLE);
    rk_pending_decrypt_free((rk_pending_decrypt *)bob);
    rk_store_free((rk_store *)pd);
    CHECK(rk_store_session_count(bob, &count));
    TRUE(count == 1);
    CHECK(rk_pending_decrypt_commit(pd));
    rk_pending_decrypt_free(pd);
    rk_pending_decrypt_free(NULL);
    refused_duplicate(bob, "alice", &m10);
    msg_free(&m10);

    rk_bundle_free(not_store);
    rk_store_free(bob);
    rk_store_free(bob2);
    rk_store_free(alice);
}

int main(void) {
    make_dir();
    test_options_default();
    test_open_create();
    test_conversation_across_reopen();
    test_rekey();
    test_import();
    test_two_handles();
    test_pending();
    remove_dir();
    return finish("test_durable");
}
