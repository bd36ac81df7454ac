//! PNG: header dimensions and chunk-level cleaning.
//!
//! What is stored must be well-formed, so every chunk's CRC is checked: an
//! ancillary chunk with a bad CRC, or one whose compression method is not
//! zlib (0), is dropped, as libpng skips it; a critical chunk with a bad CRC
//! gets its CRC rewritten, and the full decode that follows (for the
//! thumbnail) decides whether its data is sound; if not, the upload is
//! refused. The orientation of an `eXIf` chunk is read before it is dropped.

use super::bytes::{be32, slice_at};
use super::exif::exif_orientation;
use super::{ImagingError, corrupt};

pub(super) const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Chunks that affect how the pixels are rendered; everything else ancillary
/// (tEXt, zTXt, iTXt, eXIf, tIME, private chunks) is dropped.
const PNG_KEEP: [&[u8; 4]; 18] = [
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT",
    b"pHYs", b"bKGD", b"cICP", b"mDCV", b"cLLI", b"acTL", b"fcTL", b"fdAT",
];

const PNG_MAX_CHUNK: u32 = 0x7FFF_FFFF;

pub(super) fn png_dimensions(b: &[u8]) -> Result<(u32, u32), ImagingError> {
    let bad = || corrupt("missing or malformed IHDR");
    if be32(b, 8) != Some(13) || slice_at(b, 12, 4) != Some(&b"IHDR"[..]) {
        return Err(bad());
    }
    let width = be32(b, 16).ok_or_else(bad)?;
    let height = be32(b, 20).ok_or_else(bad)?;
    if width == 0 || height == 0 || width > PNG_MAX_CHUNK || height > PNG_MAX_CHUNK {
        return Err(bad());
    }
    Ok((width, height))
}

/// The cleaned file and what the dropped chunks said about its display.
pub(super) struct CleanPng {
    pub(super) bytes: Vec<u8>,
    /// From `eXIf`, 1 when absent.
    pub(super) orientation: u16,
    /// APNG: rotating the default image alone would break the animation.
    pub(super) animated: bool,
}

/// Ancillary chunks whose data starts with a keyword, a NUL and a
/// compression method byte.
fn compressed_after_keyword(kind: &[u8; 4]) -> bool {
    matches!(kind, b"iCCP" | b"zTXt")
}

fn compression_ok(data: &[u8]) -> bool {
    match data.iter().position(|&c| c == 0) {
        Some(nul) => data.get(nul + 1) == Some(&0),
        None => false,
    }
}

pub(super) fn png_clean(b: &[u8]) -> Result<CleanPng, ImagingError> {
    let mut out = Vec::with_capacity(b.len().min(64 << 20));
    out.extend_from_slice(PNG_SIGNATURE);
    let mut pos = PNG_SIGNATURE.len();
    let mut seen_idat = false;
    let mut orientation = None;
    let mut animated = false;
    loop {
        let len = be32(b, pos).ok_or_else(|| corrupt("truncated PNG: no IEND chunk"))?;
        if len > PNG_MAX_CHUNK {
            return Err(corrupt("PNG chunk length out of range"));
        }
        let kind: [u8; 4] = slice_at(b, pos + 4, 4)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| corrupt("truncated PNG chunk header"))?;
        if !kind.iter().all(u8::is_ascii_alphabetic) {
            return Err(corrupt("invalid PNG chunk type"));
        }
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| pos.checked_add(12)?.checked_add(l))
            .filter(|&end| end <= b.len())
            .ok_or_else(|| corrupt("PNG chunk runs past the end of the file"))?;
        let known = PNG_KEEP.contains(&&kind);
        let critical = kind[0].is_ascii_uppercase();
        // An unknown critical chunk means the image cannot be rendered.
        if critical && !known {
            return Err(corrupt("unknown critical PNG chunk"));
        }
        let data = b.get(pos + 8..end - 4).unwrap_or_default();
        let crc = crc32fast::hash(b.get(pos + 4..end - 4).unwrap_or_default());
        let crc_ok = be32(b, end - 4) == Some(crc);
        if &kind == b"eXIf" && crc_ok && orientation.is_none() {
            orientation = exif_orientation(data);
        }
        animated |= &kind == b"acTL" && crc_ok;
        let sound = crc_ok && (!compressed_after_keyword(&kind) || compression_ok(data));
        if known && (critical || sound) {
            out.extend_from_slice(b.get(pos..end - 4).unwrap_or_default());
            out.extend_from_slice(&crc.to_be_bytes());
        }
        seen_idat |= &kind == b"IDAT";
        if &kind == b"IEND" {
            if !seen_idat {
                return Err(corrupt("PNG has no image data"));
            }
            return Ok(CleanPng {
                bytes: out,
                orientation: orientation.unwrap_or(1),
                animated,
            });
        }
        pos = end;
    }
}
