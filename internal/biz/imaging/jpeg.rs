//! JPEG: segment walking, lossless cleaning and DCT-scaled decoding.
//!
//! Lenient where libjpeg-turbo (what browsers use) is lenient, and the
//! stored copy is then repaired rather than copied as it came:
//! - bytes between segments that are not a marker (garbage before a marker,
//!   stray bytes after SOI) are skipped, as libjpeg does, and not copied;
//! - an APP14 shorter than the 12 bytes of an Adobe segment is dropped,
//!   which is what libjpeg makes of it;
//! - restart markers are renumbered in sequence, so that a file whose writer
//!   numbered them wrong decodes without a resynchronisation;
//! - a file cut short is ended with an EOI, after its last complete scan
//!   when it is progressive ([`jpeg_clean`]; the rule is in the module
//!   above, "Cut short").
//!
//! Bytes inside the entropy-coded data are copied unchanged: only a full
//! decode could tell garbage from data there.

use std::ops::Range;

use image::{DynamicImage, GrayImage, RgbImage};

use super::bytes::{be16, slice_at};
use super::exif::{EXIF_HEADER, exif_orientation, orientation_exif};
use super::{ImageFormat, ImagingError, corrupt, decode_with_image_crate};

pub(super) const SOI: u8 = 0xD8;
pub(super) const EOI: u8 = 0xD9;
pub(super) const SOS: u8 = 0xDA;
pub(super) const APP0: u8 = 0xE0;
pub(super) const APP1: u8 = 0xE1;
pub(super) const APP2: u8 = 0xE2;
pub(super) const APP14: u8 = 0xEE;
pub(super) const COM: u8 = 0xFE;

/// A marker segment; `payload` excludes the marker and the length field.
pub(super) struct Segment {
    pub(super) marker: u8,
    pub(super) payload: Range<usize>,
}

impl Segment {
    pub(super) fn bytes<'a>(&self, b: &'a [u8]) -> &'a [u8] {
        b.get(self.payload.clone()).unwrap_or_default()
    }
}

/// What the header walk learnt, up to and including the first SOS.
pub(super) struct JpegHeader {
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) orientation: u16,
    /// Segments to copy, in file order, ending with the first SOS.
    pub(super) kept: Vec<Segment>,
    /// First byte of entropy-coded data.
    pub(super) scan_start: usize,
}

pub(super) fn is_sof(marker: u8) -> bool {
    (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
}

fn is_standalone(marker: u8) -> bool {
    marker == 0x01 || (0xD0..=0xD7).contains(&marker)
}

/// Segments that carry no personal data and may matter for rendering.
fn jpeg_keep(marker: u8, payload: &[u8]) -> bool {
    /// libjpeg's APP14_DATA_LEN: shorter Adobe segments are ignored.
    const ADOBE_LEN: usize = 12;
    match marker {
        APP0 => payload.starts_with(b"JFIF\0"),
        APP2 => payload.starts_with(b"ICC_PROFILE\0"),
        APP14 => payload.starts_with(b"Adobe") && payload.len() >= ADOBE_LEN,
        0xE0..=0xEF | COM => false,
        _ => true,
    }
}

/// Returns the marker at `pos` (after any fill bytes) and the index after it.
pub(super) fn jpeg_marker(b: &[u8], pos: usize) -> Result<(u8, usize), ImagingError> {
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

pub(super) fn jpeg_segment(
    b: &[u8],
    marker: u8,
    after_marker: usize,
) -> Result<Segment, ImagingError> {
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

/// Index of the next marker at or after `pos` between segments, skipping
/// anything that is not one (libjpeg's `next_marker`, which warns and goes on).
fn skip_to_marker(b: &[u8], mut pos: usize) -> Result<usize, ImagingError> {
    loop {
        let at = find_ff(b, pos).ok_or_else(|| corrupt("no marker after a segment"))?;
        let mut next = at + 1;
        while b.get(next) == Some(&0xFF) {
            next += 1;
        }
        match b.get(next) {
            None => return Err(corrupt("truncated marker")),
            // FF 00 is not a marker.
            Some(0x00) => pos = next + 1,
            Some(_) => return Ok(at),
        }
    }
}

/// Walks the segments before the first scan; reads no pixel data.
pub(super) fn jpeg_header(b: &[u8]) -> Result<JpegHeader, ImagingError> {
    let mut pos = 2;
    let mut kept = Vec::new();
    let mut size = None;
    let mut orientation = None;
    loop {
        let (marker, after) = jpeg_marker(b, skip_to_marker(b, pos)?)?;
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

pub(super) fn write_jpeg_segment(
    out: &mut Vec<u8>,
    marker: u8,
    payload: &[u8],
) -> Result<(), ImagingError> {
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

/// How a run of entropy-coded data ended.
enum DataEnd {
    /// At the marker at this index.
    Marker(usize),
    /// At the end of the file, with no marker after the data.
    File,
}

/// Copies entropy-coded data starting at `from`, with its restart markers
/// renumbered in sequence, and says where it ends.
///
/// A run of 0xFF is fill bytes and the byte after the run decides, as in
/// libjpeg: `FF FF … FF 00` is one stuffed 0xFF and is stored as `FF 00`
/// (some decoders refuse the longer form), and fill bytes before a restart
/// marker or the next marker are dropped.
fn copy_entropy_data(b: &[u8], from: usize, out: &mut Vec<u8>, restarts: &mut u8) -> DataEnd {
    let (mut i, mut copied) = (from, from);
    loop {
        let Some(at) = find_ff(b, i) else {
            out.extend_from_slice(b.get(copied..).unwrap_or_default());
            return DataEnd::File;
        };
        let run = b.get(at..).unwrap_or_default();
        let last_ff = at + run.iter().take_while(|&&x| x == 0xFF).count().max(1) - 1;
        match b.get(last_ff + 1) {
            // 0xFF as the last bytes: the file was cut in a marker.
            None => {
                out.extend_from_slice(b.get(copied..at).unwrap_or_default());
                return DataEnd::File;
            }
            // A stuffed zero: still data.
            Some(0x00) if last_ff == at => i = at + 2,
            Some(0x00) => {
                out.extend_from_slice(b.get(copied..at).unwrap_or_default());
                out.extend_from_slice(&[0xFF, 0x00]);
                i = last_ff + 2;
                copied = i;
            }
            Some(0xD0..=0xD7) => {
                out.extend_from_slice(b.get(copied..at).unwrap_or_default());
                out.extend_from_slice(&[0xFF, 0xD0 + *restarts]);
                *restarts = (*restarts + 1) & 7;
                i = last_ff + 2;
                copied = i;
            }
            Some(_) => {
                out.extend_from_slice(b.get(copied..at).unwrap_or_default());
                return DataEnd::Marker(last_ff);
            }
        }
    }
}

/// Whether the segment whose length field is at `at` ends past the file.
fn runs_past_end(b: &[u8], at: usize) -> bool {
    be16(b, at).is_none_or(|len| at + usize::from(len) > b.len())
}

/// A cleaned JPEG, and whether its data had to be ended for it.
pub(super) struct CleanJpeg {
    pub(super) bytes: Vec<u8>,
    /// The file ended inside its first scan, with no end-of-image marker:
    /// one was appended, and whether the scan holds every MCU is for the
    /// caller to find out by decoding it ([`super::jpeg_dc`]).
    pub(super) unchecked_end: bool,
}

/// The components of a scan (SOS payload) and whether it carries their
/// DC coefficients in full (sequential, or a progressive DC first pass).
fn scan_dc_components(sos: &[u8]) -> (Vec<u8>, bool) {
    let count = usize::from(sos.first().copied().unwrap_or(0));
    let ids = (0..count)
        .filter_map(|i| sos.get(1 + 2 * i).copied())
        .collect();
    let tail = 1 + 2 * count;
    let spectral_start = sos.get(tail).copied();
    let approximation_high = sos.get(tail + 2).map(|a| a >> 4);
    (
        ids,
        spectral_start == Some(0) && approximation_high == Some(0),
    )
}

/// The component ids of the frame header among the kept segments.
fn frame_components(b: &[u8], header: &JpegHeader) -> Vec<u8> {
    header
        .kept
        .iter()
        .find(|seg| is_sof(seg.marker))
        .map(|seg| {
            seg.bytes(b)
                .get(6..)
                .unwrap_or_default()
                .chunks_exact(3)
                .map(|c| c[0])
                .collect()
        })
        .unwrap_or_default()
}

/// Rebuilds the file from the kept segments and the verbatim scan data.
///
/// A file that ends without its end-of-image marker (cut short) is ended
/// here: inside its first scan, EOI is appended and the caller checks that
/// the scan is whole; after that, the scan the cut fell in (or the segment)
/// is left out, which leaves a well-formed progressive file, provided the
/// complete scans before it gave every component its DC coefficients (every
/// pixel then has a value). Otherwise it is [`ImagingError::Corrupt`].
pub(super) fn jpeg_clean(b: &[u8], header: &JpegHeader) -> Result<CleanJpeg, ImagingError> {
    let mut out = Vec::with_capacity(b.len().min(64 << 20));
    out.extend_from_slice(&[0xFF, SOI]);
    // EXIF belongs right after SOI, or after JFIF where both are present.
    let mut exif = (header.orientation != 1).then(|| orientation_exif(header.orientation));
    let mut first_scan = &[][..];
    for seg in &header.kept {
        if seg.marker != APP0
            && let Some(exif) = exif.take()
        {
            write_jpeg_segment(&mut out, APP1, &exif)?;
        }
        write_kept_jpeg_segment(&mut out, seg.marker, seg.bytes(b))?;
        if seg.marker == SOS {
            first_scan = seg.bytes(b);
        }
    }

    // Restart markers count 0..=7 from each scan's start.
    let mut restarts = 0u8;
    let mut scans = 1usize;
    let mut scan = scan_dc_components(first_scan);
    // Components whose DC the complete scans carry, and where those end.
    let mut with_dc: Vec<u8> = Vec::new();
    let mut complete_end = None;
    let cut_short = |mut out: Vec<u8>,
                     complete_end: Option<usize>,
                     with_dc: &[u8],
                     inside_first_scan: bool|
     -> Result<CleanJpeg, ImagingError> {
        if inside_first_scan {
            out.extend_from_slice(&[0xFF, EOI]);
            return Ok(CleanJpeg {
                bytes: out,
                unchecked_end: true,
            });
        }
        let every_pixel = frame_components(b, header)
            .iter()
            .all(|c| with_dc.contains(c));
        match complete_end {
            Some(end) if every_pixel => {
                out.truncate(end);
                out.extend_from_slice(&[0xFF, EOI]);
                Ok(CleanJpeg {
                    bytes: out,
                    unchecked_end: false,
                })
            }
            _ => Err(corrupt(
                "the file is cut short: part of the picture is missing",
            )),
        }
    };
    let mut in_scan = true;
    let mut pos = header.scan_start;
    loop {
        let at = match copy_entropy_data(b, pos, &mut out, &mut restarts) {
            DataEnd::Marker(at) => at,
            DataEnd::File => {
                return cut_short(out, complete_end, &with_dc, in_scan && scans == 1);
            }
        };
        // Data that ends at a marker is taken as the whole scan.
        if in_scan {
            if scan.1 {
                with_dc.extend_from_slice(&scan.0);
            }
            complete_end = Some(out.len());
            in_scan = false;
        }
        let Ok((marker, after)) = jpeg_marker(b, at) else {
            return cut_short(out, complete_end, &with_dc, false);
        };
        match marker {
            // Whatever follows EOI is not part of this image.
            EOI => {
                out.extend_from_slice(&[0xFF, EOI]);
                return Ok(CleanJpeg {
                    bytes: out,
                    unchecked_end: false,
                });
            }
            SOI | 0x00 => return Err(corrupt("invalid marker inside image data")),
            m if is_sof(m) => return Err(corrupt("more than one frame header")),
            m if is_standalone(m) => {
                out.extend_from_slice(&[0xFF, m]);
                pos = after;
            }
            _ => {
                let seg = match jpeg_segment(b, marker, after) {
                    Ok(seg) => seg,
                    // Its length runs past the end of the file: cut short in the segment.
                    Err(_) if runs_past_end(b, after) => {
                        return cut_short(out, complete_end, &with_dc, false);
                    }
                    Err(e) => return Err(e),
                };
                if marker == SOS {
                    restarts = 0;
                    scans += 1;
                    scan = scan_dc_components(seg.bytes(b));
                    in_scan = true;
                }
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
///
/// When no scale below 1 would do (a small photo), the image crate's
/// decoder reads it on the calling thread: jpeg-decoder starts a worker
/// thread per colour component for any image wider than 128 px, which
/// costs more than the decode itself at that size and, under load, shows
/// up as the odd upload held for tens of milliseconds.
pub(super) fn decode_jpeg_scaled(
    data: &[u8],
    tw: u32,
    th: u32,
    width: u32,
    height: u32,
) -> Result<DynamicImage, ImagingError> {
    if width.div_ceil(2) < tw || height.div_ceil(2) < th {
        // A file this decoder refuses may still be one jpeg-decoder reads.
        if let Ok(img) = decode_with_image_crate(data, ImageFormat::Jpeg, width, height) {
            return Ok(img);
        }
    }
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

/// The ICC profile of the kept APP2 segments, reassembled in sequence
/// order; `None` when absent or when the chunks do not add up.
pub(super) fn jpeg_icc(b: &[u8], header: &JpegHeader) -> Option<Vec<u8>> {
    const TAG: &[u8] = b"ICC_PROFILE\0";
    let mut chunks: Vec<(u8, &[u8])> = header
        .kept
        .iter()
        .filter(|seg| seg.marker == APP2)
        .filter_map(|seg| {
            let p = seg.bytes(b).strip_prefix(TAG)?;
            Some((*p.first()?, p.get(2..)?))
        })
        .collect();
    let count = header
        .kept
        .iter()
        .find(|seg| seg.marker == APP2)
        .and_then(|seg| seg.bytes(b).get(TAG.len() + 1).copied())?;
    chunks.sort_by_key(|c| c.0);
    let in_order = chunks
        .iter()
        .enumerate()
        .all(|(i, c)| usize::from(c.0) == i + 1);
    (in_order && chunks.len() == usize::from(count) && count > 0)
        .then(|| chunks.iter().flat_map(|c| c.1.iter().copied()).collect())
}
