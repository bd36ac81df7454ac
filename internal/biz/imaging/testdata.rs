//! Images for tests and benchmarks, built in memory.
//!
//! Each carries the kinds of metadata that `process` must
//! remove, so that tests can check the stored copy against them.

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
        if encoder.set_repeat(Repeat::Infinite).is_err() || encoder.encode_frames(frames).is_err() {
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
    small_webp_oriented(width, height, 1)
}

/// [`small_webp`] whose EXIF says `orientation`.
pub fn small_webp_oriented(width: u32, height: u32, orientation: u16) -> Vec<u8> {
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
    body.extend(chunk(b"EXIF", &exif_tiff(orientation, true, false)));
    body.extend(chunk(b"XMP ", SECRET.as_bytes()));
    let mut v = b"RIFF".to_vec();
    v.extend_from_slice(&(body.len() as u32).to_le_bytes());
    v.extend(body);
    v
}

/// A HEIC whose primary image is a `grid` of `rows`×`columns` cells over a
/// `canvas`×`canvas` picture, every cell the same flat `tile`×`tile` picture
/// coded by `heifer`: work for the decoder that the canvas does not show.
/// With `filler` > 0 the tile's data ends with a filler NAL unit of that
/// many bytes, which decoders read past. Returns an empty vector if the
/// tile cannot be encoded.
pub fn heic_grid_of_one_tile(
    tile: u32,
    filler: usize,
    rows: u16,
    columns: u16,
    canvas: u32,
) -> Vec<u8> {
    use heifer::heifer_isobmff::HeifFile;
    use heifer::heifer_isobmff::writer::{HeifWriter, ImageSpec};
    let rgb = vec![90u8; (tile as usize) * (tile as usize) * 3];
    let Ok(coded) = heifer::encode_rgb8(tile, tile, &rgb, &heifer::EncodeOptions::default()) else {
        return Vec::new();
    };
    let Ok(file) = HeifFile::parse(&coded) else {
        return Vec::new();
    };
    let id = file.primary_id;
    let (Ok(Some(config)), Ok(data)) = (file.hevc_config(id), file.item_data(id)) else {
        return Vec::new();
    };
    if config.nal_length_size != 4 {
        return Vec::new();
    }
    // 4-byte lengths before each NAL unit, as the writer wants them.
    let mut slices = Vec::new();
    let mut rest = &data[..];
    while let Some((length, tail)) = rest.split_first_chunk::<4>() {
        let Some((nal, tail)) = tail.split_at_checked(u32::from_be_bytes(*length) as usize) else {
            return Vec::new();
        };
        slices.push(nal.to_vec());
        rest = tail;
    }
    if filler > 0 {
        // FD_NUT (38), layer 0, temporal id 0; 0xFF bytes and the RBSP stop bit.
        let mut nal = vec![38 << 1, 1];
        nal.resize(filler.saturating_sub(1).max(2), 0xFF);
        nal.push(0x80);
        slices.push(nal);
    }
    let mut spec = ImageSpec::new(tile, tile, config.clone(), &slices);
    spec.hidden = true;
    let mut writer = HeifWriter::new();
    let cell = writer.add_image(&spec);
    let cells = vec![cell; usize::from(rows) * usize::from(columns)];
    let grid = writer.add_grid(rows, columns, canvas, canvas, &cells, None, None);
    writer.set_primary(grid);
    writer.finish()
}
