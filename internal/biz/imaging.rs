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
//! JPEG, PNG, WebP and GIF are accepted; everything else (SVG, HTML, PDF,
//! HEIC, archives, executables) is [`ImagingError::Unsupported`].
//!
//! # Header first
//!
//! A few dozen bytes can claim a 30000x30000 image, and decoding it would
//! need gigabytes. The dimensions are therefore read from the container
//! header by small parsers in this module and checked against
//! [`Limits::max_pixels`] before any decoder runs. The decoders still get
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
//! size, and the thumbnail is rotated in its pixels. PNG, WebP and GIF rarely
//! carry EXIF; theirs is dropped with the rest, so they are stored, reported
//! and thumbnailed as their pixels lie.
//!
//! # Thumbnails
//!
//! The thumbnail comes from the first frame, upright, as a JPEG. A JPEG is
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

use std::io::Cursor;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};

use image::codecs::jpeg::JpegEncoder;
use image::metadata::Orientation;
use image::{DynamicImage, GrayImage, ImageReader, RgbImage};

/// Visually clean at thumbnail size while staying at a few kilobytes.
const THUMBNAIL_QUALITY: u8 = 80;

/// An accepted image format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Jpeg,
    Png,
    Webp,
    Gif,
}

impl ImageFormat {
    /// The MIME type to serve the stored copy with.
    pub fn mime(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Png => "image/png",
            ImageFormat::Webp => "image/webp",
            ImageFormat::Gif => "image/gif",
        }
    }

    fn codec(self) -> image::ImageFormat {
        match self {
            ImageFormat::Jpeg => image::ImageFormat::Jpeg,
            ImageFormat::Png => image::ImageFormat::Png,
            ImageFormat::Webp => image::ImageFormat::WebP,
            ImageFormat::Gif => image::ImageFormat::Gif,
        }
    }
}

/// Bounds applied to every upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted `width * height`, checked before decoding.
    pub max_pixels: u64,
    /// Longest side of the thumbnail; smaller images are not upscaled.
    pub thumbnail_size: u32,
}

impl Default for Limits {
    /// 50 megapixels admits the 48 MP sensors of current phones.
    fn default() -> Self {
        Limits {
            max_pixels: 50_000_000,
            thumbnail_size: 320,
        }
    }
}

/// The result of [`process`]: what to store and what to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanImage {
    pub format: ImageFormat,
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
    /// Not JPEG, PNG, WebP or GIF by its magic bytes.
    #[error("unsupported image type")]
    Unsupported,
    /// The header claims more pixels than [`Limits::max_pixels`].
    #[error("image is {width}x{height} pixels, above the limit of {max} pixels")]
    TooManyPixels { width: u32, height: u32, max: u64 },
    /// Truncated, malformed or undecodable.
    #[error("image could not be decoded: {0}")]
    Corrupt(String),
}

fn corrupt(msg: impl Into<String>) -> ImagingError {
    ImagingError::Corrupt(msg.into())
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Identifies the format from the magic bytes alone.
pub fn detect(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if bytes.starts_with(PNG_SIGNATURE) {
        Some(ImageFormat::Png)
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some(ImageFormat::Gif)
    } else if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(&b"WEBP"[..]) {
        Some(ImageFormat::Webp)
    } else {
        None
    }
}

/// Validates an upload and produces the copy to store plus a thumbnail.
///
/// Steps, in order: detect the format, read the dimensions from the header
/// and enforce [`Limits::max_pixels`], strip metadata losslessly, decode the
/// first frame (shrunk on load for JPEG) and encode the thumbnail.
pub fn process(bytes: &[u8], limits: &Limits) -> Result<CleanImage, ImagingError> {
    let format = detect(bytes).ok_or(ImagingError::Unsupported)?;
    match format {
        ImageFormat::Jpeg => process_jpeg(bytes, limits),
        ImageFormat::Png => {
            let (width, height) = png_dimensions(bytes)?;
            check_pixels(width, height, limits.max_pixels)?;
            let cleaned = png_clean(bytes)?;
            finish_with_image_crate(format, cleaned, width, height, limits)
        }
        ImageFormat::Gif => {
            let (width, height) = gif_dimensions(bytes)?;
            check_pixels(width, height, limits.max_pixels)?;
            let cleaned = gif_clean(bytes, limits.max_pixels)?;
            finish_with_image_crate(format, cleaned, width, height, limits)
        }
        ImageFormat::Webp => {
            let (width, height) = webp_dimensions(bytes)?;
            check_pixels(width, height, limits.max_pixels)?;
            let cleaned = webp_clean(bytes)?;
            finish_with_image_crate(format, cleaned, width, height, limits)
        }
    }
}

fn check_pixels(width: u32, height: u32, max: u64) -> Result<(), ImagingError> {
    if u64::from(width) * u64::from(height) > max {
        return Err(ImagingError::TooManyPixels { width, height, max });
    }
    Ok(())
}

fn process_jpeg(bytes: &[u8], limits: &Limits) -> Result<CleanImage, ImagingError> {
    let header = jpeg_header(bytes)?;
    check_pixels(header.width, header.height, limits.max_pixels)?;
    let cleaned = jpeg_clean(bytes, &header)?;
    let (tw, th) = thumbnail_dimensions(header.width, header.height, limits.thumbnail_size);
    let decoded = guarded(|| {
        // At 1/8 scale only the DC coefficients matter, which is much faster.
        let eighth = header.width.div_ceil(8) >= tw && header.height.div_ceil(8) >= th;
        match eighth.then(|| decode_jpeg_dc(bytes, &header)).flatten() {
            Some(img) => Ok(img),
            None => decode_jpeg_scaled(&cleaned, tw, th, header.width, header.height),
        }
    })?;
    let (thumbnail, thumbnail_width, thumbnail_height) =
        make_thumbnail(decoded, tw, th, header.orientation)?;
    let (width, height) = if header.orientation >= 5 {
        (header.height, header.width)
    } else {
        (header.width, header.height)
    };
    Ok(CleanImage {
        format: ImageFormat::Jpeg,
        width,
        height,
        orientation: header.orientation,
        bytes: cleaned,
        thumbnail,
        thumbnail_width,
        thumbnail_height,
    })
}

fn finish_with_image_crate(
    format: ImageFormat,
    cleaned: Vec<u8>,
    width: u32,
    height: u32,
    limits: &Limits,
) -> Result<CleanImage, ImagingError> {
    let decoded = guarded(|| decode_with_image_crate(&cleaned, format, width, height))?;
    let (tw, th) = thumbnail_dimensions(decoded.width(), decoded.height(), limits.thumbnail_size);
    let (thumbnail, thumbnail_width, thumbnail_height) = make_thumbnail(decoded, tw, th, 1)?;
    Ok(CleanImage {
        format,
        width,
        height,
        orientation: 1,
        bytes: cleaned,
        thumbnail,
        thumbnail_width,
        thumbnail_height,
    })
}

// ---------------------------------------------------------------------------
// Bounds-checked byte access

fn slice_at(b: &[u8], at: usize, len: usize) -> Option<&[u8]> {
    b.get(at..at.checked_add(len)?)
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    slice_at(b, at, 2)?.try_into().ok().map(u16::from_be_bytes)
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    slice_at(b, at, 4)?.try_into().ok().map(u32::from_be_bytes)
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    slice_at(b, at, 2)?.try_into().ok().map(u16::from_le_bytes)
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    slice_at(b, at, 4)?.try_into().ok().map(u32::from_le_bytes)
}

fn le24(b: &[u8], at: usize) -> Option<u32> {
    let s = slice_at(b, at, 3)?;
    Some(
        s.iter()
            .rev()
            .fold(0u32, |acc, &x| (acc << 8) | u32::from(x)),
    )
}

// ---------------------------------------------------------------------------
// EXIF (TIFF structure)

const EXIF_HEADER: &[u8] = b"Exif\0\0";
const TAG_ORIENTATION: u16 = 0x0112;

/// Read-only view of a TIFF structure, as embedded in EXIF.
struct Tiff<'a> {
    data: &'a [u8],
    little_endian: bool,
}

/// One IFD entry; `value_at` is the offset of its 4-byte value field.
#[derive(Debug, Clone, Copy)]
struct IfdEntry {
    tag: u16,
    kind: u16,
    count: u32,
    value_at: usize,
}

impl<'a> Tiff<'a> {
    fn new(data: &'a [u8]) -> Option<Self> {
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

    fn u16(&self, at: usize) -> Option<u16> {
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

    fn ifd0(&self) -> Option<usize> {
        usize::try_from(self.u32(4)?).ok()
    }

    /// Entries of the IFD at `ifd`, stopping early at the end of the data.
    fn entries(&self, ifd: usize) -> impl Iterator<Item = IfdEntry> + '_ {
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
    fn next_ifd(&self, ifd: usize) -> Option<u32> {
        let count = usize::from(self.u16(ifd)?);
        self.u32(ifd.checked_add(2)?.checked_add(count.checked_mul(12)?)?)
    }
}

/// The Orientation tag of IFD0, if present and valid.
fn exif_orientation(tiff: &[u8]) -> Option<u16> {
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
fn orientation_exif(orientation: u16) -> Vec<u8> {
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

// ---------------------------------------------------------------------------
// JPEG

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
const APP0: u8 = 0xE0;
const APP1: u8 = 0xE1;
const APP2: u8 = 0xE2;
const APP14: u8 = 0xEE;
const COM: u8 = 0xFE;

/// A marker segment; `payload` excludes the marker and the length field.
struct Segment {
    marker: u8,
    payload: Range<usize>,
}

impl Segment {
    fn bytes<'a>(&self, b: &'a [u8]) -> &'a [u8] {
        b.get(self.payload.clone()).unwrap_or_default()
    }
}

/// What the header walk learnt, up to and including the first SOS.
struct JpegHeader {
    width: u32,
    height: u32,
    orientation: u16,
    /// Segments to copy, in file order, ending with the first SOS.
    kept: Vec<Segment>,
    /// First byte of entropy-coded data.
    scan_start: usize,
}

fn is_sof(marker: u8) -> bool {
    (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
}

fn is_standalone(marker: u8) -> bool {
    marker == 0x01 || (0xD0..=0xD7).contains(&marker)
}

/// Segments that carry no personal data and may matter for rendering.
fn jpeg_keep(marker: u8, payload: &[u8]) -> bool {
    match marker {
        APP0 => payload.starts_with(b"JFIF\0"),
        APP2 => payload.starts_with(b"ICC_PROFILE\0"),
        APP14 => payload.starts_with(b"Adobe"),
        0xE0..=0xEF | COM => false,
        _ => true,
    }
}

/// Returns the marker at `pos` (after any fill bytes) and the index after it.
fn jpeg_marker(b: &[u8], pos: usize) -> Result<(u8, usize), ImagingError> {
    if b.get(pos) != Some(&0xFF) {
        return Err(corrupt("expected a JPEG marker"));
    }
    let mut i = pos;
    loop {
        i = i
            .checked_add(1)
            .ok_or_else(|| corrupt("truncated marker"))?;
        match b.get(i) {
            Some(0xFF) => {}
            Some(&m) => return Ok((m, i + 1)),
            None => return Err(corrupt("truncated marker")),
        }
    }
}

fn jpeg_segment(b: &[u8], marker: u8, after_marker: usize) -> Result<Segment, ImagingError> {
    let len = be16(b, after_marker).ok_or_else(|| corrupt("truncated segment length"))?;
    if len < 2 {
        return Err(corrupt("segment length below 2"));
    }
    let start = after_marker + 2;
    let end = after_marker
        .checked_add(usize::from(len))
        .filter(|&end| end <= b.len())
        .ok_or_else(|| corrupt("segment runs past the end of the file"))?;
    Ok(Segment {
        marker,
        payload: start..end,
    })
}

fn jpeg_frame_size(p: &[u8]) -> Result<(u32, u32), ImagingError> {
    let bad = || corrupt("malformed frame header");
    let precision = *p.first().ok_or_else(bad)?;
    let height = be16(p, 1).ok_or_else(bad)?;
    let width = be16(p, 3).ok_or_else(bad)?;
    let components = *p.get(5).ok_or_else(bad)?;
    if width == 0 || height == 0 {
        return Err(corrupt("zero dimension in frame header"));
    }
    // Decoders disagree outside these ranges; some even panic.
    if !(2..=16).contains(&precision) || !matches!(components, 1 | 3 | 4) {
        return Err(corrupt("unsupported sample precision or component count"));
    }
    if p.len() != 6 + 3 * usize::from(components) {
        return Err(bad());
    }
    Ok((u32::from(width), u32::from(height)))
}

/// Walks the segments before the first scan; reads no pixel data.
fn jpeg_header(b: &[u8]) -> Result<JpegHeader, ImagingError> {
    let mut pos = 2;
    let mut kept = Vec::new();
    let mut size = None;
    let mut orientation = None;
    loop {
        let (marker, after) = jpeg_marker(b, pos)?;
        match marker {
            SOI => return Err(corrupt("unexpected start-of-image marker")),
            EOI => return Err(corrupt("no image data before end-of-image")),
            0x00 => return Err(corrupt("invalid marker")),
            m if is_standalone(m) => {
                pos = after;
                continue;
            }
            _ => {}
        }
        let seg = jpeg_segment(b, marker, after)?;
        let payload = seg.bytes(b);
        if is_sof(marker) {
            if size.is_some() {
                return Err(corrupt("more than one frame header"));
            }
            size = Some(jpeg_frame_size(payload)?);
        } else if marker == APP1 && orientation.is_none() && payload.starts_with(EXIF_HEADER) {
            let tiff = payload.get(EXIF_HEADER.len()..).unwrap_or_default();
            orientation = Some(exif_orientation(tiff).unwrap_or(1));
        }
        pos = seg.payload.end;
        if marker == SOS {
            let (width, height) = size.ok_or_else(|| corrupt("scan before frame header"))?;
            kept.push(seg);
            return Ok(JpegHeader {
                width,
                height,
                orientation: orientation.unwrap_or(1),
                kept,
                scan_start: pos,
            });
        }
        if jpeg_keep(marker, payload) {
            kept.push(seg);
        }
    }
}

fn write_jpeg_segment(out: &mut Vec<u8>, marker: u8, payload: &[u8]) -> Result<(), ImagingError> {
    let len = payload
        .len()
        .checked_add(2)
        .and_then(|l| u16::try_from(l).ok())
        .ok_or_else(|| corrupt("segment too long"))?;
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

fn write_kept_jpeg_segment(
    out: &mut Vec<u8>,
    marker: u8,
    payload: &[u8],
) -> Result<(), ImagingError> {
    // A JFIF header may embed a thumbnail that still shows what was cropped.
    const JFIF_FIXED: usize = 12;
    if marker == APP0 && payload.len() > JFIF_FIXED + 2 {
        let mut jfif = payload.get(..JFIF_FIXED).unwrap_or_default().to_vec();
        jfif.extend_from_slice(&[0, 0]);
        return write_jpeg_segment(out, marker, &jfif);
    }
    write_jpeg_segment(out, marker, payload)
}

/// Index of the first 0xFF at or after `from`, eight bytes at a time.
fn find_ff(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(word) = slice_at(b, i, 8).and_then(|w| w.try_into().ok()) {
        let inverted = !u64::from_le_bytes(word);
        let found =
            inverted.wrapping_sub(0x0101_0101_0101_0101) & !inverted & 0x8080_8080_8080_8080;
        if found != 0 {
            // The lowest flag is exact; only bytes after it can be false hits.
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b.get(i..)?.iter().position(|&x| x == 0xFF).map(|p| i + p)
}

/// Index of the next marker after entropy-coded data starting at `from`.
fn jpeg_next_marker(b: &[u8], from: usize) -> Result<usize, ImagingError> {
    let missing = || corrupt("missing end-of-image marker");
    let mut i = from;
    loop {
        let at = find_ff(b, i).ok_or_else(missing)?;
        match b.get(at + 1) {
            None => return Err(missing()),
            // Stuffed zero or restart marker: still inside the scan.
            Some(0x00 | 0xD0..=0xD7) => i = at + 2,
            Some(0xFF) => i = at + 1,
            Some(_) => return Ok(at),
        }
    }
}

/// Rebuilds the file from the kept segments and the verbatim scan data.
fn jpeg_clean(b: &[u8], header: &JpegHeader) -> Result<Vec<u8>, ImagingError> {
    let mut out = Vec::with_capacity(b.len().min(64 << 20));
    out.extend_from_slice(&[0xFF, SOI]);
    // EXIF belongs right after SOI, or after JFIF where both are present.
    let mut exif = (header.orientation != 1).then(|| orientation_exif(header.orientation));
    for seg in &header.kept {
        if seg.marker != APP0
            && let Some(exif) = exif.take()
        {
            write_jpeg_segment(&mut out, APP1, &exif)?;
        }
        write_kept_jpeg_segment(&mut out, seg.marker, seg.bytes(b))?;
    }

    let mut pos = header.scan_start;
    loop {
        let at = jpeg_next_marker(b, pos)?;
        out.extend_from_slice(b.get(pos..at).unwrap_or_default());
        let (marker, after) = jpeg_marker(b, at)?;
        match marker {
            // Whatever follows EOI is not part of this image.
            EOI => {
                out.extend_from_slice(&[0xFF, EOI]);
                return Ok(out);
            }
            SOI | 0x00 => return Err(corrupt("invalid marker inside image data")),
            m if is_sof(m) => return Err(corrupt("more than one frame header")),
            m if is_standalone(m) => {
                out.extend_from_slice(&[0xFF, m]);
                pos = after;
            }
            _ => {
                let seg = jpeg_segment(b, marker, after)?;
                let payload = seg.bytes(b);
                if jpeg_keep(marker, payload) {
                    write_kept_jpeg_segment(&mut out, marker, payload)?;
                }
                pos = seg.payload.end;
            }
        }
    }
}

fn jpeg_error(e: jpeg_decoder::Error) -> ImagingError {
    corrupt(e.to_string())
}

/// Decodes at the smallest DCT scale (1, 1/2, 1/4, 1/8) still at least
/// `tw`x`th`, which skips most of the inverse DCT and the memory for a
/// full-size image.
fn decode_jpeg_scaled(
    data: &[u8],
    tw: u32,
    th: u32,
    width: u32,
    height: u32,
) -> Result<DynamicImage, ImagingError> {
    let mut decoder = jpeg_decoder::Decoder::new(data);
    let max_output = u64::from(width) * u64::from(height) * 4;
    decoder.set_max_decoding_buffer_size(usize::try_from(max_output).unwrap_or(usize::MAX));
    let request = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
    let (w, h) = decoder
        .scale(request(tw), request(th))
        .map_err(jpeg_error)?;
    let info = decoder
        .info()
        .ok_or_else(|| corrupt("missing frame header"))?;
    let short = || corrupt("decoder returned too few pixels");
    match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => {
            let pixels = decoder.decode().map_err(jpeg_error)?;
            RgbImage::from_raw(u32::from(w), u32::from(h), pixels)
                .map(DynamicImage::ImageRgb8)
                .ok_or_else(short)
        }
        jpeg_decoder::PixelFormat::L8 => {
            let pixels = decoder.decode().map_err(jpeg_error)?;
            GrayImage::from_raw(u32::from(w), u32::from(h), pixels)
                .map(DynamicImage::ImageLuma8)
                .ok_or_else(short)
        }
        // CMYK and 16-bit are rare in uploads and need colour handling that
        // the image crate already has; a full-size decode is acceptable then.
        _ => decode_with_image_crate(data, ImageFormat::Jpeg, width, height),
    }
}

// ---------------------------------------------------------------------------
// JPEG at 1/8 scale from the DC coefficients

/// Bits looked up at once; covers nearly every code in camera tables.
const LOOKUP_BITS: u32 = 11;
const LOOKUP_SIZE: usize = 1 << LOOKUP_BITS;

/// A Huffman table with a direct lookup for short codes.
struct Huffman {
    /// By the next `LOOKUP_BITS` bits: code length | symbol << 4; 0 for longer codes.
    fast: Box<[u16; LOOKUP_SIZE]>,
    /// For AC tables, pre-digested for skipping. Low 13 bits: bits to
    /// consume for one code and its value (low 6) and the zigzag positions
    /// it advances (<< 6, 64 for end of block). High bits: the same for two
    /// consecutive codes when both lie within the lookup bits (consume << 13,
    /// advance << 19), or 0.
    skip: Box<[u32; LOOKUP_SIZE]>,
    /// Largest code of each length (index 1..=16), -1 when none.
    max_code: [i32; 17],
    /// Symbol index minus code, per length.
    offset: [i32; 17],
    symbols: Vec<u8>,
}

impl Huffman {
    fn new(counts: &[u8], symbols: &[u8]) -> Option<Huffman> {
        let mut table = Huffman {
            fast: Box::new([0; LOOKUP_SIZE]),
            skip: Box::new([0; LOOKUP_SIZE]),
            max_code: [-1; 17],
            offset: [0; 17],
            symbols: symbols.to_vec(),
        };
        let mut code = 0u32;
        let mut index = 0usize;
        for (len, &count) in (1u32..=16).zip(counts) {
            let len_index = usize::try_from(len).ok()?;
            table.offset[len_index] = i32::try_from(index).ok()? - i32::try_from(code).ok()?;
            for _ in 0..count {
                if code >= 1 << len {
                    return None;
                }
                let symbol = *symbols.get(index)?;
                if len <= LOOKUP_BITS {
                    let (run, size) = (u16::from(symbol >> 4), u16::from(symbol & 15));
                    let advance = match (run, size) {
                        (15, 0) => 16,
                        (_, 0) => 64,
                        _ => run + 1,
                    };
                    let fast = u16::try_from(len).ok()? | u16::from(symbol) << 4;
                    let skip = (len + u32::from(size)) | u32::from(advance) << 6;
                    let shift = LOOKUP_BITS - len;
                    let first = usize::try_from(code << shift).ok()?;
                    let last = usize::try_from((code + 1) << shift).ok()?;
                    table.fast.get_mut(first..last)?.fill(fast);
                    table.skip.get_mut(first..last)?.fill(skip);
                }
                table.max_code[len_index] = i32::try_from(code).ok()?;
                code += 1;
                index += 1;
            }
            code <<= 1;
        }
        // Pairs: a second code that lies wholly in the bits the first leaves.
        let single = table.skip.clone();
        for (index, entry) in table.skip.iter_mut().enumerate() {
            let (consume, advance) = (*entry & 63, (*entry >> 6) & 127);
            if *entry == 0 || advance == 64 || consume >= LOOKUP_BITS {
                continue;
            }
            let rest = (index << consume) & (LOOKUP_SIZE - 1);
            let second = single[rest];
            let (consume2, advance2) = (second & 63, (second >> 6) & 127);
            if second != 0 && consume + consume2 <= LOOKUP_BITS {
                *entry |= (consume + consume2) << 13 | (advance + advance2) << 19;
            }
        }
        Some(table)
    }
}

/// The next `n` bits (1 <= n <= 32) of an MSB-aligned bit buffer.
#[inline(always)]
fn peek_bits(acc: u64, n: u32) -> u32 {
    (acc >> ((64 - n) & 63)) as u32
}

#[inline(always)]
fn lookup_index(acc: u64) -> usize {
    (acc >> (64 - LOOKUP_BITS)) as usize & (LOOKUP_SIZE - 1)
}

/// Symbol and code length for codes longer than the lookup table.
#[cold]
fn slow_symbol(table: &Huffman, acc: u64) -> Option<(u8, u32)> {
    for len in LOOKUP_BITS + 1..=16 {
        let code = i32::try_from(peek_bits(acc, len)).ok()?;
        let len_index = usize::try_from(len).ok()?;
        if code <= *table.max_code.get(len_index)? {
            let index = code + *table.offset.get(len_index)?;
            let symbol = *table.symbols.get(usize::try_from(index).ok()?)?;
            return Some((symbol, len));
        }
    }
    None
}

/// MSB-first bit reader over entropy-coded data, undoing byte stuffing.
/// At a marker it feeds zeros and counts them, as libjpeg does.
///
/// `acc` holds `bits` valid bits at the top and zeros below. The decoding
/// loop copies `acc`, `bits` and `pos` into locals and only passes them by
/// value, so that they stay in registers.
struct BitReader<'a> {
    data: &'a [u8],
    acc: u64,
    bits: u32,
    pos: usize,
    at_marker: bool,
    padding: u32,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        BitReader {
            data,
            acc: 0,
            bits: 0,
            pos,
            at_marker: false,
            padding: 0,
        }
    }

    /// Refills to at least 57 bits, a whole word at a time while it holds no
    /// 0xFF (which is nearly always).
    #[inline(always)]
    fn fill(&mut self, acc: u64, bits: u32, pos: usize) -> (u64, u32, usize) {
        if !self.at_marker
            && let Some(word) = slice_at(self.data, pos, 8).and_then(|w| w.try_into().ok())
        {
            let word = u64::from_be_bytes(word);
            let inverted = !word;
            let has_ff =
                inverted.wrapping_sub(0x0101_0101_0101_0101) & !inverted & 0x8080_8080_8080_8080;
            if has_ff == 0 {
                let take = (64 - bits) / 8;
                let keep = u64::MAX << ((64 - take * 8) & 63);
                return (
                    acc | (word & keep) >> bits,
                    bits + take * 8,
                    pos + take as usize,
                );
            }
        }
        self.fill_bytewise(acc, bits, pos)
    }

    #[inline(never)]
    fn fill_bytewise(&mut self, mut acc: u64, mut bits: u32, mut pos: usize) -> (u64, u32, usize) {
        while bits <= 56 {
            let byte = if self.at_marker {
                self.padding = self.padding.saturating_add(1);
                0
            } else {
                match self.data.get(pos) {
                    Some(&0xFF) if self.data.get(pos + 1) == Some(&0) => {
                        pos += 2;
                        0xFF
                    }
                    Some(&0xFF) => {
                        self.at_marker = true;
                        0
                    }
                    Some(&b) => {
                        pos += 1;
                        b
                    }
                    None => {
                        self.at_marker = true;
                        0
                    }
                }
            };
            acc |= u64::from(byte) << (56 - bits);
            bits += 8;
        }
        (acc, bits, pos)
    }

    /// Moves past the restart marker `RSTn`, dropping the padding bits.
    fn restart(&mut self, n: u8) -> Option<()> {
        self.at_marker = false;
        self.padding = 0;
        let mut pos = self.pos;
        loop {
            let at = pos + self.data.get(pos..)?.iter().position(|&b| b == 0xFF)?;
            match *self.data.get(at + 1)? {
                0x00 | 0xFF => pos = at + 1,
                m if m == 0xD0 + n => {
                    self.acc = 0;
                    self.bits = 0;
                    self.pos = at + 2;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Decodes one block and returns its DC difference; AC values are skipped.
    #[inline(always)]
    fn dc_of_block(&mut self, dc: &Huffman, ac: Option<&Huffman>) -> Option<i32> {
        let (mut acc, mut bits, mut pos) = (self.acc, self.bits, self.pos);
        // Every step below takes at most 31 bits (a code and its value).
        macro_rules! fill {
            () => {
                if bits < 32 {
                    (acc, bits, pos) = self.fill(acc, bits, pos);
                }
            };
        }
        macro_rules! consume {
            ($n:expr) => {{
                let n: u32 = $n;
                acc <<= n & 63;
                bits = bits.wrapping_sub(n);
            }};
        }

        fill!();
        let entry = dc.fast[lookup_index(acc)];
        let size = if entry != 0 {
            consume!(u32::from(entry & 15));
            u32::from(entry >> 4)
        } else {
            let (symbol, len) = slow_symbol(dc, acc)?;
            consume!(len);
            u32::from(symbol)
        };
        let diff = match size {
            0 => 0,
            1..=11 => {
                fill!();
                let v = i32::try_from(peek_bits(acc, size)).ok()?;
                consume!(size);
                if v < 1 << (size - 1) {
                    v - (1 << size) + 1
                } else {
                    v
                }
            }
            _ => return None,
        };
        let Some(ac) = ac else {
            (self.acc, self.bits, self.pos) = (acc, bits, pos);
            return Some(diff);
        };
        let mut k = 1u32;
        while k < 64 {
            fill!();
            let entry = ac.skip[lookup_index(acc)];
            if entry != 0 {
                // A pair is only valid if its first code leaves the block open.
                let single_advance = (entry >> 6) & 127;
                let pair = entry >> 13 != 0 && k + single_advance < 64;
                let (n, advance) = if pair {
                    ((entry >> 13) & 63, entry >> 19)
                } else {
                    (entry & 63, single_advance)
                };
                acc <<= n & 63;
                bits = bits.wrapping_sub(n);
                k += advance;
                continue;
            }
            let (symbol, len) = slow_symbol(ac, acc)?;
            consume!(len);
            let (run, size) = (u32::from(symbol >> 4), u32::from(symbol & 15));
            match (run, size) {
                (15, 0) => k += 16,
                (_, 0) => break,
                _ => {
                    consume!(size);
                    k += run + 1;
                }
            }
        }
        (self.acc, self.bits, self.pos) = (acc, bits, pos);
        Some(diff)
    }
}

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
fn decode_jpeg_dc(b: &[u8], header: &JpegHeader) -> Option<DynamicImage> {
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
            for &index in &order {
                let plane = planes.get_mut(index)?;
                for by in 0..plane.v {
                    for bx in 0..plane.h {
                        let diff = reader.dc_of_block(plane.dc, plane.ac)?;
                        plane.predictor = plane.predictor.wrapping_add(diff);
                        let dc = plane.predictor.wrapping_shl(dc_shift);
                        let value = (dc.wrapping_mul(plane.quant).wrapping_add(1024)) >> 3;
                        let at = (mcu_y * plane.v + by) * plane.stride + mcu_x * plane.h + bx;
                        *plane.samples.get_mut(at)? = value.clamp(0, 255) as u8;
                    }
                }
            }
            mcu += 1;
        }
        // Far past the end of the data means a truncated or broken scan.
        if reader.padding > 64 {
            return None;
        }
    }

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
        return GrayImage::from_raw(w32, h32, gray).map(DynamicImage::ImageLuma8);
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
    RgbImage::from_raw(w32, h32, rgb).map(DynamicImage::ImageRgb8)
}

/// JFIF YCbCr to RGB in 16.16 fixed point.
fn ycbcr_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
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

// ---------------------------------------------------------------------------
// PNG

/// Chunks that affect how the pixels are rendered; everything else ancillary
/// (tEXt, zTXt, iTXt, eXIf, tIME, private chunks) is dropped.
const PNG_KEEP: [&[u8; 4]; 18] = [
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT",
    b"pHYs", b"bKGD", b"cICP", b"mDCV", b"cLLI", b"acTL", b"fcTL", b"fdAT",
];

const PNG_MAX_CHUNK: u32 = 0x7FFF_FFFF;

fn png_dimensions(b: &[u8]) -> Result<(u32, u32), ImagingError> {
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

fn png_clean(b: &[u8]) -> Result<Vec<u8>, ImagingError> {
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

// ---------------------------------------------------------------------------
// GIF

fn gif_dimensions(b: &[u8]) -> Result<(u32, u32), ImagingError> {
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

fn gif_clean(b: &[u8], max_pixels: u64) -> Result<Vec<u8>, ImagingError> {
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
            Some(_) => return Err(corrupt("unknown GIF block")),
        }
    }
    out.push(0x3B);
    Ok(out)
}

// ---------------------------------------------------------------------------
// WebP

const VP8X_FLAG_EXIF: u8 = 0x08;
const VP8X_FLAG_XMP: u8 = 0x04;

fn webp_dimensions(b: &[u8]) -> Result<(u32, u32), ImagingError> {
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

fn webp_clean(b: &[u8]) -> Result<Vec<u8>, ImagingError> {
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
    Ok(out)
}

// ---------------------------------------------------------------------------
// Decoding and thumbnails

/// Runs a third-party decoder so that a panic in it becomes `Corrupt`.
fn guarded<T>(f: impl FnOnce() -> Result<T, ImagingError>) -> Result<T, ImagingError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| Err(corrupt("decoder failure")))
}

fn decode_with_image_crate(
    data: &[u8],
    format: ImageFormat,
    width: u32,
    height: u32,
) -> Result<DynamicImage, ImagingError> {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    // 8 bytes covers 16-bit RGBA; the slack is for decoder working buffers.
    let pixels = u64::from(width) * u64::from(height);
    limits.max_alloc = Some(pixels.saturating_mul(8).saturating_add(64 << 20));
    let mut reader = ImageReader::with_format(Cursor::new(data), format.codec());
    reader.limits(limits);
    reader.decode().map_err(|e| corrupt(e.to_string()))
}

/// Size with the longest side at `size` (never above the original), aspect kept.
fn thumbnail_dimensions(width: u32, height: u32, size: u32) -> (u32, u32) {
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
fn flatten(img: DynamicImage) -> DynamicImage {
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

/// Source pixels and 16.16 fixed-point weights for each output pixel of an
/// area-averaging (box) resample from `src` to `dst` samples.
fn area_taps(src: usize, dst: usize) -> Vec<Vec<(usize, u32)>> {
    let scale = src as f64 / dst as f64;
    (0..dst)
        .map(|i| {
            let (lo, hi) = (i as f64 * scale, (i + 1) as f64 * scale);
            let first = lo.floor() as usize;
            let last = (hi.ceil() as usize).clamp(first + 1, src.max(first + 1));
            let mut taps: Vec<(usize, u32)> = (first..last)
                .map(|j| {
                    let overlap = hi.min(j as f64 + 1.0) - lo.max(j as f64);
                    (
                        j.min(src - 1),
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
fn resize_area(src: &[u8], sw: usize, sh: usize, channels: usize, dw: usize, dh: usize) -> Vec<u8> {
    if sw == 0 || sh == 0 || dw == 0 || dh == 0 || channels == 0 {
        return vec![0; dw * dh * channels];
    }
    let (x_taps, y_taps) = (area_taps(sw, dw), area_taps(sh, dh));
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

/// Resizes to `tw`x`th` (stored orientation), rotates upright, encodes JPEG.
fn make_thumbnail(
    img: DynamicImage,
    tw: u32,
    th: u32,
    orientation: u16,
) -> Result<(Vec<u8>, u32, u32), ImagingError> {
    let (w, h) = (img.width(), img.height());
    let size = |v: u32| usize::try_from(v).map_err(|_| corrupt("image too large"));
    let (sw, sh, dw, dh) = (size(w)?, size(h)?, size(tw)?, size(th)?);
    let resized = |raw: &[u8], channels| resize_area(raw, sw, sh, channels, dw, dh);
    let mut img = match flatten(img) {
        img if (w, h) == (tw, th) => img,
        DynamicImage::ImageLuma8(gray) => GrayImage::from_raw(tw, th, resized(gray.as_raw(), 1))
            .map(DynamicImage::ImageLuma8)
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
    JpegEncoder::new_with_quality(&mut out, THUMBNAIL_QUALITY)
        .encode_image(&img)
        .map_err(|e| corrupt(format!("thumbnail encoding failed: {e}")))?;
    Ok((out, img.width(), img.height()))
}

// ---------------------------------------------------------------------------
// Fixtures

/// Images for tests and benchmarks, built in memory.
///
/// Each carries the kinds of metadata that `process` must
/// remove, so that tests can check the stored copy against them.
#[doc(hidden)]
pub mod testdata {
    use image::codecs::gif::{GifEncoder, Repeat};
    use image::codecs::jpeg::JpegEncoder;
    use image::codecs::png::PngEncoder;
    use image::codecs::webp::WebPEncoder;
    use image::{Delay, ExtendedColorType, Frame, ImageEncoder, Rgb, RgbImage, Rgba, RgbaImage};

    /// Latitude written into the GPS block, as degrees/minutes/seconds rationals.
    pub const GPS_LATITUDE: [(u32, u32); 3] = [(48, 1), (51, 1), (2400, 100)];
    /// Text placed in every comment-like field of the fixtures.
    pub const SECRET: &str = "secret-owner-name";

    fn xorshift(seed: u32) -> u32 {
        let mut x = seed.wrapping_mul(0x9E37_79B9) ^ 0x5BD1_E995;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    }

    /// Photo-like content: warm at the top, cool at the bottom, with
    /// texture and noise so that JPEG sizes resemble real photos.
    pub fn photo_like(width: u32, height: u32) -> RgbImage {
        let (w, h) = (width.max(1), height.max(1));
        RgbImage::from_fn(w, h, |x, y| {
            let fy = (y * 255 / h) as i32;
            let fx = (x * 255 / w) as i32;
            let noise = (xorshift(x.wrapping_mul(7919) ^ y.wrapping_mul(104_729)) % 25) as i32 - 12;
            let texture = (((x / 9) ^ (y / 7)) % 16) as i32 * 2;
            let c = |v: i32| (v + noise + texture).clamp(0, 255) as u8;
            Rgb([c(225 - fy * 3 / 4), c(70 + fx / 3), c(30 + fy * 3 / 4)])
        })
    }

    fn push16(v: &mut Vec<u8>, x: u16, be: bool) {
        v.extend_from_slice(&if be { x.to_be_bytes() } else { x.to_le_bytes() });
    }

    fn push32(v: &mut Vec<u8>, x: u32, be: bool) {
        v.extend_from_slice(&if be { x.to_be_bytes() } else { x.to_le_bytes() });
    }

    fn entry(v: &mut Vec<u8>, be: bool, tag: u16, kind: u16, count: u32, value: [u8; 4]) {
        push16(v, tag, be);
        push16(v, kind, be);
        push32(v, count, be);
        v.extend_from_slice(&value);
    }

    fn short_value(x: u16, be: bool) -> [u8; 4] {
        let b = if be { x.to_be_bytes() } else { x.to_le_bytes() };
        [b[0], b[1], 0, 0]
    }

    fn long_value(x: u32, be: bool) -> [u8; 4] {
        if be { x.to_be_bytes() } else { x.to_le_bytes() }
    }

    /// A TIFF structure as found in EXIF: IFD0 with Make, Orientation (left
    /// out when `orientation` is 0) and, with `with_gps`, a GPS IFD holding a
    /// latitude.
    pub fn exif_tiff(orientation: u16, with_gps: bool, big_endian: bool) -> Vec<u8> {
        let be = big_endian;
        let make = b"SecretCam\0";
        let mut count: u16 = 1;
        if orientation != 0 {
            count += 1;
        }
        if with_gps {
            count += 1;
        }
        let ifd0_len = 2 + 12 * usize::from(count) + 4;
        let make_at = 8 + ifd0_len;
        let gps_at = make_at + make.len() + make.len() % 2;
        let gps_len = 2 + 12 * 2 + 4;
        let lat_at = gps_at + gps_len;

        let mut v = Vec::new();
        v.extend_from_slice(if be { b"MM" } else { b"II" });
        push16(&mut v, 42, be);
        push32(&mut v, 8, be);
        push16(&mut v, count, be);
        entry(
            &mut v,
            be,
            0x010F,
            2,
            make.len() as u32,
            long_value(make_at as u32, be),
        );
        if orientation != 0 {
            entry(&mut v, be, 0x0112, 3, 1, short_value(orientation, be));
        }
        if with_gps {
            entry(&mut v, be, 0x8825, 4, 1, long_value(gps_at as u32, be));
        }
        push32(&mut v, 0, be);
        v.extend_from_slice(make);
        if make.len() % 2 == 1 {
            v.push(0);
        }
        if with_gps {
            push16(&mut v, 2, be);
            entry(&mut v, be, 0x0001, 2, 2, *b"N\0\0\0");
            entry(&mut v, be, 0x0002, 5, 3, long_value(lat_at as u32, be));
            push32(&mut v, 0, be);
            for (num, den) in GPS_LATITUDE {
                push32(&mut v, num, be);
                push32(&mut v, den, be);
            }
        }
        v
    }

    fn jpeg_segment(marker: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0xFF, marker];
        v.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    /// A q90 JPEG (4:2:2, JFIF) with, right after SOI: an EXIF APP1 (see
    /// [`exif_tiff`], little-endian), an XMP APP1, a Photoshop/IPTC APP13 and
    /// a comment. Returns an empty vector if the size cannot be encoded.
    pub fn jpeg_with_exif(width: u32, height: u32, orientation: u16, with_gps: bool) -> Vec<u8> {
        let img = photo_like(width, height);
        let mut encoded = Vec::new();
        let result = JpegEncoder::new_with_quality(&mut encoded, 90).write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            ExtendedColorType::Rgb8,
        );
        if result.is_err() || encoded.len() < 2 {
            return Vec::new();
        }
        let mut exif = b"Exif\0\0".to_vec();
        exif.extend_from_slice(&exif_tiff(orientation, with_gps, false));
        let mut xmp = b"http://ns.adobe.com/xap/1.0/\0".to_vec();
        xmp.extend_from_slice(
            format!("<x:xmpmeta><dc:creator>{SECRET}</dc:creator></x:xmpmeta>").as_bytes(),
        );
        let mut iptc = b"Photoshop 3.0\08BIM\x04\x04\0\0".to_vec();
        iptc.extend_from_slice(&(SECRET.len() as u32 + 5).to_be_bytes());
        iptc.extend_from_slice(&[0x1C, 0x02, 0x50, 0, SECRET.len() as u8]);
        iptc.extend_from_slice(SECRET.as_bytes());

        let mut out = encoded[..2].to_vec();
        out.extend(jpeg_segment(0xE1, &exif));
        out.extend(jpeg_segment(0xE1, &xmp));
        out.extend(jpeg_segment(0xED, &iptc));
        out.extend(jpeg_segment(0xFE, SECRET.as_bytes()));
        out.extend_from_slice(&encoded[2..]);
        out
    }

    /// CRC-32 as used by PNG.
    pub fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// One PNG chunk with a valid CRC.
    pub fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut v = (data.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(data);
        let crc = crc32(&v[4..]);
        v.extend_from_slice(&crc.to_be_bytes());
        v
    }

    /// Inserts `chunk` right after IHDR.
    pub fn png_insert_after_ihdr(png: &[u8], chunk: &[u8]) -> Vec<u8> {
        let at = (8 + 25).min(png.len());
        let mut v = png[..at].to_vec();
        v.extend_from_slice(chunk);
        v.extend_from_slice(&png[at..]);
        v
    }

    /// A well-formed PNG of a few dozen bytes whose IHDR claims
    /// `width`x`height` (8-bit RGB); its image data is far too short.
    pub fn png_header_claiming(width: u32, height: u32) -> Vec<u8> {
        let mut ihdr = width.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
        v.extend(png_chunk(b"IHDR", &ihdr));
        // An empty zlib stream.
        v.extend(png_chunk(
            b"IDAT",
            &[0x78, 0x01, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        ));
        v.extend(png_chunk(b"IEND", &[]));
        v
    }

    fn rgba_pattern(width: u32, height: u32) -> RgbaImage {
        let base = photo_like(width, height);
        RgbaImage::from_fn(width.max(1), height.max(1), |x, y| {
            let Rgb([r, g, b]) = *base.get_pixel(x, y);
            // A transparent corner exercises alpha flattening.
            let a = if x < width / 4 && y < height / 4 {
                0
            } else {
                255
            };
            Rgba([r, g, b, a])
        })
    }

    /// An RGBA PNG with tEXt, tIME and eXIf chunks (EXIF with GPS).
    /// Returns an empty vector if the size cannot be encoded.
    pub fn small_png(width: u32, height: u32) -> Vec<u8> {
        let img = rgba_pattern(width, height);
        let mut png = Vec::new();
        let result = PngEncoder::new(&mut png).write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            ExtendedColorType::Rgba8,
        );
        if result.is_err() {
            return Vec::new();
        }
        let mut text = b"Author\0".to_vec();
        text.extend_from_slice(SECRET.as_bytes());
        let mut extra = png_chunk(b"tEXt", &text);
        extra.extend(png_chunk(b"tIME", &[0x07, 0xE8, 1, 2, 3, 4, 5]));
        extra.extend(png_chunk(b"eXIf", &exif_tiff(1, true, true)));
        png_insert_after_ihdr(&png, &extra)
    }

    /// A two-frame looping GIF with a comment and an XMP application
    /// extension. Returns an empty vector if the size cannot be encoded.
    pub fn small_gif(width: u32, height: u32) -> Vec<u8> {
        let first = rgba_pattern(width, height);
        let mut second = first.clone();
        image::imageops::flip_horizontal_in_place(&mut second);
        let mut gif = Vec::new();
        {
            let mut encoder = GifEncoder::new(&mut gif);
            let frames = [first, second]
                .map(|img| Frame::from_parts(img, 0, 0, Delay::from_numer_denom_ms(100, 1)));
            if encoder.set_repeat(Repeat::Infinite).is_err()
                || encoder.encode_frames(frames).is_err()
            {
                return Vec::new();
            }
        }
        let Some(&packed) = gif.get(10) else {
            return Vec::new();
        };
        let table = if packed & 0x80 == 0 {
            0
        } else {
            3 << ((packed & 7) + 1)
        };
        let at = (13 + table).min(gif.len());
        let mut extra = vec![0x21, 0xFE, SECRET.len() as u8];
        extra.extend_from_slice(SECRET.as_bytes());
        extra.push(0);
        extra.extend_from_slice(b"\x21\xFF\x0bXMP DataXMP");
        extra.push(SECRET.len() as u8);
        extra.extend_from_slice(SECRET.as_bytes());
        extra.push(0);
        let mut v = gif[..at].to_vec();
        v.extend(extra);
        v.extend_from_slice(&gif[at..]);
        v
    }

    /// A lossless WebP in the extended (VP8X) layout with EXIF (GPS) and
    /// XMP chunks, their flags set. Returns an empty vector if the size
    /// cannot be encoded.
    pub fn small_webp(width: u32, height: u32) -> Vec<u8> {
        let img = rgba_pattern(width, height);
        let mut simple = Vec::new();
        let result = WebPEncoder::new_lossless(&mut simple).write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            ExtendedColorType::Rgba8,
        );
        if result.is_err() || simple.len() < 12 {
            return Vec::new();
        }
        let chunk = |kind: &[u8; 4], data: &[u8]| {
            let mut c = kind.to_vec();
            c.extend_from_slice(&(data.len() as u32).to_le_bytes());
            c.extend_from_slice(data);
            if data.len() % 2 == 1 {
                c.push(0);
            }
            c
        };
        let mut vp8x = vec![0x10 | 0x08 | 0x04, 0, 0, 0];
        vp8x.extend_from_slice(&(img.width() - 1).to_le_bytes()[..3]);
        vp8x.extend_from_slice(&(img.height() - 1).to_le_bytes()[..3]);
        let mut body = b"WEBP".to_vec();
        body.extend(chunk(b"VP8X", &vp8x));
        body.extend_from_slice(&simple[12..]);
        body.extend(chunk(b"EXIF", &exif_tiff(1, true, false)));
        body.extend(chunk(b"XMP ", SECRET.as_bytes()));
        let mut v = b"RIFF".to_vec();
        v.extend_from_slice(&(body.len() as u32).to_le_bytes());
        v.extend(body);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::testdata::*;
    use super::*;
    use image::GenericImageView;
    use std::time::{Duration, Instant};

    fn limits() -> Limits {
        Limits::default()
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    /// (marker, payload) of every segment before the first SOS.
    fn jpeg_segments(b: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let header = jpeg_header(b).expect("header");
        let mut out = Vec::new();
        let mut pos = 2;
        loop {
            let (marker, after) = jpeg_marker(b, pos).expect("marker");
            let seg = jpeg_segment(b, marker, after).expect("segment");
            out.push((marker, seg.bytes(b).to_vec()));
            pos = seg.payload.end;
            if marker == SOS {
                assert_eq!(pos, header.scan_start);
                return out;
            }
        }
    }

    fn png_chunk_types(b: &[u8]) -> Vec<String> {
        let mut pos = 8;
        let mut out = Vec::new();
        while let Some(len) = be32(b, pos) {
            out.push(String::from_utf8_lossy(&b[pos + 4..pos + 8]).into_owned());
            pos += 12 + len as usize;
        }
        out
    }

    fn webp_chunk_types(b: &[u8]) -> Vec<String> {
        let mut pos = 12;
        let mut out = Vec::new();
        while let Some(size) = le32(b, pos + 4) {
            out.push(String::from_utf8_lossy(&b[pos..pos + 4]).into_owned());
            pos += 8 + size as usize + (size as usize % 2);
        }
        out
    }

    fn decode(b: &[u8]) -> DynamicImage {
        image::load_from_memory(b).expect("decodes")
    }

    #[test]
    fn detects_formats_from_magic_bytes() {
        assert_eq!(
            detect(&jpeg_with_exif(8, 8, 1, false)),
            Some(ImageFormat::Jpeg)
        );
        assert_eq!(detect(&small_png(4, 4)), Some(ImageFormat::Png));
        assert_eq!(detect(&small_gif(4, 4)), Some(ImageFormat::Gif));
        assert_eq!(detect(&small_webp(4, 4)), Some(ImageFormat::Webp));
        assert_eq!(detect(b"GIF87a\x01\x00\x01\x00"), Some(ImageFormat::Gif));
        for not_image in [
            &b"<!DOCTYPE html><html><body>hi</body></html>"[..],
            b"<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\"/>",
            b"<svg onload=alert(1)>",
            b"%PDF-1.7\n%\xe2\xe3\xcf\xd3",
            b"PK\x03\x04\x14\x00\x00\x00",
            b"MZ\x90\x00\x03\x00",
            b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00",
            b"RIFF\x24\x00\x00\x00WAVEfmt ",
            b"\xFF\xD8",
            b"\x89PNG",
            b"",
        ] {
            assert_eq!(detect(not_image), None, "{not_image:?}");
            assert!(matches!(
                process(not_image, &limits()),
                Err(ImagingError::Unsupported)
            ));
        }
    }

    #[test]
    fn mime_types() {
        assert_eq!(ImageFormat::Jpeg.mime(), "image/jpeg");
        assert_eq!(ImageFormat::Png.mime(), "image/png");
        assert_eq!(ImageFormat::Webp.mime(), "image/webp");
        assert_eq!(ImageFormat::Gif.mime(), "image/gif");
    }

    #[test]
    fn fixture_jpeg_carries_all_metadata() {
        let src = jpeg_with_exif(400, 300, 6, true);
        let markers: Vec<u8> = jpeg_segments(&src).iter().map(|s| s.0).collect();
        assert!(markers.starts_with(&[APP1, APP1, 0xED, COM]));
        assert!(contains(&src, SECRET.as_bytes()));
        let app1 = &jpeg_segments(&src)[0].1;
        let tiff = Tiff::new(&app1[6..]).expect("tiff");
        let tags: Vec<u16> = tiff.entries(tiff.ifd0().unwrap()).map(|e| e.tag).collect();
        assert_eq!(tags, vec![0x010F, 0x0112, 0x8825]);
        assert_eq!(exif_orientation(&app1[6..]), Some(6));
    }

    #[test]
    fn jpeg_orientation_6_with_gps_is_cleaned() {
        let src = jpeg_with_exif(400, 300, 6, true);
        let clean = process(&src, &limits()).expect("processed");
        assert_eq!(clean.format, ImageFormat::Jpeg);
        assert_eq!((clean.width, clean.height), (300, 400));
        assert_eq!(clean.orientation, 6);

        let segments = jpeg_segments(&clean.bytes);
        let app1: Vec<_> = segments.iter().filter(|s| s.0 == APP1).collect();
        assert_eq!(app1.len(), 1, "exactly one APP1");
        let payload = &app1[0].1;
        assert!(payload.starts_with(EXIF_HEADER));
        let tiff = Tiff::new(&payload[6..]).expect("valid TIFF");
        let ifd0 = tiff.ifd0().unwrap();
        let entries: Vec<IfdEntry> = tiff.entries(ifd0).collect();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].tag, TAG_ORIENTATION);
        assert_eq!(tiff.u16(entries[0].value_at), Some(6));
        assert_eq!(tiff.next_ifd(ifd0), Some(0));
        assert!(payload.len() <= 32);

        for (marker, payload) in &segments {
            assert_ne!(*marker, 0xED, "APP13");
            assert_ne!(*marker, COM);
            assert!(!payload.starts_with(b"http://ns.adobe.com/xap"));
        }
        assert!(!contains(&clean.bytes, SECRET.as_bytes()));
        assert!(!contains(&clean.bytes, b"SecretCam"));
        assert!(!contains(&clean.bytes, b"GPS"));
        let latitude: Vec<u8> = [48u32, 1].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert!(contains(&src, &latitude));
        assert!(!contains(&clean.bytes, &latitude));

        // Scan data is copied verbatim, so the stored pixels are the originals.
        let original = decode(&src).to_rgb8();
        let stored = decode(&clean.bytes).to_rgb8();
        assert_eq!((stored.width(), stored.height()), (400, 300));
        assert_eq!(original, stored);
        let src_scan = jpeg_header(&src).unwrap().scan_start;
        let out_scan = jpeg_header(&clean.bytes).unwrap().scan_start;
        assert_eq!(src[src_scan..], clean.bytes[out_scan..]);

        assert_eq!((clean.thumbnail_width, clean.thumbnail_height), (240, 320));
        let thumb = decode(&clean.thumbnail).to_rgb8();
        assert_eq!((thumb.width(), thumb.height()), (240, 320));
        // The fixture is red at the top; orientation 6 turns the top to the right.
        let right = thumb.get_pixel(235, 160);
        let left = thumb.get_pixel(4, 160);
        assert!(right.0[0] > right.0[2] + 60, "right {right:?}");
        assert!(left.0[2] > left.0[0] + 60, "left {left:?}");
    }

    #[test]
    fn jpeg_orientation_1_has_no_app1() {
        let src = jpeg_with_exif(400, 300, 1, true);
        let clean = process(&src, &limits()).unwrap();
        assert_eq!((clean.width, clean.height), (400, 300));
        assert_eq!(clean.orientation, 1);
        let segments = jpeg_segments(&clean.bytes);
        assert!(segments.iter().all(|s| s.0 != APP1));
        assert!(!contains(&clean.bytes, b"Exif"));
        assert_eq!((clean.thumbnail_width, clean.thumbnail_height), (320, 240));
        let thumb = decode(&clean.thumbnail).to_rgb8();
        let top = thumb.get_pixel(160, 4);
        assert!(top.0[0] > top.0[2] + 60, "top {top:?}");
    }

    #[test]
    fn jpeg_without_orientation_tag_counts_as_upright() {
        let clean = process(&jpeg_with_exif(64, 32, 0, true), &limits()).unwrap();
        assert_eq!((clean.width, clean.height, clean.orientation), (64, 32, 1));
        assert!(!contains(&clean.bytes, b"Exif"));
        assert_eq!((clean.thumbnail_width, clean.thumbnail_height), (64, 32));
    }

    #[test]
    fn jpeg_orientation_3_keeps_dimensions() {
        let clean = process(&jpeg_with_exif(64, 32, 3, false), &limits()).unwrap();
        assert_eq!((clean.width, clean.height, clean.orientation), (64, 32, 3));
        let thumb = decode(&clean.thumbnail).to_rgb8();
        let bottom = thumb.get_pixel(32, 30);
        assert!(bottom.0[0] > bottom.0[2] + 60, "rotated 180: {bottom:?}");
    }

    #[test]
    fn every_orientation_gives_upright_thumbnail_size() {
        for o in 1..=8u16 {
            let clean = process(&jpeg_with_exif(80, 40, o, true), &limits()).unwrap();
            let expect = if o >= 5 { (40, 80) } else { (80, 40) };
            assert_eq!((clean.width, clean.height), expect, "orientation {o}");
            assert_eq!((clean.thumbnail_width, clean.thumbnail_height), expect);
            let thumb = decode(&clean.thumbnail);
            assert_eq!((thumb.width(), thumb.height()), expect);
        }
    }

    #[test]
    fn exif_orientation_reads_both_byte_orders() {
        for be in [false, true] {
            for o in 1..=8 {
                assert_eq!(exif_orientation(&exif_tiff(o, true, be)), Some(o));
            }
            assert_eq!(exif_orientation(&exif_tiff(0, true, be)), None);
            assert_eq!(exif_orientation(&exif_tiff(9, false, be)), None);
        }
        assert_eq!(exif_orientation(b""), None);
        assert_eq!(exif_orientation(b"MM\0\x2a\xff\xff\xff\xff"), None);
        assert_eq!(exif_orientation(b"II\x2a\0\x08\0\0\0\xff\xff"), None);
        let tiff = exif_tiff(6, true, true);
        for cut in 0..tiff.len() {
            let _ = exif_orientation(&tiff[..cut]);
        }
    }

    #[test]
    fn big_endian_exif_in_jpeg_is_honoured() {
        let src = jpeg_with_exif(40, 20, 1, false);
        let mut exif = EXIF_HEADER.to_vec();
        exif.extend(exif_tiff(8, true, true));
        let mut spliced = src[..2].to_vec();
        write_jpeg_segment(&mut spliced, APP1, &exif).unwrap();
        spliced.extend_from_slice(&src[2..]);
        let clean = process(&spliced, &limits()).unwrap();
        assert_eq!((clean.width, clean.height, clean.orientation), (20, 40, 8));
    }

    #[test]
    fn jpeg_drops_trailing_data_and_other_app_segments() {
        let src = jpeg_with_exif(32, 32, 1, true);
        let mut mpf = b"MPF\0".to_vec();
        mpf.extend_from_slice(SECRET.as_bytes());
        let mut icc = b"ICC_PROFILE\0\x01\x01".to_vec();
        icc.extend_from_slice(&[0u8; 16]);
        let mut jfxx = b"JFXX\0\x10".to_vec();
        jfxx.extend_from_slice(SECRET.as_bytes());
        let mut with = src[..2].to_vec();
        write_jpeg_segment(&mut with, APP2, &mpf).unwrap();
        write_jpeg_segment(&mut with, APP2, &icc).unwrap();
        write_jpeg_segment(&mut with, APP14, b"Adobe\0\x64\0\0\0\0\x01").unwrap();
        write_jpeg_segment(&mut with, 0xE5, SECRET.as_bytes()).unwrap();
        write_jpeg_segment(&mut with, APP0, &jfxx).unwrap();
        with.extend_from_slice(&src[2..]);
        with.extend_from_slice(b"PK\x03\x04");
        with.extend(jpeg_with_exif(16, 16, 3, true));

        let clean = process(&with, &limits()).unwrap();
        assert!(clean.bytes.ends_with(&[0xFF, EOI]));
        assert!(!contains(&clean.bytes, SECRET.as_bytes()));
        assert!(!contains(&clean.bytes, b"PK\x03\x04"));
        let kept: Vec<u8> = jpeg_segments(&clean.bytes).iter().map(|s| s.0).collect();
        assert!(kept.contains(&APP2));
        assert!(kept.contains(&APP14));
        assert!(kept.contains(&APP0));
        assert!(!kept.contains(&0xE5));
        assert_eq!(decode(&clean.bytes).width(), 32);
    }

    #[test]
    fn jfif_thumbnail_is_removed() {
        let src = jpeg_with_exif(16, 16, 1, false);
        let mut jfif = b"JFIF\0\x01\x02\x00\x00\x01\x00\x01\x02\x01".to_vec();
        jfif.extend_from_slice(&[0xAB; 6]);
        let mut with = src[..2].to_vec();
        write_jpeg_segment(&mut with, APP0, &jfif).unwrap();
        with.extend_from_slice(&src[2..]);
        let clean = process(&with, &limits()).unwrap();
        let app0 = jpeg_segments(&clean.bytes)
            .into_iter()
            .find(|s| s.0 == APP0)
            .unwrap();
        assert_eq!(app0.1, b"JFIF\0\x01\x02\x00\x00\x01\x00\x01\x00\x00");
    }

    #[test]
    fn jpeg_with_megabytes_of_app1_is_cleaned() {
        let src = jpeg_with_exif(64, 48, 6, true);
        let mut big = src[..2].to_vec();
        let filler = vec![0x41u8; 65_000];
        for _ in 0..80 {
            write_jpeg_segment(&mut big, APP1, &filler).unwrap();
        }
        big.extend_from_slice(&src[2..]);
        assert!(big.len() > 5_000_000);
        let clean = process(&big, &limits()).unwrap();
        assert!(clean.bytes.len() < src.len());
        assert_eq!((clean.width, clean.height, clean.orientation), (48, 64, 6));
    }

    #[test]
    fn progressive_style_segments_between_scans_are_handled() {
        let src = jpeg_with_exif(32, 32, 1, false);
        let eoi = src.len() - 2;
        let mut with = src[..eoi].to_vec();
        write_jpeg_segment(&mut with, COM, SECRET.as_bytes()).unwrap();
        with.extend_from_slice(&src[eoi..]);
        let clean = process(&with, &limits()).unwrap();
        assert!(!contains(&clean.bytes, SECRET.as_bytes()));
    }

    #[test]
    fn malformed_jpegs_are_rejected() {
        let bad = |b: &[u8]| match process(b, &limits()) {
            Err(ImagingError::Corrupt(_) | ImagingError::Unsupported) => {}
            other => panic!("expected rejection, got {other:?}"),
        };
        let src = jpeg_with_exif(64, 48, 6, true);
        bad(&src[..src.len() / 2]);
        bad(&src[..src.len() - 2]);
        bad(b"\xFF\xD8\xFF");
        bad(b"\xFF\xD8\xFF\xFF\xFF\xFF");
        bad(b"\xFF\xD8\xFF\xD9");
        bad(b"\xFF\xD8\xFF\xE1\xFF\xFF\x00\x00");
        bad(b"\xFF\xD8\xFF\xE1\x00\x01");
        bad(b"\xFF\xD8\xFF\xE1\x00\x00");
        bad(b"\xFF\xD8\xFF\xDA\x00\x08\x01\x01\x00\x00\x3f\x00");
        bad(b"\xFF\xD8\xFF\x12\x34\x56garbage after soi");
        bad(b"\xFF\xD8\xFFgarbage after soi, no marker at all");
        bad(
            b"\xFF\xD8\xFF\xC0\x00\x11\x08\x00\x00\x00\x10\x03\x01\x11\x00\x02\x11\x00\x03\x11\x00",
        );
        bad(b"\xFF\xD8\xFF\xC0\x00\x0b\x01\x00\x10\x00\x10\x01\x01\x11\x00");
        let mut overflow = src[..2].to_vec();
        overflow.extend_from_slice(b"\xFF\xE1\xFF\xF0Exif\0\0");
        bad(&overflow);
        for cut in (3..src.len()).step_by(7) {
            assert!(process(&src[..cut], &limits()).is_err(), "prefix {cut}");
        }
    }

    #[test]
    fn jpeg_pixel_limit_is_checked_before_decoding() {
        let src = jpeg_with_exif(400, 300, 6, true);
        let tight = Limits {
            max_pixels: 119_999,
            thumbnail_size: 320,
        };
        match process(&src, &tight) {
            Err(ImagingError::TooManyPixels { width, height, max }) => {
                assert_eq!((width, height, max), (400, 300, 119_999));
            }
            other => panic!("{other:?}"),
        }
        // A frame header claiming 65535x65535 with no data behind it.
        let mut huge = b"\xFF\xD8".to_vec();
        write_jpeg_segment(
            &mut huge,
            0xC0,
            b"\x08\xff\xff\xff\xff\x03\x01\x11\x00\x02\x11\x00\x03\x11\x00",
        )
        .unwrap();
        write_jpeg_segment(&mut huge, SOS, b"\x01\x01\x00\x00\x3f\x00").unwrap();
        assert!(matches!(
            process(&huge, &limits()),
            Err(ImagingError::TooManyPixels {
                width: 65535,
                height: 65535,
                ..
            })
        ));
    }

    #[test]
    fn png_text_chunks_are_stripped() {
        let src = small_png(40, 30);
        assert!(png_chunk_types(&src).contains(&"tEXt".to_string()));
        let clean = process(&src, &limits()).unwrap();
        let types = png_chunk_types(&clean.bytes);
        assert_eq!(types.first().map(String::as_str), Some("IHDR"));
        assert_eq!(types.last().map(String::as_str), Some("IEND"));
        for dropped in ["tEXt", "tIME", "eXIf", "zTXt", "iTXt"] {
            assert!(!types.iter().any(|t| t == dropped), "{dropped} kept");
        }
        assert!(!contains(&clean.bytes, SECRET.as_bytes()));
        assert_eq!(decode(&src).to_rgba8(), decode(&clean.bytes).to_rgba8());
        assert_eq!((clean.width, clean.height), (40, 30));
        assert_eq!((clean.thumbnail_width, clean.thumbnail_height), (40, 30));
        // The transparent corner is shown on white.
        let thumb = decode(&clean.thumbnail).to_rgb8();
        assert!(thumb.get_pixel(1, 1).0.iter().all(|&c| c > 230));
    }

    #[test]
    fn png_keeps_rendering_chunks_and_drops_trailing_data() {
        let src = small_png(8, 8);
        let mut with = png_insert_after_ihdr(&src, &png_chunk(b"gAMA", &45455u32.to_be_bytes()));
        with = png_insert_after_ihdr(&with, &png_chunk(b"zTXt", b"k\0\0x"));
        with = png_insert_after_ihdr(&with, &png_chunk(b"prVt", SECRET.as_bytes()));
        with.extend_from_slice(SECRET.as_bytes());
        let clean = process(&with, &limits()).unwrap();
        let types = png_chunk_types(&clean.bytes);
        assert!(types.contains(&"gAMA".to_string()));
        assert!(!types.contains(&"zTXt".to_string()));
        assert!(!types.contains(&"prVt".to_string()));
        assert!(!contains(&clean.bytes, SECRET.as_bytes()));
    }

    #[test]
    fn png_header_claiming_huge_size_is_rejected_fast() {
        let src = png_header_claiming(30_000, 30_000);
        assert!(src.len() < 100);
        let started = Instant::now();
        match process(&src, &limits()) {
            Err(ImagingError::TooManyPixels { width, height, max }) => {
                assert_eq!((width, height, max), (30_000, 30_000, 50_000_000));
            }
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < Duration::from_millis(50));
        let message = process(&src, &limits()).unwrap_err().to_string();
        assert_eq!(
            message,
            "image is 30000x30000 pixels, above the limit of 50000000 pixels"
        );
        // Within the limit the same file is merely undecodable.
        assert!(matches!(
            process(&png_header_claiming(100, 100), &limits()),
            Err(ImagingError::Corrupt(_))
        ));
    }

    #[test]
    fn malformed_pngs_are_rejected() {
        let src = small_png(16, 16);
        for cut in 8..src.len() {
            assert!(process(&src[..cut], &limits()).is_err(), "prefix {cut}");
        }
        let mut huge_len = src.clone();
        huge_len[33..37].copy_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
        assert!(matches!(
            process(&huge_len, &limits()),
            Err(ImagingError::Corrupt(_))
        ));
        let unknown_critical = png_insert_after_ihdr(&src, &png_chunk(b"ABCD", b""));
        assert!(matches!(
            process(&unknown_critical, &limits()),
            Err(ImagingError::Corrupt(_))
        ));
        let zero = png_header_claiming(0, 10);
        assert!(matches!(
            process(&zero, &limits()),
            Err(ImagingError::Corrupt(_))
        ));
    }

    #[test]
    fn gif_is_cleaned_and_keeps_frames() {
        let src = small_gif(50, 20);
        assert!(contains(&src, SECRET.as_bytes()));
        let clean = process(&src, &limits()).unwrap();
        assert_eq!(clean.format, ImageFormat::Gif);
        assert_eq!((clean.width, clean.height), (50, 20));
        assert!(!contains(&clean.bytes, SECRET.as_bytes()));
        assert!(!contains(&clean.bytes, b"XMP DataXMP"));
        assert!(contains(&clean.bytes, b"NETSCAPE2.0"));
        let frames = |b: &[u8]| {
            use image::AnimationDecoder;
            image::codecs::gif::GifDecoder::new(Cursor::new(b.to_vec()))
                .unwrap()
                .into_frames()
                .collect_frames()
                .unwrap()
                .len()
        };
        assert_eq!(frames(&src), 2);
        assert_eq!(frames(&clean.bytes), 2);
        assert_eq!((clean.thumbnail_width, clean.thumbnail_height), (50, 20));
        let small = Limits {
            thumbnail_size: 25,
            ..limits()
        };
        let clean = process(&src, &small).unwrap();
        assert_eq!((clean.thumbnail_width, clean.thumbnail_height), (25, 10));
        let thumb = decode(&clean.thumbnail);
        assert_eq!((thumb.width(), thumb.height()), (25, 10));
    }

    #[test]
    fn malformed_gifs_are_rejected() {
        let src = small_gif(10, 10);
        for cut in 6..src.len() - 1 {
            let _ = process(&src[..cut], &limits());
        }
        assert!(process(b"GIF89a", &limits()).is_err());
        assert!(process(b"GIF89a\x0a\x00\x0a\x00\x00\x00\x00;", &limits()).is_err());
        let mut frame_too_big = b"GIF89a\x0a\x00\x0a\x00\x00\x00\x00".to_vec();
        frame_too_big.extend_from_slice(b"\x2C\0\0\0\0\xff\xff\xff\xff\x00\x02\x00;");
        assert!(matches!(
            process(&frame_too_big, &limits()),
            Err(ImagingError::TooManyPixels { width: 65535, .. })
        ));
    }

    #[test]
    fn webp_is_cleaned() {
        let src = small_webp(30, 60);
        assert_eq!(webp_chunk_types(&src), ["VP8X", "VP8L", "EXIF", "XMP "]);
        let clean = process(&src, &limits()).unwrap();
        assert_eq!(clean.format, ImageFormat::Webp);
        assert_eq!((clean.width, clean.height), (30, 60));
        assert_eq!(webp_chunk_types(&clean.bytes), ["VP8X", "VP8L"]);
        assert_eq!(clean.bytes[20] & (VP8X_FLAG_EXIF | VP8X_FLAG_XMP), 0);
        assert_eq!(clean.bytes[20] & 0x10, 0x10, "alpha flag kept");
        assert_eq!(le32(&clean.bytes, 4), Some(clean.bytes.len() as u32 - 8));
        assert!(!contains(&clean.bytes, SECRET.as_bytes()));
        assert_eq!(decode(&src).to_rgba8(), decode(&clean.bytes).to_rgba8());
        assert_eq!((clean.thumbnail_width, clean.thumbnail_height), (30, 60));
        let small = Limits {
            thumbnail_size: 20,
            ..limits()
        };
        let clean = process(&src, &small).unwrap();
        assert_eq!((clean.thumbnail_width, clean.thumbnail_height), (10, 20));
    }

    #[test]
    fn malformed_webps_are_rejected() {
        let src = small_webp(10, 10);
        for cut in 12..src.len() {
            assert!(process(&src[..cut], &limits()).is_err(), "prefix {cut}");
        }
        let mut bad_size = src.clone();
        bad_size[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            process(&bad_size, &limits()),
            Err(ImagingError::Corrupt(_))
        ));
        let mut huge_canvas = src.clone();
        huge_canvas[24..30].copy_from_slice(&[0xff; 6]);
        assert!(matches!(
            process(&huge_canvas, &limits()),
            Err(ImagingError::TooManyPixels { .. })
        ));
    }

    #[test]
    fn thumbnail_dimensions_never_upscale() {
        assert_eq!(thumbnail_dimensions(4032, 3024, 320), (320, 240));
        assert_eq!(thumbnail_dimensions(3024, 4032, 320), (240, 320));
        assert_eq!(thumbnail_dimensions(100, 50, 320), (100, 50));
        assert_eq!(thumbnail_dimensions(10_000, 1, 320), (320, 1));
        assert_eq!(thumbnail_dimensions(7, 7, 0), (1, 1));
    }

    #[test]
    fn large_jpeg_uses_shrink_on_load() {
        let src = jpeg_with_exif(1600, 1200, 6, true);
        let clean = process(&src, &limits()).unwrap();
        assert_eq!((clean.width, clean.height), (1200, 1600));
        assert_eq!((clean.thumbnail_width, clean.thumbnail_height), (240, 320));
        let scaled = decode_jpeg_scaled(&clean.bytes, 320, 240, 1600, 1200).unwrap();
        assert_eq!((scaled.width(), scaled.height()), (400, 300));
    }

    /// Mean and max absolute difference of two same-sized images.
    fn difference(a: &DynamicImage, b: &DynamicImage) -> (f64, u8) {
        let (a, b) = (a.to_rgb8(), b.to_rgb8());
        assert_eq!(a.dimensions(), b.dimensions());
        let diffs: Vec<u8> = a
            .as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| x.abs_diff(*y))
            .collect();
        let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
        (mean, diffs.into_iter().max().unwrap_or(0))
    }

    #[test]
    fn dc_decoder_matches_dct_scaling() {
        for (w, h) in [(400, 300), (333, 217), (8, 8), (17, 9)] {
            let src = jpeg_with_exif(w, h, 1, false);
            let header = jpeg_header(&src).unwrap();
            let fast = decode_jpeg_dc(&src, &header).expect("baseline is covered");
            let reference = decode_jpeg_scaled(&src, 1, 1, w, h).unwrap();
            assert_eq!(fast.dimensions(), (w.div_ceil(8), h.div_ceil(8)));
            let (mean, max) = difference(&fast, &reference);
            assert!(mean < 2.0 && max < 40, "{w}x{h}: mean {mean} max {max}");
        }
    }

    /// A JPEG whose blocks hold only a DC value (`dc(component, block_x,
    /// block_y)`, as pixel value - 128), optionally with restart markers;
    /// small enough to know every output pixel exactly. With `progressive`
    /// set to `Some(al)` it is a progressive JPEG with only its first scan,
    /// the DC of all components shifted right by `al`.
    fn dc_only_jpeg(
        width: u16,
        height: u16,
        sampling: &[(usize, usize)],
        restart: u16,
        progressive: Option<u8>,
        dc: impl Fn(usize, usize, usize) -> i32,
    ) -> Vec<u8> {
        let mut out = vec![0xFF, SOI];
        let mut dqt = vec![0u8];
        dqt.extend([8u8; 64]);
        write_jpeg_segment(&mut out, 0xDB, &dqt).unwrap();
        let mut sof = vec![8];
        sof.extend(height.to_be_bytes());
        sof.extend(width.to_be_bytes());
        sof.push(sampling.len() as u8);
        for (i, &(h, v)) in sampling.iter().enumerate() {
            sof.extend([i as u8 + 1, (h << 4 | v) as u8, 0]);
        }
        let sof_marker = if progressive.is_some() { 0xC2 } else { 0xC0 };
        write_jpeg_segment(&mut out, sof_marker, &sof).unwrap();
        // DC: categories 0..=11, all 4-bit codes. AC: end-of-block only, code "0".
        let mut dht = vec![0x00, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        dht.extend(0u8..12);
        dht.extend([0x10, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00]);
        write_jpeg_segment(&mut out, 0xC4, &dht).unwrap();
        if restart > 0 {
            write_jpeg_segment(&mut out, 0xDD, &restart.to_be_bytes()).unwrap();
        }
        let mut sos = vec![sampling.len() as u8];
        for i in 0..sampling.len() {
            sos.extend([i as u8 + 1, 0x00]);
        }
        match progressive {
            Some(al) => sos.extend([0, 0, al]),
            None => sos.extend([0, 63, 0]),
        }
        write_jpeg_segment(&mut out, SOS, &sos).unwrap();

        let (h_max, v_max) = (
            sampling.iter().map(|s| s.0).max().unwrap(),
            sampling.iter().map(|s| s.1).max().unwrap(),
        );
        let mcus_x = usize::from(width).div_ceil(8 * h_max);
        let mcus_y = usize::from(height).div_ceil(8 * v_max);
        let mut bits: Vec<bool> = Vec::new();
        let flush = |bits: &mut Vec<bool>, out: &mut Vec<u8>| {
            while !bits.len().is_multiple_of(8) {
                bits.push(true);
            }
            for byte in bits.chunks(8) {
                let b = byte.iter().fold(0u8, |a, &bit| a << 1 | u8::from(bit));
                out.push(b);
                if b == 0xFF {
                    out.push(0);
                }
            }
            bits.clear();
        };
        let mut predictors = vec![0i32; sampling.len()];
        let mut mcu = 0usize;
        for my in 0..mcus_y {
            for mx in 0..mcus_x {
                if restart > 0 && mcu > 0 && mcu.is_multiple_of(usize::from(restart)) {
                    flush(&mut bits, &mut out);
                    out.extend([0xFF, 0xD0 + ((mcu / usize::from(restart) - 1) % 8) as u8]);
                    predictors.fill(0);
                }
                for (c, &(h, v)) in sampling.iter().enumerate() {
                    for by in 0..v {
                        for bx in 0..h {
                            let value = dc(c, mx * h + bx, my * v + by) >> progressive.unwrap_or(0);
                            let diff = value - predictors[c];
                            predictors[c] = value;
                            let size = 32 - diff.unsigned_abs().leading_zeros();
                            bits.extend((0..4).rev().map(|i| size >> i & 1 == 1));
                            let coded = if diff < 0 {
                                diff + (1 << size) - 1
                            } else {
                                diff
                            };
                            bits.extend((0..size).rev().map(|i| coded >> i & 1 == 1));
                            if progressive.is_none() {
                                bits.push(false);
                            }
                        }
                    }
                }
                mcu += 1;
            }
        }
        flush(&mut bits, &mut out);
        out.extend([0xFF, EOI]);
        out
    }

    #[test]
    fn dc_decoder_is_exact_with_restart_markers() {
        let gray = |_: usize, x: usize, y: usize| ((x * 37 + y * 11) % 250) as i32 - 125;
        for restart in [0, 1, 3, 7] {
            let src = dc_only_jpeg(80, 56, &[(1, 1)], restart, None, gray);
            let header = jpeg_header(&src).unwrap();
            let fast = decode_jpeg_dc(&src, &header).expect("covered").to_luma8();
            let reference = decode_jpeg_scaled(&src, 1, 1, 80, 56).unwrap().to_luma8();
            assert_eq!(fast.dimensions(), (10, 7));
            for (x, y, p) in fast.enumerate_pixels() {
                let expected = gray(0, x as usize, y as usize) + 128;
                assert_eq!(i32::from(p.0[0]), expected, "restart {restart} at {x},{y}");
            }
            assert_eq!(fast, reference, "restart {restart}");
        }
        // Colour with 4:2:0 subsampling: chroma is repeated over 2x2 pixels.
        let colour = |c: usize, x: usize, y: usize| match c {
            0 => ((x * 13 + y * 29) % 200) as i32 - 100,
            1 => x as i32 * 9 - 20,
            _ => 30 - y as i32 * 11,
        };
        let src = dc_only_jpeg(64, 48, &[(2, 2), (1, 1), (1, 1)], 2, None, colour);
        let header = jpeg_header(&src).unwrap();
        let fast = decode_jpeg_dc(&src, &header).expect("covered").to_rgb8();
        assert_eq!(fast.dimensions(), (8, 6));
        for (x, y, p) in fast.enumerate_pixels() {
            let (x, y) = (x as usize, y as usize);
            let sample = |c, x, y| (colour(c, x, y) + 128) as u8;
            let expected = ycbcr_to_rgb(
                sample(0, x, y),
                sample(1, x / 2, y / 2),
                sample(2, x / 2, y / 2),
            );
            assert_eq!(p.0, expected, "at {x},{y}");
        }
        // The general decoder interpolates chroma instead; close on smooth chroma.
        let reference = decode_jpeg_scaled(&src, 1, 1, 64, 48).unwrap();
        let (mean, _) = difference(&DynamicImage::ImageRgb8(fast), &reference);
        assert!(mean < 6.0, "mean {mean}");

        // A wrong restart number is left to the general decoder.
        let mut wrong = dc_only_jpeg(80, 56, &[(1, 1)], 1, None, gray);
        let at = wrong.windows(2).position(|w| w == [0xFF, 0xD0]).unwrap();
        wrong[at + 1] = 0xD5;
        let header = jpeg_header(&wrong).unwrap();
        assert!(decode_jpeg_dc(&wrong, &header).is_none());
        let _ = process(
            &wrong,
            &Limits {
                max_pixels: 1 << 20,
                thumbnail_size: 4,
            },
        );
    }

    #[test]
    fn dc_decoder_reads_first_progressive_scan() {
        let colour = |c: usize, x: usize, y: usize| match c {
            0 => ((x * 13 + y * 29) % 200) as i32 - 100,
            1 => x as i32 * 9 - 20,
            _ => 30 - y as i32 * 11,
        };
        for al in [0, 1, 2] {
            let src = dc_only_jpeg(64, 48, &[(2, 1), (1, 1), (1, 1)], 3, Some(al), colour);
            let header = jpeg_header(&src).unwrap();
            let fast = decode_jpeg_dc(&src, &header).expect("covered").to_rgb8();
            for (x, y, p) in fast.enumerate_pixels() {
                let (x, y) = (x as usize, y as usize);
                let sample = |c, x, y| ((colour(c, x, y) >> al << al) + 128) as u8;
                let expected =
                    ycbcr_to_rgb(sample(0, x, y), sample(1, x / 2, y), sample(2, x / 2, y));
                assert_eq!(p.0, expected, "al {al} at {x},{y}");
            }
            let reference = decode_jpeg_scaled(&src, 1, 1, 64, 48).unwrap();
            let (mean, _) = difference(&DynamicImage::ImageRgb8(fast), &reference);
            assert!(mean < 6.0, "al {al}: mean {mean}");
        }
        // Gray, and through process with a thumbnail small enough for 1/8.
        let gray = |_: usize, x: usize, y: usize| (x * 3 + y * 5) as i32 - 90;
        let src = dc_only_jpeg(160, 96, &[(1, 1)], 0, Some(1), gray);
        let clean = process(
            &src,
            &Limits {
                thumbnail_size: 20,
                ..limits()
            },
        )
        .unwrap();
        assert_eq!((clean.thumbnail_width, clean.thumbnail_height), (20, 12));
        assert_eq!(clean.bytes, src);
    }

    #[test]
    fn grayscale_and_cmyk_jpegs_are_thumbnailed() {
        let gray = |_: usize, x: usize, y: usize| (x * 9 + y * 4) as i32 - 100;
        let src = dc_only_jpeg(80, 56, &[(1, 1)], 0, None, gray);
        let clean = process(&src, &limits()).unwrap();
        assert_eq!((clean.thumbnail_width, clean.thumbnail_height), (80, 56));
        let thumb = decode(&clean.thumbnail).to_rgb8();
        let [r, g, b] = thumb.get_pixel(40, 28).0;
        assert!(r.abs_diff(g) <= 2 && g.abs_diff(b) <= 2, "{r} {g} {b}");
        assert!(
            r.abs_diff((gray(0, 40 / 8, 28 / 8) + 128) as u8) <= 6,
            "{r}"
        );

        // Four components: neither fast path covers CMYK, the image crate does.
        let cmyk = |c: usize, x: usize, y: usize| (x * 5 + y * 3 + c * 20) as i32 - 80;
        let src = dc_only_jpeg(48, 32, &[(1, 1); 4], 0, None, cmyk);
        let header = jpeg_header(&src).unwrap();
        assert!(decode_jpeg_dc(&src, &header).is_none());
        let clean = process(&src, &limits()).unwrap();
        assert_eq!((clean.thumbnail_width, clean.thumbnail_height), (48, 32));
        let small = process(
            &src,
            &Limits {
                thumbnail_size: 6,
                ..limits()
            },
        )
        .unwrap();
        assert_eq!((small.thumbnail_width, small.thumbnail_height), (6, 4));
    }

    #[test]
    fn dc_path_thumbnail_is_upright() {
        let src = jpeg_with_exif(400, 300, 6, true);
        let small = Limits {
            thumbnail_size: 40,
            ..limits()
        };
        let header = jpeg_header(&src).unwrap();
        assert!(decode_jpeg_dc(&src, &header).is_some());
        let clean = process(&src, &small).unwrap();
        assert_eq!((clean.width, clean.height), (300, 400));
        assert_eq!((clean.thumbnail_width, clean.thumbnail_height), (30, 40));
        let thumb = decode(&clean.thumbnail).to_rgb8();
        let (right, left) = (thumb.get_pixel(27, 20), thumb.get_pixel(2, 20));
        assert!(right.0[0] > right.0[2] + 60, "right {right:?}");
        assert!(left.0[2] > left.0[0] + 60, "left {left:?}");
    }

    #[test]
    fn huffman_tables_are_validated() {
        // Three 1-bit codes cannot exist.
        let mut counts = [0u8; 16];
        counts[0] = 3;
        assert!(Huffman::new(&counts, &[0, 1, 2]).is_none());
        counts[0] = 2;
        assert!(Huffman::new(&counts, &[0]).is_none());
        assert!(Huffman::new(&counts, &[0, 1]).is_some());
    }

    #[test]
    fn resize_area_keeps_flat_colour_and_averages() {
        let flat = vec![200u8; 7 * 5 * 3];
        assert!(resize_area(&flat, 7, 5, 3, 3, 2).iter().all(|&v| v == 200));
        let stripes: Vec<u8> = (0..8).map(|x| if x % 2 == 0 { 0 } else { 255 }).collect();
        let half = resize_area(&stripes, 8, 1, 1, 4, 1);
        assert!(half.iter().all(|&v| (127..=128).contains(&v)), "{half:?}");
        assert_eq!(resize_area(&[], 0, 0, 3, 2, 2), vec![0; 12]);
    }

    #[test]
    fn mutated_inputs_never_panic() {
        let inputs = [
            jpeg_with_exif(48, 32, 6, true),
            small_png(12, 9),
            small_gif(12, 9),
            small_webp(12, 9),
        ];
        let mut seed = 1u32;
        for src in &inputs {
            for _ in 0..150 {
                let mut m = src.clone();
                for _ in 0..4 {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    let at = (seed >> 8) as usize % m.len();
                    m[at] = (seed >> 3) as u8;
                }
                let _ = process(&m, &limits());
                // Tiny thumbnails take the DC-only JPEG path.
                let _ = process(
                    &m,
                    &Limits {
                        thumbnail_size: 4,
                        ..limits()
                    },
                );
            }
        }
    }
}
