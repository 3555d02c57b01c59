// ratchetkit from C++17 through the RAII wrapper (bindings/cpp/ratchetkit.hpp):
// the same conversation as examples/c/chat.c. Handles free themselves;
// failures throw ratchetkit::Error with the status and the detail message.

#include <array>
#include <cstdio>
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

int run() {
    std::cout << "ratchetkit " << rk::version() << ", C++ example\n\n";

    rk::Store alice(1);
    rk::Store bob(1);

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
    alice.process_bundle("bob", 1, fetched);
    uint32_t version = alice.session_version("bob", 1);
    std::cout << "Alice processed Bob's bundle: session established ("
              << (version == RK_SESSION_VERSION_PQXDH ? "PQXDH" : "X3DH") << ", version "
              << version << ").\n\n";
    if (version != RK_SESSION_VERSION_PQXDH) {
        return 1;
    }

    rk::Message a1 = send(alice, "alice", "bob", "Hi Bob!");
    rk::Message a2 = send(alice, "alice", "bob", "Are you there?");
    deliver(bob, "bob", "alice", a1);
    deliver(bob, "bob", "alice", a2);

    rk::Message b1 = send(bob, "bob", "alice", "Hi Alice, I'm here.");
    rk::Message b2 = send(bob, "bob", "alice", "This one arrives first.");
    rk::Message b3 = send(bob, "bob", "alice", "And this one second.");
    std::cout << "  (delivered out of order: 2, 3, 1)\n";
    deliver(alice, "alice", "bob", b2);
    deliver(alice, "alice", "bob", b3);
    deliver(alice, "alice", "bob", b1);

    // A duplicate delivery is an error the app can handle.
    try {
        deliver(alice, "alice", "bob", b1);
    } catch (const rk::Error &e) {
        std::cout << "  (a second delivery of message 1 is refused: status " << e.status()
                  << ")\n";
    }

    // Save encrypted midway, drop the store, restore it.
    std::array<uint8_t, RK_PICKLE_KEY_LEN> key{};
    for (size_t i = 0; i < key.size(); i++) {
        key[i] = static_cast<uint8_t>(0x5A ^ (i * 31));
    }
    rk::Buffer saved = alice.save_encrypted(key);
    std::cout << "\nAlice saved her store encrypted (" << saved.size() << " bytes).\n";
    try {
        std::array<uint8_t, RK_PICKLE_KEY_LEN> wrong{};
        rk::Store::restore_encrypted(saved, wrong);
    } catch (const rk::Error &e) {
        std::cout << "Restoring with a wrong key fails: " << e.what() << "\n";
    }
    alice = rk::Store::restore_encrypted(saved, key);
    std::cout << "Alice restored her store with the right key.\n\n";

    rk::Message a3 = send(alice, "alice", "bob", "Back after a restart.");
    rk::Message a4 = send(alice, "alice", "bob", "Did you get that?");
    std::cout << "  (delivered out of order: 2, 1)\n";
    deliver(bob, "bob", "alice", a4);
    deliver(bob, "bob", "alice", a3);
    deliver(alice, "alice", "bob", send(bob, "bob", "alice", "Yes, both. Bye!"));

    rk::Fingerprint fa = alice.safety_number("bob", "alice", "bob");
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
    std::cout << "\nDone.\n";
    return same && verified && removed && bob.session_count() == 0 ? 0 : 1;
}

}  // namespace

int main() {
    try {
        return run();
    } catch (const rk::Error &e) {
        std::cerr << "error (status " << e.status() << "): " << e.what() << "\n";
        return 1;
    }
}
