//! One pass over a saved store's wire format, before it is decoded.
//!
//! [`ProtocolStore::restore`](crate::ProtocolStore::restore) decodes the
//! saved protobuf (`StoreProto` in `persist.rs`) with prost, which builds
//! every record in memory before a single limit is checked. Small records
//! cost far more decoded than saved: an empty session entry is 2 bytes on
//! the wire and a 288-byte struct in memory, so 4 MiB of hostile input
//! could take hundreds of MiB. [`scan_store`] walks the bytes first,
//! following the `StoreProto` schema, allocating nothing, and refuses with
//! [`Error::CorruptState`]:
//!
//! - **a repeated field beyond its limit**, counted as it is read: more than
//!   [`MAX_SESSIONS`] sessions, [`MAX_ARCHIVED_STATES`] archived states for
//!   one address, [`MAX_RECEIVER_CHAINS`] receiving chains in one state,
//!   [`MAX_SKIPPED_KEYS`] skipped keys on one chain, more signed, one-time
//!   or Kyber prekeys than there are prekey ids ([`MAX_PREKEY_ID`]). Trusted
//!   identities and base-key uses have no count limit here (their bound
//!   depends on other records: restore checks it); record sizes bound them.
//! - **a record smaller than a valid one**: the record's own fields (its
//!   bytes less those of the records nested in it) are fewer bytes than its
//!   required fields take, or a session entry holds no state (a store only
//!   saves sessions that hold one):
//!
//!   | record            | required fields                                   | own bytes at least |
//!   |-------------------|---------------------------------------------------|-------------------:|
//!   | skipped key       | 32-byte seed                                      |  34 |
//!   | receiving chain   | 33-byte ratchet key, 32-byte chain key            |  69 |
//!   | pending prekey    | signed prekey id, 33-byte base key                |  37 |
//!   | session state     | version, 2 identities, root key, sending ratchet key and chain key, base key | 209 |
//!   | session entry     | device id (and one state, nested)                 |   2 |
//!   | signed prekey     | id, 32-byte private key, 64-byte signature        | 102 |
//!   | one-time prekey   | id, 32-byte private key                           |  36 |
//!   | trusted identity  | 33-byte key                                       |  35 |
//!   | Kyber prekey      | id, 3169-byte secret key, 64-byte signature       | 3,240 |
//!   | base-key use      | signed prekey id, 33-byte base key (a Kyber prekey id unless version 3) | 37 |
//!
//!   (The numbers are computed from the key lengths in `crate::keys`.)
//!   Only a record's own bytes count: were nested records counted too, a
//!   state filled out with one small chain would pay for both with the
//!   same bytes, and the bound below would grow with the nesting depth.
//! - **malformed wire format**, everything prost refuses, so that prost
//!   never fails after a scan that passed: a varint that is truncated or
//!   longer than 64 bits, a field key above `u32::MAX`, field number 0,
//!   wire types 6 and 7, a length past the end of its record, a known field
//!   with the wrong wire type, a name that is not UTF-8, an unmatched
//!   group end, groups nested beyond prost's recursion limit (100).
//! - **a known field that is not repeated given twice** (prost would merge
//!   or replace it; no writer does this).
//!
//! Unknown fields of every wire type, groups included, are skipped as prost
//! skips them, so saves written by a later version stay readable; their
//! bytes count as a record's own bytes, and decode to nothing.
//!
//! # The bound: decoding allocates at most 7 times the input
//!
//! On a 64-bit target the decoded records take (prost structs with their
//! `Vec` and `String` headers): entry 256 bytes, state 200 (inline in the
//! entry when current), chain 80, skipped key 32, signed prekey 64, prekey
//! 32, trust 48, Kyber prekey 64, base-key use 32, pending prekey 72
//! (boxed in its state). Their key bytes and
//! names are heap buffers of exactly their length (8 bytes when shorter
//! than 8; each field appears once).
//!
//! - `restore` reserves the store's four top-level lists at the exact
//!   counts the scan found; lists inside records (archived states, chains,
//!   skipped keys) grow as prost pushes into them, with at most 4 slots per
//!   element (Rust's first allocation holds 4, and a doubling briefly holds
//!   the old buffer too).
//! - So each record costs at most its slots plus 8 bytes per short field,
//!   paid by its own bytes on the wire (own fields, key and length prefix),
//!   which no other record counts: a skipped key 136 bytes for 36 (3.8x), a
//!   chain 336 for 71 (4.7x), an archived state 848 for 212 (4.0x), an
//!   entry with its first state archived 1,112 for 217 (5.1x), a pending
//!   prekey 88 for 39 (2.3x), a trusted identity 64 for 37 (1.7x), a prekey
//!   40 for 38, a signed prekey 80 for 104, a base-key use 40 for 39, a
//!   Kyber prekey 64 for 3,243. That is at most 6x; the field contents
//!   themselves add at most 1x.
//!
//! Decoded size ≤ [`EXPANSION_BOUND`] (7) × input length. `restore` checks
//! the inequalities above against the `size_of` of the actual prost structs
//! at compile time ([`within_bound`]), and `tests/restore_bounds.rs`
//! measures the worst shapes (about 6.5x). Allocator overhead per block is
//! not counted, nor [`WipingBuf`]'s temporary copy of the one field being
//! decoded.
//!
//! # Wiping
//!
//! `restore` decodes into a `Zeroizing<StoreProto>` that starts empty and is
//! filled with `prost::Message::merge`, so whatever was decoded is wiped
//! when restoring fails, as when it succeeds. prost builds each repeated
//! record in a local before pushing it, and a local is not wiped if prost
//! fails inside it; this scan refuses everything prost would refuse, so
//! that failure does not happen.
//!
//! Copies left in freed memory: prost takes each bytes field out of its
//! input as a temporary copy before copying it into the field; reading
//! through [`WipingBuf`] makes that temporary wipe itself. Key bytes then
//! live in heap buffers allocated once at their final size (no field
//! repeats, so none is reallocated), and the top-level lists never grow.
//! The lists inside records (archived states, chains, skipped keys) do
//! grow, and their old buffers are freed unwiped; they hold only struct
//! headers (pointers, lengths) and integers (counters, chain indices, ids,
//! registration ids), no key bytes. What `from_proto` does with the
//! decoded keys is outside this module.

use prost::bytes::{Buf, Bytes};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::kem::KEM_SECRET_KEY_LEN;
use crate::keys::{PRIVATE_KEY_LEN, PUBLIC_KEY_LEN, SIGNATURE_LEN};
use crate::prekey::MAX_PREKEY_ID;
use crate::ratchet::{MAX_RECEIVER_CHAINS, MAX_SKIPPED_KEYS};
use crate::session::MAX_ARCHIVED_STATES;
use crate::store::MAX_SESSIONS;
use crate::wire::MESSAGE_VERSION;

/// Decoding input that passed [`scan_store`] allocates at most this many
/// times the input's length (see the module docs).
pub(crate) const EXPANSION_BOUND: usize = 7;

/// The largest saved SPQR state of one session (its own encoding,
/// `src/spqr/persist.rs`): the fixed part and the largest braid state
/// (decapsulation key, ek encoder, full ct1 decoder) are under 8 KiB; the
/// chain holds at most 4 epochs of two halves, each with at most 2,200
/// stored keys of 36 bytes. Decoded, a state takes at most about twice
/// its bytes (stored keys: 36 bytes each on both sides, plus vector and
/// box headers), on top of this scan's bound for the field's copy.
pub(crate) const MAX_SPQR_STATE_LEN: usize =
    8 * 1024 + crate::spqr::MAX_SAVED_EPOCHS * (8 + 2 * (39 + 2_200 * 36));

/// Root keys, chain keys and skipped message key seeds are 32 bytes.
const SECRET_LEN: usize = 32;

/// prost's recursion limit (`RECURSION_LIMIT` in prost 0.13, private).
const RECURSION_LIMIT: u32 = 100;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const DELIMITED: u8 = 2;
const GROUP_START: u8 = 3;
const GROUP_END: u8 = 4;
const FIXED32: u8 = 5;

const fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Bytes of a length-delimited field with `len` bytes of content.
const fn delimited(tag: u32, len: usize) -> usize {
    varint_len((tag as u64) << 3) + varint_len(len as u64) + len
}

/// Bytes of a varint field holding `value`.
const fn varint_field(tag: u32, value: u64) -> usize {
    varint_len((tag as u64) << 3) + varint_len(value)
}

// The smallest own bytes of each valid record (see the table in the module
// docs). Ids that must not be 0 take at least 2 bytes.
const MIN_SKIPPED: usize = delimited(2, SECRET_LEN);
const MIN_CHAIN: usize = delimited(1, PUBLIC_KEY_LEN) + delimited(2, SECRET_LEN);
const MIN_PENDING: usize = varint_field(2, 1) + delimited(3, PUBLIC_KEY_LEN);
const MIN_STATE: usize = varint_field(1, MESSAGE_VERSION as u64)
    + delimited(2, PUBLIC_KEY_LEN)
    + delimited(3, PUBLIC_KEY_LEN)
    + delimited(4, SECRET_LEN)
    + delimited(5, PRIVATE_KEY_LEN)
    + delimited(6, SECRET_LEN)
    + delimited(13, PUBLIC_KEY_LEN);
const MIN_ENTRY: usize = varint_field(2, 1);
const MIN_SIGNED_PREKEY: usize =
    varint_field(1, 1) + delimited(2, PRIVATE_KEY_LEN) + delimited(3, SIGNATURE_LEN);
const MIN_PREKEY: usize = varint_field(1, 1) + delimited(2, PRIVATE_KEY_LEN);
const MIN_TRUST: usize = delimited(2, PUBLIC_KEY_LEN);
const MIN_KYBER_PREKEY: usize =
    varint_field(1, 1) + delimited(2, KEM_SECRET_KEY_LEN) + delimited(3, SIGNATURE_LEN);
// The Kyber prekey id is 0, so absent, in a version-3 use.
const MIN_BASE_KEY_USE: usize = varint_field(2, 1) + delimited(3, PUBLIC_KEY_LEN);

/// The records of the saved format (the prost structs of `persist.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Record {
    Store,
    SignedPreKey,
    PreKey,
    Trust,
    Entry,
    State,
    Chain,
    Skipped,
    Pending,
    KyberPreKey,
    BaseKeyUse,
}

/// How a known field is encoded.
#[derive(Clone, Copy)]
enum Field {
    Varint,
    Bytes,
    /// The SPQR state: bytes of at most [`MAX_SPQR_STATE_LEN`].
    SpqrBytes,
    Text,
    Message(Record),
    Unknown,
}

/// The count limits of the repeated fields.
#[derive(Clone, Copy, Debug)]
struct Limits {
    signed_prekeys: usize,
    prekeys: usize,
    kyber_prekeys: usize,
    base_key_uses: usize,
    sessions: usize,
    archived_states: usize,
    receiver_chains: usize,
    skipped_keys: usize,
}

const DEPLOYED: Limits = Limits {
    signed_prekeys: MAX_PREKEY_ID as usize,
    prekeys: MAX_PREKEY_ID as usize,
    kyber_prekeys: MAX_PREKEY_ID as usize,
    // Bounded per prekey when restored; record sizes bound the memory.
    base_key_uses: usize::MAX,
    sessions: MAX_SESSIONS,
    archived_states: MAX_ARCHIVED_STATES,
    receiver_chains: MAX_RECEIVER_CHAINS,
    skipped_keys: MAX_SKIPPED_KEYS,
};

impl Record {
    /// The field with number `tag` (the schema of `persist.rs`).
    fn field(self, tag: u32) -> Field {
        use Field::{Bytes, Message, SpqrBytes, Text, Unknown, Varint};
        use Record::*;
        match (self, tag) {
            (Store, 1) => Bytes,
            (Store, 2 | 3 | 5 | 7 | 8 | 12 | 13 | 15 | 16 | 17) => Varint,
            (Store, 4) => Message(SignedPreKey),
            (Store, 6) => Message(PreKey),
            (Store, 9) => Message(Entry),
            (Store, 10) => Message(Trust),
            (Store, 11) => Message(KyberPreKey),
            (Store, 14) => Message(BaseKeyUse),
            (KyberPreKey, 1 | 4 | 5) => Varint,
            (KyberPreKey, 2 | 3) => Bytes,
            (BaseKeyUse, 1 | 2) => Varint,
            (BaseKeyUse, 3) => Bytes,
            (SignedPreKey, 1 | 4) => Varint,
            (SignedPreKey, 2 | 3) => Bytes,
            (PreKey, 1) => Varint,
            (PreKey, 2) => Bytes,
            (Trust, 1) => Text,
            (Trust, 2) => Bytes,
            (Entry, 1) => Text,
            (Entry, 2) => Varint,
            (Entry, 3 | 4) => Message(State),
            (State, 1 | 7 | 9 | 11 | 12) => Varint,
            (State, 2..=6 | 13) => Bytes,
            (State, 14) => SpqrBytes,
            (State, 8) => Message(Chain),
            (State, 10) => Message(Pending),
            (Chain, 1 | 2) => Bytes,
            (Chain, 3) => Varint,
            (Chain, 4) => Message(Skipped),
            (Skipped, 1) => Varint,
            (Skipped, 2) => Bytes,
            (Pending, 1 | 2 | 4) => Varint,
            (Pending, 3 | 5) => Bytes,
            _ => Unknown,
        }
    }

    /// For a repeated field: its count limit and the error past it.
    fn limit(self, tag: u32, limits: &Limits) -> Option<(usize, &'static str)> {
        use Record::*;
        match (self, tag) {
            (Store, 4) => Some((limits.signed_prekeys, "more signed prekeys than prekey ids")),
            (Store, 6) => Some((limits.prekeys, "more one-time prekeys than prekey ids")),
            (Store, 9) => Some((limits.sessions, "too many sessions")),
            (Store, 10) => Some((usize::MAX, "")),
            (Store, 11) => Some((limits.kyber_prekeys, "more Kyber prekeys than prekey ids")),
            (Store, 14) => Some((limits.base_key_uses, "too many base-key uses")),
            (Entry, 4) => Some((
                limits.archived_states,
                "too many archived states for one address",
            )),
            (State, 8) => Some((
                limits.receiver_chains,
                "too many receiving chains in a session state",
            )),
            (Chain, 4) => Some((limits.skipped_keys, "too many skipped keys on one chain")),
            _ => None,
        }
    }

    /// The smallest own bytes of a valid record, and the error below it.
    fn min_own_len(self) -> (usize, &'static str) {
        match self {
            Record::Store => (0, ""),
            Record::SignedPreKey => (MIN_SIGNED_PREKEY, "signed prekey record too small"),
            Record::PreKey => (MIN_PREKEY, "prekey record too small"),
            Record::Trust => (MIN_TRUST, "trusted identity record too small"),
            Record::Entry => (MIN_ENTRY, "session entry too small"),
            Record::State => (MIN_STATE, "session state record too small"),
            Record::Chain => (MIN_CHAIN, "receiving chain record too small"),
            Record::Skipped => (MIN_SKIPPED, "skipped key record too small"),
            Record::Pending => (MIN_PENDING, "pending prekey record too small"),
            Record::KyberPreKey => (MIN_KYBER_PREKEY, "Kyber prekey record too small"),
            Record::BaseKeyUse => (MIN_BASE_KEY_USE, "base-key use record too small"),
        }
    }
}

fn corrupt(what: &'static str) -> Error {
    Error::CorruptState(what)
}

/// The unread rest of one record.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// A varint as prost reads one: at most 10 bytes, and the 10th is 0 or 1.
    fn varint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some((&b, rest)) = self.0.split_first() else {
                return Err(corrupt("truncated varint"));
            };
            self.0 = rest;
            if i == 9 && b > 1 {
                return Err(corrupt("varint longer than 64 bits"));
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err(corrupt("varint longer than 64 bits"))
    }

    /// A field key: the field number and the wire type.
    fn key(&mut self) -> Result<(u32, u8)> {
        let key = u32::try_from(self.varint()?).map_err(|_| corrupt("field key out of range"))?;
        let wire = (key & 7) as u8;
        if wire > FIXED32 {
            return Err(corrupt("unknown wire type"));
        }
        if key >> 3 == 0 {
            return Err(corrupt("field number 0"));
        }
        Ok((key >> 3, wire))
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8]> {
        match usize::try_from(len) {
            Ok(len) if len <= self.0.len() => {
                let (head, rest) = self.0.split_at(len);
                self.0 = rest;
                Ok(head)
            }
            _ => Err(corrupt("field runs past the end of its record")),
        }
    }

    fn delimited(&mut self) -> Result<&'a [u8]> {
        let len = self.varint()?;
        self.take(len)
    }

    /// Skips an unknown field as prost's `skip_field` does, with `budget`
    /// levels of recursion left.
    fn skip(&mut self, tag: u32, wire: u8, budget: u32) -> Result<()> {
        if budget == 0 {
            return Err(corrupt("fields nested too deeply"));
        }
        match wire {
            VARINT => {
                self.varint()?;
            }
            FIXED64 => {
                self.take(8)?;
            }
            DELIMITED => {
                self.delimited()?;
            }
            FIXED32 => {
                self.take(4)?;
            }
            GROUP_START => loop {
                let (inner, inner_wire) = self.key()?;
                if inner_wire == GROUP_END {
                    if inner != tag {
                        return Err(corrupt("unmatched group end"));
                    }
                    break;
                }
                self.skip(inner, inner_wire, budget - 1)?;
            },
            _ => return Err(corrupt("unmatched group end")),
        }
        Ok(())
    }
}

fn expect_wire(wire: u8, expected: u8) -> Result<()> {
    if wire != expected {
        return Err(corrupt("wrong wire type for a known field"));
    }
    Ok(())
}

/// The number of entries in each of the store's repeated fields, so that
/// `restore` can reserve them exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StoreCounts {
    pub(crate) signed_prekeys: usize,
    pub(crate) prekeys: usize,
    pub(crate) sessions: usize,
    pub(crate) trusted: usize,
    pub(crate) kyber_prekeys: usize,
    pub(crate) base_key_uses: usize,
}

/// Checks the protobuf `body` of a saved store (after magic and version)
/// as described in the module docs, allocating nothing, and counts its
/// top-level records.
pub(crate) fn scan_store(body: &[u8]) -> Result<StoreCounts> {
    scan_with(body, &DEPLOYED)
}

fn scan_with(body: &[u8], limits: &Limits) -> Result<StoreCounts> {
    let counts = scan(Record::Store, body, RECURSION_LIMIT, limits)?;
    Ok(StoreCounts {
        signed_prekeys: counts[4],
        prekeys: counts[6],
        sessions: counts[9],
        trusted: counts[10],
        kyber_prekeys: counts[11],
        base_key_uses: counts[14],
    })
}

/// Scans one `record` (its fields in `body`), the fields at recursion
/// `budget` as prost counts it. Returns how often each repeated field
/// occurs, by field number (known fields are numbered below 32).
fn scan(record: Record, body: &[u8], budget: u32, limits: &Limits) -> Result<[usize; 32]> {
    let mut r = Reader(body);
    let mut counts = [0usize; 32];
    let mut seen = 0u32;
    let mut nested_bytes = 0usize;
    while !r.0.is_empty() {
        let field_start = r.0.len();
        let (tag, wire) = r.key()?;
        let field = record.field(tag);
        if let Field::Unknown = field {
            r.skip(tag, wire, budget)?;
            continue;
        }
        let slot = (tag & 31) as usize;
        match record.limit(tag, limits) {
            Some((max, what)) => {
                counts[slot] += 1;
                if counts[slot] > max {
                    return Err(corrupt(what));
                }
            }
            None => {
                if seen & (1 << slot) != 0 {
                    return Err(corrupt("a field that is not repeated is given twice"));
                }
                seen |= 1 << slot;
            }
        }
        match field {
            Field::Varint => {
                expect_wire(wire, VARINT)?;
                r.varint()?;
            }
            Field::Bytes => {
                expect_wire(wire, DELIMITED)?;
                r.delimited()?;
            }
            Field::SpqrBytes => {
                expect_wire(wire, DELIMITED)?;
                if r.delimited()?.len() > MAX_SPQR_STATE_LEN {
                    return Err(corrupt("post-quantum ratchet state too large"));
                }
            }
            Field::Text => {
                expect_wire(wire, DELIMITED)?;
                std::str::from_utf8(r.delimited()?).map_err(|_| corrupt("a name is not UTF-8"))?;
            }
            Field::Message(child) => {
                expect_wire(wire, DELIMITED)?;
                if budget == 0 {
                    return Err(corrupt("fields nested too deeply"));
                }
                let inner = r.delimited()?;
                let (min, what) = child.min_own_len();
                if inner.len() < min {
                    return Err(corrupt(what));
                }
                scan(child, inner, budget - 1, limits)?;
                nested_bytes += field_start - r.0.len();
            }
            Field::Unknown => {}
        }
    }
    let (min, what) = record.min_own_len();
    if body.len() - nested_bytes < min {
        return Err(corrupt(what));
    }
    if record == Record::Entry && seen & (1 << 3) == 0 && counts[4] == 0 {
        return Err(corrupt("session entry without a state"));
    }
    Ok(counts)
}

/// The saved bytes as prost reads them, leaving no copy behind. prost
/// decodes a bytes field by taking it out of its input with
/// [`Buf::copy_to_bytes`] and copying that into the field; for a plain
/// `&[u8]` the taken copy is a fresh buffer freed unwiped, so every key of
/// the store would stay in freed memory. Here the taken copy is wiped when
/// prost drops it.
pub(crate) struct WipingBuf<'a>(pub(crate) &'a [u8]);

impl Buf for WipingBuf<'_> {
    fn remaining(&self) -> usize {
        self.0.len()
    }

    fn chunk(&self) -> &[u8] {
        self.0
    }

    fn advance(&mut self, cnt: usize) {
        self.0 = self.0.get(cnt..).unwrap_or_default();
    }

    fn copy_to_bytes(&mut self, len: usize) -> Bytes {
        let (taken, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        Bytes::from_owner(Zeroizing::new(taken.to_vec()))
    }
}

/// The in-memory sizes of the decoded records: `size_of` of the prost
/// structs in `persist.rs`.
pub(crate) struct DecodedSizes {
    pub(crate) entry: usize,
    pub(crate) state: usize,
    pub(crate) chain: usize,
    pub(crate) skipped: usize,
    pub(crate) signed_prekey: usize,
    pub(crate) prekey: usize,
    pub(crate) trust: usize,
    pub(crate) kyber_prekey: usize,
    pub(crate) base_key_use: usize,
    pub(crate) pending: usize,
}

/// Slots a `Vec` inside a record holds per element, at most: its first
/// allocation has room for 4 elements (of at most 1 KiB), later ones
/// double, and a reallocation briefly holds the old buffer too (3 slots
/// per element before the push that grows it).
const SLOTS_PER_NESTED_ELEMENT: usize = 4;

/// A `Vec<u8>` or `String` reserved for fewer than 8 bytes allocates 8.
const SHORT_FIELD_HEAP: usize = 8;

/// Whether a record costing `cost` bytes in memory (beyond its field
/// contents) is paid by `wire` bytes of its own within the bound.
const fn pays(cost: usize, wire: usize) -> bool {
    cost <= (EXPANSION_BOUND - 1) * wire
}

/// Whether every record, at the smallest size the scan lets through, costs
/// at most `EXPANSION_BOUND - 1` times its own bytes in memory (the field
/// contents add the last 1x). `restore` asserts this at compile time.
pub(crate) const fn within_bound(s: &DecodedSizes) -> bool {
    let n = SLOTS_PER_NESTED_ELEMENT;
    let h = SHORT_FIELD_HEAP;
    // Bytes of a state (6 bytes fields), in its parent: key, length, own fields.
    let state_wire = delimited(4, MIN_STATE);
    pays(s.skipped * n + h, delimited(4, MIN_SKIPPED))
        && pays(s.chain * n + 2 * h, delimited(8, MIN_CHAIN))
        && pays(s.pending + 2 * h, delimited(10, MIN_PENDING))
        && pays(s.state * n + 6 * h, state_wire)
        // An entry (1 name) with its first state, archived: the entry's
        // length prefix covers at least its own bytes and that state.
        && pays(
            s.entry + h + s.state * n + 6 * h,
            delimited(9, MIN_ENTRY + state_wire),
        )
        && pays(s.signed_prekey + 2 * h, delimited(4, MIN_SIGNED_PREKEY))
        && pays(s.prekey + h, delimited(6, MIN_PREKEY))
        && pays(s.trust + 2 * h, delimited(10, MIN_TRUST))
        && pays(s.kyber_prekey, delimited(11, MIN_KYBER_PREKEY))
        && pays(s.base_key_use + h, delimited(14, MIN_BASE_KEY_USE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Address, ProtocolStore};
    use rand::rngs::OsRng;

    fn key(tag: u32, wire: u8, out: &mut Vec<u8>) {
        varint((u64::from(tag) << 3) | u64::from(wire), out);
    }

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn message(tag: u32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        key(tag, DELIMITED, &mut out);
        varint(body.len() as u64, &mut out);
        out.extend_from_slice(body);
        out
    }

    fn bytes(tag: u32, len: usize) -> Vec<u8> {
        message(tag, &vec![0x05; len])
    }

    fn uint(tag: u32, v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        key(tag, VARINT, &mut out);
        varint(v, &mut out);
        out
    }

    fn skipped() -> Vec<u8> {
        bytes(2, SECRET_LEN)
    }

    fn chain(skipped_keys: usize) -> Vec<u8> {
        let mut c = [bytes(1, PUBLIC_KEY_LEN), bytes(2, SECRET_LEN), uint(3, 9)].concat();
        for _ in 0..skipped_keys {
            c.extend(message(4, &skipped()));
        }
        c
    }

    fn state(chains: usize) -> Vec<u8> {
        let mut s = [
            uint(1, 3),
            bytes(2, PUBLIC_KEY_LEN),
            bytes(3, PUBLIC_KEY_LEN),
            bytes(4, SECRET_LEN),
            bytes(5, PRIVATE_KEY_LEN),
            bytes(6, SECRET_LEN),
            bytes(13, PUBLIC_KEY_LEN),
        ]
        .concat();
        assert_eq!(s.len(), MIN_STATE);
        for _ in 0..chains {
            s.extend(message(8, &chain(1)));
        }
        s
    }

    fn entry(archived: usize) -> Vec<u8> {
        let mut e = [uint(2, 1), message(3, &state(1))].concat();
        for _ in 0..archived {
            e.extend(message(4, &state(1)));
        }
        e
    }

    const SMALL: Limits = Limits {
        signed_prekeys: 3,
        prekeys: 4,
        sessions: 2,
        archived_states: 2,
        receiver_chains: 2,
        skipped_keys: 3,
        kyber_prekeys: 2,
        base_key_uses: 2,
    };

    fn counts_ok(body: &[u8]) -> StoreCounts {
        scan_with(body, &SMALL).expect("scan passes")
    }

    fn refused(body: &[u8], what: &str) {
        match scan_with(body, &SMALL) {
            Err(Error::CorruptState(w)) => assert!(w.contains(what), "{w} vs {what}"),
            other => panic!("expected refusal ({what}), got {other:?}"),
        }
    }

    #[test]
    fn minimum_sizes_match_the_key_lengths() {
        assert_eq!(
            [MIN_SKIPPED, MIN_CHAIN, MIN_PENDING, MIN_STATE, MIN_ENTRY],
            [34, 69, 37, 209, 2]
        );
        assert_eq!([MIN_SIGNED_PREKEY, MIN_PREKEY, MIN_TRUST], [102, 36, 35]);
        assert_eq!(DEPLOYED.prekeys, 0xFF_FFFF);
        assert_eq!(DEPLOYED.sessions, MAX_SESSIONS);
    }

    /// The error past a limit, a body with `n` entries, and the limit.
    type LimitCase = (&'static str, fn(usize) -> Vec<u8>, usize);

    #[test]
    fn every_count_limit_at_and_past_it() {
        let cases: [LimitCase; 6] = [
            (
                "more signed prekeys",
                |n| {
                    let r = [uint(1, 1), bytes(2, 32), bytes(3, 64)].concat();
                    (0..n).flat_map(|_| message(4, &r)).collect()
                },
                SMALL.signed_prekeys,
            ),
            (
                "more one-time prekeys",
                |n| {
                    let r = [uint(1, 1), bytes(2, 32)].concat();
                    (0..n).flat_map(|_| message(6, &r)).collect()
                },
                SMALL.prekeys,
            ),
            (
                "too many sessions",
                |n| (0..n).flat_map(|_| message(9, &entry(0))).collect(),
                SMALL.sessions,
            ),
            (
                "too many archived states",
                |n| message(9, &entry(n)),
                SMALL.archived_states,
            ),
            (
                "too many receiving chains",
                |n| {
                    message(
                        9,
                        &[uint(2, 1), message(3, &state(0)), message(4, &state(n))].concat(),
                    )
                },
                SMALL.receiver_chains,
            ),
            (
                "too many skipped keys",
                |n| {
                    let mut s = state(0);
                    s.extend(message(8, &chain(n)));
                    message(9, &[uint(2, 1), message(3, &s)].concat())
                },
                SMALL.skipped_keys,
            ),
        ];
        for (what, body, limit) in cases {
            counts_ok(&body(limit));
            refused(&body(limit + 1), what);
        }
        assert_eq!(
            counts_ok(&[message(9, &entry(0)), message(9, &entry(0))].concat()).sessions,
            2
        );
        // Trusted identities have no count limit.
        let t = message(10, &bytes(2, 33));
        assert_eq!(counts_ok(&t.repeat(1000)).trusted, 1000);
    }

    #[test]
    fn records_below_their_minimum_are_refused() {
        // One byte short in each record's own fields; nested records do not
        // count towards their parent's bytes.
        refused(&message(10, &bytes(2, 32)), "trusted identity");
        refused(&message(6, &bytes(2, 33)), "prekey record");
        refused(
            &message(4, &[bytes(2, 32), bytes(3, 64)].concat()),
            "signed prekey",
        );
        refused(
            &message(9, &message(3, &state(1))),
            "session entry too small",
        );
        refused(&message(9, &uint(2, 1)), "without a state");
        let short_state = [
            uint(1, 3),
            bytes(2, 32),
            bytes(3, 33),
            bytes(4, 32),
            bytes(5, 32),
            bytes(6, 32),
            bytes(13, 33),
            message(8, &chain(0)),
        ]
        .concat();
        refused(
            &message(9, &[uint(2, 1), message(3, &short_state)].concat()),
            "session state",
        );
        let short_chain = [bytes(1, 33), bytes(2, 31), message(4, &skipped())].concat();
        let mut st = state(0);
        st.extend(message(8, &short_chain));
        refused(
            &message(9, &[uint(2, 1), message(3, &st)].concat()),
            "chain",
        );
        let short_skipped = [bytes(1, 33), bytes(2, 32), message(4, &bytes(2, 31))].concat();
        let mut st = state(0);
        st.extend(message(8, &short_skipped));
        refused(
            &message(9, &[uint(2, 1), message(3, &st)].concat()),
            "skipped",
        );
        let mut st = state(0);
        st.extend(message(10, &bytes(3, 33)));
        refused(
            &message(9, &[uint(2, 1), message(3, &st)].concat()),
            "pending",
        );
        // Unknown fields count as a record's own bytes.
        let padded = [uint(1, 1), bytes(2, 31), uint(100, 0)].concat();
        assert!(padded.len() >= MIN_PREKEY);
        counts_ok(&message(6, &padded));
    }

    #[test]
    fn wire_format_errors() {
        let cases: [(&[u8], &str); 13] = [
            (&[0x10], "truncated varint"),
            (&[0x10, 0x80], "truncated varint"),
            (&[0x10, 0xff, 0xff, 0xff, 0xff, 0xff], "truncated varint"),
            (
                &[
                    0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
                ],
                "64 bits",
            ),
            (
                &[
                    0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                ],
                "64 bits",
            ),
            (&[0x80, 0x80, 0x80, 0x80, 0x10], "key out of range"),
            (&[0x00, 0x00], "field number 0"),
            (&[0x0e], "wire type"),
            (&[0x0f], "wire type"),
            (&[0x0a, 0x05, 0x01], "past the end"),
            (&[0x48, 0x01], "wrong wire type"),
            (&[0xfc, 0x07], "unmatched group end"),
            (&[0xfb, 0x07, 0x84, 0x08], "unmatched group end"),
        ];
        for (body, what) in cases {
            refused(body, what);
        }
        // The 10-byte maximum (u64::MAX) and over-long encodings are fine.
        counts_ok(&[
            0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ]);
        counts_ok(&[0x10, 0x81, 0x80, 0x00]);
        // A name that is not UTF-8.
        let e = [uint(2, 1), message(1, &[0xff]), message(3, &state(0))].concat();
        refused(&message(9, &e), "UTF-8");
        // A field given twice.
        refused(&[uint(2, 1), uint(2, 1)].concat(), "given twice");
        let e = [uint(2, 1), message(3, &state(0)), message(3, &state(0))].concat();
        refused(&message(9, &e), "given twice");
    }

    /// Unknown groups nested `depth` deep at the top level.
    fn groups(depth: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..depth {
            key(20, GROUP_START, &mut out);
        }
        out.extend(uint(21, 7));
        for _ in 0..depth {
            key(20, GROUP_END, &mut out);
        }
        out
    }

    #[test]
    fn unknown_fields_are_skipped_as_prost_skips_them() {
        let mut body = Vec::new();
        body.extend(uint(1000, 5));
        key(1001, FIXED64, &mut body);
        body.extend([0; 8]);
        key(1002, FIXED32, &mut body);
        body.extend([0; 4]);
        body.extend(message(1003, b"anything"));
        body.extend(uint((1 << 29) - 1, 1));
        body.extend(groups(3));
        counts_ok(&body);
        // prost's recursion limit: the innermost field of 99 nested groups
        // is read with one level left, that of 100 with none.
        counts_ok(&groups(99));
        refused(&groups(100), "nested too deeply");
        refused(&groups(10_000), "nested too deeply");
        // Truncated unknown fields.
        refused(&[0xa1, 0x06, 0, 0, 0], "past the end");
        refused(&[0xa5, 0x06, 0, 0, 0], "past the end");
        refused(&[0xa3, 0x06], "truncated");
    }

    #[test]
    fn real_saves_pass_with_their_counts() {
        let mut rng = OsRng;
        let mut a = ProtocolStore::generate(1, &mut rng).expect("store");
        let mut b = ProtocolStore::generate(2, &mut rng).expect("store");
        a.generate_prekeys(3, &mut rng).expect("prekeys");
        for i in 0..3 {
            let bundle = b.create_bundle(true, 1, &mut rng).expect("bundle");
            a.process_bundle(&Address::new(format!("b{i}"), 2), &bundle, &mut rng)
                .expect("session");
        }
        let saved = a.save();
        let counts = scan_store(&saved[5..]).expect("scan");
        assert_eq!(
            counts,
            StoreCounts {
                signed_prekeys: 0,
                prekeys: 3,
                sessions: 3,
                trusted: 3,
                kyber_prekeys: 0,
                base_key_uses: 0,
            }
        );
        // Every prefix scans or is refused; none panics.
        for n in 0..saved.len() {
            let _ = scan_store(&saved[5..n.max(5)]);
        }
    }

    #[test]
    fn the_bound_holds_for_the_documented_sizes() {
        let documented = DecodedSizes {
            entry: 256,
            state: 200,
            chain: 80,
            skipped: 32,
            signed_prekey: 64,
            prekey: 32,
            trust: 48,
            kyber_prekey: 64,
            base_key_use: 32,
            pending: 72,
        };
        assert!(within_bound(&documented));
        // A bigger entry would break it.
        assert!(!within_bound(&DecodedSizes {
            entry: 500,
            ..documented
        }));
    }
}
