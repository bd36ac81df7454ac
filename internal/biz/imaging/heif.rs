//! HEIC/HEIF: brand detection, container dimensions, and the JPEG rendition.
//!
//! Browsers other than Safari cannot show HEIC, so a HEIC upload is decoded
//! and stored as a JPEG. The format is recognised by the ISO-BMFF `ftyp` box
//! (major and compatible brands), never by a name or a declared type, and
//! the size comes from the container (`ispe` of the primary item, which for
//! a grid of tiles is the size of the whole picture) so that the pixel limit
//! is checked before the HEVC decoder runs. The decoder, `heifer`, is pure
//! Rust without `unsafe`; it applies the `clap`/`irot`/`imir` transforms, so
//! the rendition is upright, and it gets the pixel limit and one thread of
//! its own (the upload already runs on the bounded blocking pool).
//!
//! The canvas alone does not bound the decoder's work: a `grid` may list
//! the same tile 65,535 times, an overlay or a chain of derivations may
//! repeat an item, and each coded picture may be as large as the limit. So
//! before decoding, [`check_decode_cost`] adds up what the decoder will
//! decode, reference by reference, and refuses a file that asks for more
//! than [`DECODE_BUDGET`] times the pixel limit, or that many times its own
//! length (and a megabyte) of coded bytes.
//!
//! AVIF shares the container but codes its pixels in AV1, which `heifer`
//! does not read: such files stay [`ImagingError::Unsupported`].

use std::collections::HashMap;

use heifer::heifer_hevc_dec::nal::NalUnit;
use heifer::heifer_hevc_dec::params::Sps;
use heifer::heifer_isobmff::boxes::Property;
use heifer::heifer_isobmff::{HeifFile, Item, ItemId};
use image::{DynamicImage, RgbImage, RgbaImage};

use super::bytes::{be16, be32, slice_at};
use super::{
    CleanImage, ImageFormat, ImagingError, PixelLimits, RENDITION_QUALITY, check_pixels, corrupt,
    guarded, jpeg_rendition,
};

/// Brands that promise HEVC-coded images (`image/heic`).
const HEVC_BRANDS: [&[u8; 4]; 8] = [
    b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs",
];
/// Brands of the generic HEIF structure (`image/heif`); what is inside is
/// known only from the item types.
const HEIF_BRANDS: [&[u8; 4]; 4] = [b"mif1", b"msf1", b"mif2", b"miaf"];
/// AV1 inside HEIF.
const AVIF_BRANDS: [&[u8; 4]; 2] = [b"avif", b"avis"];

/// The brands of a leading `ftyp` box: HEIC when any HEVC brand is listed,
/// HEIF for the generic structural brands, `None` for AVIF and the rest.
pub(super) fn heif_brand(b: &[u8]) -> Option<ImageFormat> {
    if slice_at(b, 4, 4) != Some(&b"ftyp"[..]) {
        return None;
    }
    let size = usize::try_from(be32(b, 0)?).ok()?;
    if !(16..=4096).contains(&size) || size % 4 != 0 {
        return None;
    }
    let ftyp = b.get(8..size)?;
    // Major brand, minor version (not a brand), then the compatible brands.
    let brands = ftyp
        .chunks_exact(4)
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, brand)| brand);
    let has = |set: &[&[u8; 4]]| brands.clone().any(|b| set.iter().any(|s| &s[..] == b));
    if has(&HEVC_BRANDS) {
        Some(ImageFormat::Heic)
    } else if has(&AVIF_BRANDS) {
        None
    } else if has(&HEIF_BRANDS) {
        Some(ImageFormat::Heif)
    } else {
        None
    }
}

/// An ISO-BMFF box: its type and the range of its payload.
#[derive(Clone, Copy)]
struct BoxRef {
    kind: [u8; 4],
    start: usize,
    end: usize,
}

/// The boxes laid one after another in `b[from..to]`.
fn boxes(b: &[u8], from: usize, to: usize) -> impl Iterator<Item = Result<BoxRef, ImagingError>> {
    let mut pos = from;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || pos >= to {
            return None;
        }
        let next = (|| {
            let bad = || corrupt("malformed HEIF box");
            let size32 = be32(b, pos).ok_or_else(bad)?;
            let kind: [u8; 4] = slice_at(b, pos + 4, 4)
                .and_then(|k| k.try_into().ok())
                .ok_or_else(bad)?;
            let (header, size) = match size32 {
                // The box runs to the end of its parent.
                0 => (8, to - pos),
                1 => {
                    let hi = u64::from(be32(b, pos + 8).ok_or_else(bad)?);
                    let lo = u64::from(be32(b, pos + 12).ok_or_else(bad)?);
                    let size = usize::try_from((hi << 32) | lo).map_err(|_| bad())?;
                    (16, size)
                }
                n => (8, usize::try_from(n).map_err(|_| bad())?),
            };
            let end = pos
                .checked_add(size)
                .filter(|&end| size >= header && end <= to)
                .ok_or_else(bad)?;
            let found = BoxRef {
                kind,
                start: pos + header,
                end,
            };
            pos = end;
            Ok(found)
        })();
        failed = next.is_err();
        Some(next)
    })
}

fn find_box(
    b: &[u8],
    from: usize,
    to: usize,
    kind: &[u8; 4],
) -> Result<Option<BoxRef>, ImagingError> {
    for found in boxes(b, from, to) {
        let found = found?;
        if &found.kind == kind {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// What the container says about the primary image, before any decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct HeifHeader {
    /// The `ispe` of the primary item, before rotation; `None` when absent
    /// (then only the decoder's own pixel limit guards the decode).
    pub(super) size: Option<(u32, u32)>,
    pub(super) item_type: [u8; 4],
}

/// Reads `pitm`, the primary item's type from `iinf` and its `ispe`
/// through `ipma`/`ipco`.
pub(super) fn heif_header(b: &[u8]) -> Result<HeifHeader, ImagingError> {
    let meta =
        find_box(b, 0, b.len(), b"meta")?.ok_or_else(|| corrupt("HEIF without a meta box"))?;
    // `meta` is a full box: version and flags come first.
    let (from, to) = (meta.start + 4, meta.end);
    let pitm =
        find_box(b, from, to, b"pitm")?.ok_or_else(|| corrupt("HEIF without a primary item"))?;
    let primary = read_item_id(
        b,
        pitm.start + 4,
        b.get(pitm.start).copied().unwrap_or(0) > 0,
    )
    .ok_or_else(|| corrupt("malformed pitm box"))?;
    let iinf = find_box(b, from, to, b"iinf")?.ok_or_else(|| corrupt("HEIF without item info"))?;
    let item_type = primary_item_type(b, iinf, primary)?
        .ok_or_else(|| corrupt("primary item has no info entry"))?;
    let size = match find_box(b, from, to, b"iprp")? {
        Some(iprp) => primary_ispe(b, iprp, primary)?,
        None => None,
    };
    Ok(HeifHeader { size, item_type })
}

fn read_item_id(b: &[u8], at: usize, wide: bool) -> Option<u32> {
    if wide {
        be32(b, at)
    } else {
        be16(b, at).map(u32::from)
    }
}

fn primary_item_type(
    b: &[u8],
    iinf: BoxRef,
    primary: u32,
) -> Result<Option<[u8; 4]>, ImagingError> {
    let version = b.get(iinf.start).copied().unwrap_or(0);
    let entries = iinf.start + 4 + if version == 0 { 2 } else { 4 };
    for infe in boxes(b, entries, iinf.end) {
        let infe = infe?;
        if &infe.kind != b"infe" {
            continue;
        }
        let version = b.get(infe.start).copied().unwrap_or(0);
        // Versions 0 and 1 predate item types; still images use 2 or 3.
        if version < 2 {
            continue;
        }
        let id = read_item_id(b, infe.start + 4, version >= 3);
        let type_at = infe.start + 4 + if version >= 3 { 4 } else { 2 } + 2;
        if id == Some(primary) {
            let kind = slice_at(b, type_at, 4)
                .and_then(|k| k.try_into().ok())
                .ok_or_else(|| corrupt("malformed infe box"))?;
            return Ok(Some(kind));
        }
    }
    Ok(None)
}

/// The `ispe` property associated with the primary item, if any.
fn primary_ispe(b: &[u8], iprp: BoxRef, primary: u32) -> Result<Option<(u32, u32)>, ImagingError> {
    let Some(ipco) = find_box(b, iprp.start, iprp.end, b"ipco")? else {
        return Ok(None);
    };
    let properties: Vec<BoxRef> = boxes(b, ipco.start, ipco.end).collect::<Result<_, _>>()?;
    let bad = || corrupt("malformed ipma box");
    for ipma in boxes(b, iprp.start, iprp.end) {
        let ipma = ipma?;
        if &ipma.kind != b"ipma" {
            continue;
        }
        let version = *b.get(ipma.start).ok_or_else(bad)?;
        let wide_index = b.get(ipma.start + 3).is_some_and(|flags| flags & 1 == 1);
        let count = be32(b, ipma.start + 4).ok_or_else(bad)?;
        let mut pos = ipma.start + 8;
        for _ in 0..count {
            let id = read_item_id(b, pos, version >= 1).ok_or_else(bad)?;
            pos += if version >= 1 { 4 } else { 2 };
            let n = usize::from(*b.get(pos).ok_or_else(bad)?);
            pos += 1;
            for _ in 0..n {
                let index = if wide_index {
                    usize::from(be16(b, pos).ok_or_else(bad)? & 0x7FFF)
                } else {
                    usize::from(*b.get(pos).ok_or_else(bad)? & 0x7F)
                };
                pos += if wide_index { 2 } else { 1 };
                if id != primary || index == 0 {
                    continue;
                }
                let Some(prop) = properties.get(index - 1) else {
                    return Err(corrupt("ipma names a missing property"));
                };
                if &prop.kind == b"ispe" {
                    let width = be32(b, prop.start + 4).ok_or_else(bad)?;
                    let height = be32(b, prop.start + 8).ok_or_else(bad)?;
                    return Ok(Some((width, height)));
                }
            }
            if pos > ipma.end {
                return Err(bad());
            }
        }
    }
    Ok(None)
}

/// Decodes the primary image and stores it as an upright JPEG with the
/// original's ICC profile and nothing else.
pub(super) fn process_heif(
    bytes: &[u8],
    source: ImageFormat,
    limits: &PixelLimits,
) -> Result<CleanImage, ImagingError> {
    let header = heif_header(bytes)?;
    // HEVC-coded images and the derivations of them that the decoder reads;
    // AV1, JPEG, JPEG 2000 or uncompressed items are not read.
    if !matches!(&header.item_type, b"hvc1" | b"grid" | b"iovl" | b"iden") {
        return Err(ImagingError::Unsupported);
    }
    if let Some((width, height)) = header.size {
        check_pixels(width, height, limits.max_pixels)?;
    }
    check_decode_cost(bytes, limits.max_pixels)?;
    let options = heifer::Options {
        // The blocking pool and the decode semaphore already bound parallelism.
        max_threads: 1,
        // Zero would mean the decoder's own default.
        max_pixels: limits.max_pixels.max(1),
    };
    // 8 bits straight from the decoder: half the memory of the 16-bit path,
    // and a JPEG holds no more.
    let decoded = guarded(|| {
        heifer::decode_rgba8(bytes, &options).map_err(|e| corrupt(format!("HEIF: {e}")))
    })?;
    let (width, height) = (decoded.width, decoded.height);
    check_pixels(width, height, limits.max_pixels)?;
    let icc = heifer::read_metadata(bytes)
        .ok()
        .and_then(|m| m.icc_profile)
        .filter(|p| !p.is_empty());
    let pixels = if decoded.has_alpha {
        RgbaImage::from_raw(width, height, decoded.data).map(DynamicImage::ImageRgba8)
    } else {
        RgbImage::from_raw(width, height, decoded.into_rgb8()).map(DynamicImage::ImageRgb8)
    }
    .ok_or_else(|| corrupt("HEIF decoder returned too few pixels"))?;
    jpeg_rendition(source, pixels, icc.as_deref(), RENDITION_QUALITY, limits)
}

/// How many times the pixel limit (and the file's length, for coded bytes)
/// the decoder may be asked to work through for one file. A real grid covers
/// its canvas once, overhanging by less than a tile, and an alpha plane
/// doubles that: well under three.
const DECODE_BUDGET: u64 = 3;

/// Added to the file's length before [`DECODE_BUDGET`] multiplies it: a
/// small tile's few hundred bytes may be read many times over, which costs
/// little; what must not happen is megabytes read thousands of times.
const CODED_BYTES_SLACK: u64 = 1 << 20;

/// Nesting of derived images that the decoder follows (`heifer`'s own
/// limit); deeper items are refused by the decoder and cost nothing here.
const MAX_DEPTH: u32 = 4;

/// The least a coded picture costs, whatever its size: one 64×64 coding
/// tree block, which the decoder sets up for even the smallest picture.
const MIN_PICTURE_PIXELS: u64 = 64 * 64;

/// Refuses a file whose primary image takes more decoding than
/// [`DECODE_BUDGET`] allows. It follows what `heifer` decodes: a coded
/// (`hvc1`) item's picture and its alpha plane; a `grid`, `iovl` or `iden`
/// item's inputs (`dimg`), each as often as it is listed, and its alpha
/// plane. A picture costs the largest sequence parameter set in its
/// configuration and data. A file the container parser refuses is left to
/// the decoder, which gives the error.
fn check_decode_cost(bytes: &[u8], max_pixels: u64) -> Result<(), ImagingError> {
    let Ok(file) = HeifFile::parse(bytes) else {
        return Ok(());
    };
    let length = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    let mut walk = DecodeCost::new(
        &file,
        Cost {
            pixels: max_pixels.saturating_mul(DECODE_BUDGET),
            bytes: length
                .saturating_add(CODED_BYTES_SLACK)
                .saturating_mul(DECODE_BUDGET),
        },
    );
    walk.item(file.primary_id, 0).map(|_| ())
}

/// Pixels decoded and coded bytes read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Cost {
    pixels: u64,
    bytes: u64,
}

impl Cost {
    fn add(self, other: Cost) -> Cost {
        Cost {
            pixels: self.pixels.saturating_add(other.pixels),
            bytes: self.bytes.saturating_add(other.bytes),
        }
    }
}

/// The walk of [`check_decode_cost`], with the file's items and references
/// indexed once (the file may hold tens of thousands of them), and each
/// item's cost at each depth computed once.
struct DecodeCost<'f, 'a> {
    file: &'f HeifFile<'a>,
    /// The first item of each id, as the decoder looks items up.
    items: HashMap<ItemId, &'f Item>,
    /// The first `dimg` reference of each item: a derived image's inputs.
    inputs: HashMap<ItemId, &'f [ItemId]>,
    /// The items that name an item in an `auxl` reference, in file order.
    auxiliaries: HashMap<ItemId, Vec<ItemId>>,
    known: HashMap<(ItemId, u32), Cost>,
    budget: Cost,
}

impl<'f, 'a> DecodeCost<'f, 'a> {
    fn new(file: &'f HeifFile<'a>, budget: Cost) -> Self {
        let mut items = HashMap::new();
        for item in &file.items {
            items.entry(item.id).or_insert(item);
        }
        let mut inputs = HashMap::new();
        let mut auxiliaries: HashMap<ItemId, Vec<ItemId>> = HashMap::new();
        for reference in &file.references {
            match &reference.ref_type.0 {
                b"dimg" => {
                    inputs.entry(reference.from).or_insert(&reference.to[..]);
                }
                b"auxl" => {
                    let mut named: Vec<ItemId> = reference.to.clone();
                    named.sort_unstable();
                    named.dedup();
                    for to in named {
                        auxiliaries.entry(to).or_default().push(reference.from);
                    }
                }
                _ => {}
            }
        }
        DecodeCost {
            file,
            items,
            inputs,
            auxiliaries,
            known: HashMap::new(),
            budget,
        }
    }

    fn item(&mut self, id: ItemId, depth: u32) -> Result<Cost, ImagingError> {
        if depth > MAX_DEPTH {
            return Ok(Cost::default());
        }
        if let Some(&cost) = self.known.get(&(id, depth)) {
            return Ok(cost);
        }
        let Some(&item) = self.items.get(&id) else {
            return Ok(Cost::default());
        };
        let cost = match &item.item_type.0 {
            b"hvc1" => {
                let picture = self.picture(id);
                match self.alpha(id) {
                    Some(alpha) => picture.add(self.picture(alpha)),
                    None => picture,
                }
            }
            b"grid" | b"iovl" | b"iden" => {
                let mut cost = Cost::default();
                let inputs = self.inputs.get(&id).copied().unwrap_or_default();
                for &input in inputs {
                    let input = self.item(input, depth + 1)?;
                    cost = self.within_budget(cost.add(input))?;
                }
                match self.alpha(id) {
                    Some(alpha) => cost.add(self.item(alpha, depth + 1)?),
                    None => cost,
                }
            }
            _ => Cost::default(),
        };
        let cost = self.within_budget(cost)?;
        self.known.insert((id, depth), cost);
        Ok(cost)
    }

    /// The first alpha plane of an item, as the decoder picks it.
    fn alpha(&self, id: ItemId) -> Option<ItemId> {
        self.auxiliaries.get(&id)?.iter().copied().find(|aux| {
            self.file.item_properties(*aux).is_ok_and(|mut properties| {
                properties.any(|p| {
                    matches!(p, Property::AuxiliaryType(t)
                        if t == "urn:mpeg:hevc:2015:auxid:1"
                            || t == "urn:mpeg:mpegB:cicp:systems:auxiliary:alpha")
                })
            })
        })
    }

    /// One coded picture: the largest sequence parameter set among the
    /// item's `hvcC` and its own NAL units, and the bytes the decoder reads.
    fn picture(&self, id: ItemId) -> Cost {
        let (Ok(Some(config)), Ok(data)) = (self.file.hevc_config(id), self.file.item_data(id))
        else {
            return Cost::default();
        };
        let prefix = usize::from(config.nal_length_size);
        let mut rest: &[u8] = &data;
        let in_band = std::iter::from_fn(|| {
            let (length, tail) = rest.split_at_checked(prefix)?;
            let length = length
                .iter()
                .fold(0usize, |n, &b| (n << 8) | usize::from(b));
            let (nal, tail) = tail.split_at_checked(length)?;
            rest = tail;
            Some(nal)
        });
        let area = config
            .nal_units
            .iter()
            .map(Vec::as_slice)
            .chain(in_band)
            .map(sps_area)
            .max()
            .unwrap_or(0);
        let coded: usize = config.nal_units.iter().map(Vec::len).sum::<usize>() + data.len();
        Cost {
            pixels: area.max(MIN_PICTURE_PIXELS),
            bytes: u64::try_from(coded).unwrap_or(u64::MAX),
        }
    }

    fn within_budget(&self, cost: Cost) -> Result<Cost, ImagingError> {
        if cost.pixels > self.budget.pixels {
            Err(corrupt(format!(
                "HEIF asks the decoder for more than {} pixels of pictures, \
                 {DECODE_BUDGET} times the limit",
                self.budget.pixels
            )))
        } else if cost.bytes > self.budget.bytes {
            Err(corrupt(format!(
                "HEIF asks the decoder to read its coded data more than {DECODE_BUDGET} times"
            )))
        } else {
            Ok(cost)
        }
    }
}

/// The coded area of a NAL unit that is a sequence parameter set, else 0.
fn sps_area(nal: &[u8]) -> u64 {
    // The type is bits 1..7 of the first header byte; only SPS are unescaped.
    if nal.first().map(|b| (b >> 1) & 0x3F) != Some(33) {
        return 0;
    }
    NalUnit::parse(nal)
        .and_then(|unit| Sps::parse(&unit.rbsp))
        .map(|sps| {
            u64::from(sps.pic_width_in_luma_samples) * u64::from(sps.pic_height_in_luma_samples)
        })
        .unwrap_or(0)
}
