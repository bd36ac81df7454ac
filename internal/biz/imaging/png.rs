//! PNG: header dimensions and chunk-level cleaning.

use super::bytes::{be32, slice_at};
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

pub(super) fn png_clean(b: &[u8]) -> Result<Vec<u8>, ImagingError> {
    let mut out = Vec::with_capacity(b.len().min(64 << 20));
    out.extend_from_slice(PNG_SIGNATURE);
    let mut pos = PNG_SIGNATURE.len();
    let mut seen_idat = false;
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
        // An unknown critical chunk means the image cannot be rendered.
        if kind[0].is_ascii_uppercase() && !known {
            return Err(corrupt("unknown critical PNG chunk"));
        }
        if known {
            out.extend_from_slice(b.get(pos..end).unwrap_or_default());
        }
        seen_idat |= &kind == b"IDAT";
        if &kind == b"IEND" {
            if !seen_idat {
                return Err(corrupt("PNG has no image data"));
            }
            return Ok(out);
        }
        pos = end;
    }
}
