//! JPEG at 1/8 scale from the DC coefficients.

use image::{DynamicImage, GrayImage, RgbImage};

use super::bytes::{be16, slice_at};
use super::jpeg::{APP14, JpegHeader, SOS, is_sof};
use super::jpeg_huffman::{BitReader, Huffman};

struct DcComponent {
    id: u8,
    h: usize,
    v: usize,
    quant: usize,
    dc_table: usize,
    ac_table: usize,
}

/// Decodes a JPEG at 1/8 scale from its DC coefficients alone.
///
/// At 1/8 scale an 8x8 block becomes one pixel, its DC value, so there is no
/// inverse DCT and the AC coefficients only have to be skipped: what is left
/// is Huffman decoding, done here with one table lookup per coefficient (or
/// two). The result matches what a DCT-scaling decoder gives at 1/8. For a
/// progressive JPEG only its first scan is read, when that scan carries the
/// DC of all components, as encoders usually arrange. Returns `None` for
/// anything not covered (12-bit, CMYK or RGB coding, non-interleaved scans,
/// damaged data); the caller then uses the general decoder, which also
/// decides whether the file is corrupt.
pub(super) fn decode_jpeg_dc(b: &[u8], header: &JpegHeader) -> Option<DynamicImage> {
    decode_jpeg_dc_checked(b, header).map(|(image, _)| image)
}

/// [`decode_jpeg_dc`], and whether the scan's data held every MCU: false
/// when the decoder had to read the zeros fed past the end of the data
/// (libjpeg's "premature end of data segment", where it fills grey).
pub(super) fn decode_jpeg_dc_checked(
    b: &[u8],
    header: &JpegHeader,
) -> Option<(DynamicImage, bool)> {
    let mut quant = [None::<i32>; 4];
    let mut dc_tables: [Option<Huffman>; 4] = [None, None, None, None];
    let mut ac_tables: [Option<Huffman>; 4] = [None, None, None, None];
    let mut components = Vec::new();
    let mut restart_interval = 0usize;
    let mut adobe_transform = None;
    let mut progressive = false;
    let mut scan = None;

    for seg in &header.kept {
        let p = seg.bytes(b);
        match seg.marker {
            0xDB => {
                let mut i = 0;
                while let Some(&pq_tq) = p.get(i) {
                    let first = match pq_tq >> 4 {
                        0 => i32::from(*p.get(i + 1)?),
                        1 => i32::from(be16(p, i + 1)?),
                        _ => return None,
                    };
                    *quant.get_mut(usize::from(pq_tq & 15))? = Some(first);
                    i += 1 + 64 * (1 + usize::from(pq_tq >> 4));
                }
            }
            0xC4 => {
                let mut i = 0;
                while let Some(&tc_th) = p.get(i) {
                    let counts = slice_at(p, i + 1, 16)?;
                    let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
                    let symbols = slice_at(p, i + 17, total)?;
                    let table = Some(Huffman::new(counts, symbols)?);
                    let slot = usize::from(tc_th & 15);
                    match tc_th >> 4 {
                        0 => *dc_tables.get_mut(slot)? = table,
                        1 => *ac_tables.get_mut(slot)? = table,
                        _ => return None,
                    }
                    i += 17 + total;
                }
            }
            0xC0..=0xC2 => {
                if p.first() != Some(&8) {
                    return None;
                }
                progressive = seg.marker == 0xC2;
                for c in p.get(6..)?.chunks_exact(3) {
                    let (h, v) = (usize::from(c[1] >> 4), usize::from(c[1] & 15));
                    if !(1..=4).contains(&h) || !(1..=4).contains(&v) {
                        return None;
                    }
                    components.push(DcComponent {
                        id: c[0],
                        h,
                        v,
                        quant: usize::from(c[2]),
                        dc_table: 0,
                        ac_table: 0,
                    });
                }
            }
            0xDD => restart_interval = usize::from(be16(p, 0)?),
            APP14 => adobe_transform = p.get(11).copied(),
            SOS => scan = Some(p),
            m if is_sof(m) => return None,
            _ => {}
        }
    }

    let scan = scan?;
    let count = usize::from(*scan.first()?);
    if count != components.len() || !matches!(count, 1 | 3) {
        return None;
    }
    // Spectral selection and successive approximation.
    let (spectral_end, approximation) = match slice_at(scan, 1 + 2 * count, 3)? {
        [0, 63, 0] if !progressive => (63, 0),
        &[0, 0, a] if progressive && a >> 4 == 0 && a <= 13 => (0, a),
        _ => return None,
    };
    let dc_shift = u32::from(approximation);
    let is_rgb =
        count == 3 && (adobe_transform == Some(0) || components.iter().map(|c| c.id).eq(*b"RGB"));
    if is_rgb {
        return None;
    }
    // Scan order decides block order; frame order decides colour channels.
    let mut order = Vec::with_capacity(count);
    for pair in scan.get(1..1 + 2 * count)?.chunks_exact(2) {
        let index = components.iter().position(|c| c.id == pair[0])?;
        if order.contains(&index) {
            return None;
        }
        let component = components.get_mut(index)?;
        component.dc_table = usize::from(pair[1] >> 4);
        component.ac_table = usize::from(pair[1] & 15);
        order.push(index);
    }
    if count == 1 {
        // A single-component scan is not interleaved: one block per MCU.
        let c = components.first_mut()?;
        c.h = 1;
        c.v = 1;
    }
    let h_max = components.iter().map(|c| c.h).max()?;
    let v_max = components.iter().map(|c| c.v).max()?;
    let width = usize::try_from(header.width).ok()?;
    let height = usize::try_from(header.height).ok()?;
    let mcus_x = width.div_ceil(8 * h_max);
    let mcus_y = height.div_ceil(8 * v_max);

    struct Plane<'t> {
        dc: &'t Huffman,
        /// None when the scan holds no AC coefficients.
        ac: Option<&'t Huffman>,
        quant: i32,
        h: usize,
        v: usize,
        stride: usize,
        samples: Vec<u8>,
        predictor: i32,
    }
    let mut planes = Vec::with_capacity(count);
    for c in &components {
        let stride = mcus_x * c.h;
        planes.push(Plane {
            dc: dc_tables.get(c.dc_table)?.as_ref()?,
            ac: if spectral_end == 0 {
                None
            } else {
                Some(ac_tables.get(c.ac_table)?.as_ref()?)
            },
            quant: (*quant.get(c.quant)?)?,
            h: c.h,
            v: c.v,
            stride,
            samples: vec![0; stride.checked_mul(mcus_y * c.v)?],
            predictor: 0,
        });
    }

    // The blocks of one MCU in scan order: each one's plane and place in the MCU, and its
    // tables.
    let mut blocks = Vec::new();
    let mut tables = Vec::new();
    for &index in &order {
        let plane = planes.get(index)?;
        for by in 0..plane.v {
            for bx in 0..plane.h {
                blocks.push((index, bx, by));
                tables.push((plane.dc, plane.ac));
            }
        }
    }
    let mut diffs = vec![0i32; blocks.len()];

    let mut reader = BitReader::new(b, header.scan_start);
    let mut mcu = 0usize;
    let mut next_restart = 0u8;
    for mcu_y in 0..mcus_y {
        for mcu_x in 0..mcus_x {
            if restart_interval > 0 && mcu > 0 && mcu.is_multiple_of(restart_interval) {
                reader.restart(next_restart)?;
                next_restart = (next_restart + 1) & 7;
                for plane in &mut planes {
                    plane.predictor = 0;
                }
            }
            reader.dc_of_mcu(&tables, &mut diffs)?;
            for (&(index, bx, by), &diff) in blocks.iter().zip(&diffs) {
                let plane = planes.get_mut(index)?;
                plane.predictor = plane.predictor.wrapping_add(diff);
                let dc = plane.predictor.wrapping_shl(dc_shift);
                let value = (dc.wrapping_mul(plane.quant).wrapping_add(1024)) >> 3;
                let at = (mcu_y * plane.v + by) * plane.stride + mcu_x * plane.h + bx;
                *plane.samples.get_mut(at)? = value.clamp(0, 255) as u8;
            }
            mcu += 1;
        }
        // Far past the end of the data means a truncated or broken scan.
        if reader.padding > 64 {
            return None;
        }
    }

    let whole = !reader.overran();

    let out_w = width.div_ceil(8);
    let out_h = height.div_ceil(8);
    let (w32, h32) = (u32::try_from(out_w).ok()?, u32::try_from(out_h).ok()?);
    // Subsampled planes are repeated over h_max/h columns and v_max/v rows.
    let row = |plane: &Plane<'_>, y: usize| -> Vec<u8> {
        let start = (y * plane.v / v_max) * plane.stride;
        let line = plane
            .samples
            .get(start..start + plane.stride)
            .unwrap_or_default();
        (0..out_w)
            .map(|x| line.get(x * plane.h / h_max).copied().unwrap_or(0))
            .collect()
    };
    if let [luma] = planes.as_slice() {
        let mut gray = Vec::with_capacity(out_w * out_h);
        for y in 0..out_h {
            gray.extend(row(luma, y));
        }
        return GrayImage::from_raw(w32, h32, gray).map(|g| (DynamicImage::ImageLuma8(g), whole));
    }
    let [y_plane, cb_plane, cr_plane] = planes.as_slice() else {
        return None;
    };
    let mut rgb = Vec::with_capacity(out_w * out_h * 3);
    for y in 0..out_h {
        let (luma, cb, cr) = (row(y_plane, y), row(cb_plane, y), row(cr_plane, y));
        for ((&l, &b), &r) in luma.iter().zip(&cb).zip(&cr) {
            rgb.extend(ycbcr_to_rgb(l, b, r));
        }
    }
    RgbImage::from_raw(w32, h32, rgb).map(|rgb| (DynamicImage::ImageRgb8(rgb), whole))
}

/// JFIF YCbCr to RGB in 16.16 fixed point.
pub(super) fn ycbcr_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let y = (i32::from(y) << 16) + (1 << 15);
    let cb = i32::from(cb) - 128;
    let cr = i32::from(cr) - 128;
    let clamp = |v: i32| (v >> 16).clamp(0, 255) as u8;
    [
        clamp(y + 91_881 * cr),
        clamp(y - 22_554 * cb - 46_802 * cr),
        clamp(y + 116_130 * cb),
    ]
}
