//! WebP: header dimensions and RIFF chunk cleaning.
//!
//! The `EXIF` chunk is dropped with the rest of the metadata, but its
//! orientation is read first: the caller turns the pixels upright, since
//! browsers do not all apply a WebP's EXIF orientation. Turned lossy pixels
//! with no alpha are stored as a JPEG rendition (see [`super::process`]).

use super::bytes::{le16, le24, le32, slice_at};
use super::exif::{EXIF_HEADER, exif_orientation};
use super::{ImagingError, corrupt};

pub(super) const VP8X_FLAG_EXIF: u8 = 0x08;
pub(super) const VP8X_FLAG_XMP: u8 = 0x04;

pub(super) fn webp_dimensions(b: &[u8]) -> Result<(u32, u32), ImagingError> {
    let bad = || corrupt("missing or malformed WebP header");
    let payload = 20;
    let (width, height) = match slice_at(b, 12, 4).ok_or_else(bad)? {
        b"VP8X" => (
            le24(b, payload + 4).ok_or_else(bad)? + 1,
            le24(b, payload + 7).ok_or_else(bad)? + 1,
        ),
        b"VP8 " => {
            if slice_at(b, payload + 3, 3) != Some(&[0x9D, 0x01, 0x2A][..]) {
                return Err(bad());
            }
            (
                u32::from(le16(b, payload + 6).ok_or_else(bad)? & 0x3FFF),
                u32::from(le16(b, payload + 8).ok_or_else(bad)? & 0x3FFF),
            )
        }
        b"VP8L" => {
            if b.get(payload) != Some(&0x2F) {
                return Err(bad());
            }
            let bits = le32(b, payload + 1).ok_or_else(bad)?;
            ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        }
        _ => return Err(bad()),
    };
    if width == 0 || height == 0 {
        return Err(bad());
    }
    Ok((width, height))
}

/// The cleaned file and what the dropped chunks said about its display.
pub(super) struct CleanWebp {
    pub(super) bytes: Vec<u8>,
    /// From the `EXIF` chunk, 1 when absent.
    pub(super) orientation: u16,
    /// `ANIM`: the frames are left as they are.
    pub(super) animated: bool,
    /// Lossy (`VP8 `) pixels with no alpha (`ALPH`): a JPEG holds them as
    /// well as a WebP does, at a fraction of a lossless re-encoding's size.
    pub(super) lossy_opaque: bool,
}

pub(super) fn webp_clean(b: &[u8]) -> Result<CleanWebp, ImagingError> {
    let mut orientation = None;
    let mut animated = false;
    let (mut lossy, mut alpha) = (false, false);
    let riff_size = le32(b, 4).ok_or_else(|| corrupt("truncated RIFF header"))?;
    let total = usize::try_from(riff_size)
        .ok()
        .and_then(|s| s.checked_add(8))
        .filter(|&t| t <= b.len())
        .ok_or_else(|| corrupt("RIFF size runs past the end of the file"))?;
    let mut out = Vec::with_capacity(total.min(64 << 20));
    out.extend_from_slice(b"RIFF\0\0\0\0WEBP");
    let mut pos = 12;
    while pos < total {
        let kind = slice_at(b, pos, 4).ok_or_else(|| corrupt("truncated WebP chunk header"))?;
        let size = le32(b, pos + 4).ok_or_else(|| corrupt("truncated WebP chunk header"))?;
        let data_end = usize::try_from(size)
            .ok()
            .and_then(|s| (pos + 8).checked_add(s))
            .filter(|&e| e <= total)
            .ok_or_else(|| corrupt("WebP chunk runs past the end of the file"))?;
        let data = b.get(pos + 8..data_end).unwrap_or_default();
        if kind == b"EXIF" && orientation.is_none() {
            // Some writers keep the JPEG APP1 prefix before the TIFF header.
            orientation = exif_orientation(data.strip_prefix(EXIF_HEADER).unwrap_or(data));
        }
        animated |= kind == b"ANIM";
        lossy |= kind == b"VP8 ";
        alpha |= kind == b"ALPH" || kind == b"VP8L";
        let keep = matches!(
            kind,
            b"VP8X" | b"VP8 " | b"VP8L" | b"ALPH" | b"ICCP" | b"ANIM" | b"ANMF"
        );
        if keep {
            let start = out.len();
            out.extend_from_slice(b.get(pos..data_end).unwrap_or_default());
            if kind == b"VP8X"
                && let Some(flags) = out.get_mut(start + 8)
            {
                *flags &= !(VP8X_FLAG_EXIF | VP8X_FLAG_XMP);
            }
            if size % 2 == 1 {
                out.push(0);
            }
        }
        // Chunks are padded to even length; a missing final pad byte is tolerated.
        pos = data_end + (size % 2) as usize;
    }
    let riff = u32::try_from(out.len() - 8).map_err(|_| corrupt("WebP too large"))?;
    if let Some(field) = out.get_mut(4..8) {
        field.copy_from_slice(&riff.to_le_bytes());
    }
    Ok(CleanWebp {
        bytes: out,
        orientation: orientation.unwrap_or(1),
        animated,
        lossy_opaque: lossy && !alpha,
    })
}
