//! A short list kept inline: the hot path's per-call lists (a call's quota charges, what each has
//! left) hold a handful of items, so they live on the stack and reach the heap only past `N`.

use std::ops::{Deref, DerefMut};

#[derive(Debug, Clone)]
pub enum SmallVec<T: Copy + Default, const N: usize> {
    Inline([T; N], usize),
    Heap(Vec<T>),
}

impl<T: Copy + Default, const N: usize> SmallVec<T, N> {
    pub fn new() -> Self {
        SmallVec::Inline([T::default(); N], 0)
    }

    /// Adds `value` at the end; the inline case is inlined into the caller, moving to the heap
    /// is not.
    #[inline]
    pub fn push(&mut self, value: T) {
        match self {
            SmallVec::Inline(items, len) if *len < N => {
                items[*len] = value;
                *len += 1;
            }
            SmallVec::Heap(heap) => heap.push(value),
            SmallVec::Inline(..) => self.spill(value),
        }
    }

    #[cold]
    fn spill(&mut self, value: T) {
        let mut heap = Vec::with_capacity(N * 2);
        heap.extend_from_slice(self);
        heap.push(value);
        *self = SmallVec::Heap(heap);
    }

    /// The items as a `Vec`, for the rare edits a slice cannot make (`retain`, `remove`).
    pub fn as_vec(&mut self) -> &mut Vec<T> {
        if let SmallVec::Inline(items, len) = self {
            *self = SmallVec::Heap(items[..*len].to_vec());
        }
        match self {
            SmallVec::Heap(heap) => heap,
            SmallVec::Inline(..) => unreachable!("just moved to the heap"),
        }
    }
}

impl<T: Copy + Default, const N: usize> Default for SmallVec<T, N> {
    fn default() -> Self {
        SmallVec::new()
    }
}

impl<T: Copy + Default, const N: usize> Deref for SmallVec<T, N> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match self {
            SmallVec::Inline(items, len) => &items[..*len],
            SmallVec::Heap(heap) => heap,
        }
    }
}

impl<T: Copy + Default, const N: usize> DerefMut for SmallVec<T, N> {
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            SmallVec::Inline(items, len) => &mut items[..*len],
            SmallVec::Heap(heap) => heap,
        }
    }
}

impl<T: Copy + Default + PartialEq, const N: usize> PartialEq for SmallVec<T, N> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Copy + Default + Eq, const N: usize> Eq for SmallVec<T, N> {}

impl<T: Copy + Default, const N: usize> From<Vec<T>> for SmallVec<T, N> {
    fn from(items: Vec<T>) -> Self {
        items.into_iter().collect()
    }
}

impl<T: Copy + Default, const N: usize> FromIterator<T> for SmallVec<T, N> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut out = SmallVec::new();
        for item in iter {
            out.push(item);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::SmallVec;

    #[test]
    fn stays_inline_up_to_n_then_moves_to_the_heap_keeping_order() {
        let mut v: SmallVec<u32, 2> = SmallVec::new();
        v.push(1);
        v.push(2);
        assert!(matches!(v, SmallVec::Inline(..)));
        v.push(3);
        assert!(matches!(v, SmallVec::Heap(_)));
        assert_eq!(&*v, &[1, 2, 3]);
        v.as_vec().retain(|x| *x != 2);
        assert_eq!(&*v, &[1, 3]);
        let mut w: SmallVec<u32, 4> = vec![5, 6].into();
        w.as_vec().remove(0);
        assert_eq!(&*w, &[6]);
    }
}
