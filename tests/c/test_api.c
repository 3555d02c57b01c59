/* Every exported function of the C API: happy paths and misuse (NULL
 * handles and out-pointers, zero and short lengths, corrupted messages,
 * corrupted or wrongly-keyed saved state, wrong key types, wrong handle
 * types). Every failing call is checked to leave its outputs unwritten and
 * the store byte-for-byte unchanged. */

#include <stdint.h>

#include "check.h"

#ifndef EXPECTED_VERSION
#error "build with -DEXPECTED_VERSION=\"x.y.z\" (the version in Cargo.toml)"
#endif

#define NP RK_STATUS_NULL_POINTER

static buf_t save_store(const rk_store *s) {
    rk_bytes b = UNTOUCHED_BYTES;
    REQUIRE(rk_store_save(s, &b));
    return take(b);
}

static rk_store *new_store(uint32_t device) {
    rk_store *s = NULL;
    REQUIRE(rk_store_new(device, &s));
    return s;
}

static rk_public_key *public_of(const rk_store *s) {
    rk_public_key *k = NULL;
    REQUIRE(rk_store_identity_key(s, &k));
    return k;
}

/* ---------------------------------------------------------------------- */

static void test_version_and_status(void) {
    TRUE(strcmp(rk_version(), RK_VERSION_STRING) == 0);
    TRUE(strcmp(rk_version(), EXPECTED_VERSION) == 0);
    TRUE(rk_abi_version() == RK_ABI_VERSION);
    char v[32];
    snprintf(v, sizeof v, "%d.%d.%d", RK_VERSION_MAJOR, RK_VERSION_MINOR, RK_VERSION_PATCH);
    TRUE(strcmp(v, EXPECTED_VERSION) == 0);

    const uint32_t codes[] = {
        RK_STATUS_OK, RK_STATUS_NULL_POINTER, RK_STATUS_INVALID_ARGUMENT,
        RK_STATUS_BUFFER_TOO_SMALL, RK_STATUS_INVALID_HANDLE, RK_STATUS_INVALID_KEY,
        RK_STATUS_INVALID_SIGNATURE, RK_STATUS_INVALID_MESSAGE, RK_STATUS_DUPLICATE_MESSAGE,
        RK_STATUS_INVALID_BUNDLE, RK_STATUS_INVALID_FINGERPRINT,
        RK_STATUS_FINGERPRINT_VERSION_MISMATCH, RK_STATUS_LIMIT_EXCEEDED,
        RK_STATUS_VERSION_REFUSED, RK_STATUS_SPQR_REQUIRED, RK_STATUS_UNTRUSTED_IDENTITY, RK_STATUS_NO_SESSION, RK_STATUS_MISSING_PREKEY,
        RK_STATUS_NO_TRUSTED_IDENTITY, RK_STATUS_INVALID_STATE, RK_STATUS_WRONG_PICKLE_KEY,
        RK_STATUS_UNSUPPORTED_STATE_VERSION, RK_STATUS_INTERNAL, RK_STATUS_PANIC,
        RK_STATUS_POISONED};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *s = rk_status_str(codes[i]);
        TRUE(s != NULL && s[0] != '\0' && strcmp(s, "unknown status") != 0);
    }
    TRUE(strcmp(rk_status_str(0), "ok") == 0);
    TRUE(strcmp(rk_status_str(12345), "unknown status") == 0);
    TRUE(strcmp(rk_status_str(UINT32_MAX), "unknown status") == 0);
}

static void test_last_error(void) {
    char buf[256];
    size_t len = 777;
    rk_store *s = NULL;
    EXPECT(rk_store_new(0, &s), RK_STATUS_INVALID_ARGUMENT);
    TRUE(s == NULL);
    /* Length query, then read; reading does not clear it. */
    EXPECT(rk_last_error_message(NULL, 0, &len), RK_STATUS_BUFFER_TOO_SMALL);
    TRUE(len > 0 && len != 777);
    size_t need = len;
    EXPECT(rk_last_error_message(buf, need, &len), RK_STATUS_BUFFER_TOO_SMALL);
    CHECK(rk_last_error_message(buf, need + 1, &len));
    TRUE(len == need && strlen(buf) == need);
    TRUE(strstr(buf, "device id") != NULL);
    CHECK(rk_last_error_message(buf, sizeof buf, &len));
    TRUE(len == need);
    EXPECT(rk_last_error_message(buf, sizeof buf, NULL), NP);
    EXPECT(rk_last_error_message(NULL, 5, &len), NP);
    /* A successful call clears it. */
    s = new_store(1);
    CHECK(rk_last_error_message(buf, sizeof buf, &len));
    TRUE(len == 0 && buf[0] == '\0');
    rk_store_free(s);
}

static void test_public_keys(void) {
    rk_identity_keypair *pair = NULL;
    REQUIRE(rk_identity_keypair_generate(&pair));
    rk_public_key *pub = NULL;
    REQUIRE(rk_identity_keypair_public_key(pair, &pub));

    uint8_t ser[RK_PUBLIC_KEY_LEN + 4];
    CHECK(rk_public_key_serialize(pub, ser, sizeof ser));
    TRUE(ser[0] == 0x05);
    EXPECT(rk_public_key_serialize(pub, ser, RK_PUBLIC_KEY_LEN - 1), RK_STATUS_BUFFER_TOO_SMALL);
    EXPECT(rk_public_key_serialize(pub, NULL, RK_PUBLIC_KEY_LEN), NP);
    EXPECT(rk_public_key_serialize(NULL, ser, RK_PUBLIC_KEY_LEN), NP);

    rk_public_key *back = NULL;
    CHECK(rk_public_key_deserialize(ser, RK_PUBLIC_KEY_LEN, &back));
    bool eq = false;
    CHECK(rk_public_key_equals(pub, back, &eq));
    TRUE(eq);
    EXPECT(rk_public_key_equals(pub, NULL, &eq), NP);
    EXPECT(rk_public_key_equals(NULL, pub, &eq), NP);
    EXPECT(rk_public_key_equals(pub, back, NULL), NP);

    /* Lengths: short, long, zero, NULL with a length. */
    rk_public_key *bad = (rk_public_key *)(uintptr_t)0x1;
    EXPECT(rk_public_key_deserialize(ser, RK_PUBLIC_KEY_LEN - 1, &bad), RK_STATUS_INVALID_KEY);
    EXPECT(rk_public_key_deserialize(ser, RK_PUBLIC_KEY_LEN + 1, &bad), RK_STATUS_INVALID_KEY);
    EXPECT(rk_public_key_deserialize(ser, 0, &bad), RK_STATUS_INVALID_KEY);
    EXPECT(rk_public_key_deserialize(NULL, 0, &bad), RK_STATUS_INVALID_KEY);
    EXPECT(rk_public_key_deserialize(NULL, RK_PUBLIC_KEY_LEN, &bad), NP);
    EXPECT(rk_public_key_deserialize(ser, RK_PUBLIC_KEY_LEN, NULL), NP);
    /* Wrong key type: type byte, and a 32-byte private key given as public. */
    uint8_t typed[RK_PUBLIC_KEY_LEN];
    memcpy(typed, ser, sizeof typed);
    typed[0] = 0x06;
    EXPECT(rk_public_key_deserialize(typed, sizeof typed, &bad), RK_STATUS_INVALID_KEY);
    TRUE(strstr(last_err(), "0x06") != NULL);
    rk_bytes priv = UNTOUCHED_BYTES;
    REQUIRE(rk_identity_keypair_serialize(pair, &priv));
    TRUE(priv.len == RK_PRIVATE_KEY_LEN);
    EXPECT(rk_public_key_deserialize(priv.ptr, priv.len, &bad), RK_STATUS_INVALID_KEY);
    TRUE(bad == (rk_public_key *)(uintptr_t)0x1);

    /* Identity key pair from its private key: same public key; a public
     * key given as a private key is refused. */
    rk_identity_keypair *pair2 = NULL;
    CHECK(rk_identity_keypair_deserialize(priv.ptr, priv.len, &pair2));
    rk_public_key *pub2 = NULL;
    CHECK(rk_identity_keypair_public_key(pair2, &pub2));
    CHECK(rk_public_key_equals(pub, pub2, &eq));
    TRUE(eq);
    rk_identity_keypair *badpair = NULL;
    EXPECT(rk_identity_keypair_deserialize(ser, RK_PUBLIC_KEY_LEN, &badpair),
           RK_STATUS_INVALID_KEY);
    EXPECT(rk_identity_keypair_deserialize(priv.ptr, 31, &badpair), RK_STATUS_INVALID_KEY);
    EXPECT(rk_identity_keypair_deserialize(NULL, 32, &badpair), NP);
    EXPECT(rk_identity_keypair_deserialize(priv.ptr, priv.len, NULL), NP);
    TRUE(badpair == NULL);
    rk_bytes_free(priv);

    /* Sign and verify. */
    const uint8_t msg[] = "sign me";
    uint8_t sig[RK_SIGNATURE_LEN];
    CHECK(rk_identity_keypair_sign(pair, msg, sizeof msg, sig, sizeof sig));
    bool valid = false;
    CHECK(rk_public_key_verify_signature(pub, msg, sizeof msg, sig, sizeof sig, &valid));
    TRUE(valid);
    CHECK(rk_public_key_verify_signature(pub, msg, sizeof msg - 1, sig, sizeof sig, &valid));
    TRUE(!valid);
    CHECK(rk_public_key_verify_signature(pub, msg, sizeof msg, sig, 63, &valid));
    TRUE(!valid);
    CHECK(rk_public_key_verify_signature(pub, NULL, 0, sig, sizeof sig, &valid));
    TRUE(!valid);
    sig[10] ^= 1;
    CHECK(rk_public_key_verify_signature(pub, msg, sizeof msg, sig, sizeof sig, &valid));
    TRUE(!valid);
    EXPECT(rk_public_key_verify_signature(pub, NULL, 3, sig, sizeof sig, &valid), NP);
    EXPECT(rk_public_key_verify_signature(pub, msg, sizeof msg, NULL, 64, &valid), NP);
    EXPECT(rk_public_key_verify_signature(pub, msg, sizeof msg, sig, 64, NULL), NP);
    EXPECT(rk_public_key_verify_signature(NULL, msg, sizeof msg, sig, 64, &valid), NP);
    /* A public key with bit 255 set (an alias X25519 cannot tell from the
     * key) and u >= p are refused; a small-order key (u = 0, an Edwards
     * point of order 2) parses but verifies nothing, not even the forgery
     * R = identity, s = 0 that satisfies the equation for every message
     * whose challenge is even (about half of these). */
    uint8_t alias[RK_PUBLIC_KEY_LEN];
    memcpy(alias, ser, sizeof alias);
    alias[32] |= 0x80;
    EXPECT(rk_public_key_deserialize(alias, sizeof alias, &bad), RK_STATUS_INVALID_KEY);
    TRUE(strstr(last_err(), "non-canonical") != NULL);
    uint8_t p_enc[RK_PUBLIC_KEY_LEN] = {0x05, 0xed};
    memset(p_enc + 2, 0xff, 30);
    p_enc[32] = 0x7f;
    EXPECT(rk_public_key_deserialize(p_enc, sizeof p_enc, &bad), RK_STATUS_INVALID_KEY);
    TRUE(bad == (rk_public_key *)(uintptr_t)0x1);
    uint8_t zero_key[RK_PUBLIC_KEY_LEN] = {0x05};
    rk_public_key *low = NULL;
    CHECK(rk_public_key_deserialize(zero_key, sizeof zero_key, &low));
    uint8_t forged[RK_SIGNATURE_LEN] = {1};
    for (uint8_t i = 0; i < 32; i++) {
        valid = true;
        CHECK(rk_public_key_verify_signature(low, &i, 1, forged, sizeof forged, &valid));
        TRUE(!valid);
    }
    rk_public_key_free(low);
    EXPECT(rk_identity_keypair_sign(pair, msg, sizeof msg, sig, 63), RK_STATUS_BUFFER_TOO_SMALL);
    EXPECT(rk_identity_keypair_sign(pair, msg, sizeof msg, NULL, 64), NP);
    EXPECT(rk_identity_keypair_sign(NULL, msg, sizeof msg, sig, 64), NP);
    EXPECT(rk_identity_keypair_sign(pair, NULL, 1, sig, 64), NP);
    CHECK(rk_identity_keypair_sign(pair, NULL, 0, sig, 64));

    EXPECT(rk_identity_keypair_generate(NULL), NP);
    EXPECT(rk_identity_keypair_public_key(NULL, &pub2), NP);
    EXPECT(rk_identity_keypair_public_key(pair, NULL), NP);
    EXPECT(rk_identity_keypair_serialize(NULL, &priv), NP);
    EXPECT(rk_identity_keypair_serialize(pair, NULL), NP);

    /* Wrong handle types (bad casts) are refused. */
    EXPECT(rk_public_key_serialize((const rk_public_key *)pair, ser, sizeof ser),
           RK_STATUS_INVALID_HANDLE);
    EXPECT(rk_identity_keypair_sign((const rk_identity_keypair *)pub, msg, 1, sig, 64),
           RK_STATUS_INVALID_HANDLE);

    rk_public_key_free(pub);
    rk_public_key_free(pub2);
    rk_public_key_free(back);
    rk_identity_keypair_free(pair);
    rk_identity_keypair_free(pair2);
    rk_public_key_free(NULL);
    rk_identity_keypair_free(NULL);
}

static void test_store_basics(void) {
    rk_store *s = NULL;
    EXPECT(rk_store_new(0, &s), RK_STATUS_INVALID_ARGUMENT);
    EXPECT(rk_store_new(1, NULL), NP);
    TRUE(s == NULL);

    rk_identity_keypair *pair = NULL;
    REQUIRE(rk_identity_keypair_generate(&pair));
    EXPECT(rk_store_new_with_identity(pair, 0, 1, &s), RK_STATUS_INVALID_ARGUMENT);
    EXPECT(rk_store_new_with_identity(pair, 16381, 1, &s), RK_STATUS_INVALID_ARGUMENT);
    EXPECT(rk_store_new_with_identity(pair, 7, 0, &s), RK_STATUS_INVALID_ARGUMENT);
    EXPECT(rk_store_new_with_identity(NULL, 7, 1, &s), NP);
    EXPECT(rk_store_new_with_identity(pair, 7, 1, NULL), NP);
    REQUIRE(rk_store_new_with_identity(pair, 7, 3, &s));

    uint32_t id = 0;
    CHECK(rk_store_registration_id(s, &id));
    TRUE(id == 7);
    CHECK(rk_store_device_id(s, &id));
    TRUE(id == 3);
    EXPECT(rk_store_registration_id(NULL, &id), NP);
    EXPECT(rk_store_registration_id(s, NULL), NP);
    EXPECT(rk_store_device_id(NULL, &id), NP);
    EXPECT(rk_store_device_id(s, NULL), NP);

    rk_public_key *k1 = NULL, *k2 = NULL;
    CHECK(rk_store_identity_key(s, &k1));
    CHECK(rk_identity_keypair_public_key(pair, &k2));
    bool eq = false;
    CHECK(rk_public_key_equals(k1, k2, &eq));
    TRUE(eq);
    EXPECT(rk_store_identity_key(NULL, &k1), NP);
    EXPECT(rk_store_identity_key(s, NULL), NP);
    rk_identity_keypair *copy = NULL;
    CHECK(rk_store_identity_keypair(s, &copy));
    rk_public_key *k3 = NULL;
    CHECK(rk_identity_keypair_public_key(copy, &k3));
    CHECK(rk_public_key_equals(k1, k3, &eq));
    TRUE(eq);
    EXPECT(rk_store_identity_keypair(NULL, &copy), NP);
    EXPECT(rk_store_identity_keypair(s, NULL), NP);
    rk_public_key_free(k1);
    rk_public_key_free(k2);
    rk_public_key_free(k3);
    rk_identity_keypair_free(copy);
    rk_identity_keypair_free(pair);

    /* Prekeys: generation, records, count, rotation. */
    size_t count = 99;
    CHECK(rk_store_prekey_count(s, &count));
    TRUE(count == 0);
    rk_bytes rec = UNTOUCHED_BYTES;
    CHECK(rk_store_generate_prekeys(s, 5, &rec));
    TRUE(rec.len == 5 * RK_PREKEY_RECORD_LEN);
    for (size_t i = 0; i < 5; i++) {
        const uint8_t *r = rec.ptr + i * RK_PREKEY_RECORD_LEN;
        uint32_t pid = ((uint32_t)r[0] << 24) | ((uint32_t)r[1] << 16) | ((uint32_t)r[2] << 8) | r[3];
        TRUE(pid >= 1 && pid <= 0xFFFFFF);
        rk_public_key *pk = NULL;
        CHECK(rk_public_key_deserialize(r + 4, RK_PUBLIC_KEY_LEN, &pk));
        rk_public_key_free(pk);
    }
    rk_bytes_free(rec);
    CHECK(rk_store_prekey_count(s, &count));
    TRUE(count == 5);
    rec = UNTOUCHED_BYTES;
    CHECK(rk_store_generate_prekeys(s, 0, &rec));
    TRUE(rec.len == 0 && rec.ptr != NULL);
    rk_bytes_free(rec);
    rec = UNTOUCHED_BYTES;
    EXPECT(rk_store_generate_prekeys(s, RK_MAX_PREKEYS_PER_CALL + 1, &rec),
           RK_STATUS_LIMIT_EXCEEDED);
    TRUE(IS_UNTOUCHED(rec));
    EXPECT(rk_store_generate_prekeys(NULL, 1, &rec), NP);
    EXPECT(rk_store_generate_prekeys(s, 1, NULL), NP);
    EXPECT(rk_store_prekey_count(NULL, &count), NP);
    EXPECT(rk_store_prekey_count(s, NULL), NP);

    uint32_t spk1 = 0, spk2 = 0;
    CHECK(rk_store_generate_signed_prekey(s, 1000, &spk1));
    CHECK(rk_store_generate_signed_prekey(s, 2000, &spk2));
    TRUE(spk1 != spk2);
    EXPECT(rk_store_generate_signed_prekey(NULL, 1, &spk1), NP);
    EXPECT(rk_store_generate_signed_prekey(s, 1, NULL), NP);
    EXPECT(rk_store_remove_signed_prekey(s, spk2), RK_STATUS_INVALID_ARGUMENT); /* current */
    CHECK(rk_store_remove_signed_prekey(s, spk1));
    EXPECT(rk_store_remove_signed_prekey(s, spk1), RK_STATUS_MISSING_PREKEY);
    EXPECT(rk_store_remove_signed_prekey(NULL, spk1), NP);

    /* Bundles from the store. */
    rk_bundle *b = NULL;
    EXPECT(rk_store_create_bundle(s, 2, 0, &b), RK_STATUS_INVALID_ARGUMENT);
    EXPECT(rk_store_create_bundle(s, 1, 0, NULL), NP);
    EXPECT(rk_store_create_bundle(NULL, 1, 0, &b), NP);
    TRUE(b == NULL);
    CHECK(rk_store_create_bundle(s, 0, 0, &b));
    bool has = true;
    rk_public_key *pk = (rk_public_key *)(uintptr_t)0x1;
    uint32_t pid = 99;
    CHECK(rk_bundle_prekey(b, &has, &pid, &pk));
    TRUE(!has && pid == 0 && pk == NULL);
    CHECK(rk_bundle_signed_prekey_id(b, &id));
    TRUE(id == spk2);
    /* Without a one-time prekey, the bundle carries the last-resort Kyber
     * prekey (made now). */
    uint32_t kid = 0, last_resort = 0;
    CHECK(rk_bundle_has_kyber_prekey(b, &has));
    TRUE(has);
    CHECK(rk_bundle_kyber_prekey_id(b, &kid));
    CHECK(rk_store_last_resort_kyber_prekey_id(s, &has, &last_resort));
    TRUE(has && kid == last_resort && kid != 0);
    rk_bundle_free(b);
    rk_store_free(s);
    rk_store_free(NULL);
}

static void test_bundles(void) {
    rk_store *bob = new_store(2);
    rk_bundle *b = NULL;
    REQUIRE(rk_store_create_bundle(bob, 1, 1234, &b));

    rk_bytes bytes = UNTOUCHED_BYTES;
    REQUIRE(rk_bundle_serialize(b, &bytes));
    buf_t ser = take(bytes);
    /* Format 2: the bundle carries a Kyber prekey. */
    TRUE(ser.len > RK_KEM_PUBLIC_KEY_LEN && ser.data[0] == 2);
    EXPECT(rk_bundle_serialize(NULL, &bytes), NP);
    EXPECT(rk_bundle_serialize(b, NULL), NP);

    rk_bundle *p = NULL;
    CHECK(rk_bundle_deserialize(ser.data, ser.len, &p));
    uint32_t a = 0, c = 0;
    CHECK(rk_bundle_registration_id(b, &a));
    CHECK(rk_store_registration_id(bob, &c));
    TRUE(a == c);
    CHECK(rk_bundle_device_id(p, &a));
    TRUE(a == 2);
    rk_public_key *ik = NULL, *bob_ik = public_of(bob);
    CHECK(rk_bundle_identity_key(p, &ik));
    bool eq = false, valid = false, has = false;
    CHECK(rk_public_key_equals(ik, bob_ik, &eq));
    TRUE(eq);
    rk_public_key *spk = NULL, *opk = NULL;
    uint32_t spk_id = 0, opk_id = 0;
    uint8_t sig[RK_SIGNATURE_LEN];
    CHECK(rk_bundle_signed_prekey(p, &spk));
    CHECK(rk_bundle_signed_prekey_id(p, &spk_id));
    CHECK(rk_bundle_signed_prekey_signature(p, sig, sizeof sig));
    EXPECT(rk_bundle_signed_prekey_signature(p, sig, sizeof sig - 1), RK_STATUS_BUFFER_TOO_SMALL);
    CHECK(rk_bundle_prekey(p, &has, &opk_id, &opk));
    TRUE(has && opk != NULL && opk_id != 0);
    CHECK(rk_bundle_verify_signature(p, &valid));
    TRUE(valid);
    /* Its Kyber prekey: a one-time one (the bundle has a one-time prekey),
     * signed by the identity key. */
    uint32_t kyber_id = 0;
    uint8_t kyber_key[RK_KEM_PUBLIC_KEY_LEN], kyber_sig[RK_SIGNATURE_LEN];
    has = false;
    CHECK(rk_bundle_has_kyber_prekey(p, &has));
    TRUE(has);
    CHECK(rk_bundle_kyber_prekey_id(p, &kyber_id));
    TRUE(kyber_id >= 1 && kyber_id <= 0xFFFFFF);
    CHECK(rk_bundle_kyber_prekey(p, kyber_key, sizeof kyber_key));
    TRUE(kyber_key[0] == 0x08);
    CHECK(rk_bundle_kyber_prekey_signature(p, kyber_sig, sizeof kyber_sig));
    CHECK(rk_public_key_verify_signature(ik, kyber_key, sizeof kyber_key, kyber_sig,
                                         sizeof kyber_sig, &valid));
    TRUE(valid);
    uint8_t record[RK_KYBER_PREKEY_RECORD_LEN];
    CHECK(rk_store_kyber_prekey(bob, kyber_id, record, sizeof record));
    TRUE(record[0] == (uint8_t)(kyber_id >> 24) && record[3] == (uint8_t)kyber_id);
    TRUE(memcmp(record + 4, kyber_key, sizeof kyber_key) == 0);
    TRUE(memcmp(record + 4 + RK_KEM_PUBLIC_KEY_LEN, kyber_sig, sizeof kyber_sig) == 0);
    bool has_last_resort = true;
    uint32_t last_resort = 99;
    CHECK(rk_store_last_resort_kyber_prekey_id(bob, &has_last_resort, &last_resort));
    TRUE(!has_last_resort && last_resort == 0);

    /* Rebuilt from its parts: the same bytes. */
    rk_bundle *r = NULL;
    CHECK(rk_bundle_new_with_kyber_prekey(c, 2, ik, spk_id, spk, sig, sizeof sig, opk_id, opk,
                                          kyber_id, kyber_key, sizeof kyber_key, kyber_sig,
                                          sizeof kyber_sig, &r));
    rk_bytes rb = UNTOUCHED_BYTES;
    CHECK(rk_bundle_serialize(r, &rb));
    buf_t rser = take(rb);
    TRUE(buf_eq(ser, rser));
    buf_free(&rser);
    rk_bundle_free(r);
    /* Without the Kyber prekey: format 1, a version-3 bundle. */
    CHECK(rk_bundle_new(c, 2, ik, spk_id, spk, sig, sizeof sig, opk_id, opk, &r));
    rb = UNTOUCHED_BYTES;
    CHECK(rk_bundle_serialize(r, &rb));
    TRUE(rb.len > 100 && rb.len < ser.len && rb.ptr[0] == 1);
    rk_bytes_free(rb);
    CHECK(rk_bundle_has_kyber_prekey(r, &has));
    TRUE(!has);
    rk_bundle_free(r);
    /* Without a one-time prekey (prekey NULL), with or without Kyber. */
    CHECK(rk_bundle_new(c, 2, ik, spk_id, spk, sig, sizeof sig, 0, NULL, &r));
    rk_public_key *no_pk = (rk_public_key *)(uintptr_t)0x1;
    uint32_t no_id = 99;
    CHECK(rk_bundle_prekey(r, &has, &no_id, &no_pk));
    TRUE(!has && no_id == 0 && no_pk == NULL);
    rk_bundle_free(r);
    CHECK(rk_bundle_new_with_kyber_prekey(c, 2, ik, spk_id, spk, sig, sizeof sig, 0, NULL,
                                          kyber_id, kyber_key, sizeof kyber_key, kyber_sig,
                                          sizeof kyber_sig, &r));
    no_pk = (rk_public_key *)(uintptr_t)0x1;
    CHECK(rk_bundle_prekey(r, &has, &no_id, &no_pk));
    TRUE(!has && no_id == 0 && no_pk == NULL);
    CHECK(rk_bundle_has_kyber_prekey(r, &has));
    TRUE(has);
    rk_bundle_free(r);
    /* Misuse of rk_bundle_new. */
    r = NULL;
    EXPECT(rk_bundle_new(c, 0, ik, spk_id, spk, sig, sizeof sig, 0, NULL, &r),
           RK_STATUS_INVALID_BUNDLE);
    EXPECT(rk_bundle_new(c, 2, ik, 0, spk, sig, sizeof sig, 0, NULL, &r), RK_STATUS_INVALID_BUNDLE);
    EXPECT(rk_bundle_new(c, 2, ik, spk_id, spk, sig, 63, 0, NULL, &r), RK_STATUS_INVALID_BUNDLE);
    EXPECT(rk_bundle_new(c, 2, ik, spk_id, spk, sig, sizeof sig, 0, opk, &r),
           RK_STATUS_INVALID_BUNDLE);
    EXPECT(rk_bundle_new(c, 2, NULL, spk_id, spk, sig, sizeof sig, 0, NULL, &r), NP);
    EXPECT(rk_bundle_new(c, 2, ik, spk_id, NULL, sig, sizeof sig, 0, NULL, &r), NP);
    EXPECT(rk_bundle_new(c, 2, ik, spk_id, spk, NULL, 64, 0, NULL, &r), NP);
    EXPECT(rk_bundle_new(c, 2, ik, spk_id, spk, sig, sizeof sig, 0, NULL, NULL), NP);
    EXPECT(rk_bundle_new(c, 2, ik, spk_id, (const rk_public_key *)bob, sig, 64, 0, NULL, &r),
           RK_STATUS_INVALID_HANDLE);
    TRUE(r == NULL);

    /* Getters: NULL handle and NULL outputs. */
    EXPECT(rk_bundle_registration_id(NULL, &a), NP);
    EXPECT(rk_bundle_registration_id(p, NULL), NP);
    EXPECT(rk_bundle_device_id(NULL, &a), NP);
    EXPECT(rk_bundle_device_id(p, NULL), NP);
    EXPECT(rk_bundle_signed_prekey_id(NULL, &a), NP);
    EXPECT(rk_bundle_signed_prekey_id(p, NULL), NP);
    EXPECT(rk_bundle_identity_key(NULL, &ik), NP);
    EXPECT(rk_bundle_identity_key(p, NULL), NP);
    EXPECT(rk_bundle_signed_prekey(NULL, &spk), NP);
    EXPECT(rk_bundle_signed_prekey(p, NULL), NP);
    EXPECT(rk_bundle_signed_prekey_signature(NULL, sig, 64), NP);
    EXPECT(rk_bundle_signed_prekey_signature(p, NULL, 64), NP);
    EXPECT(rk_bundle_prekey(NULL, &has, &a, &opk), NP);
    EXPECT(rk_bundle_prekey(p, NULL, &a, &opk), NP);
    EXPECT(rk_bundle_prekey(p, &has, NULL, &opk), NP);
    EXPECT(rk_bundle_prekey(p, &has, &a, NULL), NP);
    EXPECT(rk_bundle_verify_signature(NULL, &valid), NP);
    EXPECT(rk_bundle_verify_signature(p, NULL), NP);
    EXPECT(rk_bundle_device_id((const rk_bundle *)bob, &a), RK_STATUS_INVALID_HANDLE);

    /* Parsing: empty, NULL, every truncation, bad version byte. */
    rk_bundle *bad = NULL;
    EXPECT(rk_bundle_deserialize(NULL, 0, &bad), RK_STATUS_INVALID_BUNDLE);
    EXPECT(rk_bundle_deserialize(NULL, 10, &bad), NP);
    EXPECT(rk_bundle_deserialize(ser.data, ser.len, NULL), NP);
    int rejected = 0, accepted_without_prekey = 0;
    for (size_t n = 0; n < ser.len; n++) {
        rk_bundle *t = NULL;
        rk_status st = rk_bundle_deserialize(ser.data, n, &t);
        if (st == RK_STATUS_OK) {
            /* Only a cut right before the optional prekey fields parses. */
            rk_public_key *cut_pk = NULL;
            CHECK(rk_bundle_prekey(t, &has, &a, &cut_pk));
            accepted_without_prekey += !has;
            rk_public_key_free(cut_pk);
            rk_bundle_free(t);
        } else {
            TRUE(st == RK_STATUS_INVALID_BUNDLE || st == RK_STATUS_INVALID_KEY);
            TRUE(t == NULL);
            rejected++;
        }
    }
    TRUE(rejected >= (int)ser.len - 2 && accepted_without_prekey <= 2);
    uint8_t *v2 = malloc(ser.len);
    memcpy(v2, ser.data, ser.len);
    v2[0] = 3;
    EXPECT(rk_bundle_deserialize(v2, ser.len, &bad), RK_STATUS_INVALID_BUNDLE);
    v2[0] = 0;
    EXPECT(rk_bundle_deserialize(v2, ser.len, &bad), RK_STATUS_INVALID_BUNDLE);
    /* Kyber fields under format 1 are refused, not ignored. */
    v2[0] = 1;
    EXPECT(rk_bundle_deserialize(v2, ser.len, &bad), RK_STATUS_INVALID_BUNDLE);
    free(v2);
    TRUE(bad == NULL);

    /* A bundle whose signed prekey signature, or whose Kyber prekey
     * signature, does not verify: processing fails with INVALID_SIGNATURE
     * and changes nothing. A bundle without a Kyber prekey is refused by
     * the default policy (VERSION_REFUSED), before its signature matters. */
    rk_store *alice = new_store(1);
    buf_t before = save_store(alice);
    for (int which = 0; which < 2; which++) {
        uint8_t *flip = which == 0 ? &sig[5] : &kyber_sig[17];
        *flip ^= 0x20;
        rk_bundle *forged = NULL;
        CHECK(rk_bundle_new_with_kyber_prekey(c, 2, ik, spk_id, spk, sig, sizeof sig, opk_id, opk,
                                              kyber_id, kyber_key, sizeof kyber_key, kyber_sig,
                                              sizeof kyber_sig, &forged));
        valid = true;
        CHECK(rk_bundle_verify_signature(forged, &valid));
        TRUE(!valid);
        EXPECT(rk_store_process_bundle(alice, "bob", 2, forged), RK_STATUS_INVALID_SIGNATURE);
        rk_bundle_free(forged);
        *flip ^= 0x20;
    }
    rk_bundle *classic = NULL;
    CHECK(rk_bundle_new(c, 2, ik, spk_id, spk, sig, sizeof sig, opk_id, opk, &classic));
    CHECK(rk_bundle_verify_signature(classic, &valid));
    TRUE(valid);
    EXPECT(rk_store_process_bundle(alice, "bob", 2, classic), RK_STATUS_VERSION_REFUSED);
    rk_bundle_free(classic);
    buf_t after = save_store(alice);
    TRUE(buf_eq(before, after));
    bool has_session = true;
    CHECK(rk_store_has_session(alice, "bob", 2, &has_session));
    TRUE(!has_session);
    buf_free(&before);
    buf_free(&after);

    rk_store_free(alice);
    rk_public_key_free(ik);
    rk_public_key_free(bob_ik);
    rk_public_key_free(spk);
    rk_public_key_free(opk);
    rk_bundle_free(p);
    rk_bundle_free(b);
    rk_bundle_free(NULL);
    buf_free(&ser);
    rk_store_free(bob);
}

/* Encrypts `text` from `from` to (name, device); returns type and bytes. */
static buf_t send(rk_store *from, const char *name, uint32_t device, const char *text,
                  uint32_t *type) {
    rk_bytes ct = UNTOUCHED_BYTES;
    REQUIRE(rk_store_encrypt(from, name, device, (const uint8_t *)text, strlen(text), type, &ct));
    return take(ct);
}

/* Decrypts and checks the plaintext. */
static void receive(rk_store *to, const char *name, uint32_t device, uint32_t type, buf_t m,
                    const char *want) {
    rk_bytes pt = UNTOUCHED_BYTES;
    CHECK(rk_store_decrypt(to, name, device, type, m.data, m.len, &pt));
    if (!IS_UNTOUCHED(pt)) {
        TRUE(pt.len == strlen(want) && memcmp(pt.ptr, want, pt.len) == 0);
        TRUE(pt.ptr[pt.len] == 0);
        rk_bytes_free(pt);
    }
}

static void test_sessions(void) {
    rk_store *alice = new_store(1);
    rk_store *bob = new_store(2);
    rk_bundle *b = NULL;
    REQUIRE(rk_store_create_bundle(bob, 1, 0, &b));

    /* No session yet. */
    bool has = true;
    CHECK(rk_store_has_session(alice, "bob", 2, &has));
    TRUE(!has);
    uint32_t type = 0;
    rk_bytes ct = UNTOUCHED_BYTES;
    EXPECT(rk_store_encrypt(alice, "bob", 2, (const uint8_t *)"x", 1, &type, &ct),
           RK_STATUS_NO_SESSION);
    TRUE(IS_UNTOUCHED(ct) && type == 0);

    EXPECT(rk_store_process_bundle(NULL, "bob", 2, b), NP);
    EXPECT(rk_store_process_bundle(alice, NULL, 2, b), NP);
    EXPECT(rk_store_process_bundle(alice, "bob", 2, NULL), NP);
    EXPECT(rk_store_process_bundle(alice, "\xc3\x28", 2, b), RK_STATUS_INVALID_ARGUMENT);
    EXPECT(rk_store_process_bundle(alice, "bob", 2, (const rk_bundle *)bob),
           RK_STATUS_INVALID_HANDLE);
    CHECK(rk_store_process_bundle(alice, "bob", 2, b));
    CHECK(rk_store_has_session(alice, "bob", 2, &has));
    TRUE(has);
    uint32_t version = 0;
    CHECK(rk_store_session_version(alice, "bob", 2, &version));
    TRUE(version == RK_SESSION_VERSION_PQXDH);
    CHECK(rk_store_has_session(alice, "bob", 3, &has));
    TRUE(!has);
    EXPECT(rk_store_has_session(NULL, "bob", 2, &has), NP);
    EXPECT(rk_store_has_session(alice, NULL, 2, &has), NP);
    EXPECT(rk_store_has_session(alice, "bob", 2, NULL), NP);
    EXPECT(rk_store_has_session(alice, "\xff", 2, &has), RK_STATUS_INVALID_ARGUMENT);

    /* Encrypt misuse. */
    const uint8_t *x = (const uint8_t *)"x";
    EXPECT(rk_store_encrypt(NULL, "bob", 2, x, 1, &type, &ct), NP);
    EXPECT(rk_store_encrypt(alice, NULL, 2, x, 1, &type, &ct), NP);
    EXPECT(rk_store_encrypt(alice, "bob", 2, NULL, 1, &type, &ct), NP);
    EXPECT(rk_store_encrypt(alice, "bob", 2, x, 1, NULL, &ct), NP);
    EXPECT(rk_store_encrypt(alice, "bob", 2, x, 1, &type, NULL), NP);
    EXPECT(rk_store_encrypt(alice, "\xff", 2, x, 1, &type, &ct), RK_STATUS_INVALID_ARGUMENT);
    TRUE(IS_UNTOUCHED(ct));

    /* Alice sends three prekey messages (the first is empty). */
    uint32_t t0 = 0, t1 = 0, t2 = 0;
    rk_bytes e = UNTOUCHED_BYTES;
    REQUIRE(rk_store_encrypt(alice, "bob", 2, NULL, 0, &t0, &e));
    buf_t m0 = take(e);
    buf_t m1 = send(alice, "bob", 2, "hello bob", &t1);
    buf_t m2 = send(alice, "bob", 2, "are you there?", &t2);
    TRUE(t0 == RK_MESSAGE_TYPE_PREKEY && t1 == RK_MESSAGE_TYPE_PREKEY &&
         t2 == RK_MESSAGE_TYPE_PREKEY);

    /* Decrypt misuse on Bob: nothing may change. */
    buf_t bob_before = save_store(bob);
    rk_bytes pt = UNTOUCHED_BYTES;
    EXPECT(rk_store_decrypt(NULL, "alice", 1, 3, m1.data, m1.len, &pt), NP);
    EXPECT(rk_store_decrypt(bob, NULL, 1, 3, m1.data, m1.len, &pt), NP);
    EXPECT(rk_store_decrypt(bob, "alice", 1, 3, NULL, m1.len, &pt), NP);
    EXPECT(rk_store_decrypt(bob, "alice", 1, 3, m1.data, m1.len, NULL), NP);
    EXPECT(rk_store_decrypt(bob, "alice", 1, 3, NULL, 0, &pt), RK_STATUS_INVALID_MESSAGE);
    EXPECT(rk_store_decrypt(bob, "alice", 1, 0, m1.data, m1.len, &pt), RK_STATUS_INVALID_ARGUMENT);
    EXPECT(rk_store_decrypt(bob, "alice", 1, 1, m1.data, m1.len, &pt), RK_STATUS_INVALID_ARGUMENT);
    EXPECT(rk_store_decrypt(bob, "\xff", 1, 3, m1.data, m1.len, &pt), RK_STATUS_INVALID_ARGUMENT);
    EXPECT(rk_store_decrypt(bob, "alice", 1, 2, m1.data, m1.len, &pt), RK_STATUS_INVALID_MESSAGE);
    EXPECT(rk_store_decrypt_whisper_message(bob, "alice", 1, m1.data, m1.len, &pt),
           RK_STATUS_INVALID_MESSAGE);
    EXPECT(rk_store_decrypt_prekey_message(NULL, "alice", 1, m1.data, m1.len, &pt), NP);
    EXPECT(rk_store_decrypt_prekey_message(bob, NULL, 1, m1.data, m1.len, &pt), NP);
    EXPECT(rk_store_decrypt_prekey_message(bob, "alice", 1, NULL, 9, &pt), NP);
    EXPECT(rk_store_decrypt_prekey_message(bob, "alice", 1, m1.data, m1.len, NULL), NP);
    EXPECT(rk_store_decrypt_whisper_message(NULL, "alice", 1, m1.data, m1.len, &pt), NP);
    EXPECT(rk_store_decrypt_whisper_message(bob, NULL, 1, m1.data, m1.len, &pt), NP);
    EXPECT(rk_store_decrypt_whisper_message(bob, "alice", 1, NULL, 9, &pt), NP);
    EXPECT(rk_store_decrypt_whisper_message(bob, "alice", 1, m1.data, m1.len, NULL), NP);
    const uint8_t garbage[] = {0x33, 0x0a, 0x05, 1, 2, 3, 4, 5};
    EXPECT(rk_store_decrypt(bob, "alice", 1, 3, garbage, sizeof garbage, &pt),
           RK_STATUS_INVALID_MESSAGE);
    /* Every truncation of a prekey message fails. */
    for (size_t n = 0; n < m1.len; n++) {
        rk_status st = rk_store_decrypt_prekey_message(bob, "alice", 1, m1.data, n, &pt);
        TRUE(st != RK_STATUS_OK);
    }
    /* A corrupted last byte fails (in our field order it is the end of the
     * Kyber ciphertext, which then decapsulates to another secret: the MAC
     * fails; corrupting the MACed inner message is covered below with
     * whisper messages, byte by byte). */
    m1.data[m1.len - 1] ^= 0x01;
    {
        rk_status st = rk_store_decrypt(bob, "alice", 1, 3, m1.data, m1.len, &pt);
        TRUE(st == RK_STATUS_INVALID_MESSAGE || st == RK_STATUS_MISSING_PREKEY);
    }
    m1.data[m1.len - 1] ^= 0x01;
    /* A wrong message version: too old, too new, or version 3 on the
     * outside of a version-4 message. */
    uint8_t saved_version = m1.data[0];
    TRUE(saved_version == 0x44);
    m1.data[0] = 0x22;
    EXPECT(rk_store_decrypt(bob, "alice", 1, 3, m1.data, m1.len, &pt), RK_STATUS_INVALID_MESSAGE);
    m1.data[0] = 0x55;
    EXPECT(rk_store_decrypt(bob, "alice", 1, 3, m1.data, m1.len, &pt), RK_STATUS_INVALID_MESSAGE);
    m1.data[0] = 0x33;
    EXPECT(rk_store_decrypt(bob, "alice", 1, 3, m1.data, m1.len, &pt), RK_STATUS_INVALID_MESSAGE);
    m1.data[0] = saved_version;
    TRUE(IS_UNTOUCHED(pt));
    buf_t bob_after = save_store(bob);
    TRUE(buf_eq(bob_before, bob_after));
    buf_free(&bob_before);
    buf_free(&bob_after);

    /* Out of order: m2, then m0, then m1; then a duplicate. */
    receive(bob, "alice", 1, t2, m2, "are you there?");
    rk_bytes p0 = UNTOUCHED_BYTES;
    CHECK(rk_store_decrypt_prekey_message(bob, "alice", 1, m0.data, m0.len, &p0));
    TRUE(p0.len == 0 && p0.ptr != NULL && p0.ptr[0] == 0);
    rk_bytes_free(p0);
    receive(bob, "alice", 1, t1, m1, "hello bob");
    EXPECT(rk_store_decrypt(bob, "alice", 1, t1, m1.data, m1.len, &pt),
           RK_STATUS_DUPLICATE_MESSAGE);
    CHECK(rk_store_has_session(bob, "alice", 1, &has));
    TRUE(has);
    version = 0;
    CHECK(rk_store_session_version(bob, "alice", 1, &version));
    TRUE(version == RK_SESSION_VERSION_PQXDH);

    /* Bob answers with whisper messages; Alice reads them out of order. */
    uint32_t w1 = 0, w2 = 0, w3 = 0;
    buf_t r1 = send(bob, "alice", 1, "hi alice", &w1);
    buf_t r2 = send(bob, "alice", 1, "yes", &w2);
    buf_t r3 = send(bob, "alice", 1, "here", &w3);
    TRUE(w1 == RK_MESSAGE_TYPE_WHISPER && w2 == w1 && w3 == w1);
    /* Every flipped byte of a whisper message fails; Alice unchanged. */
    buf_t alice_before = save_store(alice);
    for (size_t i = 0; i < r2.len; i++) {
        r2.data[i] ^= 0x01;
        rk_status st = rk_store_decrypt(alice, "bob", 2, w2, r2.data, r2.len, &pt);
        /* SPQR runs before the MAC: a flipped SPQR version byte (1 -> 0)
         * reads as a peer without SPQR. */
        TRUE(st == RK_STATUS_INVALID_MESSAGE || st == RK_STATUS_SPQR_REQUIRED);
        r2.data[i] ^= 0x01;
    }
    buf_t alice_after = save_store(alice);
    TRUE(buf_eq(alice_before, alice_after));
    buf_free(&alice_before);
    buf_free(&alice_after);
    rk_bytes pw = UNTOUCHED_BYTES;
    CHECK(rk_store_decrypt_whisper_message(alice, "bob", 2, r3.data, r3.len, &pw));
    TRUE(pw.len == 4 && memcmp(pw.ptr, "here", 4) == 0);
    rk_bytes_free(pw);
    receive(alice, "bob", 2, w1, r1, "hi alice");
    receive(alice, "bob", 2, w2, r2, "yes");
    EXPECT(rk_store_decrypt(alice, "bob", 2, w2, r2.data, r2.len, &pt),
           RK_STATUS_DUPLICATE_MESSAGE);
    /* A whisper message from someone Alice has no session with. */
    EXPECT(rk_store_decrypt(alice, "carol", 1, w1, r1.data, r1.len, &pt), RK_STATUS_NO_SESSION);
    /* Now Alice sends whisper messages. */
    uint32_t tw = 0;
    buf_t a4 = send(alice, "bob", 2, "good", &tw);
    TRUE(tw == RK_MESSAGE_TYPE_WHISPER);
    receive(bob, "alice", 1, tw, a4, "good");

    /* Missing prekey: a second initiator uses Bob's bundle whose one-time
     * prekey is gone now. */
    rk_store *mallory = new_store(5);
    CHECK(rk_store_process_bundle(mallory, "bob", 2, b));
    uint32_t tm = 0;
    buf_t mm = send(mallory, "bob", 2, "me too", &tm);
    EXPECT(rk_store_decrypt(bob, "mallory", 5, tm, mm.data, mm.len, &pt), RK_STATUS_MISSING_PREKEY);
    TRUE(IS_UNTOUCHED(pt));
    buf_free(&mm);
    rk_store_free(mallory);

    /* Trust: a different identity under the name "bob" is refused until
     * approved. */
    rk_public_key *trusted = NULL, *bob_key = public_of(bob);
    bool eq = false, replaced = true;
    CHECK(rk_store_trusted_identity(alice, "bob", &trusted));
    CHECK(rk_public_key_equals(trusted, bob_key, &eq));
    TRUE(eq);
    rk_public_key *none = NULL;
    EXPECT(rk_store_trusted_identity(alice, "nobody", &none), RK_STATUS_NO_TRUSTED_IDENTITY);
    EXPECT(rk_store_trusted_identity(NULL, "bob", &none), NP);
    EXPECT(rk_store_trusted_identity(alice, NULL, &none), NP);
    EXPECT(rk_store_trusted_identity(alice, "bob", NULL), NP);
    EXPECT(rk_store_trusted_identity(alice, "\xff", &none), RK_STATUS_INVALID_ARGUMENT);
    TRUE(none == NULL);

    rk_store *bob2 = new_store(2); /* Bob reinstalled: a new identity */
    rk_bundle *b2 = NULL;
    REQUIRE(rk_store_create_bundle(bob2, 1, 0, &b2));
    buf_t a_before = save_store(alice);
    EXPECT(rk_store_process_bundle(alice, "bob", 2, b2), RK_STATUS_UNTRUSTED_IDENTITY);
    buf_t a_after = save_store(alice);
    TRUE(buf_eq(a_before, a_after));
    buf_free(&a_before);
    buf_free(&a_after);
    rk_public_key *bob2_key = public_of(bob2);
    CHECK(rk_store_approve_identity(alice, "bob", bob2_key, &replaced));
    TRUE(replaced);
    CHECK(rk_store_approve_identity(alice, "bob", bob2_key, &replaced));
    TRUE(!replaced);
    EXPECT(rk_store_approve_identity(NULL, "bob", bob2_key, &replaced), NP);
    EXPECT(rk_store_approve_identity(alice, NULL, bob2_key, &replaced), NP);
    EXPECT(rk_store_approve_identity(alice, "bob", NULL, &replaced), NP);
    EXPECT(rk_store_approve_identity(alice, "bob", bob2_key, NULL), NP);
    EXPECT(rk_store_approve_identity(alice, "\xff", bob2_key, &replaced),
           RK_STATUS_INVALID_ARGUMENT);
    /* The old session's identity is no longer trusted. */
    EXPECT(rk_store_encrypt(alice, "bob", 2, x, 1, &type, &ct), RK_STATUS_UNTRUSTED_IDENTITY);
    CHECK(rk_store_process_bundle(alice, "bob", 2, b2));
    uint32_t tn = 0;
    buf_t n1 = send(alice, "bob", 2, "new you", &tn);
    receive(bob2, "alice", 1, tn, n1, "new you");
    buf_free(&n1);

    /* Session count and removal: Alice holds sessions with bob/2 (and none
     * with mallory); removing bob/2 keeps the trusted identity, and a new
     * bundle starts a new session. */
    size_t sessions = 99;
    CHECK(rk_store_session_count(alice, &sessions));
    TRUE(sessions == 1);
    EXPECT(rk_store_session_count(NULL, &sessions), NP);
    EXPECT(rk_store_session_count(alice, NULL), NP);
    EXPECT(rk_store_session_count((const rk_store *)b2, &sessions), RK_STATUS_INVALID_HANDLE);
    bool removed = true;
    CHECK(rk_store_remove_session(alice, "bob", 3, &removed));
    TRUE(!removed);
    EXPECT(rk_store_remove_session(NULL, "bob", 2, &removed), NP);
    EXPECT(rk_store_remove_session(alice, NULL, 2, &removed), NP);
    EXPECT(rk_store_remove_session(alice, "bob", 2, NULL), NP);
    EXPECT(rk_store_remove_session(alice, "\xff", 2, &removed), RK_STATUS_INVALID_ARGUMENT);
    EXPECT(rk_store_remove_session((rk_store *)b2, "bob", 2, &removed), RK_STATUS_INVALID_HANDLE);
    CHECK(rk_store_has_session(alice, "bob", 2, &has));
    TRUE(has);
    CHECK(rk_store_remove_session(alice, "bob", 2, &removed));
    TRUE(removed);
    CHECK(rk_store_has_session(alice, "bob", 2, &has));
    TRUE(!has);
    CHECK(rk_store_session_count(alice, &sessions));
    TRUE(sessions == 0);
    CHECK(rk_store_remove_session(alice, "bob", 2, &removed));
    TRUE(!removed);
    EXPECT(rk_store_encrypt(alice, "bob", 2, x, 1, &type, &ct), RK_STATUS_NO_SESSION);
    TRUE(IS_UNTOUCHED(ct));
    rk_public_key *still = NULL;
    CHECK(rk_store_trusted_identity(alice, "bob", &still));
    CHECK(rk_public_key_equals(still, bob2_key, &eq));
    TRUE(eq);
    rk_public_key_free(still);
    rk_bundle *b3 = NULL;
    REQUIRE(rk_store_create_bundle(bob2, 1, 0, &b3));
    CHECK(rk_store_process_bundle(alice, "bob", 2, b3));
    buf_t n2 = send(alice, "bob", 2, "again", &tn);
    receive(bob2, "alice", 1, tn, n2, "again");
    buf_free(&n2);
    rk_bundle_free(b3);

    rk_public_key_free(trusted);
    rk_public_key_free(bob_key);
    rk_public_key_free(bob2_key);
    rk_bundle_free(b2);
    rk_store_free(bob2);
    buf_free(&m0);
    buf_free(&m1);
    buf_free(&m2);
    buf_free(&r1);
    buf_free(&r2);
    buf_free(&r3);
    buf_free(&a4);
    rk_bundle_free(b);
    rk_store_free(alice);
    rk_store_free(bob);
}

/* The big-endian id at the start of a prekey record. */
static uint32_t record_id(const uint8_t *r) {
    return ((uint32_t)r[0] << 24) | ((uint32_t)r[1] << 16) | ((uint32_t)r[2] << 8) | r[3];
}

/* `a` starts a session with `b` from `bundle`; one message each way; both
 * ends hold a session of `want_version`, and the messages carry it. */
static void talk(rk_store *a, const char *a_name, uint32_t a_dev, rk_store *b, const char *b_name,
                 uint32_t b_dev, const rk_bundle *bundle, uint32_t want_version) {
    const uint8_t version_byte = (uint8_t)(want_version << 4 | want_version);
    CHECK(rk_store_process_bundle(a, b_name, b_dev, bundle));
    uint32_t t = 0, v = 0;
    buf_t m = send(a, b_name, b_dev, "first", &t);
    TRUE(t == RK_MESSAGE_TYPE_PREKEY && m.data[0] == version_byte);
    receive(b, a_name, a_dev, t, m, "first");
    buf_t r = send(b, a_name, a_dev, "reply", &t);
    TRUE(t == RK_MESSAGE_TYPE_WHISPER && r.data[0] == version_byte);
    receive(a, b_name, b_dev, t, r, "reply");
    CHECK(rk_store_session_version(a, b_name, b_dev, &v));
    TRUE(v == want_version);
    v = 0;
    CHECK(rk_store_session_version(b, a_name, a_dev, &v));
    TRUE(v == want_version);
    buf_free(&m);
    buf_free(&r);
}

/* The session policy: version 3 refused by default on both sides, allowed
 * by the policy; kept in saved state; existing sessions unaffected. */
static void test_policy(void) {
    rk_store *alice = new_store(1);
    rk_store *bob = new_store(2);
    uint32_t allow = 9, accept = 9;
    CHECK(rk_store_policy(bob, &allow, &accept));
    TRUE(allow == 0 && accept == 0);

    /* A bundle without a Kyber prekey (format 1) is refused by default. */
    rk_bundle *v3 = NULL;
    REQUIRE(rk_store_create_bundle_with(bob, 1, RK_KYBER_PREKEY_NONE, 0, &v3));
    bool has = true;
    CHECK(rk_bundle_has_kyber_prekey(v3, &has));
    TRUE(!has);
    rk_bytes bytes = UNTOUCHED_BYTES;
    CHECK(rk_bundle_serialize(v3, &bytes));
    TRUE(bytes.ptr[0] == 1);
    rk_bytes_free(bytes);
    buf_t a0 = save_store(alice);
    EXPECT(rk_store_process_bundle(alice, "bob", 2, v3), RK_STATUS_VERSION_REFUSED);
    TRUE(strstr(last_err(), "Kyber") != NULL);
    buf_t a1 = save_store(alice);
    TRUE(buf_eq(a0, a1));
    buf_free(&a0);
    buf_free(&a1);
    uint32_t version = 77;
    EXPECT(rk_store_session_version(alice, "bob", 2, &version), RK_STATUS_NO_SESSION);
    TRUE(version == 77);

    /* Alice allows starting version 3: a version-3 session. */
    CHECK(rk_store_set_policy(alice, 1, 0));
    CHECK(rk_store_policy(alice, &allow, &accept));
    TRUE(allow == 1 && accept == 0);
    CHECK(rk_store_process_bundle(alice, "bob", 2, v3));
    CHECK(rk_store_session_version(alice, "bob", 2, &version));
    TRUE(version == RK_SESSION_VERSION_X3DH);
    uint32_t t1 = 0, t2 = 0;
    buf_t m1 = send(alice, "bob", 2, "v3 hello", &t1);
    buf_t m2 = send(alice, "bob", 2, "v3 again", &t2);
    TRUE(t1 == RK_MESSAGE_TYPE_PREKEY && m1.data[0] == 0x33 && m2.data[0] == 0x33);

    /* Bob refuses it by default, and nothing changes. */
    buf_t b0 = save_store(bob);
    rk_bytes pt = UNTOUCHED_BYTES;
    EXPECT(rk_store_decrypt(bob, "alice", 1, t1, m1.data, m1.len, &pt), RK_STATUS_VERSION_REFUSED);
    EXPECT(rk_store_decrypt_prekey_message(bob, "alice", 1, m1.data, m1.len, &pt),
           RK_STATUS_VERSION_REFUSED);
    TRUE(IS_UNTOUCHED(pt));
    buf_t b1 = save_store(bob);
    TRUE(buf_eq(b0, b1));
    buf_free(&b0);
    buf_free(&b1);

    /* Bob accepts version-3 prekey messages: a version-3 session. */
    CHECK(rk_store_set_policy(bob, 0, 1));
    receive(bob, "alice", 1, t1, m1, "v3 hello");
    CHECK(rk_store_session_version(bob, "alice", 1, &version));
    TRUE(version == RK_SESSION_VERSION_X3DH);

    /* The policy is saved and restored with the store. */
    buf_t saved = save_store(bob);
    rk_store *back = NULL;
    CHECK(rk_store_restore(saved.data, saved.len, &back));
    allow = accept = 9;
    CHECK(rk_store_policy(back, &allow, &accept));
    TRUE(allow == 0 && accept == 1);
    rk_store_free(back);
    buf_free(&saved);

    /* With version 3 off again, the existing sessions keep working: Alice's
     * second prekey message (same base key) and whisper messages. */
    CHECK(rk_store_set_policy(alice, 0, 0));
    CHECK(rk_store_set_policy(bob, 0, 0));
    receive(bob, "alice", 1, t2, m2, "v3 again");
    uint32_t t = 0;
    buf_t r = send(bob, "alice", 1, "v3 reply", &t);
    TRUE(t == RK_MESSAGE_TYPE_WHISPER && r.data[0] == 0x33);
    receive(alice, "bob", 2, t, r, "v3 reply");
    buf_t w = send(alice, "bob", 2, "still v3", &t);
    TRUE(t == RK_MESSAGE_TYPE_WHISPER);
    receive(bob, "alice", 1, t, w, "still v3");
    CHECK(rk_store_session_version(alice, "bob", 2, &version));
    TRUE(version == RK_SESSION_VERSION_X3DH);

    /* A Kyber bundle then starts a version-4 session in its place. */
    rk_bundle *v4 = NULL;
    REQUIRE(rk_store_create_bundle(bob, 1, 0, &v4));
    talk(alice, "alice", 1, bob, "bob", 2, v4, RK_SESSION_VERSION_PQXDH);

    /* Misuse: flags other than 0 or 1, NULLs, a wrong handle type; nothing
     * is set or written, the store is unchanged. */
    buf_t before = save_store(alice);
    EXPECT(rk_store_set_policy(alice, 2, 0), RK_STATUS_INVALID_ARGUMENT);
    EXPECT(rk_store_set_policy(alice, 1, 2), RK_STATUS_INVALID_ARGUMENT);
    EXPECT(rk_store_set_policy(alice, 1, UINT32_MAX), RK_STATUS_INVALID_ARGUMENT);
    EXPECT(rk_store_set_policy(NULL, 0, 0), NP);
    EXPECT(rk_store_set_policy((rk_store *)v4, 1, 1), RK_STATUS_INVALID_HANDLE);
    allow = accept = 9;
    EXPECT(rk_store_policy(NULL, &allow, &accept), NP);
    EXPECT(rk_store_policy(alice, NULL, &accept), NP);
    EXPECT(rk_store_policy(alice, &allow, NULL), NP);
    EXPECT(rk_store_policy((const rk_store *)v4, &allow, &accept), RK_STATUS_INVALID_HANDLE);
    TRUE(allow == 9 && accept == 9);
    buf_t after = save_store(alice);
    TRUE(buf_eq(before, after));
    CHECK(rk_store_policy(alice, &allow, &accept));
    TRUE(allow == 0 && accept == 0);

    buf_free(&before);
    buf_free(&after);
    buf_free(&m1);
    buf_free(&m2);
    buf_free(&r);
    buf_free(&w);
    rk_bundle_free(v3);
    rk_bundle_free(v4);
    rk_store_free(alice);
    rk_store_free(bob);
}

/* The SPQR policy: required by default; a required store refuses a peer
 * without SPQR with RK_STATUS_SPQR_REQUIRED and stays unchanged; offered
 * falls back; the policy is saved; what a session shows; misuse. */
static void test_spqr(void) {
    rk_store *alice = new_store(1);
    rk_store *bob = new_store(2);
    uint32_t policy = 9;
    CHECK(rk_store_spqr_policy(bob, &policy));
    TRUE(policy == RK_SPQR_POLICY_REQUIRED);
    TRUE(strcmp(rk_status_str(RK_STATUS_SPQR_REQUIRED), "SPQR required: the peer does not speak it") == 0);

    /* Alice without SPQR: Bob (required) refuses her prekey message. */
    CHECK(rk_store_set_spqr_policy(alice, RK_SPQR_POLICY_OFF));
    CHECK(rk_store_spqr_policy(alice, &policy));
    TRUE(policy == RK_SPQR_POLICY_OFF);
    rk_bundle *b1 = NULL;
    REQUIRE(rk_store_create_bundle(bob, 1, 0, &b1));
    CHECK(rk_store_process_bundle(alice, "bob", 2, b1));
    uint32_t has = 9;
    uint64_t epoch = 9;
    CHECK(rk_store_session_has_spqr(alice, "bob", 2, &has, &epoch));
    TRUE(has == 0 && epoch == 0);
    uint32_t t = 0;
    buf_t m = send(alice, "bob", 2, "no spqr", &t);
    buf_t b0 = save_store(bob);
    rk_bytes pt = UNTOUCHED_BYTES;
    EXPECT(rk_store_decrypt(bob, "alice", 1, t, m.data, m.len, &pt), RK_STATUS_SPQR_REQUIRED);
    TRUE(strstr(last_err(), "SPQR required") != NULL);
    TRUE(IS_UNTOUCHED(pt));
    buf_t b1s = save_store(bob);
    TRUE(buf_eq(b0, b1s));
    has = 9;
    EXPECT(rk_store_session_has_spqr(bob, "alice", 1, &has, NULL), RK_STATUS_NO_SESSION);
    TRUE(has == 9);

    /* Offered: Bob reads it and the session falls back to none. */
    CHECK(rk_store_set_spqr_policy(bob, RK_SPQR_POLICY_OFFERED));
    receive(bob, "alice", 1, t, m, "no spqr");
    CHECK(rk_store_session_has_spqr(bob, "alice", 1, &has, NULL));
    TRUE(has == 0);
    buf_t r = send(bob, "alice", 1, "reply", &t);
    receive(alice, "bob", 2, t, r, "reply");

    /* Both required: SPQR, and the epoch advances as they talk. */
    CHECK(rk_store_set_spqr_policy(alice, RK_SPQR_POLICY_REQUIRED));
    CHECK(rk_store_set_spqr_policy(bob, RK_SPQR_POLICY_REQUIRED));
    rk_bundle *b2 = NULL;
    REQUIRE(rk_store_create_bundle(bob, 1, 0, &b2));
    CHECK(rk_store_process_bundle(alice, "bob", 2, b2));
    CHECK(rk_store_session_has_spqr(alice, "bob", 2, &has, &epoch));
    TRUE(has == 1 && epoch == 1);
    for (int i = 0; i < 60; i++) {
        buf_t x = send(alice, "bob", 2, "ping", &t);
        receive(bob, "alice", 1, t, x, "ping");
        buf_t y = send(bob, "alice", 1, "pong", &t);
        receive(alice, "bob", 2, t, y, "pong");
        buf_free(&x);
        buf_free(&y);
    }
    CHECK(rk_store_session_has_spqr(bob, "alice", 1, &has, &epoch));
    TRUE(has == 1 && epoch >= 2);

    /* The policy is saved and restored with the store. */
    CHECK(rk_store_set_spqr_policy(bob, RK_SPQR_POLICY_OFFERED));
    buf_t saved = save_store(bob);
    rk_store *back = NULL;
    CHECK(rk_store_restore(saved.data, saved.len, &back));
    CHECK(rk_store_spqr_policy(back, &policy));
    TRUE(policy == RK_SPQR_POLICY_OFFERED);
    rk_store_free(back);
    buf_free(&saved);

    /* Misuse: nothing is set or written. */
    buf_t before = save_store(alice);
    EXPECT(rk_store_set_spqr_policy(alice, 3), RK_STATUS_INVALID_ARGUMENT);
    EXPECT(rk_store_set_spqr_policy(NULL, 0), NP);
    EXPECT(rk_store_set_spqr_policy((rk_store *)b2, 0), RK_STATUS_INVALID_HANDLE);
    policy = 9;
    EXPECT(rk_store_spqr_policy(NULL, &policy), NP);
    EXPECT(rk_store_spqr_policy(alice, NULL), NP);
    TRUE(policy == 9);
    has = 9;
    EXPECT(rk_store_session_has_spqr(alice, NULL, 2, &has, NULL), NP);
    EXPECT(rk_store_session_has_spqr(alice, "bob", 2, NULL, NULL), NP);
    EXPECT(rk_store_session_has_spqr(NULL, "bob", 2, &has, NULL), NP);
    TRUE(has == 9);
    buf_t after = save_store(alice);
    TRUE(buf_eq(before, after));
    CHECK(rk_store_spqr_policy(alice, &policy));
    TRUE(policy == RK_SPQR_POLICY_REQUIRED);

    buf_free(&before);
    buf_free(&after);
    buf_free(&b0);
    buf_free(&b1s);
    buf_free(&m);
    buf_free(&r);
    rk_bundle_free(b1);
    rk_bundle_free(b2);
    rk_store_free(alice);
    rk_store_free(bob);
}

/* Kyber prekeys: one-time records for upload, the last-resort key,
 * rotation, removal, count; misuse. */
static void test_kyber_prekeys(void) {
    rk_store *s = new_store(1);
    rk_public_key *ik = public_of(s);
    size_t n = 99;
    CHECK(rk_store_kyber_prekey_count(s, &n));
    TRUE(n == 0);
    rk_bytes rec = UNTOUCHED_BYTES;
    CHECK(rk_store_generate_kyber_prekeys(s, 3, 1700000000000ULL, &rec));
    TRUE(rec.len == 3 * RK_KYBER_PREKEY_RECORD_LEN);
    uint32_t ids[3] = {0, 0, 0};
    for (size_t i = 0; i < 3; i++) {
        const uint8_t *r = rec.ptr + i * RK_KYBER_PREKEY_RECORD_LEN;
        ids[i] = record_id(r);
        TRUE(ids[i] >= 1 && ids[i] <= 0xFFFFFF);
        TRUE(r[4] == 0x08);
        bool valid = false;
        CHECK(rk_public_key_verify_signature(ik, r + 4, RK_KEM_PUBLIC_KEY_LEN,
                                             r + 4 + RK_KEM_PUBLIC_KEY_LEN, RK_SIGNATURE_LEN,
                                             &valid));
        TRUE(valid);
        uint8_t again[RK_KYBER_PREKEY_RECORD_LEN];
        CHECK(rk_store_kyber_prekey(s, ids[i], again, sizeof again));
        TRUE(memcmp(again, r, sizeof again) == 0);
    }
    TRUE(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
    rk_bytes_free(rec);
    CHECK(rk_store_kyber_prekey_count(s, &n));
    TRUE(n == 3);
    rec = UNTOUCHED_BYTES;
    CHECK(rk_store_generate_kyber_prekeys(s, 0, 0, &rec));
    TRUE(rec.len == 0 && rec.ptr != NULL);
    rk_bytes_free(rec);

    /* The last-resort Kyber prekey: none until made; not counted. */
    bool has = true;
    uint32_t lr = 99, lr1 = 0, lr2 = 0;
    CHECK(rk_store_last_resort_kyber_prekey_id(s, &has, &lr));
    TRUE(!has && lr == 0);
    CHECK(rk_store_generate_last_resort_kyber_prekey(s, 1, &lr1));
    CHECK(rk_store_last_resort_kyber_prekey_id(s, &has, &lr));
    TRUE(has && lr == lr1);
    CHECK(rk_store_kyber_prekey_count(s, &n));
    TRUE(n == 3);
    uint8_t lr_record[RK_KYBER_PREKEY_RECORD_LEN];
    CHECK(rk_store_kyber_prekey(s, lr1, lr_record, sizeof lr_record));
    TRUE(record_id(lr_record) == lr1);
    bool valid = false;
    CHECK(rk_public_key_verify_signature(ik, lr_record + 4, RK_KEM_PUBLIC_KEY_LEN,
                                         lr_record + 4 + RK_KEM_PUBLIC_KEY_LEN, RK_SIGNATURE_LEN,
                                         &valid));
    TRUE(valid);
    /* Bundles that ask for the last-resort key carry it; it stays. */
    for (uint32_t one_time = 0; one_time < 2; one_time++) {
        rk_bundle *b = NULL;
        uint32_t kid = 0;
        CHECK(rk_store_create_bundle_with(s, one_time, RK_KYBER_PREKEY_LAST_RESORT, 0, &b));
        CHECK(rk_bundle_kyber_prekey_id(b, &kid));
        TRUE(kid == lr1);
        uint8_t key[RK_KEM_PUBLIC_KEY_LEN];
        CHECK(rk_bundle_kyber_prekey(b, key, sizeof key));
        TRUE(memcmp(key, lr_record + 4, sizeof key) == 0);
        rk_bundle_free(b);
    }
    CHECK(rk_store_kyber_prekey_count(s, &n));
    TRUE(n == 3);

    /* Rotation: the current last-resort key cannot be removed; after a new
     * one is made, the old one can (once). */
    EXPECT(rk_store_remove_kyber_prekey(s, lr1), RK_STATUS_INVALID_ARGUMENT);
    CHECK(rk_store_generate_last_resort_kyber_prekey(s, 2, &lr2));
    TRUE(lr2 != lr1);
    CHECK(rk_store_last_resort_kyber_prekey_id(s, &has, &lr));
    TRUE(has && lr == lr2);
    CHECK(rk_store_remove_kyber_prekey(s, lr1));
    EXPECT(rk_store_remove_kyber_prekey(s, lr1), RK_STATUS_MISSING_PREKEY);
    uint8_t buf[RK_KYBER_PREKEY_RECORD_LEN];
    memset(buf, 0xAA, sizeof buf);
    EXPECT(rk_store_kyber_prekey(s, lr1, buf, sizeof buf), RK_STATUS_MISSING_PREKEY);
    /* A one-time Kyber prekey withdrawn. */
    CHECK(rk_store_remove_kyber_prekey(s, ids[1]));
    EXPECT(rk_store_remove_kyber_prekey(s, ids[1]), RK_STATUS_MISSING_PREKEY);
    EXPECT(rk_store_kyber_prekey(s, ids[1], buf, sizeof buf), RK_STATUS_MISSING_PREKEY);
    CHECK(rk_store_kyber_prekey_count(s, &n));
    TRUE(n == 2);

    /* Misuse: outputs untouched, the store unchanged. */
    buf_t before = save_store(s);
    rec = UNTOUCHED_BYTES;
    EXPECT(rk_store_generate_kyber_prekeys(s, RK_MAX_KYBER_PREKEYS_PER_CALL + 1, 0, &rec),
           RK_STATUS_LIMIT_EXCEEDED);
    EXPECT(rk_store_generate_kyber_prekeys(s, UINT32_MAX, 0, &rec), RK_STATUS_LIMIT_EXCEEDED);
    EXPECT(rk_store_generate_kyber_prekeys(NULL, 1, 0, &rec), NP);
    EXPECT(rk_store_generate_kyber_prekeys(s, 1, 0, NULL), NP);
    EXPECT(rk_store_generate_kyber_prekeys((rk_store *)ik, 1, 0, &rec), RK_STATUS_INVALID_HANDLE);
    TRUE(IS_UNTOUCHED(rec));
    uint32_t id = 77;
    EXPECT(rk_store_generate_last_resort_kyber_prekey(NULL, 0, &id), NP);
    EXPECT(rk_store_generate_last_resort_kyber_prekey(s, 0, NULL), NP);
    EXPECT(rk_store_generate_last_resort_kyber_prekey((rk_store *)ik, 0, &id),
           RK_STATUS_INVALID_HANDLE);
    TRUE(id == 77);
    n = 77;
    EXPECT(rk_store_kyber_prekey_count(NULL, &n), NP);
    EXPECT(rk_store_kyber_prekey_count(s, NULL), NP);
    EXPECT(rk_store_kyber_prekey_count((const rk_store *)ik, &n), RK_STATUS_INVALID_HANDLE);
    TRUE(n == 77);
    EXPECT(rk_store_kyber_prekey(NULL, ids[0], buf, sizeof buf), NP);
    EXPECT(rk_store_kyber_prekey(s, ids[0], NULL, sizeof buf), NP);
    EXPECT(rk_store_kyber_prekey(s, ids[0], buf, sizeof buf - 1), RK_STATUS_BUFFER_TOO_SMALL);
    EXPECT(rk_store_kyber_prekey(s, ids[0], buf, 0), RK_STATUS_BUFFER_TOO_SMALL);
    EXPECT(rk_store_kyber_prekey(s, 0, buf, sizeof buf), RK_STATUS_MISSING_PREKEY);
    EXPECT(rk_store_kyber_prekey((const rk_store *)ik, ids[0], buf, sizeof buf),
           RK_STATUS_INVALID_HANDLE);
    int untouched = 1;
    for (size_t i = 0; i < sizeof buf; i++) {
        untouched &= buf[i] == 0xAA;
    }
    TRUE(untouched);
    has = false;
    id = 77;
    EXPECT(rk_store_last_resort_kyber_prekey_id(NULL, &has, &id), NP);
    EXPECT(rk_store_last_resort_kyber_prekey_id(s, NULL, &id), NP);
    EXPECT(rk_store_last_resort_kyber_prekey_id(s, &has, NULL), NP);
    EXPECT(rk_store_last_resort_kyber_prekey_id((const rk_store *)ik, &has, &id),
           RK_STATUS_INVALID_HANDLE);
    TRUE(!has && id == 77);
    EXPECT(rk_store_remove_kyber_prekey(NULL, ids[0]), NP);
    EXPECT(rk_store_remove_kyber_prekey((rk_store *)ik, ids[0]), RK_STATUS_INVALID_HANDLE);
    EXPECT(rk_store_remove_kyber_prekey(s, 0), RK_STATUS_MISSING_PREKEY);
    EXPECT(rk_store_remove_kyber_prekey(s, lr2), RK_STATUS_INVALID_ARGUMENT);
    rk_bundle *b = NULL;
    EXPECT(rk_store_create_bundle_with(s, 0, 3, 0, &b), RK_STATUS_INVALID_ARGUMENT);
    TRUE(strstr(last_err(), "RK_KYBER_PREKEY") != NULL);
    EXPECT(rk_store_create_bundle_with(s, 0, UINT32_MAX, 0, &b), RK_STATUS_INVALID_ARGUMENT);
    EXPECT(rk_store_create_bundle_with(s, 2, RK_KYBER_PREKEY_ONE_TIME, 0, &b),
           RK_STATUS_INVALID_ARGUMENT);
    EXPECT(rk_store_create_bundle_with(NULL, 1, RK_KYBER_PREKEY_ONE_TIME, 0, &b), NP);
    EXPECT(rk_store_create_bundle_with(s, 1, RK_KYBER_PREKEY_ONE_TIME, 0, NULL), NP);
    EXPECT(rk_store_create_bundle_with((rk_store *)ik, 1, RK_KYBER_PREKEY_ONE_TIME, 0, &b),
           RK_STATUS_INVALID_HANDLE);
    TRUE(b == NULL);
    buf_t after = save_store(s);
    TRUE(buf_eq(before, after));

    buf_free(&before);
    buf_free(&after);
    rk_public_key_free(ik);
    rk_store_free(s);
}

/* Version-4 sessions from every kind of bundle; one-time Kyber prekeys
 * used up, the last-resort one reused; bundles with a Kyber prekey built
 * from parts, and their misuse. */
static void test_pqxdh_sessions(void) {
    rk_store *bob = new_store(2);
    size_t n = 0;

    /* rk_store_create_bundle with a one-time prekey: a one-time Kyber
     * prekey, used up by the session. */
    rk_store *alice = new_store(1);
    rk_bundle *b1 = NULL;
    REQUIRE(rk_store_create_bundle(bob, 1, 0, &b1));
    uint32_t kid = 0;
    CHECK(rk_bundle_kyber_prekey_id(b1, &kid));
    CHECK(rk_store_kyber_prekey_count(bob, &n));
    TRUE(n == 1);
    talk(alice, "alice", 1, bob, "bob", 2, b1, RK_SESSION_VERSION_PQXDH);
    CHECK(rk_store_kyber_prekey_count(bob, &n));
    TRUE(n == 0);
    uint8_t rec[RK_KYBER_PREKEY_RECORD_LEN];
    EXPECT(rk_store_kyber_prekey(bob, kid, rec, sizeof rec), RK_STATUS_MISSING_PREKEY);

    /* rk_store_create_bundle without: the last-resort Kyber prekey, which
     * serves two initiators and stays. */
    rk_bundle *b0 = NULL;
    REQUIRE(rk_store_create_bundle(bob, 0, 0, &b0));
    uint32_t lr = 0;
    bool has = false;
    CHECK(rk_bundle_kyber_prekey_id(b0, &kid));
    CHECK(rk_store_last_resort_kyber_prekey_id(bob, &has, &lr));
    TRUE(has && kid == lr);
    rk_store *carol = new_store(1), *dave = new_store(1);
    talk(carol, "carol", 1, bob, "bob", 2, b0, RK_SESSION_VERSION_PQXDH);
    talk(dave, "dave", 1, bob, "bob", 2, b0, RK_SESSION_VERSION_PQXDH);
    CHECK(rk_store_kyber_prekey(bob, lr, rec, sizeof rec));
    CHECK(rk_store_kyber_prekey_count(bob, &n));
    TRUE(n == 0);

    /* A first message made with the last-resort key, replayed under
     * another name, does not start a second session. */
    rk_store *erin = new_store(1);
    CHECK(rk_store_process_bundle(erin, "bob", 2, b0));
    uint32_t t = 0;
    buf_t first = send(erin, "bob", 2, "from erin", &t);
    receive(bob, "erin", 1, t, first, "from erin");
    buf_t bob_before = save_store(bob);
    rk_bytes pt = UNTOUCHED_BYTES;
    EXPECT(rk_store_decrypt(bob, "mallory", 1, t, first.data, first.len, &pt),
           RK_STATUS_INVALID_MESSAGE);
    TRUE(IS_UNTOUCHED(pt));
    buf_t bob_after = save_store(bob);
    TRUE(buf_eq(bob_before, bob_after));
    buf_free(&bob_before);
    buf_free(&bob_after);
    buf_free(&first);

    /* rk_store_create_bundle_with, every kind with and without a one-time
     * prekey. */
    const uint32_t kinds[] = {RK_KYBER_PREKEY_ONE_TIME, RK_KYBER_PREKEY_LAST_RESORT};
    for (size_t k = 0; k < 2; k++) {
        for (uint32_t one_time = 0; one_time < 2; one_time++) {
            rk_bundle *b = NULL;
            REQUIRE(rk_store_create_bundle_with(bob, one_time, kinds[k], 0, &b));
            bool has_pk = !one_time;
            rk_public_key *pk = NULL;
            uint32_t pk_id = 0;
            CHECK(rk_bundle_prekey(b, &has_pk, &pk_id, &pk));
            TRUE(has_pk == (one_time == 1));
            rk_public_key_free(pk);
            CHECK(rk_bundle_kyber_prekey_id(b, &kid));
            TRUE((kid == lr) == (kinds[k] == RK_KYBER_PREKEY_LAST_RESORT));
            char x_name[16];
            snprintf(x_name, sizeof x_name, "x%u", (unsigned)(2 * k + one_time));
            rk_store *x = new_store(1);
            talk(x, x_name, 1, bob, "bob", 2, b, RK_SESSION_VERSION_PQXDH);
            if (kinds[k] == RK_KYBER_PREKEY_ONE_TIME) {
                /* Used up: a second session naming it fails (without a
                 * one-time EC prekey, it is the Kyber prekey that is
                 * missing), and Bob is unchanged. */
                EXPECT(rk_store_kyber_prekey(bob, kid, rec, sizeof rec), RK_STATUS_MISSING_PREKEY);
                rk_store *y = new_store(1);
                CHECK(rk_store_process_bundle(y, "bob", 2, b));
                buf_t m = send(y, "bob", 2, "me too", &t);
                buf_t before = save_store(bob);
                pt = UNTOUCHED_BYTES;
                EXPECT(rk_store_decrypt(bob, "y", (uint32_t)(2 * k + one_time + 1), t, m.data,
                                        m.len, &pt),
                       RK_STATUS_MISSING_PREKEY);
                if (!one_time) {
                    TRUE(strstr(last_err(), "Kyber") != NULL);
                }
                TRUE(IS_UNTOUCHED(pt));
                buf_t after = save_store(bob);
                TRUE(buf_eq(before, after));
                buf_free(&before);
                buf_free(&after);
                buf_free(&m);
                rk_store_free(y);
            } else {
                CHECK(rk_store_kyber_prekey(bob, kid, rec, sizeof rec));
            }
            rk_store_free(x);
            rk_bundle_free(b);
        }
    }
    CHECK(rk_store_kyber_prekey_count(bob, &n));
    TRUE(n == 0);

    /* RK_KYBER_PREKEY_NONE: a version-3 bundle, refused unless both
     * policies allow version 3. */
    rk_bundle *none = NULL;
    REQUIRE(rk_store_create_bundle_with(bob, 1, RK_KYBER_PREKEY_NONE, 0, &none));
    CHECK(rk_bundle_has_kyber_prekey(none, &has));
    TRUE(!has);
    rk_store *frank = new_store(1);
    EXPECT(rk_store_process_bundle(frank, "bob", 2, none), RK_STATUS_VERSION_REFUSED);
    CHECK(rk_store_set_policy(frank, 1, 0));
    CHECK(rk_store_set_policy(bob, 0, 1));
    talk(frank, "frank", 1, bob, "bob", 2, none, RK_SESSION_VERSION_X3DH);
    CHECK(rk_store_set_policy(bob, 0, 0));

    /* A bundle built from parts with a Kyber prekey uploaded with
     * rk_store_generate_kyber_prekeys: a version-4 session that uses it up. */
    rk_bytes up = UNTOUCHED_BYTES;
    REQUIRE(rk_store_generate_kyber_prekeys(bob, 2, 0, &up));
    buf_t uploaded = take(up);
    const uint8_t *r0 = uploaded.data;
    const uint8_t *key = r0 + 4, *ksig = r0 + 4 + RK_KEM_PUBLIC_KEY_LEN;
    uint32_t up_id = record_id(r0);
    rk_public_key *ik = NULL, *spk = NULL;
    uint32_t spk_id = 0, reg = 0;
    uint8_t sig[RK_SIGNATURE_LEN];
    CHECK(rk_bundle_identity_key(none, &ik));
    CHECK(rk_bundle_signed_prekey(none, &spk));
    CHECK(rk_bundle_signed_prekey_id(none, &spk_id));
    CHECK(rk_bundle_signed_prekey_signature(none, sig, sizeof sig));
    CHECK(rk_bundle_registration_id(none, &reg));
    rk_bundle *parts = NULL;
    REQUIRE(rk_bundle_new_with_kyber_prekey(reg, 2, ik, spk_id, spk, sig, sizeof sig, 0, NULL,
                                            up_id, key, RK_KEM_PUBLIC_KEY_LEN, ksig,
                                            RK_SIGNATURE_LEN, &parts));
    bool valid = false;
    CHECK(rk_bundle_verify_signature(parts, &valid));
    TRUE(valid);
    rk_store *grace = new_store(1);
    talk(grace, "grace", 1, bob, "bob", 2, parts, RK_SESSION_VERSION_PQXDH);
    EXPECT(rk_store_kyber_prekey(bob, up_id, rec, sizeof rec), RK_STATUS_MISSING_PREKEY);
    CHECK(rk_store_kyber_prekey_count(bob, &n));
    TRUE(n == 1);
    /* Serialized and parsed: format 2, the same bundle. */
    rk_bytes pb = UNTOUCHED_BYTES;
    CHECK(rk_bundle_serialize(parts, &pb));
    buf_t pser = take(pb);
    TRUE(pser.data[0] == 2);
    rk_bundle *parsed = NULL;
    CHECK(rk_bundle_deserialize(pser.data, pser.len, &parsed));
    uint8_t kbuf[RK_KEM_PUBLIC_KEY_LEN + 1], sbuf[RK_SIGNATURE_LEN + 1];
    CHECK(rk_bundle_kyber_prekey(parsed, kbuf, sizeof kbuf));
    TRUE(memcmp(kbuf, key, RK_KEM_PUBLIC_KEY_LEN) == 0);
    CHECK(rk_bundle_kyber_prekey_signature(parsed, sbuf, sizeof sbuf));
    TRUE(memcmp(sbuf, ksig, RK_SIGNATURE_LEN) == 0);
    CHECK(rk_bundle_kyber_prekey_id(parsed, &kid));
    TRUE(kid == up_id);
    /* Every truncation of a format-2 bundle is refused (the Kyber fields
     * are required), and so is any change to its Kyber key's type byte. */
    int refused = 0;
    for (size_t cut = 0; cut < pser.len; cut++) {
        rk_bundle *tb = NULL;
        rk_status st = rk_bundle_deserialize(pser.data, cut, &tb);
        refused += st == RK_STATUS_INVALID_BUNDLE || st == RK_STATUS_INVALID_KEY;
        TRUE(tb == NULL);
    }
    TRUE(refused == (int)pser.len);
    {
        uint8_t *at = NULL;
        for (size_t i = 0; i + RK_KEM_PUBLIC_KEY_LEN <= pser.len; i++) {
            if (memcmp(pser.data + i, key, RK_KEM_PUBLIC_KEY_LEN) == 0) {
                at = pser.data + i;
            }
        }
        TRUE(at != NULL);
        if (at != NULL) {
            const uint8_t types[] = {0x0A, 0x05, 0x00, 0x09};
            for (size_t i = 0; i < sizeof types; i++) {
                rk_bundle *tb = NULL;
                *at = types[i];
                EXPECT(rk_bundle_deserialize(pser.data, pser.len, &tb), RK_STATUS_INVALID_KEY);
                TRUE(tb == NULL);
            }
            *at = 0x08;
        }
    }

    /* Misuse of rk_bundle_new_with_kyber_prekey: KEM key lengths and type
     * bytes (ML-KEM's 0x0A included), signature lengths, ids, NULLs, wrong
     * handle types. */
    rk_bundle *bad = NULL;
    const size_t kl = RK_KEM_PUBLIC_KEY_LEN;
    uint8_t long_key[RK_KEM_PUBLIC_KEY_LEN + 1];
    memcpy(long_key, key, kl);
    long_key[kl] = 0;
    const size_t lens[] = {0, 1, RK_PUBLIC_KEY_LEN, kl - 1, kl + 1};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        EXPECT(rk_bundle_new_with_kyber_prekey(reg, 2, ik, spk_id, spk, sig, 64, 0, NULL, up_id,
                                               long_key, lens[i], ksig, 64, &bad),
               RK_STATUS_INVALID_KEY);
    }
    EXPECT(rk_bundle_new_with_kyber_prekey(reg, 2, ik, spk_id, spk, sig, 64, 0, NULL, up_id, NULL,
                                           0, ksig, 64, &bad),
           RK_STATUS_INVALID_KEY);
    EXPECT(rk_bundle_new_with_kyber_prekey(reg, 2, ik, spk_id, spk, sig, 64, 0, NULL, up_id, NULL,
                                           kl, ksig, 64, &bad),
           NP);
    const uint8_t types[] = {0x0A, 0x05, 0x00, 0x09, 0xFF};
    for (size_t i = 0; i < sizeof types; i++) {
        long_key[0] = types[i];
        EXPECT(rk_bundle_new_with_kyber_prekey(reg, 2, ik, spk_id, spk, sig, 64, 0, NULL, up_id,
                                               long_key, kl, ksig, 64, &bad),
               RK_STATUS_INVALID_KEY);
        TRUE(strstr(last_err(), types[i] == 0x0A ? "ML-KEM" : "0x08") != NULL);
    }
    EXPECT(rk_bundle_new_with_kyber_prekey(reg, 2, ik, spk_id, spk, sig, 64, 0, NULL, up_id, key,
                                           kl, ksig, 63, &bad),
           RK_STATUS_INVALID_BUNDLE);
    EXPECT(rk_bundle_new_with_kyber_prekey(reg, 2, ik, spk_id, spk, sig, 64, 0, NULL, up_id, key,
                                           kl, NULL, 0, &bad),
           RK_STATUS_INVALID_BUNDLE);
    EXPECT(rk_bundle_new_with_kyber_prekey(reg, 2, ik, spk_id, spk, sig, 64, 0, NULL, up_id, key,
                                           kl, NULL, 64, &bad),
           NP);
    EXPECT(rk_bundle_new_with_kyber_prekey(reg, 2, ik, spk_id, spk, sig, 64, 0, NULL, 0, key, kl,
                                           ksig, 64, &bad),
           RK_STATUS_INVALID_BUNDLE);
    EXPECT(rk_bundle_new_with_kyber_prekey(reg, 2, ik, spk_id, spk, sig, 64, 0, NULL, 0x1000000,
                                           key, kl, ksig, 64, &bad),
           RK_STATUS_INVALID_BUNDLE);
    EXPECT(rk_bundle_new_with_kyber_prekey(reg, 0, ik, spk_id, spk, sig, 64, 0, NULL, up_id, key,
                                           kl, ksig, 64, &bad),
           RK_STATUS_INVALID_BUNDLE);
    EXPECT(rk_bundle_new_with_kyber_prekey(reg, 2, ik, spk_id, spk, sig, 63, 0, NULL, up_id, key,
                                           kl, ksig, 64, &bad),
           RK_STATUS_INVALID_BUNDLE);
    EXPECT(rk_bundle_new_with_kyber_prekey(reg, 2, NULL, spk_id, spk, sig, 64, 0, NULL, up_id,
                                           key, kl, ksig, 64, &bad),
           NP);
    EXPECT(rk_bundle_new_with_kyber_prekey(reg, 2, ik, spk_id, NULL, sig, 64, 0, NULL, up_id, key,
                                           kl, ksig, 64, &bad),
           NP);
    EXPECT(rk_bundle_new_with_kyber_prekey(reg, 2, ik, spk_id, spk, NULL, 64, 0, NULL, up_id, key,
                                           kl, ksig, 64, &bad),
           NP);
    EXPECT(rk_bundle_new_with_kyber_prekey(reg, 2, ik, spk_id, spk, sig, 64, 0, NULL, up_id, key,
                                           kl, ksig, 64, NULL),
           NP);
    EXPECT(rk_bundle_new_with_kyber_prekey(reg, 2, ik, spk_id, (const rk_public_key *)bob, sig, 64,
                                           0, NULL, up_id, key, kl, ksig, 64, &bad),
           RK_STATUS_INVALID_HANDLE);
    EXPECT(rk_bundle_new_with_kyber_prekey(reg, 2, ik, spk_id, spk, sig, 64, 1,
                                           (const rk_public_key *)parts, up_id, key, kl, ksig, 64,
                                           &bad),
           RK_STATUS_INVALID_HANDLE);
    TRUE(bad == NULL);

    /* Misuse of the Kyber accessors. */
    has = true;
    CHECK(rk_bundle_has_kyber_prekey(none, &has));
    TRUE(!has);
    EXPECT(rk_bundle_has_kyber_prekey(NULL, &has), NP);
    EXPECT(rk_bundle_has_kyber_prekey(parts, NULL), NP);
    EXPECT(rk_bundle_has_kyber_prekey((const rk_bundle *)bob, &has), RK_STATUS_INVALID_HANDLE);
    TRUE(!has);
    kid = 77;
    EXPECT(rk_bundle_kyber_prekey_id(none, &kid), RK_STATUS_MISSING_PREKEY);
    EXPECT(rk_bundle_kyber_prekey_id(NULL, &kid), NP);
    EXPECT(rk_bundle_kyber_prekey_id(parts, NULL), NP);
    EXPECT(rk_bundle_kyber_prekey_id((const rk_bundle *)ik, &kid), RK_STATUS_INVALID_HANDLE);
    TRUE(kid == 77);
    memset(kbuf, 0xAA, sizeof kbuf);
    memset(sbuf, 0xAA, sizeof sbuf);
    EXPECT(rk_bundle_kyber_prekey(none, kbuf, kl), RK_STATUS_MISSING_PREKEY);
    EXPECT(rk_bundle_kyber_prekey(parts, kbuf, kl - 1), RK_STATUS_BUFFER_TOO_SMALL);
    EXPECT(rk_bundle_kyber_prekey(parts, kbuf, 0), RK_STATUS_BUFFER_TOO_SMALL);
    EXPECT(rk_bundle_kyber_prekey(parts, NULL, kl), NP);
    EXPECT(rk_bundle_kyber_prekey(NULL, kbuf, kl), NP);
    EXPECT(rk_bundle_kyber_prekey((const rk_bundle *)ik, kbuf, kl), RK_STATUS_INVALID_HANDLE);
    EXPECT(rk_bundle_kyber_prekey_signature(none, sbuf, 64), RK_STATUS_MISSING_PREKEY);
    EXPECT(rk_bundle_kyber_prekey_signature(parts, sbuf, 63), RK_STATUS_BUFFER_TOO_SMALL);
    EXPECT(rk_bundle_kyber_prekey_signature(parts, NULL, 64), NP);
    EXPECT(rk_bundle_kyber_prekey_signature(NULL, sbuf, 64), NP);
    EXPECT(rk_bundle_kyber_prekey_signature((const rk_bundle *)ik, sbuf, 64),
           RK_STATUS_INVALID_HANDLE);
    int untouched = 1;
    for (size_t i = 0; i < sizeof kbuf; i++) {
        untouched &= kbuf[i] == 0xAA;
    }
    for (size_t i = 0; i < sizeof sbuf; i++) {
        untouched &= sbuf[i] == 0xAA;
    }
    TRUE(untouched);

    /* rk_store_session_version: no session, misuse. */
    uint32_t v = 77;
    EXPECT(rk_store_session_version(bob, "nobody", 1, &v), RK_STATUS_NO_SESSION);
    EXPECT(rk_store_session_version(bob, "alice", 2, &v), RK_STATUS_NO_SESSION);
    EXPECT(rk_store_session_version(NULL, "alice", 1, &v), NP);
    EXPECT(rk_store_session_version(bob, NULL, 1, &v), NP);
    EXPECT(rk_store_session_version(bob, "alice", 1, NULL), NP);
    EXPECT(rk_store_session_version(bob, "\xff", 1, &v), RK_STATUS_INVALID_ARGUMENT);
    EXPECT(rk_store_session_version((const rk_store *)parts, "alice", 1, &v),
           RK_STATUS_INVALID_HANDLE);
    TRUE(v == 77);
    bool removed = false;
    CHECK(rk_store_remove_session(bob, "alice", 1, &removed));
    TRUE(removed);
    EXPECT(rk_store_session_version(bob, "alice", 1, &v), RK_STATUS_NO_SESSION);

    rk_public_key_free(ik);
    rk_public_key_free(spk);
    rk_bundle_free(parsed);
    rk_bundle_free(parts);
    rk_bundle_free(none);
    rk_bundle_free(b0);
    rk_bundle_free(b1);
    buf_free(&uploaded);
    buf_free(&pser);
    rk_store_free(alice);
    rk_store_free(carol);
    rk_store_free(dave);
    rk_store_free(erin);
    rk_store_free(frank);
    rk_store_free(grace);
    rk_store_free(bob);
}

static void test_fingerprints(void) {
    rk_store *alice = new_store(1);
    rk_store *bob = new_store(1);
    rk_bundle *b = NULL;
    REQUIRE(rk_store_create_bundle(bob, 1, 0, &b));
    REQUIRE(rk_store_process_bundle(alice, "bob", 1, b));
    uint32_t t = 0;
    buf_t m = send(alice, "bob", 1, "hi", &t);
    receive(bob, "alice", 1, t, m, "hi");
    buf_free(&m);
    rk_bundle_free(b);

    const uint8_t *aid = (const uint8_t *)"alice-id", *bid = (const uint8_t *)"bob-id";
    rk_fingerprint *fa = NULL, *fb = NULL;
    CHECK(rk_store_safety_number(alice, "bob", aid, 8, bid, 6, RK_DEFAULT_ITERATIONS,
                                 RK_FINGERPRINT_VERSION, &fa));
    CHECK(rk_store_safety_number(bob, "alice", bid, 6, aid, 8, RK_DEFAULT_ITERATIONS,
                                 RK_FINGERPRINT_VERSION, &fb));
    char da[RK_SAFETY_NUMBER_LEN + 1], db[RK_SAFETY_NUMBER_LEN + 1];
    CHECK(rk_fingerprint_displayable(fa, da, sizeof da));
    CHECK(rk_fingerprint_displayable(fb, db, sizeof db));
    TRUE(strlen(da) == RK_SAFETY_NUMBER_LEN && strcmp(da, db) == 0);
    for (size_t i = 0; i < RK_SAFETY_NUMBER_LEN; i++) {
        TRUE(da[i] >= '0' && da[i] <= '9');
    }
    EXPECT(rk_fingerprint_displayable(fa, da, RK_SAFETY_NUMBER_LEN), RK_STATUS_BUFFER_TOO_SMALL);
    EXPECT(rk_fingerprint_displayable(fa, NULL, sizeof da), NP);
    EXPECT(rk_fingerprint_displayable(NULL, da, sizeof da), NP);

    rk_bytes sa = UNTOUCHED_BYTES, sb = UNTOUCHED_BYTES;
    CHECK(rk_fingerprint_scannable(fa, &sa));
    CHECK(rk_fingerprint_scannable(fb, &sb));
    buf_t scan_a = take(sa), scan_b = take(sb);
    bool match = false;
    CHECK(rk_fingerprint_compare(fa, scan_b.data, scan_b.len, &match));
    TRUE(match);
    CHECK(rk_fingerprint_compare(fb, scan_a.data, scan_a.len, &match));
    TRUE(match);
    /* Our own scannable form is not the other side's. */
    CHECK(rk_fingerprint_compare(fa, scan_a.data, scan_a.len, &match));
    TRUE(!match);
    EXPECT(rk_fingerprint_compare(fa, (const uint8_t *)"\xff\xff", 2, &match),
           RK_STATUS_INVALID_FINGERPRINT);
    EXPECT(rk_fingerprint_compare(fa, NULL, 0, &match), RK_STATUS_INVALID_FINGERPRINT);
    EXPECT(rk_fingerprint_compare(fa, NULL, 3, &match), NP);
    EXPECT(rk_fingerprint_compare(fa, scan_b.data, scan_b.len, NULL), NP);
    EXPECT(rk_fingerprint_compare(NULL, scan_b.data, scan_b.len, &match), NP);
    EXPECT(rk_fingerprint_scannable(NULL, &sa), NP);
    EXPECT(rk_fingerprint_scannable(fa, NULL), NP);

    /* Version 1 against version 2. */
    rk_fingerprint *f1 = NULL;
    CHECK(rk_store_safety_number(bob, "alice", bid, 6, aid, 8, RK_DEFAULT_ITERATIONS, 1, &f1));
    EXPECT(rk_fingerprint_compare(f1, scan_a.data, scan_a.len, &match),
           RK_STATUS_FINGERPRINT_VERSION_MISMATCH);
    char d1[RK_SAFETY_NUMBER_LEN + 1];
    CHECK(rk_fingerprint_displayable(f1, d1, sizeof d1));
    TRUE(strcmp(d1, da) == 0); /* the digits do not depend on the version */

    /* From keys directly: the same number. */
    rk_public_key *ka = public_of(alice), *kb = public_of(bob);
    rk_fingerprint *fk = NULL;
    CHECK(rk_fingerprint_new(RK_FINGERPRINT_VERSION, RK_DEFAULT_ITERATIONS, aid, 8, ka, bid, 6, kb,
                             &fk));
    char dk[RK_SAFETY_NUMBER_LEN + 1];
    CHECK(rk_fingerprint_displayable(fk, dk, sizeof dk));
    TRUE(strcmp(dk, da) == 0);
    rk_fingerprint *fx = NULL;
    EXPECT(rk_fingerprint_new(3, 5200, aid, 8, ka, bid, 6, kb, &fx), RK_STATUS_INVALID_ARGUMENT);
    EXPECT(rk_fingerprint_new(2, 1, aid, 8, ka, bid, 6, kb, &fx), RK_STATUS_INVALID_ARGUMENT);
    EXPECT(rk_fingerprint_new(2, 5200, NULL, 8, ka, bid, 6, kb, &fx), NP);
    EXPECT(rk_fingerprint_new(2, 5200, aid, 8, NULL, bid, 6, kb, &fx), NP);
    EXPECT(rk_fingerprint_new(2, 5200, aid, 8, ka, NULL, 6, kb, &fx), NP);
    EXPECT(rk_fingerprint_new(2, 5200, aid, 8, ka, bid, 6, NULL, &fx), NP);
    EXPECT(rk_fingerprint_new(2, 5200, aid, 8, ka, bid, 6, kb, NULL), NP);
    CHECK(rk_fingerprint_new(2, 2, NULL, 0, ka, NULL, 0, kb, &fx)); /* empty ids */
    rk_fingerprint_free(fx);
    fx = NULL;

    /* Store misuse. */
    EXPECT(rk_store_safety_number(alice, "nobody", aid, 8, bid, 6, 5200, 2, &fx),
           RK_STATUS_NO_TRUSTED_IDENTITY);
    EXPECT(rk_store_safety_number(alice, "bob", aid, 8, bid, 6, 5200, 0, &fx),
           RK_STATUS_INVALID_ARGUMENT);
    EXPECT(rk_store_safety_number(alice, "bob", aid, 8, bid, 6, 0, 2, &fx),
           RK_STATUS_INVALID_ARGUMENT);
    EXPECT(rk_store_safety_number(NULL, "bob", aid, 8, bid, 6, 5200, 2, &fx), NP);
    EXPECT(rk_store_safety_number(alice, NULL, aid, 8, bid, 6, 5200, 2, &fx), NP);
    EXPECT(rk_store_safety_number(alice, "bob", NULL, 8, bid, 6, 5200, 2, &fx), NP);
    EXPECT(rk_store_safety_number(alice, "bob", aid, 8, NULL, 6, 5200, 2, &fx), NP);
    EXPECT(rk_store_safety_number(alice, "bob", aid, 8, bid, 6, 5200, 2, NULL), NP);
    EXPECT(rk_store_safety_number(alice, "\xff", aid, 8, bid, 6, 5200, 2, &fx),
           RK_STATUS_INVALID_ARGUMENT);
    TRUE(fx == NULL);

    /* QR: SVG and terminal text, NUL-terminated. */
    rk_bytes svg = UNTOUCHED_BYTES, txt = UNTOUCHED_BYTES;
    CHECK(rk_fingerprint_qr_svg(fa, &svg));
    TRUE(svg.len > 100 && strlen((const char *)svg.ptr) == svg.len);
    TRUE(strncmp((const char *)svg.ptr, "<?xml", 5) == 0);
    TRUE(strstr((const char *)svg.ptr, "<svg") != NULL);
    TRUE(strstr((const char *)svg.ptr, "</svg>") != NULL);
    rk_bytes_free(svg);
    CHECK(rk_fingerprint_qr_text(fa, &txt));
    TRUE(txt.len > 100 && strlen((const char *)txt.ptr) == txt.len);
    TRUE(strstr((const char *)txt.ptr, "\xe2\x96\x88") != NULL); /* U+2588 full block */
    TRUE(txt.ptr[txt.len - 1] == '\n');
    rk_bytes_free(txt);
    svg = UNTOUCHED_BYTES;
    EXPECT(rk_fingerprint_qr_svg(NULL, &svg), NP);
    EXPECT(rk_fingerprint_qr_svg(fa, NULL), NP);
    EXPECT(rk_fingerprint_qr_text(NULL, &svg), NP);
    EXPECT(rk_fingerprint_qr_text(fa, NULL), NP);
    EXPECT(rk_fingerprint_qr_text((const rk_fingerprint *)ka, &svg), RK_STATUS_INVALID_HANDLE);
    TRUE(IS_UNTOUCHED(svg));

    rk_public_key_free(ka);
    rk_public_key_free(kb);
    rk_fingerprint_free(fa);
    rk_fingerprint_free(fb);
    rk_fingerprint_free(f1);
    rk_fingerprint_free(fk);
    rk_fingerprint_free(NULL);
    buf_free(&scan_a);
    buf_free(&scan_b);
    rk_store_free(alice);
    rk_store_free(bob);
}

static void test_save_restore(void) {
    rk_store *alice = new_store(1);
    rk_store *bob = new_store(2);
    rk_bundle *b = NULL;
    REQUIRE(rk_store_create_bundle(bob, 1, 0, &b));
    REQUIRE(rk_store_process_bundle(alice, "bob", 2, b));
    rk_bundle_free(b);
    uint32_t t = 0;
    buf_t m = send(alice, "bob", 2, "before save", &t);
    receive(bob, "alice", 1, t, m, "before save");
    buf_free(&m);

    /* Plain. */
    buf_t plain = save_store(alice);
    rk_store *back = NULL;
    CHECK(rk_store_restore(plain.data, plain.len, &back));
    buf_t again = save_store(back);
    TRUE(buf_eq(plain, again));
    buf_free(&again);
    rk_store_free(back);
    back = NULL;
    EXPECT(rk_store_restore(NULL, 0, &back), RK_STATUS_INVALID_STATE);
    EXPECT(rk_store_restore(NULL, 5, &back), NP);
    EXPECT(rk_store_restore(plain.data, plain.len, NULL), NP);
    for (size_t n = 0; n < plain.len; n += 7) {
        EXPECT(rk_store_restore(plain.data, n, &back), RK_STATUS_INVALID_STATE);
    }
    plain.data[4] = 9; /* format version */
    EXPECT(rk_store_restore(plain.data, plain.len, &back), RK_STATUS_UNSUPPORTED_STATE_VERSION);
    plain.data[0] ^= 0xff; /* magic */
    EXPECT(rk_store_restore(plain.data, plain.len, &back), RK_STATUS_INVALID_STATE);
    TRUE(back == NULL);
    EXPECT(rk_store_save(NULL, NULL), NP);
    rk_bytes out = UNTOUCHED_BYTES;
    EXPECT(rk_store_save(NULL, &out), NP);
    EXPECT(rk_store_save(alice, NULL), NP);
    TRUE(IS_UNTOUCHED(out));

    /* Encrypted with an application key. */
    uint8_t key[RK_PICKLE_KEY_LEN], wrong[RK_PICKLE_KEY_LEN];
    for (size_t i = 0; i < sizeof key; i++) {
        key[i] = (uint8_t)(i * 7 + 1);
        wrong[i] = key[i];
    }
    wrong[31] ^= 0x80;
    rk_bytes sealed_b = UNTOUCHED_BYTES;
    REQUIRE(rk_store_save_encrypted(alice, key, sizeof key, &sealed_b));
    buf_t sealed = take(sealed_b);
    rk_bytes sealed2 = UNTOUCHED_BYTES;
    CHECK(rk_store_save_encrypted(alice, key, sizeof key, &sealed2));
    buf_t second = take(sealed2);
    TRUE(!buf_eq(sealed, second)); /* a fresh nonce each time */
    buf_free(&second);

    EXPECT(rk_store_restore_encrypted(sealed.data, sealed.len, wrong, sizeof wrong, &back),
           RK_STATUS_WRONG_PICKLE_KEY);
    EXPECT(rk_store_restore_encrypted(sealed.data, sealed.len, key, 31, &back),
           RK_STATUS_INVALID_KEY);
    EXPECT(rk_store_restore_encrypted(sealed.data, sealed.len, NULL, 0, &back),
           RK_STATUS_INVALID_KEY);
    EXPECT(rk_store_restore_encrypted(sealed.data, sealed.len, NULL, 32, &back), NP);
    EXPECT(rk_store_restore_encrypted(NULL, 10, key, 32, &back), NP);
    EXPECT(rk_store_restore_encrypted(NULL, 0, key, 32, &back), RK_STATUS_INVALID_STATE);
    EXPECT(rk_store_restore_encrypted(sealed.data, sealed.len, key, 32, NULL), NP);
    /* The plain format is not the encrypted one, and vice versa. */
    buf_t plain2 = save_store(alice);
    EXPECT(rk_store_restore_encrypted(plain2.data, plain2.len, key, 32, &back),
           RK_STATUS_INVALID_STATE);
    EXPECT(rk_store_restore(sealed.data, sealed.len, &back), RK_STATUS_INVALID_STATE);
    buf_free(&plain2);
    /* Every flipped byte and every truncation is refused. */
    int refused = 0;
    for (size_t i = 0; i < sealed.len; i++) {
        sealed.data[i] ^= 0x10;
        rk_status st = rk_store_restore_encrypted(sealed.data, sealed.len, key, 32, &back);
        sealed.data[i] ^= 0x10;
        refused += st == RK_STATUS_WRONG_PICKLE_KEY || st == RK_STATUS_INVALID_STATE ||
                   st == RK_STATUS_UNSUPPORTED_STATE_VERSION;
    }
    TRUE(refused == (int)sealed.len);
    for (size_t n = 0; n < sealed.len; n++) {
        rk_status st = rk_store_restore_encrypted(sealed.data, n, key, 32, &back);
        TRUE(st == RK_STATUS_INVALID_STATE || st == RK_STATUS_WRONG_PICKLE_KEY);
    }
    TRUE(back == NULL);
    EXPECT(rk_store_save_encrypted(alice, key, 16, &out), RK_STATUS_INVALID_KEY);
    EXPECT(rk_store_save_encrypted(alice, NULL, 32, &out), NP);
    EXPECT(rk_store_save_encrypted(NULL, key, 32, &out), NP);
    EXPECT(rk_store_save_encrypted(alice, key, 32, NULL), NP);
    TRUE(IS_UNTOUCHED(out));

    /* The restored store carries on the conversation. */
    CHECK(rk_store_restore_encrypted(sealed.data, sealed.len, key, sizeof key, &back));
    buf_t m2 = send(back, "bob", 2, "after restore", &t);
    receive(bob, "alice", 1, t, m2, "after restore");
    buf_free(&m2);
    buf_t r = send(bob, "alice", 1, "welcome back", &t);
    receive(back, "bob", 2, t, r, "welcome back");
    buf_free(&r);

    buf_free(&plain);
    buf_free(&sealed);
    rk_store_free(back);
    rk_store_free(alice);
    rk_store_free(bob);
}

static void test_wrong_handle_types(void) {
    rk_store *s = new_store(1);
    rk_bundle *b = NULL;
    REQUIRE(rk_store_create_bundle(s, 0, 0, &b));
    uint32_t id = 0;
    bool has = false;
    /* A bundle passed as a store, a store as a bundle. */
    EXPECT(rk_store_device_id((const rk_store *)b, &id), RK_STATUS_INVALID_HANDLE);
    EXPECT(rk_store_has_session((const rk_store *)b, "x", 1, &has), RK_STATUS_INVALID_HANDLE);
    EXPECT(rk_bundle_registration_id((const rk_bundle *)s, &id), RK_STATUS_INVALID_HANDLE);
    EXPECT(rk_fingerprint_displayable((const rk_fingerprint *)b, (char *)&id, sizeof id),
           RK_STATUS_INVALID_HANDLE);
    /* A wrong-type free is ignored: both handles stay usable. */
    rk_store_free((rk_store *)b);
    rk_bundle_free((rk_bundle *)s);
    CHECK(rk_store_device_id(s, &id));
    CHECK(rk_bundle_device_id(b, &id));
    rk_bundle_free(b);
    rk_store_free(s);
}

int main(void) {
    test_version_and_status();
    test_last_error();
    test_public_keys();
    test_store_basics();
    test_bundles();
    test_sessions();
    test_policy();
    test_spqr();
    test_kyber_prekeys();
    test_pqxdh_sessions();
    test_fingerprints();
    test_save_restore();
    test_wrong_handle_types();
    return finish("test_api");
}
