//! Two parties establish a Signal-protocol session and chat.
//!
//! Run with `make demo` or `cargo run --release --example chat`.

use rand::rngs::OsRng;
use ratchetkit::{Address, PreKeyBundle, ProtocolStore};

fn main() -> Result<(), ratchetkit::Error> {
    let rng = &mut OsRng;
    let mut alice = ProtocolStore::generate(1, rng)?;
    let mut bob = ProtocolStore::generate(1, rng)?;
    let (alice_addr, bob_addr) = (Address::new("alice", 1), Address::new("bob", 1));

    // Bob publishes a bundle; the server hands its bytes to Alice.
    let bundle_bytes = bob.create_bundle(true, 0, rng)?.serialize();
    println!("bob's bundle: {} bytes", bundle_bytes.len());
    let bundle = PreKeyBundle::deserialize(&bundle_bytes)?;

    // PQXDH (X3DH with a Kyber1024 KEM): Alice starts the session without
    // Bob being online.
    alice.process_bundle(&bob_addr, &bundle, rng)?;
    if let Some(state) = alice.session(&bob_addr).and_then(|r| r.current().cloned()) {
        println!("session version {} (4 = PQXDH)", state.version());
    }
    // SPQR, the post-quantum ratchet: required by default (as current
    // Signal clients); `set_spqr_policy(SpqrPolicy::Offered)` also talks to
    // peers without it.
    println!(
        "SPQR policy {:?}; the session speaks SPQR: {:?}, epoch {:?}",
        alice.spqr_policy(),
        alice.session_has_spqr(&bob_addr),
        alice.session_spqr_epoch(&bob_addr)
    );

    let deliver = |from: &mut ProtocolStore,
                   to: &mut ProtocolStore,
                   from_addr: &Address,
                   to_addr: &Address,
                   text: &str|
     -> Result<(), ratchetkit::Error> {
        let m = from.encrypt(to_addr, text.as_bytes())?;
        let kind = if m.message_type() == 3 {
            "prekey"
        } else {
            "whisper"
        };
        let pt = to.decrypt(from_addr, m.message_type(), m.serialize(), &mut OsRng)?;
        println!(
            "{:>5} -> {:<5} [{kind:7} {:3} bytes] {}",
            from_addr.name,
            to_addr.name,
            m.serialize().len(),
            String::from_utf8_lossy(&pt)
        );
        Ok(())
    };

    deliver(
        &mut alice,
        &mut bob,
        &alice_addr,
        &bob_addr,
        "Hi Bob, it's Alice.",
    )?;
    deliver(&mut bob, &mut alice, &bob_addr, &alice_addr, "Hello Alice!")?;
    deliver(
        &mut alice,
        &mut bob,
        &alice_addr,
        &bob_addr,
        "The ratchet turned.",
    )?;

    // Out of order: Bob sends three, Alice reads them 3, 1, 2.
    let msgs: Vec<_> = ["one", "two", "three"]
        .iter()
        .map(|t| bob.encrypt(&alice_addr, t.as_bytes()))
        .collect::<Result<_, _>>()?;
    for i in [2usize, 0, 1] {
        let pt = alice.decrypt(&bob_addr, msgs[i].message_type(), msgs[i].serialize(), rng)?;
        println!(
            "  bob -> alice [out of order #{}] {}",
            i + 1,
            String::from_utf8_lossy(&pt)
        );
    }

    // A replayed message is refused, and nothing changes.
    match alice.decrypt(&bob_addr, msgs[0].message_type(), msgs[0].serialize(), rng) {
        Err(err) => println!("  replay refused: {err}"),
        Ok(_) => return Err(ratchetkit::Error::InvalidMessage("a replay was accepted")),
    }

    // Restart: both save and restore their whole state.
    alice = ProtocolStore::restore(&alice.save())?;
    bob = ProtocolStore::restore(&bob.save())?;
    println!("(both restarted from saved state)");
    deliver(&mut alice, &mut bob, &alice_addr, &bob_addr, "Still there?")?;
    deliver(
        &mut bob,
        &mut alice,
        &bob_addr,
        &alice_addr,
        "Yes, after a restart.",
    )?;

    // Safety numbers: both sides see the same 60 digits.
    let a = alice.safety_number("bob", b"alice", b"bob", 5200, 2)?;
    let b = bob.safety_number("alice", b"bob", b"alice", 5200, 2)?;
    let digits = a.displayable();
    let groups: Vec<&str> = (0..12).map(|i| &digits[i * 5..i * 5 + 5]).collect();
    println!("safety number: {}", groups.join(" "));
    println!(
        "equal on both sides: {}; bob's scan of alice's code matches: {}",
        a.displayable() == b.displayable(),
        b.compare_scannable(&a.scannable())?
    );
    Ok(())
}
