/* The key directory through the C API: an upload in the key server's
 * format, the bundle the server would answer with (built here from the
 * upload, as the server does), a version-4 session from it, refill and
 * rotation with a grace period, signed requests, and the NULL/misuse
 * matrix of every directory function. */

#define _POSIX_C_SOURCE 200809L

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"

#define NP RK_STATUS_NULL_POINTER
#define DAY_MS (24ull * 3600 * 1000)

/* A copy of the JSON object that follows `"key":` in `json` (the upload
 * format has no nested objects below its top level), or of the first
 * element of the array that follows it when `first_of_array`. */
static char *extract(const char *json, const char *key, bool first_of_array) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":%s", key, first_of_array ? "[" : "");
    const char *at = strstr(json, pat);
    if (at == NULL) {
        return NULL;
    }
    at += strlen(pat);
    if (*at != '{') {
        return NULL;
    }
    const char *end = strchr(at, '}');
    if (end == NULL) {
        return NULL;
    }
    size_t n = (size_t)(end - at) + 1;
    char *out = malloc(n + 1);
    if (out == NULL) {
        abort();
    }
    memcpy(out, at, n);
    out[n] = '\0';
    return out;
}

/* The string value of `"key":"..."` in `json`, copied. */
static char *extract_string(const char *json, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *at = strstr(json, pat);
    if (at == NULL) {
        return NULL;
    }
    at += strlen(pat);
    const char *end = strchr(at, '"');
    size_t n = (size_t)(end - at);
    char *out = malloc(n + 1);
    if (out == NULL) {
        abort();
    }
    memcpy(out, at, n);
    out[n] = '\0';
    return out;
}

/* The server's bundle answer for `upload`: one-time keys claimed, or the
 * last-resort Kyber prekey and no EC prekey. */
static char *server_bundle(const char *upload, uint32_t registration_id, bool one_time) {
    char *identity = extract_string(upload, "identity_key");
    char *signed_pk = extract(upload, "signed_prekey", false);
    char *prekey = one_time ? extract(upload, "prekeys", true) : NULL;
    char *kyber = one_time ? extract(upload, "kyber_prekeys", true)
                           : extract(upload, "last_resort_kyber_prekey", false);
    TRUE(identity && signed_pk && kyber && (prekey || !one_time));
    size_t cap = strlen(upload) + 512;
    char *out = malloc(cap);
    if (out == NULL) {
        abort();
    }
    snprintf(out, cap,
             "{\"version\":1,\"name\":\"bob\",\"device_id\":1,\"registration_id\":%u,"
             "\"identity_key\":\"%s\",\"signed_prekey\":%s,\"prekey\":%s,"
             "\"kyber_prekey\":%s,\"kyber_last_resort\":%s}",
             (unsigned)registration_id, identity ? identity : "", signed_pk ? signed_pk : "{}",
             prekey ? prekey : "null", kyber ? kyber : "{}", one_time ? "false" : "true");
    free(identity);
    free(signed_pk);
    free(prekey);
    free(kyber);
    return out;
}

static void test_upload_bundle_session(void) {
    rk_store *bob = NULL, *alice = NULL;
    REQUIRE(rk_store_new(1, &bob));
    REQUIRE(rk_store_new(1, &alice));
    uint32_t reg = 0;
    REQUIRE(rk_store_registration_id(bob, &reg));

    rk_bytes upload = UNTOUCHED_BYTES;
    EXPECT(rk_store_prepare_upload(bob, RK_MAX_UPLOAD_BATCH + 1, 0, &upload),
           RK_STATUS_LIMIT_EXCEEDED);
    TRUE(IS_UNTOUCHED(upload));
    EXPECT(rk_store_prepare_upload(NULL, 1, 0, &upload), NP);
    EXPECT(rk_store_prepare_upload(bob, 1, 0, NULL), NP);
    REQUIRE(rk_store_prepare_upload(bob, 3, 1000, &upload));
    const char *json = (const char *)upload.ptr;
    TRUE(strlen(json) == upload.len);
    TRUE(strncmp(json, "{\"version\":1,", 13) == 0);
    size_t count = 0;
    REQUIRE(rk_store_prekey_count(bob, &count));
    TRUE(count == 3);
    REQUIRE(rk_store_kyber_prekey_count(bob, &count));
    TRUE(count == 3);

    char *answer = server_bundle(json, reg, true);
    size_t n = 0;
    REQUIRE(rk_bundles_json_count((const uint8_t *)answer, strlen(answer), &n));
    TRUE(n == 1);
    rk_bundle *bundle = NULL;
    EXPECT(rk_bundle_from_json((const uint8_t *)answer, strlen(answer), 1, &bundle),
           RK_STATUS_INVALID_ARGUMENT);
    TRUE(bundle == NULL);
    REQUIRE(rk_bundle_from_json((const uint8_t *)answer, strlen(answer), 0, &bundle));
    bool has = false;
    REQUIRE(rk_bundle_has_kyber_prekey(bundle, &has));
    TRUE(has);
    REQUIRE(rk_store_process_bundle(alice, "bob", 1, bundle));
    uint32_t version = 0;
    REQUIRE(rk_store_session_version(alice, "bob", 1, &version));
    TRUE(version == 4);
    uint32_t type = 0;
    rk_bytes ct = UNTOUCHED_BYTES, pt = UNTOUCHED_BYTES;
    REQUIRE(rk_store_encrypt(alice, "bob", 1, (const uint8_t *)"hi", 2, &type, &ct));
    REQUIRE(rk_store_decrypt(bob, "alice", 1, type, ct.ptr, ct.len, &pt));
    TRUE(pt.len == 2 && memcmp(pt.ptr, "hi", 2) == 0);
    rk_bytes_free(ct);
    rk_bytes_free(pt);
    REQUIRE(rk_store_prekey_count(bob, &count));
    TRUE(count == 2);
    rk_bundle_free(bundle);
    free(answer);

    /* The last-resort fallback, listed as all devices of a name. */
    char *one = server_bundle(json, reg, false);
    size_t cap = strlen(one) + 32;
    char *devices = malloc(cap);
    if (devices == NULL) {
        abort();
    }
    snprintf(devices, cap, "{\"devices\":[%s]}", one);
    REQUIRE(rk_bundles_json_count((const uint8_t *)devices, strlen(devices), &n));
    TRUE(n == 1);
    bundle = NULL;
    REQUIRE(rk_bundle_from_json((const uint8_t *)devices, strlen(devices), 0, &bundle));
    rk_public_key *pk = NULL;
    uint32_t id = 0;
    has = true;
    REQUIRE(rk_bundle_prekey(bundle, &has, &id, &pk));
    TRUE(!has && pk == NULL);
    REQUIRE(rk_store_process_bundle(alice, "bob2", 1, bundle));
    rk_bundle_free(bundle);
    free(one);
    free(devices);

    /* Malformed answers and misuse. */
    const char *bad[] = {"", "{", "[]", "{\"devices\":3}", "{\"version\":1}", "null"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        EXPECT(rk_bundles_json_count((const uint8_t *)bad[i], strlen(bad[i]), &n),
               RK_STATUS_INVALID_BUNDLE);
        bundle = NULL;
        EXPECT(rk_bundle_from_json((const uint8_t *)bad[i], strlen(bad[i]), 0, &bundle),
               RK_STATUS_INVALID_BUNDLE);
        TRUE(bundle == NULL);
    }
    EXPECT(rk_bundles_json_count(NULL, 3, &n), NP);
    EXPECT(rk_bundles_json_count((const uint8_t *)"{}", 2, NULL), NP);
    EXPECT(rk_bundle_from_json(NULL, 3, 0, &bundle), NP);
    EXPECT(rk_bundle_from_json((const uint8_t *)"{}", 2, 0, NULL), NP);
    rk_bytes_free(upload);
    rk_store_free(alice);
    rk_store_free(bob);
}

static void test_refill_and_rotation(void) {
    rk_store *bob = NULL;
    REQUIRE(rk_store_new(1, &bob));
    rk_prekey_policy policy = rk_prekey_policy_default();
    TRUE(policy.refill_below == 20 && policy.rotate_after_ms == 7 * DAY_MS &&
         policy.grace_ms == 30 * DAY_MS);
    policy.refill_below = 5;
    policy.grace_ms = 3 * DAY_MS;
    rk_prekey_status st;
    REQUIRE(rk_store_prekey_status(bob, 0, RK_COUNT_UNKNOWN, &policy, &st));
    TRUE(st.refill && st.rotate && st.signed_prekey_age_ms == RK_NO_AGE &&
         st.last_resort_age_ms == RK_NO_AGE);
    rk_bytes upload;
    REQUIRE(rk_store_prepare_upload(bob, 6, 0, &upload));
    rk_bytes_free(upload);
    REQUIRE(rk_store_prekey_status(bob, DAY_MS, RK_COUNT_UNKNOWN, &policy, &st));
    TRUE(!st.refill && !st.rotate && st.prekeys_held == 6 && st.kyber_prekeys_held == 6);
    TRUE(st.signed_prekey_age_ms == DAY_MS && st.last_resort_age_ms == DAY_MS);
    REQUIRE(rk_store_prekey_status(bob, DAY_MS, 4, &policy, &st));
    TRUE(st.refill);
    REQUIRE(rk_store_prekey_status(bob, DAY_MS, 5, NULL, &st));
    TRUE(st.refill); /* the default threshold is 20 */
    EXPECT(rk_store_prekey_status(bob, DAY_MS, -2, &policy, &st), RK_STATUS_INVALID_ARGUMENT);
    EXPECT(rk_store_prekey_status(NULL, 0, 0, &policy, &st), NP);
    EXPECT(rk_store_prekey_status(bob, 0, 0, &policy, NULL), NP);

    bool rotated = true;
    uint32_t removed = 99;
    REQUIRE(rk_store_rotate_prekeys(bob, 6 * DAY_MS, &policy, &rotated, &removed));
    TRUE(!rotated && removed == 0);
    REQUIRE(rk_store_rotate_prekeys(bob, 7 * DAY_MS, &policy, &rotated, &removed));
    TRUE(rotated && removed == 0);
    REQUIRE(rk_store_prekey_status(bob, 9 * DAY_MS, RK_COUNT_UNKNOWN, &policy, &st));
    TRUE(st.expired == 0 && !st.rotate);
    REQUIRE(rk_store_prekey_status(bob, 10 * DAY_MS, RK_COUNT_UNKNOWN, &policy, &st));
    TRUE(st.expired == 2);
    REQUIRE(rk_store_rotate_prekeys(bob, 10 * DAY_MS, &policy, &rotated, &removed));
    TRUE(!rotated && removed == 2);
    EXPECT(rk_store_rotate_prekeys(NULL, 0, &policy, &rotated, &removed), NP);
    EXPECT(rk_store_rotate_prekeys(bob, 0, &policy, NULL, &removed), NP);
    EXPECT(rk_store_rotate_prekeys(bob, 0, &policy, &rotated, NULL), NP);
    /* After a rotation a count of 0 uploads the new signed keys only. */
    REQUIRE(rk_store_prepare_upload(bob, 0, 10 * DAY_MS, &upload));
    TRUE(strstr((const char *)upload.ptr, "\"prekeys\":[]") != NULL);
    rk_bytes_free(upload);
    rk_store_free(bob);
}

static void test_sign_request(void) {
    rk_store *bob = NULL;
    REQUIRE(rk_store_new(1, &bob));
    const char *body = "{\"x\":1}";
    rk_bytes header = UNTOUCHED_BYTES;
    REQUIRE(rk_store_sign_request(bob, "bob", 1, "PUT", "/v1/keys/bob/1", (const uint8_t *)body,
                                  strlen(body), 1700000000, &header));
    const char *h = (const char *)header.ptr;
    TRUE(strncmp(h, "Ratchetkit name=bob,device=1,ts=1700000000,nonce=", 49) == 0);
    TRUE(strstr(h, ",sig=") != NULL && strlen(h) == header.len);
    rk_bytes_free(header);
    REQUIRE(rk_store_sign_request(bob, "bob", 1, "GET", "/v1/keys/bob/1/count", NULL, 0, 1,
                                  &header));
    rk_bytes_free(header);
    header = UNTOUCHED_BYTES;
    EXPECT(rk_store_sign_request(bob, "b,ob", 1, "GET", "/", NULL, 0, 1, &header),
           RK_STATUS_INVALID_ARGUMENT);
    EXPECT(rk_store_sign_request(bob, "bob", 1, "get", "/", NULL, 0, 1, &header),
           RK_STATUS_INVALID_ARGUMENT);
    EXPECT(rk_store_sign_request(bob, "bob", 1, "GET", "nope", NULL, 0, 1, &header),
           RK_STATUS_INVALID_ARGUMENT);
    EXPECT(rk_store_sign_request(bob, "bob", 1, "GET", "/", NULL, 5, 1, &header), NP);
    EXPECT(rk_store_sign_request(NULL, "bob", 1, "GET", "/", NULL, 0, 1, &header), NP);
    EXPECT(rk_store_sign_request(bob, NULL, 1, "GET", "/", NULL, 0, 1, &header), NP);
    EXPECT(rk_store_sign_request(bob, "bob", 1, NULL, "/", NULL, 0, 1, &header), NP);
    EXPECT(rk_store_sign_request(bob, "bob", 1, "GET", NULL, NULL, 0, 1, &header), NP);
    EXPECT(rk_store_sign_request(bob, "bob", 1, "GET", "/", NULL, 0, 1, NULL), NP);
    TRUE(IS_UNTOUCHED(header));
    rk_store_free(bob);
}

int main(void) {
    test_upload_bundle_session();
    test_refill_and_rotation();
    test_sign_request();
    return finish("test_directory");
}
