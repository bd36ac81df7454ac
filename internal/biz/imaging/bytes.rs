//! Bounds-checked reads of big- and little-endian integers.

pub(super) fn slice_at(b: &[u8], at: usize, len: usize) -> Option<&[u8]> {
    b.get(at..at.checked_add(len)?)
}

pub(super) fn be16(b: &[u8], at: usize) -> Option<u16> {
    slice_at(b, at, 2)?.try_into().ok().map(u16::from_be_bytes)
}

pub(super) fn be32(b: &[u8], at: usize) -> Option<u32> {
    slice_at(b, at, 4)?.try_into().ok().map(u32::from_be_bytes)
}

pub(super) fn le16(b: &[u8], at: usize) -> Option<u16> {
    slice_at(b, at, 2)?.try_into().ok().map(u16::from_le_bytes)
}

pub(super) fn le32(b: &[u8], at: usize) -> Option<u32> {
    slice_at(b, at, 4)?.try_into().ok().map(u32::from_le_bytes)
}

pub(super) fn le24(b: &[u8], at: usize) -> Option<u32> {
    let s = slice_at(b, at, 3)?;
    Some(
        s.iter()
            .rev()
            .fold(0u32, |acc, &x| (acc << 8) | u32::from(x)),
    )
}
