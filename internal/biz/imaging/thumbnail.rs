//! Thumbnails: size, alpha flattening, area resampling and JPEG encoding.

use image::metadata::Orientation;
use image::{DynamicImage, GrayImage, RgbImage};

use super::{ImagingError, corrupt};

/// Visually clean at thumbnail size while staying at a few kilobytes.
const THUMBNAIL_QUALITY: u8 = 80;

/// Size with the longest side at `size` (never above the original), aspect kept.
pub(super) fn thumbnail_dimensions(width: u32, height: u32, size: u32) -> (u32, u32) {
    let (long, short) = (width.max(height), width.min(height));
    if long == 0 {
        return (1, 1);
    }
    let target = size.clamp(1, long);
    let scaled = (u64::from(short) * u64::from(target) + u64::from(long) / 2) / u64::from(long);
    let scaled = u32::try_from(scaled).unwrap_or(target).max(1);
    if width >= height {
        (target, scaled)
    } else {
        (scaled, target)
    }
}

/// Drops alpha by compositing onto white, which is how a JPEG will show it.
pub(super) fn flatten(img: DynamicImage) -> DynamicImage {
    match img {
        DynamicImage::ImageRgb8(_) | DynamicImage::ImageLuma8(_) => img,
        other if !other.color().has_alpha() => {
            if other.color().has_color() {
                DynamicImage::ImageRgb8(other.to_rgb8())
            } else {
                DynamicImage::ImageLuma8(other.to_luma8())
            }
        }
        other => {
            let rgba = other.to_rgba8();
            let mut rgb = RgbImage::new(rgba.width(), rgba.height());
            for (dst, src) in rgb.pixels_mut().zip(rgba.pixels()) {
                let a = u32::from(src.0[3]);
                for (d, &s) in dst.0.iter_mut().zip(&src.0[..3]) {
                    let v = (u32::from(s) * a + 255 * (255 - a) + 127) / 255;
                    *d = u8::try_from(v).unwrap_or(u8::MAX);
                }
            }
            DynamicImage::ImageRgb8(rgb)
        }
    }
}

/// For each output pixel, its source samples and their 16.16 fixed-point weights.
type Taps = Vec<Vec<(usize, u32)>>;

/// Source samples and 16.16 fixed-point weights for each output pixel of an
/// area-averaging (box) resample of a line of `extent` pixels to `dst`. Each
/// source sample stands for `block` pixels (the last one for what is left),
/// so a line already box-shrunk by `block` is resampled by the same geometry
/// as the full one.
fn area_taps(extent: usize, block: usize, dst: usize) -> Taps {
    let samples = extent.div_ceil(block);
    let scale = extent as f64 / dst as f64;
    let block_f = block as f64;
    (0..dst)
        .map(|i| {
            let (lo, hi) = (i as f64 * scale, (i + 1) as f64 * scale);
            let first = (lo / block_f).floor() as usize;
            let last = ((hi / block_f).ceil() as usize).clamp(first + 1, samples.max(first + 1));
            let mut taps: Vec<(usize, u32)> = (first..last)
                .map(|j| {
                    let start = j as f64 * block_f;
                    let end = (start + block_f).min(extent as f64);
                    let overlap = hi.min(end) - lo.max(start);
                    (
                        j.min(samples - 1),
                        (overlap.max(0.0) / scale * 65536.0).round() as u32,
                    )
                })
                .collect();
            // Rounding may leave the sum a little off 1.0; the largest tap absorbs it.
            let sum: u32 = taps.iter().map(|t| t.1).sum();
            if let Some(max) = taps.iter_mut().max_by_key(|t| t.1) {
                max.1 = (max.1 + 65536).saturating_sub(sum);
            }
            taps
        })
        .collect()
}

/// Area-averaging resize of 8-bit interleaved samples. Thumbnails shrink by
/// modest factors after DCT scaling, where a box filter is sharp enough and
/// several times faster than the generic filters.
pub(super) fn resize_area(
    src: &[u8],
    sw: usize,
    sh: usize,
    channels: usize,
    dw: usize,
    dh: usize,
) -> Vec<u8> {
    if sw == 0 || sh == 0 || dw == 0 || dh == 0 || channels == 0 {
        return vec![0; dw * dh * channels];
    }
    let taps = (area_taps(sw, 1, dw), area_taps(sh, 1, dh));
    resample(src, (sw, sh), channels, &taps, (dw, dh))
}

/// Applies the taps of [`area_taps`] to `src` (`sw`×`sh` samples), rows first.
fn resample(
    src: &[u8],
    (sw, sh): (usize, usize),
    channels: usize,
    (x_taps, y_taps): &(Taps, Taps),
    (dw, dh): (usize, usize),
) -> Vec<u8> {
    let mut rows = vec![0u32; dw * sh * channels];
    for (src_row, out_row) in src
        .chunks_exact(sw * channels)
        .zip(rows.chunks_exact_mut(dw * channels))
    {
        for (taps, out) in x_taps.iter().zip(out_row.chunks_exact_mut(channels)) {
            for &(j, w) in taps {
                let px = src_row
                    .get(j * channels..(j + 1) * channels)
                    .unwrap_or_default();
                for (o, &v) in out.iter_mut().zip(px) {
                    *o += u32::from(v) * w;
                }
            }
        }
    }
    let mut out = vec![0u8; dw * dh * channels];
    let mut acc = vec![0u64; dw * channels];
    for (taps, out_row) in y_taps.iter().zip(out.chunks_exact_mut(dw * channels)) {
        acc.fill(0);
        for &(j, w) in taps {
            let row = rows
                .get(j * dw * channels..(j + 1) * dw * channels)
                .unwrap_or_default();
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += u64::from(v) * u64::from(w);
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = ((a + (1 << 31)) >> 32).min(255) as u8;
        }
    }
    out
}

/// Whether an ICC profile describes the samples it would be attached to: a
/// CMYK profile on the RGB thumbnail of a CMYK JPEG, or a grey one on the RGB
/// flattening of grey with alpha, would be wrong (browsers ignore such a
/// mismatch, others misrender it), so those are left out.
pub(super) fn profile_fits(icc: &[u8], gray: bool) -> bool {
    // The data colour space signature of the profile header.
    match icc.get(16..20) {
        Some(b"RGB ") => !gray,
        Some(b"GRAY") => gray,
        _ => false,
    }
}

/// How finely a JPEG keeps colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chroma {
    /// Every pixel's colour (4:4:4): a rendition stands for the original and
    /// is compared with it, so it keeps what the decoder gave.
    Full,
    /// One colour per 2×2 pixels, box-averaged (4:2:0, `cjpeg`'s default): a
    /// thumbnail, where the eye cannot tell and the size halves.
    Half,
}

/// Encodes 8-bit grey or RGB as a baseline JPEG, with the ICC profile if it
/// fits the samples.
pub(super) fn encode_jpeg(
    out: &mut Vec<u8>,
    img: &DynamicImage,
    quality: u8,
    chroma: Chroma,
    icc: Option<&[u8]>,
) -> Result<(), ImagingError> {
    let gray = matches!(img, DynamicImage::ImageLuma8(_));
    let failed = |e: jpeg_encoder::EncodingError| corrupt(format!("JPEG encoding failed: {e}"));
    let side = |v: u32| u16::try_from(v).map_err(|_| corrupt("image too wide for a JPEG"));
    let (width, height) = (side(img.width())?, side(img.height())?);
    let mut encoder = jpeg_encoder::Encoder::new(out, quality);
    encoder.set_sampling_factor(match chroma {
        Chroma::Full => jpeg_encoder::SamplingFactor::F_1_1,
        Chroma::Half => jpeg_encoder::SamplingFactor::F_2_2,
    });
    encoder.set_chroma_subsampling_method(jpeg_encoder::ChromaSubsamplingMethod::Average);
    if let Some(icc) = icc.filter(|icc| profile_fits(icc, gray)) {
        // A profile the encoder cannot carry is left out rather than failing the upload.
        let _ = encoder.add_icc_profile(icc);
    }
    let rgb;
    let (raw, color) = match img {
        DynamicImage::ImageLuma8(gray) => (gray.as_raw(), jpeg_encoder::ColorType::Luma),
        DynamicImage::ImageRgb8(rgb8) => (rgb8.as_raw(), jpeg_encoder::ColorType::Rgb),
        other => {
            rgb = other.to_rgb8();
            (rgb.as_raw(), jpeg_encoder::ColorType::Rgb)
        }
    };
    encoder.encode(raw, width, height, color).map_err(failed)
}

/// The largest whole factor a picture of `src` samples can be box-shrunk by
/// before the area resample to `dst`, leaving that resample at least two
/// source samples per output sample.
fn pre_shrink_factor(src: usize, dst: usize) -> usize {
    (src / dst.max(1) / 2).max(1)
}

/// Box average of each `k`×`k` block (the last row and column of blocks may
/// be narrower): a cheap first step for a large shrink, after which the area
/// resample has little left to do.
fn box_shrink(
    src: &[u8],
    sw: usize,
    sh: usize,
    channels: usize,
    k: usize,
) -> (Vec<u8>, usize, usize) {
    let (dw, dh) = (sw.div_ceil(k), sh.div_ceil(k));
    let mut out = vec![0u8; dw * dh * channels];
    // Each band of `k` rows is summed column by column first (a plain slice add, which the
    // compiler vectorises), then each block of `k` columns of that sum once.
    let mut columns = vec![0u32; sw * channels];
    for (band, out_row) in src
        .chunks(sw * channels * k)
        .zip(out.chunks_exact_mut(dw * channels))
    {
        columns.fill(0);
        let rows = band.len() / (sw * channels);
        for row in band.chunks_exact(sw * channels) {
            for (c, &v) in columns.iter_mut().zip(row) {
                *c += u32::from(v);
            }
        }
        for (x, (out_px, block)) in out_row
            .chunks_exact_mut(channels)
            .zip(columns.chunks(k * channels))
            .enumerate()
        {
            let cols = k.min(sw - x * k);
            let n = u32::try_from(cols * rows).unwrap_or(u32::MAX).max(1);
            for (c, o) in out_px.iter_mut().enumerate() {
                let sum: u32 = block.iter().skip(c).step_by(channels).sum();
                *o = u8::try_from((sum + n / 2) / n).unwrap_or(u8::MAX);
            }
        }
    }
    (out, dw, dh)
}

/// Area resample of 8-bit interleaved samples to `dw`×`dh`, shrinking by a
/// whole factor first when the picture is many times the target.
pub(super) fn shrink(
    src: &[u8],
    sw: usize,
    sh: usize,
    channels: usize,
    dw: usize,
    dh: usize,
) -> Vec<u8> {
    let k = pre_shrink_factor(sw, dw).min(pre_shrink_factor(sh, dh));
    if k < 2 || dw == 0 || dh == 0 || channels == 0 {
        return resize_area(src, sw, sh, channels, dw, dh);
    }
    let (small, w, h) = box_shrink(src, sw, sh, channels, k);
    let taps = (area_taps(sw, k, dw), area_taps(sh, k, dh));
    resample(&small, (w, h), channels, &taps, (dw, dh))
}

/// Resizes to `tw`x`th` (stored orientation), rotates upright, encodes JPEG.
/// The ICC profile of the original goes along, so that a wide-gamut photo's
/// thumbnail shows the same colours as the photo.
pub(super) fn make_thumbnail(
    img: DynamicImage,
    tw: u32,
    th: u32,
    orientation: u16,
    icc: Option<&[u8]>,
) -> Result<(Vec<u8>, u32, u32), ImagingError> {
    let (w, h) = (img.width(), img.height());
    let size = |v: u32| usize::try_from(v).map_err(|_| corrupt("image too large"));
    let (sw, sh, dw, dh) = (size(w)?, size(h)?, size(tw)?, size(th)?);
    let resized = |raw: &[u8], channels| shrink(raw, sw, sh, channels, dw, dh);
    let mut img = match flatten(img) {
        img if (w, h) == (tw, th) => img,
        DynamicImage::ImageLuma8(gray) => GrayImage::from_raw(tw, th, resized(gray.as_raw(), 1))
            .map(DynamicImage::ImageLuma8)
            .ok_or_else(|| corrupt("resize failed"))?,
        DynamicImage::ImageRgb8(rgb) => RgbImage::from_raw(tw, th, resized(rgb.as_raw(), 3))
            .map(DynamicImage::ImageRgb8)
            .ok_or_else(|| corrupt("resize failed"))?,
        other => RgbImage::from_raw(tw, th, resized(other.to_rgb8().as_raw(), 3))
            .map(DynamicImage::ImageRgb8)
            .ok_or_else(|| corrupt("resize failed"))?,
    };
    let orientation = u8::try_from(orientation)
        .ok()
        .and_then(Orientation::from_exif)
        .unwrap_or(Orientation::NoTransforms);
    img.apply_orientation(orientation);
    let mut out = Vec::new();
    encode_jpeg(&mut out, &img, THUMBNAIL_QUALITY, Chroma::Half, icc)?;
    Ok((out, img.width(), img.height()))
}
