/* ratchetkit from C: a client of the reference key server.
 *
 * One device (device 1 of NAME) whose state lives in a durable store: every
 * run of this program opens the store, does one thing and exits, so every
 * command is a restart of the application from its store on disk.
 *
 *   directory_client HOST:PORT STORE KEYHEX NAME register
 *       registers NAME (the request is signed by the identity key being
 *       registered) and uploads the signed prekeys and 10 one-time EC and
 *       Kyber prekeys (rk_store_prepare_upload)
 *   directory_client HOST:PORT STORE KEYHEX NAME send PEER TEXT
 *       without a session to PEER: fetches PEER's bundle (the server hands
 *       out each one-time prekey once) and starts a session (PQXDH, version
 *       4); then encrypts TEXT and posts it to PEER's mailbox
 *   directory_client HOST:PORT STORE KEYHEX NAME receive
 *       fetches NAME's mailbox, decrypts each message, deletes it from the
 *       server only once it is decrypted (acknowledged deletion); then asks
 *       the server how many one-time prekeys are left and refills when the
 *       store's policy says so
 *   directory_client HOST:PORT STORE KEYHEX NAME safety PEER
 *       prints the safety number with PEER: 60 digits, the scannable bytes
 *       in hex, and a QR code for the terminal
 *
 * The HTTP client below is the smallest that does the job (HTTP/1.1 over
 * loopback, one request per connection, no TLS): an application uses its
 * own. The key server's API: keyserver/README.md. Mailbox bodies are the
 * message type (one byte) then the message, in base64.
 *
 * Build: cc directory_client.c $(pkg-config --cflags --libs ratchetkit) */

#define _POSIX_C_SOURCE 200809L /* getaddrinfo, strndup */

#include <ctype.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ratchetkit.h"

static const char *self_name;

static void die(const char *what, rk_status status) {
    char detail[512];
    size_t len = 0;
    if (rk_last_error_message(detail, sizeof detail, &len) != RK_STATUS_OK) {
        strcpy(detail, "(no detail)");
    }
    fprintf(stderr, "[%s] error: %s: %s (%u): %s\n", self_name, what, rk_status_str(status),
            (unsigned)status, detail);
    exit(1);
}

#define TRY(call)                                                                                  \
    do {                                                                                           \
        rk_status st_ = (call);                                                                    \
        if (st_ != RK_STATUS_OK) {                                                                 \
            die(#call, st_);                                                                       \
        }                                                                                          \
    } while (0)

static void fail(const char *fmt, const char *arg) {
    fprintf(stderr, "[%s] error: ", self_name);
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(1);
}

/* ---- base64 (standard alphabet, padded) -------------------------------- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *b64_encode(const uint8_t *in, size_t len) {
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    size_t o = 0;
    if (out == NULL) {
        fail("%s", "out of memory");
    }
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len) {
            v |= (uint32_t)in[i + 1] << 8;
        }
        if (i + 2 < len) {
            v |= in[i + 2];
        }
        out[o++] = B64[(v >> 18) & 63];
        out[o++] = B64[(v >> 12) & 63];
        out[o++] = i + 1 < len ? B64[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? B64[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

/* Decodes `len` characters of padded base64; returns NULL if malformed. */
static uint8_t *b64_decode(const char *in, size_t len, size_t *out_len) {
    if (len % 4 != 0) {
        return NULL;
    }
    uint8_t *out = malloc(len / 4 * 3 + 1);
    size_t o = 0;
    if (out == NULL) {
        fail("%s", "out of memory");
    }
    for (size_t i = 0; i < len; i += 4) {
        uint32_t v = 0;
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            const char c = in[i + j];
            const char *p = c == '=' ? NULL : strchr(B64, c);
            if (c == '=' && i + 4 == len && j >= 2) {
                pad++;
            } else if (p == NULL || c == '\0' || pad > 0) {
                free(out);
                return NULL;
            }
            v = (v << 6) | (p == NULL ? 0 : (uint32_t)(p - B64));
        }
        out[o++] = (uint8_t)(v >> 16);
        if (pad < 2) {
            out[o++] = (uint8_t)(v >> 8);
        }
        if (pad < 1) {
            out[o++] = (uint8_t)v;
        }
    }
    *out_len = o;
    return out;
}

/* ---- HTTP/1.1, one request per connection ----------------------------- */

typedef struct {
    int status;
    char *body; /* NUL-terminated */
    size_t len;
} response;

/* Decodes a chunked body in place; returns its length, or -1 if malformed. */
static long dechunk(char *body, size_t len) {
    size_t in = 0, out = 0;
    for (;;) {
        char *end = NULL;
        unsigned long size = strtoul(body + in, &end, 16);
        char *line_end = strstr(body + in, "\r\n");
        if (end == body + in || line_end == NULL || size > len - (size_t)(line_end + 2 - body)) {
            return -1;
        }
        in = (size_t)(line_end + 2 - body);
        if (size == 0) {
            return (long)out;
        }
        memmove(body + out, body + in, size);
        out += size;
        in += size + 2;
        if (in > len) {
            return -1;
        }
    }
}

static response http(const char *hostport, const char *method, const char *path,
                     const char *authorization, const char *body) {
    char host[256];
    const char *colon = strrchr(hostport, ':');
    if (colon == NULL || (size_t)(colon - hostport) >= sizeof host) {
        fail("bad server address %s (HOST:PORT)", hostport);
    }
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = '\0';
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0 || ai == NULL) {
        fail("cannot resolve %s", hostport);
    }
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        fail("cannot connect to %s", hostport);
    }
    freeaddrinfo(ai);
    const size_t body_len = body == NULL ? 0 : strlen(body);
    size_t cap = 1024 + strlen(path) + (authorization ? strlen(authorization) : 0);
    char *head = malloc(cap);
    if (head == NULL) {
        fail("%s", "out of memory");
    }
    int n = snprintf(head, cap,
                     "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s%s%s"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                     method, path, hostport, authorization ? "Authorization: " : "",
                     authorization ? authorization : "", authorization ? "\r\n" : "", body_len);
    if (n < 0 || (size_t)n >= cap || send(fd, head, (size_t)n, 0) != n ||
        (body_len > 0 && send(fd, body, body_len, 0) != (ssize_t)body_len)) {
        fail("cannot send to %s", hostport);
    }
    free(head);
    size_t len = 0, size = 4096;
    char *buf = malloc(size + 1);
    for (ssize_t got; buf != NULL && (got = recv(fd, buf + len, size - len, 0)) > 0;) {
        len += (size_t)got;
        if (len == size) {
            size *= 2;
            char *bigger = size > (8u << 20) ? NULL : realloc(buf, size + 1);
            if (bigger == NULL) {
                fail("%s", "answer too large");
            }
            buf = bigger;
        }
    }
    close(fd);
    if (buf == NULL) {
        fail("%s", "out of memory");
    }
    buf[len] = '\0';
    response r = {0, NULL, 0};
    char *body_start = strstr(buf, "\r\n\r\n");
    if (sscanf(buf, "HTTP/1.%*d %d", &r.status) != 1 || body_start == NULL) {
        fail("malformed answer from %s", hostport);
    }
    *body_start = '\0';
    body_start += 4;
    size_t blen = len - (size_t)(body_start - buf);
    int chunked = 0;
    for (char *line = strstr(buf, "\r\n"); line != NULL; line = strstr(line + 2, "\r\n")) {
        if (strncasecmp(line + 2, "transfer-encoding:", 18) == 0 &&
            strstr(line + 20, "chunked") != NULL) {
            chunked = 1;
        }
    }
    if (chunked) {
        long dl = dechunk(body_start, blen);
        if (dl < 0) {
            fail("malformed chunked answer from %s", hostport);
        }
        blen = (size_t)dl;
    }
    r.body = malloc(blen + 1);
    if (r.body == NULL) {
        fail("%s", "out of memory");
    }
    memcpy(r.body, body_start, blen);
    r.body[blen] = '\0';
    r.len = blen;
    free(buf);
    return r;
}

/* A signed request by this device (device 1 of `self_name`). */
static response signed_request(const char *server, rk_store *store, const char *method,
                               const char *path, const char *body) {
    rk_bytes auth;
    TRY(rk_store_sign_request(store, self_name, 1, method, path, (const uint8_t *)body,
                              body ? strlen(body) : 0, (uint64_t)time(NULL), &auth));
    response r = http(server, method, path, (const char *)auth.ptr, body);
    rk_bytes_free(auth);
    return r;
}

static void expect(response *r, int ok1, int ok2, const char *what) {
    if (r->status != ok1 && r->status != ok2) {
        fprintf(stderr, "[%s] error: %s: HTTP %d %s\n", self_name, what, r->status, r->body);
        exit(1);
    }
}

/* The number after `"key":` within [obj, end), or -1. */
static long long json_number(const char *obj, const char *end, const char *key) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    const char *p = strstr(obj, pattern);
    if (p == NULL || p >= end) {
        return -1;
    }
    return strtoll(p + strlen(pattern), NULL, 10);
}

/* The string after `"key":"` within [obj, end) (no escapes: base64 and
 * names), as a new string, or NULL. */
static char *json_string(const char *obj, const char *end, const char *key) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":\"", key);
    const char *p = strstr(obj, pattern);
    if (p == NULL || p >= end) {
        return NULL;
    }
    p += strlen(pattern);
    const char *q = strchr(p, '"');
    return q == NULL || q > end ? NULL : strndup(p, (size_t)(q - p));
}

/* ---- the commands ------------------------------------------------------ */

static void upload(const char *server, rk_store *store, uint32_t count) {
    rk_bytes json;
    TRY(rk_store_prepare_upload(store, count, (uint64_t)time(NULL) * 1000, &json));
    char path[128];
    snprintf(path, sizeof path, "/v1/keys/%s/1", self_name);
    response r = signed_request(server, store, "PUT", path, (const char *)json.ptr);
    expect(&r, 200, 201, "upload keys");
    printf("[%s] uploaded the signed prekeys and %u one-time prekey pairs; the server holds %s\n",
           self_name, count, r.body);
    free(r.body);
    rk_bytes_free(json);
}

static void do_register(const char *server, rk_store *store) {
    rk_public_key *identity;
    uint8_t serialized[RK_PUBLIC_KEY_LEN];
    TRY(rk_store_identity_key(store, &identity));
    TRY(rk_public_key_serialize(identity, serialized, sizeof serialized));
    char *b64 = b64_encode(serialized, sizeof serialized);
    char body[256];
    snprintf(body, sizeof body, "{\"identity_key\":\"%s\"}", b64);
    char path[128];
    snprintf(path, sizeof path, "/v1/devices/%s/1", self_name);
    response r = signed_request(server, store, "PUT", path, body);
    expect(&r, 201, 200, "register");
    printf("[%s] registered device 1 with identity key %.16s...\n", self_name, b64);
    free(r.body);
    free(b64);
    rk_public_key_free(identity);
    upload(server, store, 10);
}

static void do_send(const char *server, rk_store *store, const char *peer, const char *text) {
    bool has = false;
    TRY(rk_store_has_session(store, peer, 1, &has));
    char path[128];
    if (!has) {
        snprintf(path, sizeof path, "/v1/keys/%s/1", peer);
        response r = signed_request(server, store, "GET", path, NULL);
        expect(&r, 200, 200, "fetch bundle");
        rk_bundle *bundle;
        TRY(rk_bundle_from_json((const uint8_t *)r.body, r.len, 0, &bundle));
        TRY(rk_store_process_bundle(store, peer, 1, bundle));
        uint32_t version = 0;
        TRY(rk_store_session_version(store, peer, 1, &version));
        printf("[%s] fetched %s's bundle; session version %u\n", self_name, peer, version);
        rk_bundle_free(bundle);
        free(r.body);
    }
    uint32_t type;
    rk_bytes message;
    TRY(rk_store_encrypt(store, peer, 1, (const uint8_t *)text, strlen(text), &type, &message));
    uint8_t *envelope = malloc(message.len + 1);
    if (envelope == NULL) {
        fail("%s", "out of memory");
    }
    envelope[0] = (uint8_t)type;
    memcpy(envelope + 1, message.ptr, message.len);
    char *b64 = b64_encode(envelope, message.len + 1);
    char *body = malloc(strlen(b64) + 16);
    if (body == NULL) {
        fail("%s", "out of memory");
    }
    sprintf(body, "{\"body\":\"%s\"}", b64);
    snprintf(path, sizeof path, "/v1/messages/%s/1", peer);
    response r = signed_request(server, store, "POST", path, body);
    expect(&r, 201, 200, "post message");
    printf("[%s] -> %s: %s  [%s message, %zu bytes]\n", self_name, peer, text,
           type == RK_MESSAGE_TYPE_PREKEY ? "prekey" : "whisper", message.len);
    free(r.body);
    free(body);
    free(b64);
    free(envelope);
    rk_bytes_free(message);
}

static void do_receive(const char *server, rk_store *store) {
    char path[160];
    snprintf(path, sizeof path, "/v1/messages/%s/1", self_name);
    response r = signed_request(server, store, "GET", path, NULL);
    expect(&r, 200, 200, "fetch mailbox");
    int count = 0;
    /* {"messages":[{...},...]}: one flat object per message, keys in any
     * order, strings without braces (base64 and names). */
    const char *list = strstr(r.body, "\"messages\":[");
    if (list == NULL) {
        fail("%s", "malformed mailbox answer");
    }
    for (const char *obj = strchr(list, '{'), *end = NULL; obj != NULL;
         obj = strchr(end + 1, '{')) {
        end = strchr(obj, '}');
        if (end == NULL) {
            fail("%s", "malformed mailbox answer");
        }
        long long id = json_number(obj, end, "id");
        long long device = json_number(obj, end, "sender_device");
        char *sender = json_string(obj, end, "sender_name");
        char *b64 = json_string(obj, end, "body");
        size_t len = 0;
        uint8_t *envelope = b64 ? b64_decode(b64, strlen(b64), &len) : NULL;
        if (id < 0 || device < 0 || sender == NULL || envelope == NULL || len < 2) {
            fail("%s", "malformed mailbox answer");
        }
        rk_bytes plaintext;
        TRY(rk_store_decrypt(store, sender, (uint32_t)device, envelope[0], envelope + 1, len - 1,
                             &plaintext));
        printf("[%s] <- %s: %.*s\n", self_name, sender, (int)plaintext.len,
               (const char *)plaintext.ptr);
        rk_bytes_free(plaintext);
        /* Acknowledge: the server deletes the message only now that its
         * decryption is committed to the store. */
        char del[200];
        snprintf(del, sizeof del, "/v1/messages/%s/1/%lld", self_name, id);
        response d = signed_request(server, store, "DELETE", del, NULL);
        expect(&d, 204, 200, "acknowledge message");
        free(d.body);
        free(envelope);
        free(b64);
        free(sender);
        count++;
    }
    free(r.body);
    printf("[%s] %d message(s) received\n", self_name, count);

    /* Refill when the server runs low, as the policy says. */
    snprintf(path, sizeof path, "/v1/keys/%s/1/count", self_name);
    r = signed_request(server, store, "GET", path, NULL);
    expect(&r, 200, 200, "count prekeys");
    long long held = json_number(r.body, r.body + r.len, "prekeys");
    long long kyber_held = json_number(r.body, r.body + r.len, "kyber_prekeys");
    free(r.body);
    rk_prekey_policy policy = rk_prekey_policy_default();
    policy.refill_below = 10;
    rk_prekey_status status;
    TRY(rk_store_prekey_status(store, (uint64_t)time(NULL) * 1000,
                               held < kyber_held ? held : kyber_held, &policy, &status));
    if (status.refill) {
        printf("[%s] the server holds %lld one-time prekeys: refilling\n", self_name, held);
        upload(server, store, 10);
    }
}

static void do_safety(rk_store *store, const char *peer) {
    rk_fingerprint *fp;
    TRY(rk_store_safety_number(store, peer, (const uint8_t *)self_name, strlen(self_name),
                               (const uint8_t *)peer, strlen(peer), RK_DEFAULT_ITERATIONS,
                               RK_FINGERPRINT_VERSION, &fp));
    char digits[RK_SAFETY_NUMBER_LEN + 1];
    TRY(rk_fingerprint_displayable(fp, digits, sizeof digits));
    rk_bytes scannable, qr;
    TRY(rk_fingerprint_scannable(fp, &scannable));
    TRY(rk_fingerprint_qr_text(fp, &qr));
    printf("digits ");
    for (int i = 0; i < RK_SAFETY_NUMBER_LEN; i += 5) {
        printf("%.5s%s", digits + i, i + 5 < RK_SAFETY_NUMBER_LEN ? " " : "\n");
    }
    printf("scannable ");
    for (size_t i = 0; i < scannable.len; i++) {
        printf("%02x", scannable.ptr[i]);
    }
    printf("\n");
    fputs((const char *)qr.ptr, stdout);
    rk_bytes_free(qr);
    rk_bytes_free(scannable);
    rk_fingerprint_free(fp);
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s HOST:PORT STORE KEYHEX NAME register|send PEER TEXT|"
                        "receive|safety PEER\n",
                argv[0]);
        return 2;
    }
    const char *server = argv[1], *path = argv[2], *keyhex = argv[3], *command = argv[5];
    self_name = argv[4];
    uint8_t key[RK_STORE_KEY_LEN];
    if (strlen(keyhex) != 2 * sizeof key) {
        fail("KEYHEX must be %s hex digits", "64");
    }
    for (size_t i = 0; i < sizeof key; i++) {
        unsigned v;
        if (!isxdigit((unsigned char)keyhex[2 * i]) || !isxdigit((unsigned char)keyhex[2 * i + 1]) ||
            sscanf(keyhex + 2 * i, "%2x", &v) != 1) {
            fail("KEYHEX must be %s hex digits", "64");
        }
        key[i] = (uint8_t)v;
    }
    /* Opened (or created) from the file: the state of every earlier run. */
    rk_store_options options = rk_store_options_default();
    rk_store *store;
    TRY(rk_store_open(path, key, sizeof key, &options, &store));
    memset(key, 0, sizeof key);

    if (strcmp(command, "register") == 0) {
        do_register(server, store);
    } else if (strcmp(command, "send") == 0 && argc == 8) {
        do_send(server, store, argv[6], argv[7]);
    } else if (strcmp(command, "receive") == 0) {
        do_receive(server, store);
    } else if (strcmp(command, "safety") == 0 && argc == 7) {
        do_safety(store, argv[6]);
    } else {
        fail("unknown command or wrong arguments: %s", command);
    }
    rk_store_free(store);
    return 0;
}
