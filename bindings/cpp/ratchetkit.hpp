// ratchetkit C++17 wrapper: header-only RAII over the C API (ratchetkit.h).
// SPDX-License-Identifier: MIT OR Apache-2.0
//
// - Every handle is owned by a std::unique_ptr whose deleter is the
//   matching rk_*_free, so it is released exactly once.
// - Every failing call throws ratchetkit::Error, which carries the rk_status
//   and the library's detail message for this thread.
// - Byte outputs are ratchetkit::Buffer: it owns the library's rk_bytes and
//   frees (zeroizes) it on destruction. Copy out of it only what you need.
// - Thread safety is the C API's: a Store may be used from several threads
//   (calls serialize inside the library); the other classes are immutable
//   and may be read concurrently.
// - Durable stores: Store::open(path, key, options) keeps the store in a
//   SQLite file (every call commits before it returns); decrypt_pending
//   gives a PendingDecrypt (two-phase decrypt) that discards its change
//   unless commit() is called.
#ifndef RATCHETKIT_HPP
#define RATCHETKIT_HPP

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "ratchetkit.h"

namespace ratchetkit {

/// A failed call: the status and the library's detail message.
class Error : public std::runtime_error {
public:
    Error(rk_status status, const std::string &message)
        : std::runtime_error(message), status_(status) {}
    /// The rk_status of the failed call.
    rk_status status() const noexcept { return status_; }

private:
    rk_status status_;
};

namespace detail {

inline std::string last_error() {
    size_t len = 0;
    // Length query: BUFFER_TOO_SMALL with the length in `len`.
    rk_status st = rk_last_error_message(nullptr, 0, &len);
    if (st != RK_STATUS_BUFFER_TOO_SMALL || len == 0) {
        return std::string();
    }
    std::string msg(len + 1, '\0');
    if (rk_last_error_message(&msg[0], msg.size(), &len) != RK_STATUS_OK) {
        return std::string();
    }
    msg.resize(len);
    return msg;
}

inline void check(rk_status status, const char *what) {
    if (status != RK_STATUS_OK) {
        std::string detail = last_error();
        std::string msg = std::string(what) + ": " + rk_status_str(status);
        if (!detail.empty()) {
            msg += ": " + detail;
        }
        throw Error(status, msg);
    }
}

template <typename T, void (*Free)(T *)>
struct Deleter {
    void operator()(T *p) const noexcept { Free(p); }
};

template <typename T, void (*Free)(T *)>
using Owned = std::unique_ptr<T, Deleter<T, Free>>;

inline const uint8_t *bytes_of(std::string_view s) {
    return reinterpret_cast<const uint8_t *>(s.data());
}

}  // namespace detail

/// Bytes returned by the library; freed and zeroized on destruction.
class Buffer {
public:
    Buffer() noexcept : b_{nullptr, 0} {}
    explicit Buffer(rk_bytes b) noexcept : b_(b) {}
    Buffer(Buffer &&o) noexcept : b_(o.b_) { o.b_ = rk_bytes{nullptr, 0}; }
    Buffer &operator=(Buffer &&o) noexcept {
        if (this != &o) {
            rk_bytes_free(b_);
            b_ = o.b_;
            o.b_ = rk_bytes{nullptr, 0};
        }
        return *this;
    }
    Buffer(const Buffer &) = delete;
    Buffer &operator=(const Buffer &) = delete;
    ~Buffer() { rk_bytes_free(b_); }

    const uint8_t *data() const noexcept { return b_.ptr; }
    size_t size() const noexcept { return b_.len; }
    const uint8_t *begin() const noexcept { return b_.ptr; }
    const uint8_t *end() const noexcept { return b_.ptr + b_.len; }
    /// The bytes as text (no copy; valid while the Buffer lives).
    std::string_view view() const noexcept {
        return std::string_view(reinterpret_cast<const char *>(b_.ptr), b_.len);
    }
    /// A copy as std::string (not zeroized when it is destroyed).
    std::string str() const { return std::string(view()); }

private:
    rk_bytes b_;
};

/// A Curve25519 public key.
class PublicKey {
public:
    explicit PublicKey(rk_public_key *raw) : h_(raw) {}

    /// Parses 33 serialized bytes (0x05 then 32 bytes).
    static PublicKey deserialize(const uint8_t *data, size_t len) {
        rk_public_key *raw = nullptr;
        detail::check(rk_public_key_deserialize(data, len, &raw), "rk_public_key_deserialize");
        return PublicKey(raw);
    }

    std::array<uint8_t, RK_PUBLIC_KEY_LEN> serialize() const {
        std::array<uint8_t, RK_PUBLIC_KEY_LEN> out{};
        detail::check(rk_public_key_serialize(get(), out.data(), out.size()),
                      "rk_public_key_serialize");
        return out;
    }

    bool operator==(const PublicKey &other) const {
        bool eq = false;
        detail::check(rk_public_key_equals(get(), other.get(), &eq), "rk_public_key_equals");
        return eq;
    }
    bool operator!=(const PublicKey &other) const { return !(*this == other); }

    bool verify_signature(std::string_view message, const uint8_t *sig, size_t sig_len) const {
        bool valid = false;
        detail::check(rk_public_key_verify_signature(get(), detail::bytes_of(message),
                                                     message.size(), sig, sig_len, &valid),
                      "rk_public_key_verify_signature");
        return valid;
    }

    const rk_public_key *get() const noexcept { return h_.get(); }

private:
    detail::Owned<rk_public_key, rk_public_key_free> h_;
};

/// A long-term identity key pair.
class IdentityKeyPair {
public:
    explicit IdentityKeyPair(rk_identity_keypair *raw) : h_(raw) {}

    static IdentityKeyPair generate() {
        rk_identity_keypair *raw = nullptr;
        detail::check(rk_identity_keypair_generate(&raw), "rk_identity_keypair_generate");
        return IdentityKeyPair(raw);
    }
    /// From the 32 private key bytes of private_key().
    static IdentityKeyPair deserialize(const uint8_t *data, size_t len) {
        rk_identity_keypair *raw = nullptr;
        detail::check(rk_identity_keypair_deserialize(data, len, &raw),
                      "rk_identity_keypair_deserialize");
        return IdentityKeyPair(raw);
    }
    /// The 32 private key bytes (secret).
    Buffer private_key() const {
        rk_bytes b;
        detail::check(rk_identity_keypair_serialize(get(), &b), "rk_identity_keypair_serialize");
        return Buffer(b);
    }
    PublicKey public_key() const {
        rk_public_key *raw = nullptr;
        detail::check(rk_identity_keypair_public_key(get(), &raw),
                      "rk_identity_keypair_public_key");
        return PublicKey(raw);
    }
    std::array<uint8_t, RK_SIGNATURE_LEN> sign(std::string_view message) const {
        std::array<uint8_t, RK_SIGNATURE_LEN> sig{};
        detail::check(rk_identity_keypair_sign(get(), detail::bytes_of(message), message.size(),
                                               sig.data(), sig.size()),
                      "rk_identity_keypair_sign");
        return sig;
    }

    const rk_identity_keypair *get() const noexcept { return h_.get(); }

private:
    detail::Owned<rk_identity_keypair, rk_identity_keypair_free> h_;
};

/// A signed Kyber prekey as a bundle carries it (and as the store's upload
/// records hold it).
struct KyberPreKey {
    uint32_t id = 0;
    /// The serialized Kyber1024 public key (0x08 then 1568 bytes).
    std::array<uint8_t, RK_KEM_PUBLIC_KEY_LEN> key{};
    /// The identity key's signature over `key`.
    std::array<uint8_t, RK_SIGNATURE_LEN> signature{};

    /// From one RK_KYBER_PREKEY_RECORD_LEN-byte record (id BE32, key,
    /// signature) of Store::generate_kyber_prekeys or Store::kyber_prekey.
    static KyberPreKey from_record(const uint8_t *record) {
        KyberPreKey k;
        k.id = (uint32_t(record[0]) << 24) | (uint32_t(record[1]) << 16) |
               (uint32_t(record[2]) << 8) | uint32_t(record[3]);
        std::copy(record + 4, record + 4 + RK_KEM_PUBLIC_KEY_LEN, k.key.begin());
        std::copy(record + 4 + RK_KEM_PUBLIC_KEY_LEN, record + RK_KYBER_PREKEY_RECORD_LEN,
                  k.signature.begin());
        return k;
    }
};

/// Which Kyber prekey Store::create_bundle_with puts in a bundle.
enum class KyberPreKeyKind : uint32_t {
    /// None: the bundle starts version-3 (X3DH) sessions, refused by
    /// default (Store::set_policy).
    None = RK_KYBER_PREKEY_NONE,
    /// A new one-time Kyber prekey.
    OneTime = RK_KYBER_PREKEY_ONE_TIME,
    /// The store's last-resort Kyber prekey.
    LastResort = RK_KYBER_PREKEY_LAST_RESORT,
};

/// Whether new version-4 sessions speak SPQR (Store::set_spqr_policy).
enum class SpqrPolicy : uint32_t {
    /// Every new version-4 session speaks SPQR; a peer that does not fails
    /// with RK_STATUS_SPQR_REQUIRED (the default).
    Required = RK_SPQR_POLICY_REQUIRED,
    /// Offered, dropped when the peer answers without it (libsignal
    /// 0.83-0.91, libraries without SPQR).
    Offered = RK_SPQR_POLICY_OFFERED,
    /// New sessions do not speak SPQR.
    Off = RK_SPQR_POLICY_OFF,
};

/// What a session's SPQR state shows (Store::session_spqr).
struct SessionSpqr {
    /// The session speaks SPQR (or offered it and has no reply yet).
    bool active = false;
    /// The SPQR epoch (1 at the start; 0 without SPQR).
    uint64_t epoch = 0;
};

/// A prekey bundle.
class Bundle {
public:
    explicit Bundle(rk_bundle *raw) : h_(raw) {}

    /// From its parts, without a Kyber prekey (a version-3 bundle); the
    /// one-time prekey is optional (nullptr for none).
    static Bundle from_parts(uint32_t registration_id, uint32_t device_id,
                             const PublicKey &identity_key, uint32_t signed_prekey_id,
                             const PublicKey &signed_prekey,
                             const std::array<uint8_t, RK_SIGNATURE_LEN> &signature,
                             uint32_t prekey_id = 0, const PublicKey *prekey = nullptr) {
        rk_bundle *raw = nullptr;
        detail::check(rk_bundle_new(registration_id, device_id, identity_key.get(),
                                    signed_prekey_id, signed_prekey.get(), signature.data(),
                                    signature.size(), prekey_id,
                                    prekey ? prekey->get() : nullptr, &raw),
                      "rk_bundle_new");
        return Bundle(raw);
    }
    /// From its parts with a Kyber prekey (a version-4 bundle).
    static Bundle from_parts(uint32_t registration_id, uint32_t device_id,
                             const PublicKey &identity_key, uint32_t signed_prekey_id,
                             const PublicKey &signed_prekey,
                             const std::array<uint8_t, RK_SIGNATURE_LEN> &signature,
                             uint32_t prekey_id, const PublicKey *prekey,
                             const KyberPreKey &kyber) {
        rk_bundle *raw = nullptr;
        detail::check(rk_bundle_new_with_kyber_prekey(
                          registration_id, device_id, identity_key.get(), signed_prekey_id,
                          signed_prekey.get(), signature.data(), signature.size(), prekey_id,
                          prekey ? prekey->get() : nullptr, kyber.id, kyber.key.data(),
                          kyber.key.size(), kyber.signature.data(), kyber.signature.size(), &raw),
                      "rk_bundle_new_with_kyber_prekey");
        return Bundle(raw);
    }

    static Bundle deserialize(const uint8_t *data, size_t len) {
        rk_bundle *raw = nullptr;
        detail::check(rk_bundle_deserialize(data, len, &raw), "rk_bundle_deserialize");
        return Bundle(raw);
    }
    Buffer serialize() const {
        rk_bytes b;
        detail::check(rk_bundle_serialize(get(), &b), "rk_bundle_serialize");
        return Buffer(b);
    }
    uint32_t registration_id() const {
        uint32_t v = 0;
        detail::check(rk_bundle_registration_id(get(), &v), "rk_bundle_registration_id");
        return v;
    }
    uint32_t device_id() const {
        uint32_t v = 0;
        detail::check(rk_bundle_device_id(get(), &v), "rk_bundle_device_id");
        return v;
    }
    PublicKey identity_key() const {
        rk_public_key *raw = nullptr;
        detail::check(rk_bundle_identity_key(get(), &raw), "rk_bundle_identity_key");
        return PublicKey(raw);
    }
    uint32_t signed_prekey_id() const {
        uint32_t v = 0;
        detail::check(rk_bundle_signed_prekey_id(get(), &v), "rk_bundle_signed_prekey_id");
        return v;
    }
    PublicKey signed_prekey() const {
        rk_public_key *raw = nullptr;
        detail::check(rk_bundle_signed_prekey(get(), &raw), "rk_bundle_signed_prekey");
        return PublicKey(raw);
    }
    std::array<uint8_t, RK_SIGNATURE_LEN> signed_prekey_signature() const {
        std::array<uint8_t, RK_SIGNATURE_LEN> sig{};
        detail::check(rk_bundle_signed_prekey_signature(get(), sig.data(), sig.size()),
                      "rk_bundle_signed_prekey_signature");
        return sig;
    }
    /// Whether the bundle carries a Kyber prekey (starts version-4 sessions).
    bool has_kyber_prekey() const {
        bool has = false;
        detail::check(rk_bundle_has_kyber_prekey(get(), &has), "rk_bundle_has_kyber_prekey");
        return has;
    }
    /// The Kyber prekey, if the bundle has one.
    std::optional<KyberPreKey> kyber_prekey() const {
        if (!has_kyber_prekey()) {
            return std::nullopt;
        }
        KyberPreKey k;
        detail::check(rk_bundle_kyber_prekey_id(get(), &k.id), "rk_bundle_kyber_prekey_id");
        detail::check(rk_bundle_kyber_prekey(get(), k.key.data(), k.key.size()),
                      "rk_bundle_kyber_prekey");
        detail::check(
            rk_bundle_kyber_prekey_signature(get(), k.signature.data(), k.signature.size()),
            "rk_bundle_kyber_prekey_signature");
        return k;
    }
    /// The one-time prekey's id and key, if the bundle has one.
    std::optional<std::pair<uint32_t, PublicKey>> prekey() const {
        bool has = false;
        uint32_t id = 0;
        rk_public_key *raw = nullptr;
        detail::check(rk_bundle_prekey(get(), &has, &id, &raw), "rk_bundle_prekey");
        if (!has) {
            return std::nullopt;
        }
        return std::make_pair(id, PublicKey(raw));
    }
    bool verify_signature() const {
        bool valid = false;
        detail::check(rk_bundle_verify_signature(get(), &valid), "rk_bundle_verify_signature");
        return valid;
    }

    const rk_bundle *get() const noexcept { return h_.get(); }

private:
    detail::Owned<rk_bundle, rk_bundle_free> h_;
};

/// A safety number.
class Fingerprint {
public:
    explicit Fingerprint(rk_fingerprint *raw) : h_(raw) {}

    /// The 60 digits.
    std::string displayable() const {
        char digits[RK_SAFETY_NUMBER_LEN + 1];
        detail::check(rk_fingerprint_displayable(get(), digits, sizeof digits),
                      "rk_fingerprint_displayable");
        return std::string(digits);
    }
    /// The bytes a QR code carries.
    Buffer scannable() const {
        rk_bytes b;
        detail::check(rk_fingerprint_scannable(get(), &b), "rk_fingerprint_scannable");
        return Buffer(b);
    }
    /// Whether the other side's scanned code matches ours.
    bool matches(const Buffer &theirs) const {
        bool match = false;
        detail::check(rk_fingerprint_compare(get(), theirs.data(), theirs.size(), &match),
                      "rk_fingerprint_compare");
        return match;
    }
    std::string qr_svg() const {
        rk_bytes b;
        detail::check(rk_fingerprint_qr_svg(get(), &b), "rk_fingerprint_qr_svg");
        return Buffer(b).str();
    }
    std::string qr_text() const {
        rk_bytes b;
        detail::check(rk_fingerprint_qr_text(get(), &b), "rk_fingerprint_qr_text");
        return Buffer(b).str();
    }

    const rk_fingerprint *get() const noexcept { return h_.get(); }

private:
    detail::Owned<rk_fingerprint, rk_fingerprint_free> h_;
};

/// Which version-3 sessions a store starts and accepts (version 4 always).
struct SessionPolicy {
    bool allow_v3_initiation = false;
    bool accept_v3_prekey_messages = false;
};

/// An encrypted message: its type (RK_MESSAGE_TYPE_*) travels with it.
struct Message {
    uint32_t type;
    Buffer bytes;
};

/// The application key of a durable store (from the platform's keystore).
using StoreKey = std::array<uint8_t, RK_STORE_KEY_LEN>;

/// How long a durable store's changes take to reach the disk.
enum class Durability : uint32_t {
    /// Every change is on disk when the call returns (the default).
    Full = RK_DURABILITY_FULL,
    /// Decrypts do not wait for the disk: a power loss (not a crash) may
    /// undo the last ones, and those messages decrypt again. Encrypt and
    /// every other call stay at full durability.
    Normal = RK_DURABILITY_NORMAL,
};

/// Options for Store::open and Store::import_from.
struct StoreOptions {
    /// The local device id of a new store, when the file holds none yet;
    /// std::nullopt: opening a file without a store fails (RK_STATUS_STORAGE).
    std::optional<uint32_t> create_device_id = 1;
    Durability durability = Durability::Full;
    /// How long a call waits for another connection's write lock before
    /// failing with RK_STATUS_STORE_BUSY.
    uint32_t busy_timeout_ms = 5000;

    rk_store_options to_c() const {
        rk_store_options o = rk_store_options_default();
        o.create_device_id = create_device_id.value_or(0);
        o.durability = static_cast<uint32_t>(durability);
        o.busy_timeout_ms = busy_timeout_ms;
        return o;
    }
};

/// A message decrypted by Store::decrypt_pending whose changes to the
/// durable store are not written yet. Keep the plaintext, then commit();
/// destroying it (or discard()) without a commit drops the change, and the
/// message can be decrypted again.
class PendingDecrypt {
public:
    explicit PendingDecrypt(rk_pending_decrypt *raw) : h_(raw) {}

    /// A copy of the plaintext; throws once committed (RK_STATUS_INVALID_ARGUMENT).
    Buffer plaintext() const {
        rk_bytes b;
        detail::check(rk_pending_decrypt_plaintext(get(), &b), "rk_pending_decrypt_plaintext");
        return Buffer(b);
    }
    /// Writes the change. Throws Error with RK_STATUS_CONFLICT if another
    /// handle or process changed the session since (nothing written: decrypt
    /// the message again). Either way the object is spent.
    void commit() {
        if (!h_) {
            throw Error(RK_STATUS_INVALID_ARGUMENT, "PendingDecrypt::commit: discarded");
        }
        detail::check(rk_pending_decrypt_commit(h_.get()), "rk_pending_decrypt_commit");
        committed_ = true;
    }
    /// Drops the change now (as the destructor does).
    void discard() noexcept { h_.reset(); }
    bool committed() const noexcept { return committed_; }

    const rk_pending_decrypt *get() const noexcept { return h_.get(); }

private:
    detail::Owned<rk_pending_decrypt, rk_pending_decrypt_free> h_;
    bool committed_ = false;
};

/// The protocol store of one local device. Safe to share between threads.
class Store {
public:
    /// A fresh identity for local device `device_id`.
    explicit Store(uint32_t device_id) {
        rk_store *raw = nullptr;
        detail::check(rk_store_new(device_id, &raw), "rk_store_new");
        h_.reset(raw);
    }

    static Store with_identity(const IdentityKeyPair &identity, uint32_t registration_id,
                               uint32_t device_id) {
        rk_store *raw = nullptr;
        detail::check(
            rk_store_new_with_identity(identity.get(), registration_id, device_id, &raw),
            "rk_store_new_with_identity");
        return Store(raw);
    }
    static Store restore(const Buffer &saved) {
        rk_store *raw = nullptr;
        detail::check(rk_store_restore(saved.data(), saved.size(), &raw), "rk_store_restore");
        return Store(raw);
    }
    static Store restore_encrypted(const Buffer &saved,
                                   const std::array<uint8_t, RK_PICKLE_KEY_LEN> &key) {
        rk_store *raw = nullptr;
        detail::check(
            rk_store_restore_encrypted(saved.data(), saved.size(), key.data(), key.size(), &raw),
            "rk_store_restore_encrypted");
        return Store(raw);
    }
    /// Opens the durable store in the SQLite file at `path`, creating it
    /// (fresh identity, device options.create_device_id) when the file holds
    /// none. A wrong key throws RK_STATUS_WRONG_STORE_KEY.
    static Store open(const std::string &path, const StoreKey &key,
                      const StoreOptions &options = StoreOptions()) {
        rk_store_options o = options.to_c();
        rk_store *raw = nullptr;
        detail::check(rk_store_open(path.c_str(), key.data(), key.size(), &o, &raw),
                      "rk_store_open");
        return Store(raw);
    }
    /// Creates a durable store at `path` holding everything the in-memory
    /// store `from` holds (for example one restored from saved bytes).
    static Store import_from(const std::string &path, const StoreKey &key, const Store &from,
                             const StoreOptions &options = StoreOptions()) {
        rk_store_options o = options.to_c();
        rk_store *raw = nullptr;
        detail::check(
            rk_store_import(path.c_str(), key.data(), key.size(), &o, from.get(), &raw),
            "rk_store_import");
        return Store(raw);
    }
    /// Replaces a durable store's key (`old_key` must be the current one).
    void rekey(const StoreKey &old_key, const StoreKey &new_key) {
        detail::check(rk_store_rekey(get(), old_key.data(), old_key.size(), new_key.data(),
                                     new_key.size()),
                      "rk_store_rekey");
    }
    /// Whether the store lives in a database file.
    bool is_durable() const {
        bool durable = false;
        detail::check(rk_store_is_durable(get(), &durable), "rk_store_is_durable");
        return durable;
    }
    /// Decrypts with a durable store without writing anything; commit the
    /// returned PendingDecrypt once the plaintext is kept.
    PendingDecrypt decrypt_pending(const std::string &name, uint32_t device_id,
                                   const Message &message) {
        rk_pending_decrypt *raw = nullptr;
        detail::check(rk_store_decrypt_pending(h_.get(), name.c_str(), device_id, message.type,
                                               message.bytes.data(), message.bytes.size(), &raw),
                      "rk_store_decrypt_pending");
        return PendingDecrypt(raw);
    }

    PublicKey identity_key() const {
        rk_public_key *raw = nullptr;
        detail::check(rk_store_identity_key(get(), &raw), "rk_store_identity_key");
        return PublicKey(raw);
    }
    IdentityKeyPair identity_keypair() const {
        rk_identity_keypair *raw = nullptr;
        detail::check(rk_store_identity_keypair(get(), &raw), "rk_store_identity_keypair");
        return IdentityKeyPair(raw);
    }
    uint32_t registration_id() const {
        uint32_t v = 0;
        detail::check(rk_store_registration_id(get(), &v), "rk_store_registration_id");
        return v;
    }
    uint32_t device_id() const {
        uint32_t v = 0;
        detail::check(rk_store_device_id(get(), &v), "rk_store_device_id");
        return v;
    }
    uint32_t generate_signed_prekey(uint64_t timestamp_ms) {
        uint32_t id = 0;
        detail::check(rk_store_generate_signed_prekey(h_.get(), timestamp_ms, &id),
                      "rk_store_generate_signed_prekey");
        return id;
    }
    void remove_signed_prekey(uint32_t id) {
        detail::check(rk_store_remove_signed_prekey(h_.get(), id), "rk_store_remove_signed_prekey");
    }
    /// `count` records of RK_PREKEY_RECORD_LEN bytes (id BE32, public key).
    Buffer generate_prekeys(uint32_t count) {
        rk_bytes b;
        detail::check(rk_store_generate_prekeys(h_.get(), count, &b), "rk_store_generate_prekeys");
        return Buffer(b);
    }
    size_t prekey_count() const {
        size_t n = 0;
        detail::check(rk_store_prekey_count(get(), &n), "rk_store_prekey_count");
        return n;
    }
    /// `count` records of RK_KYBER_PREKEY_RECORD_LEN bytes (id BE32, Kyber
    /// public key, signature); KyberPreKey::from_record reads one.
    Buffer generate_kyber_prekeys(uint32_t count, uint64_t timestamp_ms) {
        rk_bytes b;
        detail::check(rk_store_generate_kyber_prekeys(h_.get(), count, timestamp_ms, &b),
                      "rk_store_generate_kyber_prekeys");
        return Buffer(b);
    }
    /// A new last-resort Kyber prekey (the one bundles reuse); its id.
    uint32_t generate_last_resort_kyber_prekey(uint64_t timestamp_ms) {
        uint32_t id = 0;
        detail::check(rk_store_generate_last_resort_kyber_prekey(h_.get(), timestamp_ms, &id),
                      "rk_store_generate_last_resort_kyber_prekey");
        return id;
    }
    /// The number of one-time Kyber prekeys held (last resort not counted).
    size_t kyber_prekey_count() const {
        size_t n = 0;
        detail::check(rk_store_kyber_prekey_count(get(), &n), "rk_store_kyber_prekey_count");
        return n;
    }
    /// The public part of a Kyber prekey the store holds (for upload).
    KyberPreKey kyber_prekey(uint32_t id) const {
        std::array<uint8_t, RK_KYBER_PREKEY_RECORD_LEN> record{};
        detail::check(rk_store_kyber_prekey(get(), id, record.data(), record.size()),
                      "rk_store_kyber_prekey");
        return KyberPreKey::from_record(record.data());
    }
    /// The current last-resort Kyber prekey's id, if one was made.
    std::optional<uint32_t> last_resort_kyber_prekey_id() const {
        bool has = false;
        uint32_t id = 0;
        detail::check(rk_store_last_resort_kyber_prekey_id(get(), &has, &id),
                      "rk_store_last_resort_kyber_prekey_id");
        return has ? std::optional<uint32_t>(id) : std::nullopt;
    }
    void remove_kyber_prekey(uint32_t id) {
        detail::check(rk_store_remove_kyber_prekey(h_.get(), id), "rk_store_remove_kyber_prekey");
    }
    /// A bundle that starts version-4 sessions: with a one-time prekey and a
    /// one-time Kyber prekey, or with neither and the last-resort Kyber prekey.
    Bundle create_bundle(bool with_one_time_prekey, uint64_t timestamp_ms) {
        rk_bundle *raw = nullptr;
        detail::check(
            rk_store_create_bundle(h_.get(), with_one_time_prekey ? 1u : 0u, timestamp_ms, &raw),
            "rk_store_create_bundle");
        return Bundle(raw);
    }
    /// A bundle with the parts asked for.
    Bundle create_bundle_with(bool with_one_time_prekey, KyberPreKeyKind kyber,
                              uint64_t timestamp_ms) {
        rk_bundle *raw = nullptr;
        detail::check(rk_store_create_bundle_with(h_.get(), with_one_time_prekey ? 1u : 0u,
                                                  static_cast<uint32_t>(kyber), timestamp_ms,
                                                  &raw),
                      "rk_store_create_bundle_with");
        return Bundle(raw);
    }
    /// Which version-3 sessions the store starts and accepts (both off by
    /// default: RK_STATUS_VERSION_REFUSED).
    void set_policy(const SessionPolicy &policy) {
        detail::check(rk_store_set_policy(h_.get(), policy.allow_v3_initiation ? 1u : 0u,
                                          policy.accept_v3_prekey_messages ? 1u : 0u),
                      "rk_store_set_policy");
    }
    SessionPolicy policy() const {
        uint32_t allow = 0, accept = 0;
        detail::check(rk_store_policy(get(), &allow, &accept), "rk_store_policy");
        SessionPolicy p;
        p.allow_v3_initiation = allow != 0;
        p.accept_v3_prekey_messages = accept != 0;
        return p;
    }
    /// The SPQR policy of sessions started from now on (Required by
    /// default); kept in saved state. Existing sessions keep theirs.
    void set_spqr_policy(SpqrPolicy policy) {
        detail::check(rk_store_set_spqr_policy(h_.get(), static_cast<uint32_t>(policy)),
                      "rk_store_set_spqr_policy");
    }
    SpqrPolicy spqr_policy() const {
        uint32_t p = 0;
        detail::check(rk_store_spqr_policy(get(), &p), "rk_store_spqr_policy");
        return static_cast<SpqrPolicy>(p);
    }
    /// Whether the current session with (name, device_id) speaks SPQR, and
    /// its epoch (Error with RK_STATUS_NO_SESSION without a session).
    SessionSpqr session_spqr(const std::string &name, uint32_t device_id) const {
        uint32_t has = 0;
        SessionSpqr s;
        detail::check(rk_store_session_has_spqr(get(), name.c_str(), device_id, &has, &s.epoch),
                      "rk_store_session_has_spqr");
        s.active = has != 0;
        return s;
    }
    void process_bundle(const std::string &name, uint32_t device_id, const Bundle &bundle) {
        detail::check(rk_store_process_bundle(h_.get(), name.c_str(), device_id, bundle.get()),
                      "rk_store_process_bundle");
    }
    bool has_session(const std::string &name, uint32_t device_id) const {
        bool has = false;
        detail::check(rk_store_has_session(get(), name.c_str(), device_id, &has),
                      "rk_store_has_session");
        return has;
    }
    /// The current session's version: RK_SESSION_VERSION_PQXDH (4) or
    /// RK_SESSION_VERSION_X3DH (3).
    uint32_t session_version(const std::string &name, uint32_t device_id) const {
        uint32_t v = 0;
        detail::check(rk_store_session_version(get(), name.c_str(), device_id, &v),
                      "rk_store_session_version");
        return v;
    }
    /// The number of remote devices with a session record.
    size_t session_count() const {
        size_t n = 0;
        detail::check(rk_store_session_count(get(), &n), "rk_store_session_count");
        return n;
    }
    /// Deletes the session record of (name, device_id); whether there was one.
    /// The trusted identity is kept.
    bool remove_session(const std::string &name, uint32_t device_id) {
        bool removed = false;
        detail::check(rk_store_remove_session(h_.get(), name.c_str(), device_id, &removed),
                      "rk_store_remove_session");
        return removed;
    }
    Message encrypt(const std::string &name, uint32_t device_id, std::string_view plaintext) {
        uint32_t type = 0;
        rk_bytes b;
        detail::check(rk_store_encrypt(h_.get(), name.c_str(), device_id,
                                       detail::bytes_of(plaintext), plaintext.size(), &type, &b),
                      "rk_store_encrypt");
        return Message{type, Buffer(b)};
    }
    Buffer decrypt(const std::string &name, uint32_t device_id, const Message &message) {
        rk_bytes b;
        detail::check(rk_store_decrypt(h_.get(), name.c_str(), device_id, message.type,
                                       message.bytes.data(), message.bytes.size(), &b),
                      "rk_store_decrypt");
        return Buffer(b);
    }
    PublicKey trusted_identity(const std::string &name) const {
        rk_public_key *raw = nullptr;
        detail::check(rk_store_trusted_identity(get(), name.c_str(), &raw),
                      "rk_store_trusted_identity");
        return PublicKey(raw);
    }
    /// Returns whether a different key was trusted before.
    bool approve_identity(const std::string &name, const PublicKey &key) {
        bool replaced = false;
        detail::check(rk_store_approve_identity(h_.get(), name.c_str(), key.get(), &replaced),
                      "rk_store_approve_identity");
        return replaced;
    }
    Fingerprint safety_number(const std::string &name, std::string_view local_id,
                              std::string_view remote_id,
                              uint32_t iterations = RK_DEFAULT_ITERATIONS,
                              uint32_t version = RK_FINGERPRINT_VERSION) const {
        rk_fingerprint *raw = nullptr;
        detail::check(rk_store_safety_number(get(), name.c_str(), detail::bytes_of(local_id),
                                             local_id.size(), detail::bytes_of(remote_id),
                                             remote_id.size(), iterations, version, &raw),
                      "rk_store_safety_number");
        return Fingerprint(raw);
    }
    Buffer save() const {
        rk_bytes b;
        detail::check(rk_store_save(get(), &b), "rk_store_save");
        return Buffer(b);
    }
    Buffer save_encrypted(const std::array<uint8_t, RK_PICKLE_KEY_LEN> &key) const {
        rk_bytes b;
        detail::check(rk_store_save_encrypted(get(), key.data(), key.size(), &b),
                      "rk_store_save_encrypted");
        return Buffer(b);
    }

    const rk_store *get() const noexcept { return h_.get(); }
    rk_store *get() noexcept { return h_.get(); }

private:
    explicit Store(rk_store *raw) : h_(raw) {}
    detail::Owned<rk_store, rk_store_free> h_;
};

/// The library's version string.
inline std::string version() { return rk_version(); }

}  // namespace ratchetkit

#endif  // RATCHETKIT_HPP
