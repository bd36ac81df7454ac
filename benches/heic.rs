//! Real phone photos through the pipeline beside the reference tools, one core, median of 15:
//!
//! - the iPhone HEICs of `tests/fixtures/images` (8.5 MP, and a 12 MP iPhone 11 Pro photo)
//!   → stored JPEG rendition + thumbnail, beside libheif's `heif-convert -q 90` followed by
//!   libvips' `vips thumbnail` on the same file;
//! - the phone JPEG of the fixtures (8 MP) and a 12 MP Galaxy S7 Edge JPEG → cleaned copy +
//!   thumbnail, beside `vips thumbnail` (shrink-on-load) on the same file, and again with
//!   the DC-only thumbnail decoder switched off (`DcDecoder::Off`), in the same run, and
//!   beside Pillow's shrink-on-load thumbnail (`draft`, upright, `thumbnail`, JPEG q80) timed
//!   inside one Python process, so without any process start.
//!
//!     scripts/bench_images.sh
//!
//! which fetches the 12 MP JPEG (4 MB, kept out of git; checked by SHA-256) into a cache
//! folder, passes its path as `QRUPLOAD_BENCH_JPEG_12MP` and runs this bench pinned to one
//! core. Without the variable the 12 MP JPEG is skipped.
//!
//! The tools run as processes, so their times include starting them (measured and printed
//! as `tool_start_ms`); `VIPS_CONCURRENCY=1` and the inherited CPU affinity keep them to the
//! same core. Prints one JSON line per comparison.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use qrupload::biz::imaging::{DcDecoder, PixelLimits, process, process_with};

const RUNS: usize = 15;

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn time_ms(mut f: impl FnMut()) -> Vec<f64> {
    (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1000.0
        })
        .collect()
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .env("VIPS_CONCURRENCY", "1")
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {out:?}");
}

/// Pillow's thumbnail of one JPEG, the way a Python service would make it: open from
/// memory, `draft` (libjpeg's DCT scaling: shrink-on-load), turn upright by the EXIF
/// orientation, `thumbnail` to 320 and save as JPEG q80 (the quality of our thumbnails).
/// Two warm-up runs, then the median of `runs`, in milliseconds; `None` without Pillow.
const PILLOW_THUMBNAIL: &str = r#"
import io, statistics, sys, time
from PIL import Image, ImageOps
data = open(sys.argv[1], "rb").read()
def once():
    im = Image.open(io.BytesIO(data))
    im.draft("RGB", (320, 320))
    im = ImageOps.exif_transpose(im)
    im.thumbnail((320, 320))
    out = io.BytesIO()
    im.save(out, "JPEG", quality=80)
    return im.size
once(); once()
times = []
for _ in range(int(sys.argv[2])):
    start = time.perf_counter()
    size = once()
    times.append((time.perf_counter() - start) * 1000)
print(statistics.median(times), *size)
"#;

fn pillow_thumbnail_ms(path: &Path) -> Option<(f64, [u32; 2])> {
    let out = Command::new("python3")
        .args(["-c", PILLOW_THUMBNAIL])
        .arg(path)
        .arg(RUNS.to_string())
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "Pillow: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let mut fields = text.split_whitespace();
    let ms = fields.next()?.parse().ok()?;
    let width = fields.next()?.parse().ok()?;
    let height = fields.next()?.parse().ok()?;
    Some((ms, [width, height]))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_owned()
}

/// A HEIC → stored JPEG + thumbnail, beside `heif-convert` then `vips thumbnail`.
fn heic(path: &Path, scratch: &Path, tool_start: f64) {
    let out = |name: &str| scratch.join(name).display().to_string();
    let limits = PixelLimits::default();
    let name = path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let heic = std::fs::read(path).expect("HEIC fixture");
    let load = loadavg();
    let mut clean = None;
    let ours = median(time_ms(|| {
        clean = Some(process(&heic, &limits).expect("HEIC"))
    }));
    let clean = clean.expect("ran");
    let (rendition, thumb) = (out("rendition.jpg"), out("thumb.jpg"));
    let heic_arg = path.display().to_string();
    let mut convert_times = Vec::new();
    let mut thumbnail_times = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        run("heif-convert", &["-q", "90", &heic_arg, &rendition]);
        convert_times.push(start.elapsed().as_secs_f64() * 1000.0);
        let start = Instant::now();
        run("vips", &["thumbnail", &rendition, &thumb, "320"]);
        thumbnail_times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let pair: Vec<f64> = convert_times
        .iter()
        .zip(&thumbnail_times)
        .map(|(a, b)| a + b)
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "bench": "heic_to_jpeg_and_thumbnail",
            "input": name,
            "input_bytes": heic.len(),
            "displayed": [clean.width, clean.height],
            "stored_bytes": clean.bytes.len(),
            "thumbnail": [clean.thumbnail_width, clean.thumbnail_height],
            "runs": RUNS,
            "ours_ms_median": ours,
            "heif_convert_ms_median": median(convert_times),
            "vips_thumbnail_ms_median": median(thumbnail_times),
            "tools_pair_ms_median": median(pair),
            "tool_start_ms": tool_start,
            "loadavg_at_start": load,
        })
    );
}

/// A phone JPEG → cleaned copy + thumbnail, with and without the DC-only decoder, beside
/// `vips thumbnail` (shrink-on-load).
fn jpeg(path: &Path, scratch: &Path, tool_start: f64) {
    let limits = PixelLimits::default();
    let name = path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let jpeg = std::fs::read(path).expect("JPEG");
    let load = loadavg();
    let mut clean = None;
    let ours = median(time_ms(|| {
        clean = Some(process(&jpeg, &limits).expect("JPEG"))
    }));
    let clean = clean.expect("ran");
    let mut without = None;
    let ours_without_dc = median(time_ms(|| {
        without = Some(process_with(&jpeg, &limits, DcDecoder::Off).expect("JPEG"))
    }));
    let without = without.expect("ran");
    assert_eq!(
        without.bytes, clean.bytes,
        "the stored copy does not depend on it"
    );
    let jpeg_arg = path.display().to_string();
    let thumb = scratch.join("thumb.jpg").display().to_string();
    let vips = median(time_ms(|| {
        run("vips", &["thumbnail", &jpeg_arg, &thumb, "320"])
    }));
    let pillow = pillow_thumbnail_ms(path);
    println!(
        "{}",
        serde_json::json!({
            "bench": "phone_jpeg_to_copy_and_thumbnail",
            "input": name,
            "input_bytes": jpeg.len(),
            "displayed": [clean.width, clean.height],
            "stored_bytes": clean.bytes.len(),
            "runs": RUNS,
            "ours_ms_median": ours,
            "ours_without_dc_decoder_ms_median": ours_without_dc,
            "vips_thumbnail_ms_median": vips,
            "pillow_thumbnail_ms_median": pillow.map(|(ms, _)| ms),
            "pillow_thumbnail": pillow.map(|(_, size)| size),
            "ours_to_pillow": pillow.map(|(ms, _)| ours / ms),
            "thumbnail": [clean.thumbnail_width, clean.thumbnail_height],
            "tool_start_ms": tool_start,
            "loadavg_at_start": load,
        })
    );
}

fn main() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images");
    let scratch = std::env::temp_dir().join(format!("qrupload-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch folder");
    let tool_start = median(time_ms(|| run("vips", &["--version"])));
    for name in ["iphone_11_pro_max.heic", "iphone_11_pro_12mp.heic"] {
        heic(&fixtures.join(name), &scratch, tool_start);
    }
    jpeg(&fixtures.join("jolla_phone.jpg"), &scratch, tool_start);
    match std::env::var_os("QRUPLOAD_BENCH_JPEG_12MP") {
        Some(path) => jpeg(Path::new(&path), &scratch, tool_start),
        None => eprintln!("QRUPLOAD_BENCH_JPEG_12MP unset: the 12 MP JPEG is skipped"),
    }
    let _ = std::fs::remove_dir_all(&scratch);
}
