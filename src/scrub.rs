//! `VecDeque` operations that leave no copies of secrets behind.
//!
//! Secret-holding values (chain keys, message key seeds, session states)
//! zeroize when dropped, but a `VecDeque` also moves its elements bitwise:
//! when it grows (the old buffer is freed as it is), when an element is
//! removed from the middle (the neighbours shift and the vacated slot keeps
//! a duplicate of one of them), and when an element is popped (its slot
//! keeps the bytes). These helpers only ever drop elements in place, grow by
//! cloning into a new buffer and dropping the old elements in place, and
//! close gaps by swapping, so that every slot a secret leaves holds zeros.

use std::collections::VecDeque;

/// Makes room for `additional` more elements without a reallocation that
/// would leave bitwise copies in freed memory.
pub(crate) fn reserve<T: Clone>(deque: &mut VecDeque<T>, additional: usize) {
    let needed = deque.len().saturating_add(additional);
    if needed <= deque.capacity() {
        return;
    }
    let mut grown = VecDeque::with_capacity(needed.max(deque.capacity().saturating_mul(2)));
    grown.extend(deque.iter().cloned());
    // The old elements drop (and zeroize) in place; then the buffer is freed.
    *deque = grown;
}

/// Appends clones of `items`, then drops `items` in place.
pub(crate) fn extend<T: Clone>(deque: &mut VecDeque<T>, items: Vec<T>) {
    reserve(deque, items.len());
    deque.extend(items.iter().cloned());
}

/// Drops the `count` oldest (front) elements in place.
pub(crate) fn drop_front<T>(deque: &mut VecDeque<T>, count: usize) {
    let count = count.min(deque.len());
    // A drained range that is not iterated is dropped in place; removing a
    // front range only moves the head, no element is shifted.
    drop(deque.drain(..count));
}

/// Removes the element at `index` (keeping the order of the others) and
/// returns a clone of it; the element itself is dropped in place after
/// being swapped to the back, so no slot keeps a copy of any element.
pub(crate) fn remove<T: Clone>(deque: &mut VecDeque<T>, index: usize) -> Option<T> {
    let value = deque.get(index)?.clone();
    for i in index..deque.len() - 1 {
        deque.swap(i, i + 1);
    }
    deque.truncate(deque.len() - 1);
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    thread_local! {
        static DROPPED: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    }

    /// Records its value when dropped.
    #[derive(Clone, Debug, PartialEq)]
    struct Noisy(u32);
    impl Drop for Noisy {
        fn drop(&mut self) {
            DROPPED.with(|d| d.borrow_mut().push(self.0));
        }
    }

    fn dropped() -> Vec<u32> {
        DROPPED.with(|d| std::mem::take(&mut *d.borrow_mut()))
    }

    fn values(d: &VecDeque<Noisy>) -> Vec<u32> {
        d.iter().map(|n| n.0).collect()
    }

    #[test]
    fn operations_keep_order_and_drop_what_leaves() {
        let mut d: VecDeque<Noisy> = (0..5).map(Noisy).collect();
        dropped();
        extend(&mut d, (5..40).map(Noisy).collect());
        assert_eq!(values(&d), (0..40).collect::<Vec<_>>());
        // The originals of the grown buffer and of the items were dropped.
        let mut gone = dropped();
        gone.sort_unstable();
        assert_eq!(gone, (0..40).collect::<Vec<_>>());

        drop_front(&mut d, 3);
        assert_eq!(dropped(), vec![0, 1, 2]);
        assert_eq!(values(&d)[..2], [3, 4]);
        drop_front(&mut d, 1000);
        assert!(d.is_empty());
        dropped();

        let mut d: VecDeque<Noisy> = (0..6).map(Noisy).collect();
        let removed = remove(&mut d, 2);
        assert_eq!(removed.as_ref().map(|n| n.0), Some(2));
        assert_eq!(values(&d), vec![0, 1, 3, 4, 5]);
        assert_eq!(dropped(), vec![2]);
        assert!(remove(&mut d, 5).is_none());
        assert_eq!(remove(&mut d, 4).map(|n| n.0), Some(5));
        assert_eq!(values(&d), vec![0, 1, 3, 4]);
        dropped();

        let mut d: VecDeque<Noisy> = VecDeque::new();
        reserve(&mut d, 3);
        assert!(d.capacity() >= 3);
        assert!(dropped().is_empty());
    }
}
