/* ratchetkit from C: Alice and Bob chat in one process.
 *
 * Bob publishes a prekey bundle (handed over as bytes, as a server would)
 * with a one-time prekey and a Kyber prekey, Alice starts a session from it
 * (PQXDH: message version 4, the default), and they exchange messages both
 * ways, some delivered out of order. Both keep their state in durable
 * stores: SQLite files (here in a temporary directory) sealed under a
 * 32-byte application key, where every call commits before it returns.
 * Midway Alice's app restarts: her store is closed and reopened from the
 * same file with the same key, and the conversation carries on. Bob takes
 * one message in two phases (decrypt, keep the plaintext, commit). Finally
 * both compute the safety number, shown as digits and as a QR code for the
 * terminal.
 *
 * Build: cc chat.c $(pkg-config --cflags --libs ratchetkit) -o chat */

#define _POSIX_C_SOURCE 200809L /* mkdtemp */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ratchetkit.h"

/* Error handling to copy: on any status other than RK_STATUS_OK, report
 * the status and this thread's detail message, then bail out. */
static void die(const char *what, rk_status status) {
    char detail[512];
    size_t len = 0;
    if (rk_last_error_message(detail, sizeof detail, &len) != RK_STATUS_OK) {
        strcpy(detail, "(no detail)");
    }
    fprintf(stderr, "error: %s: %s (%u): %s\n", what, rk_status_str(status), (unsigned)status,
            detail);
    exit(1);
}

#define TRY(call)                                                                                  \
    do {                                                                                           \
        rk_status st_ = (call);                                                                    \
        if (st_ != RK_STATUS_OK) {                                                                 \
            die(#call, st_);                                                                       \
        }                                                                                          \
    } while (0)

/* A message on the wire: the type travels with the bytes. */
typedef struct {
    uint32_t type;
    rk_bytes bytes;
} envelope;

static envelope send_text(rk_store *from, const char *who, const char *to_name, uint32_t to_device,
                          const char *text) {
    envelope e;
    TRY(rk_store_encrypt(from, to_name, to_device, (const uint8_t *)text, strlen(text), &e.type,
                         &e.bytes));
    printf("  %-5s -> %-5s  %-28s [%s message, %zu bytes]\n", who, to_name, text,
           e.type == RK_MESSAGE_TYPE_PREKEY ? "prekey" : "whisper", e.bytes.len);
    return e;
}

static void deliver(rk_store *to, const char *who, const char *from_name, uint32_t from_device,
                    envelope *e) {
    rk_bytes plaintext;
    TRY(rk_store_decrypt(to, from_name, from_device, e->type, e->bytes.ptr, e->bytes.len,
                         &plaintext));
    printf("  %-5s <- %-5s  %.*s\n", who, from_name, (int)plaintext.len,
           (const char *)plaintext.ptr);
    rk_bytes_free(plaintext); /* zeroizes the plaintext */
    rk_bytes_free(e->bytes);
    e->bytes = (rk_bytes){NULL, 0};
}

/* Removes a store's database file and SQLite's side files, if any. */
static void remove_store_files(const char *path) {
    static const char *suffixes[] = {"", "-wal", "-shm", "-journal"};
    char p[600];
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        snprintf(p, sizeof p, "%s%s", path, suffixes[i]);
        unlink(p); /* a missing file is fine */
    }
}

int main(void) {
    printf("ratchetkit %s (ABI %u), C example\n\n", rk_version(), rk_abi_version());
    if (rk_abi_version() != RK_ABI_VERSION) {
        fprintf(stderr, "error: library ABI %u, header ABI %u\n", rk_abi_version(),
                RK_ABI_VERSION);
        return 1;
    }

    /* Where the stores live: a temporary directory for this demo (an app
     * uses its data directory). */
    const char *tmp = getenv("TMPDIR");
    char dir[256], alice_path[300], bob_path[300];
    snprintf(dir, sizeof dir, "%s/ratchetkit-chat-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(alice_path, sizeof alice_path, "%s/alice.db", dir);
    snprintf(bob_path, sizeof bob_path, "%s/bob.db", dir);

    /* Each app's store key: 32 bytes from the platform's keystore in a real
     * app; fixed here. */
    uint8_t alice_key[RK_STORE_KEY_LEN], bob_key[RK_STORE_KEY_LEN];
    for (size_t i = 0; i < RK_STORE_KEY_LEN; i++) {
        alice_key[i] = (uint8_t)(0xA5 ^ (i * 29));
        bob_key[i] = (uint8_t)(0x3C ^ (i * 17));
    }

    /* Two devices: Alice (device 1) and Bob (device 1), each a durable
     * store created on first open (the default options: device id 1, full
     * durability, 5 s busy timeout). */
    rk_store *alice = NULL, *bob = NULL;
    rk_store_options options = rk_store_options_default();
    TRY(rk_store_open(alice_path, alice_key, sizeof alice_key, &options, &alice));
    TRY(rk_store_open(bob_path, bob_key, sizeof bob_key, &options, &bob));
    printf("Alice and Bob keep their stores in %s (alice.db, bob.db).\n", dir);

    /* Bob publishes a bundle with a one-time prekey and a one-time Kyber
     * prekey; it travels as bytes. */
    rk_bundle *published = NULL;
    rk_bytes wire;
    TRY(rk_store_create_bundle(bob, 1, 1700000000000ULL, &published));
    TRY(rk_bundle_serialize(published, &wire));
    rk_bundle_free(published);
    printf("Bob publishes a prekey bundle (%zu bytes).\n", wire.len);

    /* Alice fetches it and starts a session (PQXDH). */
    rk_bundle *fetched = NULL;
    TRY(rk_bundle_deserialize(wire.ptr, wire.len, &fetched));
    rk_bytes_free(wire);
    TRY(rk_store_process_bundle(alice, "bob", 1, fetched));
    rk_bundle_free(fetched);
    uint32_t version = 0;
    TRY(rk_store_session_version(alice, "bob", 1, &version));
    printf("Alice processed Bob's bundle: session established (%s, version %u).\n\n",
           version == RK_SESSION_VERSION_PQXDH ? "PQXDH" : "X3DH", (unsigned)version);
    if (version != RK_SESSION_VERSION_PQXDH) {
        fprintf(stderr, "error: expected a version-4 session\n");
        return 1;
    }
    /* SPQR, the post-quantum ratchet: required by default (as current
     * Signal clients); rk_store_set_spqr_policy(store, RK_SPQR_POLICY_OFFERED)
     * would also talk to peers without it. */
    uint32_t spqr_policy = 9, has_spqr = 0;
    uint64_t spqr_epoch = 0;
    TRY(rk_store_spqr_policy(alice, &spqr_policy));
    TRY(rk_store_session_has_spqr(alice, "bob", 1, &has_spqr, &spqr_epoch));
    printf("SPQR policy: %s; the session speaks SPQR: %s (epoch %llu).\n\n",
           spqr_policy == RK_SPQR_POLICY_REQUIRED ? "required" : "other", has_spqr ? "yes" : "no",
           (unsigned long long)spqr_epoch);

    /* Alice writes first: prekey messages until Bob answers. */
    envelope a1 = send_text(alice, "alice", "bob", 1, "Hi Bob!");
    envelope a2 = send_text(alice, "alice", "bob", 1, "Are you there?");
    deliver(bob, "bob", "alice", 1, &a1);
    deliver(bob, "bob", "alice", 1, &a2);

    /* Bob answers; the network reorders his three messages. */
    envelope b1 = send_text(bob, "bob", "alice", 1, "Hi Alice, I'm here.");
    envelope b2 = send_text(bob, "bob", "alice", 1, "This one arrives first.");
    envelope b3 = send_text(bob, "bob", "alice", 1, "And this one second.");
    printf("  (delivered out of order: 2, 3, 1)\n");
    deliver(alice, "alice", "bob", 1, &b2);
    deliver(alice, "alice", "bob", 1, &b3);
    deliver(alice, "alice", "bob", 1, &b1);

    /* Midway: Alice's app restarts. Closing the store loses nothing: every
     * call committed its changes to alice.db before it returned. */
    rk_store_free(alice);
    alice = NULL;
    printf("\nAlice's app restarts: her store is closed.\n");
    uint8_t wrong_key[RK_STORE_KEY_LEN] = {0};
    rk_store *nope = NULL;
    rk_status st = rk_store_open(alice_path, wrong_key, sizeof wrong_key, NULL, &nope);
    printf("Opening alice.db with a wrong key: %s.\n", rk_status_str(st));
    if (st != RK_STATUS_WRONG_STORE_KEY) {
        return 1;
    }
    TRY(rk_store_open(alice_path, alice_key, sizeof alice_key, &options, &alice));
    bool durable = false;
    TRY(rk_store_is_durable(alice, &durable));
    printf("Alice reopened her store from alice.db with her key (durable: %s).\n\n",
           durable ? "yes" : "no");

    /* The conversation carries on, again partly out of order. */
    envelope a3 = send_text(alice, "alice", "bob", 1, "Back after a restart.");
    envelope a4 = send_text(alice, "alice", "bob", 1, "Did you get that?");
    printf("  (delivered out of order: 2, 1)\n");
    deliver(bob, "bob", "alice", 1, &a4);

    /* Bob takes the next message in two phases: decrypt without writing,
     * keep the plaintext (an app stores it in its message database), then
     * commit. Had his app died before the commit, the message would simply
     * decrypt again. */
    rk_pending_decrypt *pending = NULL;
    rk_bytes kept;
    TRY(rk_store_decrypt_pending(bob, "alice", 1, a3.type, a3.bytes.ptr, a3.bytes.len,
                                 &pending));
    TRY(rk_pending_decrypt_plaintext(pending, &kept));
    printf("  %-5s <- %-5s  %.*s  [two-phase: kept, then committed]\n", "bob", "alice",
           (int)kept.len, (const char *)kept.ptr);
    rk_bytes_free(kept);
    TRY(rk_pending_decrypt_commit(pending)); /* RK_STATUS_CONFLICT: decrypt again */
    rk_pending_decrypt_free(pending);
    rk_bytes_free(a3.bytes);
    envelope b4 = send_text(bob, "bob", "alice", 1, "Yes, both. Bye!");
    deliver(alice, "alice", "bob", 1, &b4);
    TRY(rk_store_session_has_spqr(alice, "bob", 1, &has_spqr, &spqr_epoch));
    printf("After the conversation, SPQR epoch %llu.\n", (unsigned long long)spqr_epoch);

    /* Safety numbers: the same on both sides; compare the scannable form
     * as if Bob scanned Alice's QR code. */
    rk_fingerprint *fa = NULL, *fb = NULL;
    TRY(rk_store_safety_number(alice, "bob", (const uint8_t *)"alice", 5, (const uint8_t *)"bob",
                               3, RK_DEFAULT_ITERATIONS, RK_FINGERPRINT_VERSION, &fa));
    TRY(rk_store_safety_number(bob, "alice", (const uint8_t *)"bob", 3, (const uint8_t *)"alice",
                               5, RK_DEFAULT_ITERATIONS, RK_FINGERPRINT_VERSION, &fb));
    char digits_a[RK_SAFETY_NUMBER_LEN + 1], digits_b[RK_SAFETY_NUMBER_LEN + 1];
    TRY(rk_fingerprint_displayable(fa, digits_a, sizeof digits_a));
    TRY(rk_fingerprint_displayable(fb, digits_b, sizeof digits_b));
    printf("\nSafety number (Alice's view):\n ");
    for (int i = 0; i < RK_SAFETY_NUMBER_LEN; i++) {
        printf("%s%c", i % 5 == 0 ? " " : "", digits_a[i]);
        if (i == 29) {
            printf("\n ");
        }
    }
    printf("\nBob sees the same digits: %s\n", strcmp(digits_a, digits_b) == 0 ? "yes" : "NO");
    rk_bytes scanned;
    bool match = false;
    TRY(rk_fingerprint_scannable(fa, &scanned));
    TRY(rk_fingerprint_compare(fb, scanned.ptr, scanned.len, &match));
    rk_bytes_free(scanned);
    printf("Bob scans Alice's code: %s\n\n", match ? "verified" : "MISMATCH");
    rk_bytes qr;
    TRY(rk_fingerprint_qr_text(fa, &qr));
    fputs((const char *)qr.ptr, stdout);
    rk_bytes_free(qr);

    rk_fingerprint_free(fa);
    rk_fingerprint_free(fb);
    rk_store_free(alice);
    rk_store_free(bob);
    remove_store_files(alice_path);
    remove_store_files(bob_path);
    if (rmdir(dir) != 0) {
        perror("rmdir");
        return 1;
    }
    if (strcmp(digits_a, digits_b) != 0 || !match) {
        return 1;
    }
    printf("\nDone.\n");
    return 0;
}
