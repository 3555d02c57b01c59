//! The record of sessions started from prekeys that stay after use (a
//! last-resort Kyber prekey, or in version 3 the signed prekey alone): the
//! responder refuses a second session from the same base key, whichever
//! address, prekey ids or keys the message names. A captured first message
//! replayed under another address would otherwise start a new session and
//! deliver its plaintext again. Honest base keys are fresh for every
//! session, so matching on the base key alone never refuses honest traffic.
//!
//! Bounded per prekey: [`MAX_BASE_KEY_USES_PER_PREKEY`] sessions from one
//! last-resort Kyber prekey (or one signed prekey, in version 3). A sender
//! that fills one key's share blocks new sessions from that key only; a new
//! last-resort key (or signed prekey) starts with a share of its own, so
//! rotating helps at once. Removing a prekey forgets its uses (a replay
//! naming it then fails for lack of the prekey).

use std::collections::BTreeMap;

/// The most sessions one reusable prekey may start (see the module docs).
pub const MAX_BASE_KEY_USES_PER_PREKEY: usize = 65_536;

/// One session started from reusable prekeys. `kyber_pre_key_id` is 0 for a
/// version-3 session from the signed prekey alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct BaseKeyUse {
    pub(crate) kyber_pre_key_id: u32,
    pub(crate) signed_pre_key_id: u32,
    pub(crate) base_key: [u8; 32],
}

impl BaseKeyUse {
    /// The reusable prekey whose share the use counts against.
    fn prekey(&self) -> (u32, u32) {
        match self.kyber_pre_key_id {
            0 => (0, self.signed_pre_key_id),
            id => (id, 0),
        }
    }
}

/// The uses, by base key, with a count per reusable prekey.
#[derive(Clone, Debug, Default)]
pub(crate) struct BaseKeyUses {
    by_base_key: BTreeMap<[u8; 32], BaseKeyUse>,
    per_prekey: BTreeMap<(u32, u32), usize>,
}

/// Why a use cannot be recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// A session from this base key was started before.
    Replay,
    /// The prekey's share is used up.
    Full,
}

impl BaseKeyUses {
    /// Whether `used` may be recorded.
    pub(crate) fn check(&self, used: &BaseKeyUse) -> Result<(), Refused> {
        if self.by_base_key.contains_key(&used.base_key) {
            return Err(Refused::Replay);
        }
        if self.per_prekey.get(&used.prekey()).copied().unwrap_or(0) >= MAX_BASE_KEY_USES_PER_PREKEY
        {
            return Err(Refused::Full);
        }
        Ok(())
    }

    /// Records `used`; false if its base key was recorded already.
    pub(crate) fn insert(&mut self, used: BaseKeyUse) -> bool {
        if self.by_base_key.contains_key(&used.base_key) {
            return false;
        }
        *self.per_prekey.entry(used.prekey()).or_default() += 1;
        self.by_base_key.insert(used.base_key, used);
        true
    }

    /// Sets the count of uses against `prekey` (a durable store's view
    /// holds the count, not every use).
    pub(crate) fn set_count(&mut self, prekey: (u32, u32), count: usize) {
        self.per_prekey.insert(prekey, count);
    }

    /// Keeps only the uses `keep` accepts.
    pub(crate) fn retain(&mut self, keep: impl Fn(&BaseKeyUse) -> bool) {
        self.by_base_key.retain(|_, u| keep(u));
        self.per_prekey.clear();
        for u in self.by_base_key.values() {
            *self.per_prekey.entry(u.prekey()).or_default() += 1;
        }
    }

    /// The uses, by base key.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &BaseKeyUse> {
        self.by_base_key.values()
    }

    /// The number of uses recorded.
    pub(crate) fn len(&self) -> usize {
        self.by_base_key.len()
    }

    /// The most uses recorded against one prekey.
    pub(crate) fn max_per_prekey(&self) -> usize {
        self.per_prekey.values().copied().max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(kyber: u32, signed: u32, n: u32) -> BaseKeyUse {
        let mut base_key = [0u8; 32];
        base_key[..4].copy_from_slice(&n.to_le_bytes());
        base_key[4..8].copy_from_slice(&kyber.to_le_bytes());
        BaseKeyUse {
            kyber_pre_key_id: kyber,
            signed_pre_key_id: signed,
            base_key,
        }
    }

    /// Review finding: one sender filling a store-wide record blocked every
    /// new session from reusable prekeys, and a new last-resort key did not
    /// help. Now each prekey has its own share.
    #[test]
    fn each_reusable_prekey_has_its_own_share() {
        let mut uses = BaseKeyUses::default();
        let cap = MAX_BASE_KEY_USES_PER_PREKEY as u32;
        for n in 0..cap {
            assert!(uses.insert(used(7, 1, n)));
        }
        assert_eq!(uses.check(&used(7, 1, cap)), Err(Refused::Full));
        assert_eq!(
            uses.check(&used(7, 2, cap)),
            Err(Refused::Full),
            "same Kyber key"
        );
        // A new last-resort key, and version-3 uses of the signed prekey,
        // have their own shares.
        assert_eq!(uses.check(&used(8, 1, cap)), Ok(()));
        assert_eq!(uses.check(&used(0, 1, cap)), Ok(()));
        // A base key seen before is a replay, whatever ids it names now.
        assert_eq!(
            uses.check(&used(8, 1, 5).with_base_of(&used(7, 1, 5))),
            Err(Refused::Replay)
        );
        // Removing the key frees its share.
        uses.retain(|u| u.kyber_pre_key_id != 7);
        assert_eq!(uses.len(), 0);
        assert_eq!(uses.check(&used(7, 1, 0)), Ok(()));
    }

    impl BaseKeyUse {
        fn with_base_of(mut self, other: &BaseKeyUse) -> Self {
            self.base_key = other.base_key;
            self
        }
    }
}
