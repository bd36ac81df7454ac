//! Validation and cleaning of uploaded photos.
//!
//! Every upload goes through [`process`], which turns untrusted bytes into a
//! [`CleanImage`]: a copy that is safe to store and serve, the dimensions it
//! is displayed at, and a small upright JPEG thumbnail. The module is pure: no
//! I/O, no async, no global state.
//!
//! # Format from the bytes
//!
//! The format is taken from the magic bytes ([`detect`]), never from a file
//! name or a declared content type, both of which the client controls. Only
//! JPEG, PNG, WebP, GIF and HEIC/HEIF are accepted; everything else (SVG,
//! HTML, PDF, AVIF, archives, executables) is [`ImagingError::Unsupported`].
//! HEIC/HEIF is stored as a JPEG rendition ([`heif`]), since only Safari
//! shows it; [`CleanImage::source`] then still says what came in.
//!
//! # Header first
//!
//! A few dozen bytes can claim a 30000x30000 image, and decoding it would
//! need gigabytes. The dimensions are therefore read from the container
//! header by small parsers in this module and checked against
//! [`PixelLimits::max_pixels`] before any decoder runs. The decoders still get
//! their own allocation and dimension limits as a second line of defence.
//!
//! # Lossless cleaning
//!
//! Metadata (EXIF with GPS position and device serials, XMP, IPTC, comments)
//! lives in its own segments or chunks, apart from the pixel data. The
//! cleaners walk the container structure, copy the pixel data byte for byte
//! and leave out everything else that is not needed to render the image.
//! Re-encoding would remove metadata too, but it would lose quality on every
//! upload and cost far more time. Anything after the container's end marker
//! (an appended archive, the secondary images of a multi-picture JPEG, which
//! carry EXIF of their own) is dropped as well.
//!
//! # Orientation
//!
//! Phones store the sensor's pixels and record the rotation in EXIF. As EXIF
//! is removed, a JPEG whose orientation is not 1 gets a new minimal EXIF
//! segment holding only the Orientation tag, so that it is still displayed
//! upright. [`CleanImage::width`] and [`CleanImage::height`] are the displayed
//! size, and the thumbnail is rotated in its pixels. A PNG `eXIf` or WebP
//! `EXIF` orientation other than 1 is applied to the pixels instead (an
//! orientation tag there is not honoured by every browser, and no tag is
//! kept), which are then re-encoded: losslessly in the same format for PNG
//! and for lossless WebP or WebP with alpha; as a JPEG rendition at quality
//! 95 for a lossy WebP without alpha, like a HEIC's ([`CleanImage::source`]
//! says `image/webp`). Lossy pixels re-encoded losslessly grow several times:
//! 5.4x on the 600 px fixture and 6.6x on an 8 MP iPhone 4S photo (both
//! `cwebp -q 80`), against 2.2x and 2.7x for the rendition, which differs
//! from the WebP by 1.2-1.3/255 on average. Quality 90 would be 1.6x and
//! 1.9x but differ by 1.9/255, too close to the 2/255 that a copy needing
//! no repair is held to. Animated PNG and WebP are left as their frames lie. HEIF transforms
//! (`irot`, `imir`, `clap`) are applied by the decoder; the EXIF orientation
//! of a HEIF is informative only and ignored, as libheif does.
//!
//! # Repairs
//!
//! What mainstream decoders render is accepted even when it bends the
//! format, and what is stored is well-formed: see the `jpeg` module (bytes
//! that are not a marker between segments, short APP14, restart markers out
//! of sequence), `png` (CRCs, compression methods) and `gif` (garbage after
//! a frame). Everything else is copied as it came.
//!
//! # Cut short
//!
//! A JPEG that ends early (a transfer or a copy cut off) is judged by what
//! libjpeg-turbo makes of it, checked cut by cut on real files
//! (`tests/api/photos.rs`, `scripts/jpeg_truncation.py`). libjpeg warns
//! "Premature end of JPEG file" for every one of them, so the warning alone
//! decides nothing; what does is whether every pixel is still there:
//! - **EOI missing, scan data whole**: libjpeg renders every pixel exactly as
//!   in the whole file. Accepted; the stored copy gets the EOI appended and
//!   is the whole file's copy byte for byte. Whether the data is whole is
//!   found by decoding its Huffman data to the last MCU (the DC decoder's
//!   walk): whole data never needs the zero bits fed past its end. A layout
//!   that walk does not read (12-bit, CMYK, RGB, a non-interleaved first
//!   scan) cannot be checked and is refused.
//! - **Cut inside a baseline scan**, even by one byte: the last MCUs are not
//!   in the file, libjpeg fills them grey. Refused (422): what would be
//!   stored is not the photo, and a grey band on the desktop page reads as
//!   our fault; the phone says the file is damaged and the member can send
//!   it again. The same for a progressive file cut inside its first (DC)
//!   scan, where part of the picture has no value at all.
//! - **Progressive, cut after its first scan** (EOI missing, inside a later
//!   scan, or in the tables between scans): every pixel has a value from the
//!   complete scans, as on a browser's half-loaded progressive image.
//!   Accepted; the incomplete scan is left out and an EOI appended, so that
//!   the copy decodes without a warning. A refinement scan cannot be told
//!   whole without a full progressive decode, so one that lacks only the EOI
//!   is left out too: on the fixtures this costs under 1/255 on average.
//!   This needs the complete scans to carry the DC of every component.
//! - **Cut in the headers** (before or inside the first SOS): nothing
//!   renders. Refused (422).
//!
//! # Thumbnails
//!
//! The thumbnail comes from the first frame, upright, as a JPEG carrying the
//! original's ICC profile, so that a Display P3 photo's thumbnail is not
//! shown washed out next to it. A JPEG is
//! never decoded at full size for it: when 1/8 of the image is still at
//! least the thumbnail size (any phone photo), each 8x8 block's DC
//! coefficient is the pixel, and a small decoder here reads just those,
//! skipping the rest of the entropy-coded data (baseline files, and the
//! first scan of progressive ones). Otherwise `jpeg-decoder` decodes at 1/2,
//! 1/4 or 1/8 scale through its DCT scaling. PNG, WebP and GIF have no such
//! shortcut and are decoded at full size, within the limits.
//!
//! # Containment
//!
//! The container walkers use checked arithmetic and bounds-checked access
//! only: any structural problem is [`ImagingError::Corrupt`]. Third-party
//! decoders run under `catch_unwind`, so that a bug in one of them fails the
//! upload instead of the request (this needs the default `panic = "unwind"`).

mod bytes;
mod exif;
mod gif;
mod heif;
mod jpeg;
mod jpeg_dc;
mod jpeg_huffman;
mod png;
mod thumbnail;
mod webp;

#[doc(hidden)]
pub mod testdata;

#[cfg(test)]
mod heif_tests;
#[cfg(test)]
mod lenient_tests;
#[cfg(test)]
mod tests;

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};

use image::{DynamicImage, ImageDecoder, ImageEncoder, ImageReader};

use gif::{gif_clean, gif_dimensions};
use heif::{heif_brand, process_heif};
use jpeg::{CleanJpeg, decode_jpeg_scaled, jpeg_clean, jpeg_header, jpeg_icc};
use jpeg_dc::{decode_jpeg_dc, decode_jpeg_dc_checked};
use png::{PNG_SIGNATURE, png_clean, png_dimensions};
use thumbnail::{make_thumbnail, thumbnail_dimensions};
use webp::{webp_clean, webp_dimensions};

/// An accepted image format. HEIC and HEIF come in but are never stored:
/// their rendition is a JPEG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Jpeg,
    Png,
    Webp,
    Gif,
    /// HEIF with HEVC-coded images (an `ftyp` HEVC brand such as `heic`).
    Heic,
    /// HEIF by its structural brands only (`mif1`, `msf1`).
    Heif,
}

impl ImageFormat {
    /// The MIME type: of the stored copy, or of the upload for HEIC/HEIF.
    pub fn mime(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Png => "image/png",
            ImageFormat::Webp => "image/webp",
            ImageFormat::Gif => "image/gif",
            ImageFormat::Heic => "image/heic",
            ImageFormat::Heif => "image/heif",
        }
    }

    fn codec(self) -> Option<image::ImageFormat> {
        match self {
            ImageFormat::Jpeg => Some(image::ImageFormat::Jpeg),
            ImageFormat::Png => Some(image::ImageFormat::Png),
            ImageFormat::Webp => Some(image::ImageFormat::WebP),
            ImageFormat::Gif => Some(image::ImageFormat::Gif),
            ImageFormat::Heic | ImageFormat::Heif => None,
        }
    }
}

/// Bounds applied to every upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelLimits {
    /// Largest accepted `width * height`, checked before decoding.
    pub max_pixels: u64,
    /// Longest side of the thumbnail; smaller images are not upscaled.
    pub thumbnail_size: u32,
}

impl Default for PixelLimits {
    /// 50 megapixels admits the 48 MP sensors of current phones.
    fn default() -> Self {
        PixelLimits {
            max_pixels: 50_000_000,
            thumbnail_size: 320,
        }
    }
}

/// The result of [`process`]: what to store and what to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanImage {
    /// Format of [`CleanImage::bytes`]: JPEG, PNG, WebP or GIF.
    pub format: ImageFormat,
    /// Format of the upload; differs from `format` only for HEIC/HEIF.
    pub source: ImageFormat,
    /// Width as displayed, after the EXIF orientation.
    pub width: u32,
    /// Height as displayed, after the EXIF orientation.
    pub height: u32,
    /// EXIF orientation (1..=8) kept in [`CleanImage::bytes`]; 1 when none.
    pub orientation: u16,
    /// The cleaned copy to store.
    pub bytes: Vec<u8>,
    /// Upright JPEG thumbnail of the first frame.
    pub thumbnail: Vec<u8>,
    pub thumbnail_width: u32,
    pub thumbnail_height: u32,
}

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ImagingError {
    /// Not JPEG, PNG, WebP, GIF or HEIC/HEIF by its magic bytes.
    #[error("unsupported image type")]
    Unsupported,
    /// The header claims more pixels than [`PixelLimits::max_pixels`].
    #[error("image is {width}x{height} pixels, above the limit of {max} pixels")]
    TooManyPixels { width: u32, height: u32, max: u64 },
    /// Truncated, malformed or undecodable.
    #[error("image could not be decoded: {0}")]
    Corrupt(String),
}

fn corrupt(msg: impl Into<String>) -> ImagingError {
    ImagingError::Corrupt(msg.into())
}

/// Identifies the format from the magic bytes alone.
pub fn detect(bytes: &[u8]) -> Option<ImageFormat> {
    // libjpeg needs only SOI first; it skips stray bytes before the next marker.
    if bytes.starts_with(&[0xFF, 0xD8]) && bytes.len() > 2 {
        Some(ImageFormat::Jpeg)
    } else if bytes.starts_with(PNG_SIGNATURE) {
        Some(ImageFormat::Png)
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some(ImageFormat::Gif)
    } else if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(&b"WEBP"[..]) {
        Some(ImageFormat::Webp)
    } else {
        heif_brand(bytes)
    }
}

/// Validates an upload and produces the copy to store plus a thumbnail.
///
/// Steps, in order: detect the format, read the dimensions from the header
/// and enforce [`PixelLimits::max_pixels`], strip metadata losslessly, decode the
/// first frame (shrunk on load for JPEG) and encode the thumbnail.
pub fn process(bytes: &[u8], limits: &PixelLimits) -> Result<CleanImage, ImagingError> {
    process_with(bytes, limits, DcDecoder::On)
}

/// Whether a JPEG thumbnail may come from the DC-only decoder ([`jpeg_dc`]).
/// Only the benchmarks switch it off, to measure what it saves.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DcDecoder {
    On,
    Off,
}

/// [`process`] with the DC-only decoder switched on or off; for benchmarks.
#[doc(hidden)]
pub fn process_with(
    bytes: &[u8],
    limits: &PixelLimits,
    dc: DcDecoder,
) -> Result<CleanImage, ImagingError> {
    let format = detect(bytes).ok_or(ImagingError::Unsupported)?;
    match format {
        ImageFormat::Jpeg => process_jpeg(bytes, limits, dc),
        ImageFormat::Png => {
            let (width, height) = png_dimensions(bytes)?;
            check_pixels(width, height, limits.max_pixels)?;
            let cleaned = png_clean(bytes)?;
            let turn = if cleaned.animated {
                1
            } else {
                cleaned.orientation
            };
            finish_with_image_crate(format, cleaned.bytes, (width, height), turn, limits)
        }
        ImageFormat::Gif => {
            let (width, height) = gif_dimensions(bytes)?;
            check_pixels(width, height, limits.max_pixels)?;
            let cleaned = gif_clean(bytes, limits.max_pixels)?;
            finish_with_image_crate(format, cleaned, (width, height), 1, limits)
        }
        ImageFormat::Webp => {
            let (width, height) = webp_dimensions(bytes)?;
            check_pixels(width, height, limits.max_pixels)?;
            let cleaned = webp_clean(bytes)?;
            let turn = if cleaned.animated {
                1
            } else {
                cleaned.orientation
            };
            if turn != 1 && cleaned.lossy_opaque {
                return upright_jpeg_rendition(
                    format,
                    &cleaned.bytes,
                    (width, height),
                    turn,
                    limits,
                );
            }
            finish_with_image_crate(format, cleaned.bytes, (width, height), turn, limits)
        }
        ImageFormat::Heic | ImageFormat::Heif => process_heif(bytes, format, limits),
    }
}

fn check_pixels(width: u32, height: u32, max: u64) -> Result<(), ImagingError> {
    if u64::from(width) * u64::from(height) > max {
        return Err(ImagingError::TooManyPixels { width, height, max });
    }
    Ok(())
}

fn process_jpeg(
    bytes: &[u8],
    limits: &PixelLimits,
    dc_decoder: DcDecoder,
) -> Result<CleanImage, ImagingError> {
    let header = jpeg_header(bytes)?;
    check_pixels(header.width, header.height, limits.max_pixels)?;
    let CleanJpeg {
        bytes: cleaned,
        unchecked_end,
    } = jpeg_clean(bytes, &header)?;
    if unchecked_end {
        // Cut short in its only (or first) scan: accepted only when the data holds every
        // MCU, so that just the end-of-image marker was missing.
        let whole = guarded(|| {
            let stored = jpeg_header(&cleaned)?;
            Ok(decode_jpeg_dc_checked(&cleaned, &stored).is_some_and(|(_, whole)| whole))
        })?;
        if !whole {
            return Err(corrupt(
                "the file is cut short: part of the picture is missing",
            ));
        }
    }
    let (tw, th) = thumbnail_dimensions(header.width, header.height, limits.thumbnail_size);
    let decoded = guarded(|| {
        // At 1/8 scale only the DC coefficients matter, which is much faster. The
        // stored copy is decoded, not the upload: its repairs (restart markers in
        // sequence) are what a viewer gets, and the stored copy gives the same thumbnail.
        let eighth = header.width.div_ceil(8) >= tw
            && header.height.div_ceil(8) >= th
            && dc_decoder == DcDecoder::On;
        let dc = || {
            let stored = jpeg_header(&cleaned).ok()?;
            decode_jpeg_dc(&cleaned, &stored)
        };
        match eighth.then(dc).flatten() {
            Some(img) => Ok(img),
            None => decode_jpeg_scaled(&cleaned, tw, th, header.width, header.height),
        }
    })?;
    let icc = jpeg_icc(bytes, &header);
    let (thumbnail, thumbnail_width, thumbnail_height) =
        make_thumbnail(decoded, tw, th, header.orientation, icc.as_deref())?;
    let (width, height) = if header.orientation >= 5 {
        (header.height, header.width)
    } else {
        (header.width, header.height)
    };
    Ok(CleanImage {
        format: ImageFormat::Jpeg,
        source: ImageFormat::Jpeg,
        width,
        height,
        orientation: header.orientation,
        bytes: cleaned,
        thumbnail,
        thumbnail_width,
        thumbnail_height,
    })
}

/// Decodes the cleaned copy in full (so that what is stored is known to
/// decode) and makes the thumbnail. An EXIF orientation other than 1 (PNG
/// `eXIf`, WebP `EXIF`) is applied to the pixels, which are re-encoded
/// losslessly in the same format: no orientation tag survives cleaning, and
/// browsers disagree on honouring one in these formats.
fn finish_with_image_crate(
    format: ImageFormat,
    cleaned: Vec<u8>,
    (width, height): (u32, u32),
    orientation: u16,
    limits: &PixelLimits,
) -> Result<CleanImage, ImagingError> {
    let (mut decoded, icc) = guarded(|| decode_with_icc(&cleaned, format, width, height))?;
    let (cleaned, width, height) = if orientation == 1 {
        (cleaned, width, height)
    } else {
        if let Some(turn) = u8::try_from(orientation)
            .ok()
            .and_then(image::metadata::Orientation::from_exif)
        {
            decoded.apply_orientation(turn);
        }
        let upright = reencode_lossless(&decoded, format, icc.as_deref())?;
        (upright, decoded.width(), decoded.height())
    };
    let (tw, th) = thumbnail_dimensions(decoded.width(), decoded.height(), limits.thumbnail_size);
    let (thumbnail, thumbnail_width, thumbnail_height) =
        make_thumbnail(decoded, tw, th, 1, icc.as_deref())?;
    Ok(CleanImage {
        format,
        source: format,
        width,
        height,
        orientation: 1,
        bytes: cleaned,
        thumbnail,
        thumbnail_width,
        thumbnail_height,
    })
}

/// Quality of a HEIC's JPEG rendition: visually lossless next to an HEVC
/// original that was itself lossy.
const RENDITION_QUALITY: u8 = 90;

/// Quality of a turned lossy WebP's JPEG rendition: it stands for a copy of
/// the WebP, so it stays within 2/255 of it on average (see "Orientation").
const WEBP_RENDITION_QUALITY: u8 = 95;

/// A lossy, opaque WebP with an EXIF orientation: turned upright and stored
/// as a JPEG rendition with its ICC profile, as a HEIC is. A lossless WebP
/// of lossy pixels is 5 to 7 times the original's size (their coding noise
/// does not compress losslessly); this JPEG is 2 to 3 times it.
fn upright_jpeg_rendition(
    source: ImageFormat,
    cleaned: &[u8],
    (width, height): (u32, u32),
    orientation: u16,
    limits: &PixelLimits,
) -> Result<CleanImage, ImagingError> {
    let (mut decoded, icc) = guarded(|| decode_with_icc(cleaned, source, width, height))?;
    if let Some(turn) = u8::try_from(orientation)
        .ok()
        .and_then(image::metadata::Orientation::from_exif)
    {
        decoded.apply_orientation(turn);
    }
    jpeg_rendition(
        source,
        decoded,
        icc.as_deref(),
        WEBP_RENDITION_QUALITY,
        limits,
    )
}

/// Upright pixels of a file that is not stored as it came (HEIC, a turned
/// lossy WebP): a JPEG of them at `quality` with their ICC profile, and its
/// thumbnail.
fn jpeg_rendition(
    source: ImageFormat,
    pixels: DynamicImage,
    icc: Option<&[u8]>,
    quality: u8,
    limits: &PixelLimits,
) -> Result<CleanImage, ImagingError> {
    let pixels = thumbnail::flatten(pixels);
    let mut rendition = Vec::new();
    thumbnail::encode_jpeg(
        &mut rendition,
        &pixels,
        quality,
        thumbnail::Chroma::Full,
        icc,
    )?;
    let (width, height) = (pixels.width(), pixels.height());
    let (tw, th) = thumbnail_dimensions(width, height, limits.thumbnail_size);
    let (thumbnail, thumbnail_width, thumbnail_height) = make_thumbnail(pixels, tw, th, 1, icc)?;
    Ok(CleanImage {
        format: ImageFormat::Jpeg,
        source,
        width,
        height,
        orientation: 1,
        bytes: rendition,
        thumbnail,
        thumbnail_width,
        thumbnail_height,
    })
}

/// Runs a third-party decoder so that a panic in it becomes `Corrupt`.
fn guarded<T>(f: impl FnOnce() -> Result<T, ImagingError>) -> Result<T, ImagingError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| Err(corrupt("decoder failure")))
}

/// PNG or lossless WebP of `img`, with the ICC profile and nothing else.
fn reencode_lossless(
    img: &DynamicImage,
    format: ImageFormat,
    icc: Option<&[u8]>,
) -> Result<Vec<u8>, ImagingError> {
    let mut out = Vec::new();
    let failed = |e: image::ImageError| corrupt(format!("re-encoding failed: {e}"));
    match format {
        ImageFormat::Png => {
            let mut encoder = image::codecs::png::PngEncoder::new(&mut out);
            if let Some(icc) = icc {
                let _ = encoder.set_icc_profile(icc.to_vec());
            }
            img.write_with_encoder(encoder).map_err(failed)?;
        }
        ImageFormat::Webp => {
            // The WebP encoder takes 8-bit samples only.
            let img = if img.color().has_alpha() {
                DynamicImage::ImageRgba8(img.to_rgba8())
            } else {
                DynamicImage::ImageRgb8(img.to_rgb8())
            };
            let mut encoder = image::codecs::webp::WebPEncoder::new_lossless(&mut out);
            if let Some(icc) = icc {
                let _ = encoder.set_icc_profile(icc.to_vec());
            }
            img.write_with_encoder(encoder).map_err(failed)?;
        }
        _ => return Err(corrupt("no lossless re-encoding for this format")),
    }
    Ok(out)
}

fn decode_with_image_crate(
    data: &[u8],
    format: ImageFormat,
    width: u32,
    height: u32,
) -> Result<DynamicImage, ImagingError> {
    decode_with_icc(data, format, width, height).map(|(img, _)| img)
}

/// Decodes in full within limits derived from the header's size, and
/// returns the embedded ICC profile too.
fn decode_with_icc(
    data: &[u8],
    format: ImageFormat,
    width: u32,
    height: u32,
) -> Result<(DynamicImage, Option<Vec<u8>>), ImagingError> {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    // 8 bytes covers 16-bit RGBA; the slack is for decoder working buffers.
    let pixels = u64::from(width) * u64::from(height);
    limits.max_alloc = Some(pixels.saturating_mul(8).saturating_add(64 << 20));
    let codec = format
        .codec()
        .ok_or_else(|| corrupt("no decoder for this format"))?;
    let mut reader = ImageReader::with_format(Cursor::new(data), codec);
    reader.limits(limits);
    let failed = |e: image::ImageError| corrupt(e.to_string());
    let mut decoder = reader.into_decoder().map_err(failed)?;
    // A profile that cannot be read is not worth refusing the image for.
    let icc = decoder
        .icc_profile()
        .ok()
        .flatten()
        .filter(|p| !p.is_empty());
    let img = DynamicImage::from_decoder(decoder).map_err(failed)?;
    Ok((img, icc))
}
