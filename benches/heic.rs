//! Real phone photos through the pipeline beside the reference tools, one core, median of 15:
//!
//! - the iPhone HEIC of `tests/fixtures/images` → stored JPEG rendition + thumbnail, beside
//!   libheif's `heif-convert -q 90` followed by libvips' `vips thumbnail` on the same file;
//! - the phone JPEG of the fixtures → cleaned copy + thumbnail, beside `vips thumbnail`
//!   (shrink-on-load) on the same file.
//!
//!     taskset -c 1 cargo bench --bench heic
//!
//! The tools run as processes, so their times include starting them (a few milliseconds,
//! measured and printed as `tool_start_ms`); `VIPS_CONCURRENCY=1` and the inherited CPU
//! affinity keep them to the same core. Prints one JSON line per comparison.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use qrupload::biz::imaging::{PixelLimits, process};

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

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_owned()
}

fn main() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images");
    let scratch = std::env::temp_dir().join(format!("qrupload-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch folder");
    let out = |name: &str| scratch.join(name).display().to_string();
    let limits = PixelLimits::default();
    let tool_start = median(time_ms(|| run("vips", &["--version"])));

    let heic_path = fixtures.join("iphone_11_pro_max.heic");
    let heic = std::fs::read(&heic_path).expect("HEIC fixture");
    let load = loadavg();
    let mut clean = None;
    let ours = median(time_ms(|| {
        clean = Some(process(&heic, &limits).expect("HEIC"))
    }));
    let clean = clean.expect("ran");
    let (rendition, thumb) = (out("rendition.jpg"), out("thumb.jpg"));
    let heic_arg = heic_path.display().to_string();
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
            "input": "iphone_11_pro_max.heic",
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

    let jpeg_path = fixtures.join("jolla_phone.jpg");
    let jpeg = std::fs::read(&jpeg_path).expect("JPEG fixture");
    let load = loadavg();
    let mut clean = None;
    let ours = median(time_ms(|| {
        clean = Some(process(&jpeg, &limits).expect("JPEG"))
    }));
    let clean = clean.expect("ran");
    let jpeg_arg = jpeg_path.display().to_string();
    let vips = median(time_ms(|| {
        run("vips", &["thumbnail", &jpeg_arg, &thumb, "320"])
    }));
    println!(
        "{}",
        serde_json::json!({
            "bench": "phone_jpeg_to_copy_and_thumbnail",
            "input": "jolla_phone.jpg",
            "input_bytes": jpeg.len(),
            "displayed": [clean.width, clean.height],
            "stored_bytes": clean.bytes.len(),
            "runs": RUNS,
            "ours_ms_median": ours,
            "vips_thumbnail_ms_median": vips,
            "tool_start_ms": tool_start,
            "loadavg_at_start": load,
        })
    );
    let _ = std::fs::remove_dir_all(&scratch);
}
