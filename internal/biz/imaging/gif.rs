//! GIF: screen size and block-level cleaning.

use super::bytes::{le16, slice_at};
use super::{ImagingError, check_pixels, corrupt};

pub(super) fn gif_dimensions(b: &[u8]) -> Result<(u32, u32), ImagingError> {
    let width = le16(b, 6).ok_or_else(|| corrupt("truncated GIF header"))?;
    let height = le16(b, 8).ok_or_else(|| corrupt("truncated GIF header"))?;
    if width == 0 || height == 0 {
        return Err(corrupt("zero GIF screen size"));
    }
    Ok((u32::from(width), u32::from(height)))
}

fn color_table_len(packed: u8) -> usize {
    if packed & 0x80 == 0 {
        0
    } else {
        3 << ((packed & 0x07) + 1)
    }
}

/// Index just past the data sub-blocks starting at `pos`.
fn gif_skip_sub_blocks(b: &[u8], mut pos: usize) -> Result<usize, ImagingError> {
    loop {
        let n = *b
            .get(pos)
            .ok_or_else(|| corrupt("truncated GIF data block"))?;
        pos += 1;
        if n == 0 {
            return Ok(pos);
        }
        pos += usize::from(n);
        if pos > b.len() {
            return Err(corrupt("truncated GIF data block"));
        }
    }
}

pub(super) fn gif_clean(b: &[u8], max_pixels: u64) -> Result<Vec<u8>, ImagingError> {
    const HEADER: usize = 13;
    let packed = *b.get(10).ok_or_else(|| corrupt("truncated GIF header"))?;
    let mut pos = HEADER + color_table_len(packed);
    let mut out = Vec::with_capacity(b.len().min(64 << 20));
    out.extend_from_slice(
        b.get(..pos)
            .ok_or_else(|| corrupt("truncated colour table"))?,
    );
    let mut frames = 0usize;
    loop {
        match b.get(pos) {
            Some(0x3B) => break,
            // A missing trailer at a block boundary is common and harmless.
            None if frames > 0 => break,
            None => return Err(corrupt("GIF has no image")),
            Some(0x2C) => {
                let bad = || corrupt("truncated GIF image descriptor");
                let width = le16(b, pos + 5).ok_or_else(bad)?;
                let height = le16(b, pos + 7).ok_or_else(bad)?;
                // Frames are decoded at their own size, so each is bounded too.
                check_pixels(u32::from(width), u32::from(height), max_pixels)?;
                let packed = *b.get(pos + 9).ok_or_else(bad)?;
                let data = pos + 10 + color_table_len(packed) + 1;
                let end = gif_skip_sub_blocks(b, data)?;
                out.extend_from_slice(b.get(pos..end).unwrap_or_default());
                frames += 1;
                pos = end;
            }
            Some(0x21) => {
                let label = *b
                    .get(pos + 1)
                    .ok_or_else(|| corrupt("truncated GIF extension"))?;
                let end = gif_skip_sub_blocks(b, pos + 2)?;
                let keep = match label {
                    // Graphic control (timing, transparency) and plain text are rendering.
                    0xF9 | 0x01 => true,
                    // Application extensions: only the looping ones.
                    0xFF => matches!(
                        slice_at(b, pos + 2, 12),
                        Some(b"\x0bNETSCAPE2.0" | b"\x0bANIMEXTS1.0")
                    ),
                    // Comments and unknown extensions.
                    _ => false,
                };
                if keep {
                    out.extend_from_slice(b.get(pos..end).unwrap_or_default());
                }
                pos = end;
            }
            // Garbage after a whole frame: browsers show the frames before it.
            Some(_) if frames > 0 => break,
            Some(_) => return Err(corrupt("unknown GIF block")),
        }
    }
    out.push(0x3B);
    Ok(out)
}
