// ratchetkit from C++17 through the RAII wrapper (bindings/cpp/ratchetkit.hpp):
// the same conversation as examples/c/chat.c, with both stores kept in
// durable SQLite files and a restart of Alice's app midway. Handles free
// themselves; failures throw ratchetkit::Error with the status and the
// detail message.

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ratchetkit.hpp"

namespace rk = ratchetkit;

namespace {

rk::Message send(rk::Store &from, const char *who, const std::string &to, const char *text) {
    rk::Message m = from.encrypt(to, 1, text);
    std::printf("  %-5s -> %-5s  %-28s [%s message, %zu bytes]\n", who, to.c_str(), text,
                m.type == RK_MESSAGE_TYPE_PREKEY ? "prekey" : "whisper", m.bytes.size());
    return m;
}

void deliver(rk::Store &to, const char *who, const std::string &from, const rk::Message &m) {
    rk::Buffer plaintext = to.decrypt(from, 1, m);
    std::printf("  %-5s <- %-5s  %.*s\n", who, from.c_str(), static_cast<int>(plaintext.size()),
                plaintext.view().data());
}

rk::StoreKey demo_key(uint8_t seed) {
    // In a real app: 32 bytes from the platform's keystore.
    rk::StoreKey key{};
    for (size_t i = 0; i < key.size(); i++) {
        key[i] = static_cast<uint8_t>(seed ^ (i * 31));
    }
    return key;
}

int run(const std::filesystem::path &dir) {
    std::cout << "ratchetkit " << rk::version() << ", C++ example\n\n";

    // Durable stores, created on first open (device id 1, full durability).
    const std::string alice_path = (dir / "alice.db").string();
    const std::string bob_path = (dir / "bob.db").string();
    const rk::StoreKey alice_key = demo_key(0x5A), bob_key = demo_key(0xC3);
    std::optional<rk::Store> alice = rk::Store::open(alice_path, alice_key);
    rk::Store bob = rk::Store::open(bob_path, bob_key);
    std::cout << "Alice and Bob keep their stores in " << dir.string() << " (durable: "
              << (alice->is_durable() && bob.is_durable() ? "yes" : "NO") << ").\n";

    // Bob's bundle (with a one-time prekey and a one-time Kyber prekey)
    // travels as bytes.
    rk::Buffer wire = bob.create_bundle(true, 1700000000000ULL).serialize();
    std::cout << "Bob publishes a prekey bundle (" << wire.size() << " bytes).\n";
    rk::Bundle fetched = rk::Bundle::deserialize(wire.data(), wire.size());
    std::optional<rk::KyberPreKey> kyber = fetched.kyber_prekey();
    if (!kyber) {
        std::cerr << "error: the bundle has no Kyber prekey\n";
        return 1;
    }
    std::cout << "It carries Kyber prekey " << kyber->id << " (" << kyber->key.size()
              << "-byte Kyber1024 key).\n";
    alice->process_bundle("bob", 1, fetched);
    uint32_t version = alice->session_version("bob", 1);
    std::cout << "Alice processed Bob's bundle: session established ("
              << (version == RK_SESSION_VERSION_PQXDH ? "PQXDH" : "X3DH") << ", version "
              << version << ").\n\n";
    if (version != RK_SESSION_VERSION_PQXDH) {
        return 1;
    }
    // SPQR, the post-quantum ratchet: required by default (as current Signal
    // clients); set_spqr_policy(SpqrPolicy::Offered) also talks to peers
    // without it.
    const ratchetkit::SessionSpqr spqr = alice->session_spqr("bob", 1);
    std::cout << "SPQR policy: "
              << (alice->spqr_policy() == ratchetkit::SpqrPolicy::Required ? "required" : "other")
              << "; the session speaks SPQR: " << (spqr.active ? "yes" : "no") << " (epoch "
              << spqr.epoch << ").\n\n";

    rk::Message a1 = send(*alice, "alice", "bob", "Hi Bob!");
    rk::Message a2 = send(*alice, "alice", "bob", "Are you there?");
    deliver(bob, "bob", "alice", a1);
    deliver(bob, "bob", "alice", a2);

    rk::Message b1 = send(bob, "bob", "alice", "Hi Alice, I'm here.");
    rk::Message b2 = send(bob, "bob", "alice", "This one arrives first.");
    rk::Message b3 = send(bob, "bob", "alice", "And this one second.");
    std::cout << "  (delivered out of order: 2, 3, 1)\n";
    deliver(*alice, "alice", "bob", b2);
    deliver(*alice, "alice", "bob", b3);
    deliver(*alice, "alice", "bob", b1);

    // A duplicate delivery is an error the app can handle.
    try {
        deliver(*alice, "alice", "bob", b1);
    } catch (const rk::Error &e) {
        std::cout << "  (a second delivery of message 1 is refused: status " << e.status()
                  << ")\n";
    }

    // Alice's app restarts midway: the store is closed (every call already
    // committed to alice.db) and reopened from the same file and key.
    alice.reset();  // closes the durable store
    std::cout << "\nAlice's app restarts: her store is closed.\n";
    try {
        rk::Store::open(alice_path, demo_key(0));
    } catch (const rk::Error &e) {
        std::cout << "Opening alice.db with a wrong key fails: status " << e.status() << " ("
                  << (e.status() == RK_STATUS_WRONG_STORE_KEY ? "wrong store key" : "?")
                  << ")\n";
    }
    alice.emplace(rk::Store::open(alice_path, alice_key));
    std::cout << "Alice reopened her store from alice.db with her key.\n\n";

    rk::Message a3 = send(*alice, "alice", "bob", "Back after a restart.");
    rk::Message a4 = send(*alice, "alice", "bob", "Did you get that?");
    std::cout << "  (delivered out of order: 2, 1)\n";
    deliver(bob, "bob", "alice", a4);
    {
        // Two-phase decrypt: keep the plaintext, then commit. Leaving the
        // scope without commit() would discard the change (the message
        // would decrypt again).
        rk::PendingDecrypt pending = bob.decrypt_pending("alice", 1, a3);
        rk::Buffer kept = pending.plaintext();
        std::printf("  %-5s <- %-5s  %.*s  [two-phase: kept, then committed]\n", "bob", "alice",
                    static_cast<int>(kept.size()), kept.view().data());
        pending.commit();
    }
    deliver(*alice, "alice", "bob", send(bob, "bob", "alice", "Yes, both. Bye!"));

    rk::Fingerprint fa = alice->safety_number("bob", "alice", "bob");
    rk::Fingerprint fb = bob.safety_number("alice", "bob", "alice");
    std::string digits = fa.displayable();
    std::cout << "\nSafety number: ";
    for (size_t i = 0; i < digits.size(); i += 5) {
        std::cout << digits.substr(i, 5) << (i + 5 < digits.size() ? " " : "\n");
    }
    bool same = digits == fb.displayable();
    bool verified = fb.matches(fa.scannable());
    std::cout << "Bob sees the same digits: " << (same ? "yes" : "NO") << "\n";
    std::cout << "Bob scans Alice's code: " << (verified ? "verified" : "MISMATCH") << "\n\n";
    std::cout << fa.qr_text();

    // Bob resets the conversation: his session with Alice is gone (her
    // identity stays trusted) until she starts a new one.
    bool removed = bob.remove_session("alice", 1);
    std::cout << "\nBob removed his session with Alice: " << (removed ? "yes" : "NO")
              << " (sessions left: " << bob.session_count() << ")\n";

    // Bob rotates his store key (one row changes); from now on the file
    // opens with the new key only.
    const rk::StoreKey new_bob_key = demo_key(0x77);
    bob.rekey(bob_key, new_bob_key);
    bool rekeyed = rk::Store::open(bob_path, new_bob_key).identity_key() == bob.identity_key();
    std::cout << "Bob rekeyed his store: it opens with the new key: " << (rekeyed ? "yes" : "NO")
              << "\n";
    std::cout << "\nDone.\n";
    return same && verified && removed && rekeyed && bob.session_count() == 0 ? 0 : 1;
}

}  // namespace

int main() {
    // A temporary directory for the demo's database files (an app uses its
    // data directory).
    std::string tmpl = (std::filesystem::temp_directory_path() / "ratchetkit-cpp-XXXXXX").string();
    if (mkdtemp(&tmpl[0]) == nullptr) {
        std::perror("mkdtemp");
        return 1;
    }
    const std::filesystem::path dir(tmpl);
    int rc = 1;
    try {
        rc = run(dir);
    } catch (const rk::Error &e) {
        std::cerr << "error (status " << e.status() << "): " << e.what() << "\n";
    }
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    return ec ? 1 : rc;
}
