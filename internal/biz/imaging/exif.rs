//! EXIF: reading the orientation and writing a minimal orientation-only segment.

use super::bytes::{be16, be32, le16, le32};

pub(super) const EXIF_HEADER: &[u8] = b"Exif\0\0";
pub(super) const TAG_ORIENTATION: u16 = 0x0112;

/// Read-only view of a TIFF structure, as embedded in EXIF.
pub(super) struct Tiff<'a> {
    data: &'a [u8],
    little_endian: bool,
}

/// One IFD entry; `value_at` is the offset of its 4-byte value field.
#[derive(Debug, Clone, Copy)]
pub(super) struct IfdEntry {
    pub(super) tag: u16,
    kind: u16,
    count: u32,
    pub(super) value_at: usize,
}

impl<'a> Tiff<'a> {
    pub(super) fn new(data: &'a [u8]) -> Option<Self> {
        let little_endian = match data.get(0..2)? {
            b"II" => true,
            b"MM" => false,
            _ => return None,
        };
        let tiff = Tiff {
            data,
            little_endian,
        };
        (tiff.u16(2)? == 42).then_some(tiff)
    }

    pub(super) fn u16(&self, at: usize) -> Option<u16> {
        if self.little_endian {
            le16(self.data, at)
        } else {
            be16(self.data, at)
        }
    }

    fn u32(&self, at: usize) -> Option<u32> {
        if self.little_endian {
            le32(self.data, at)
        } else {
            be32(self.data, at)
        }
    }

    pub(super) fn ifd0(&self) -> Option<usize> {
        usize::try_from(self.u32(4)?).ok()
    }

    /// Entries of the IFD at `ifd`, stopping early at the end of the data.
    pub(super) fn entries(&self, ifd: usize) -> impl Iterator<Item = IfdEntry> + '_ {
        let count = self.u16(ifd).unwrap_or(0);
        (0..usize::from(count)).map_while(move |i| {
            let at = ifd.checked_add(2)?.checked_add(i.checked_mul(12)?)?;
            Some(IfdEntry {
                tag: self.u16(at)?,
                kind: self.u16(at.checked_add(2)?)?,
                count: self.u32(at.checked_add(4)?)?,
                value_at: at.checked_add(8)?,
            })
        })
    }

    #[cfg(test)]
    pub(super) fn next_ifd(&self, ifd: usize) -> Option<u32> {
        let count = usize::from(self.u16(ifd)?);
        self.u32(ifd.checked_add(2)?.checked_add(count.checked_mul(12)?)?)
    }
}

/// The Orientation tag of IFD0, if present and valid.
pub(super) fn exif_orientation(tiff: &[u8]) -> Option<u16> {
    let tiff = Tiff::new(tiff)?;
    let entry = tiff
        .entries(tiff.ifd0()?)
        .find(|e| e.tag == TAG_ORIENTATION)?;
    if entry.count == 0 {
        return None;
    }
    // Some writers use LONG instead of SHORT; the value is re-emitted as SHORT.
    let value = match entry.kind {
        3 => tiff.u16(entry.value_at)?,
        4 => u16::try_from(tiff.u32(entry.value_at)?).ok()?,
        _ => return None,
    };
    (1..=8).contains(&value).then_some(value)
}

/// APP1 payload holding nothing but the Orientation tag.
pub(super) fn orientation_exif(orientation: u16) -> Vec<u8> {
    let mut v = Vec::with_capacity(32);
    v.extend_from_slice(EXIF_HEADER);
    v.extend_from_slice(b"MM\0\x2a");
    v.extend_from_slice(&8u32.to_be_bytes());
    v.extend_from_slice(&1u16.to_be_bytes());
    v.extend_from_slice(&TAG_ORIENTATION.to_be_bytes());
    v.extend_from_slice(&3u16.to_be_bytes());
    v.extend_from_slice(&1u32.to_be_bytes());
    v.extend_from_slice(&orientation.to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    // No IFD1: nothing, not even a thumbnail, follows.
    v.extend_from_slice(&0u32.to_be_bytes());
    v
}
