//! Fan-out benchmark: how many SSE watchers an instance holds, what each costs, and how fast an
//! upload reaches every watcher. Prints one JSON line (and appends it to `--out FILE`).
//!
//! Processes. The bench is a coordinator that re-executes itself:
//!
//! - **Servers**: the release binary, 1 or `--instances N` processes, so that their RSS and CPU
//!   (read from `/proc/PID/status` and `/proc/PID/stat`) are theirs alone. One instance runs on
//!   SQLite and the in-process bus; several share a fresh PostgreSQL database (created and
//!   dropped by the bench) and the Redis bus (`--bus nats`: NATS; `--bus redis_cluster`: the
//!   Redis Cluster whose nodes `--redis-cluster URLS` names), with one upload-token key.
//! - **Workers** (`--worker K`): the client side, split so that no process holds more than
//!   `--per-worker` sockets (a process here may open at most ~20k files). Each worker reads its
//!   assignment from stdin as a JSON line, binds its sockets to its own source addresses
//!   (127.0.0.2, 127.0.0.3, …; `TcpSocket::bind` before `connect`, so more than one address's
//!   28k ephemeral ports fit), speaks plain HTTP/1.1 to the SSE route over raw TCP (a small
//!   chunked/SSE parser, no HTTP client per connection) and answers over stdout in JSON lines.
//! - **nginx + nchan** (`--nchan`, or `--beside-nchan` to run it right after the servers with
//!   the same shape and print both rows): the yardstick, driven by the same workers and
//!   clocks; see `nchan.rs`.
//! - **Echo server** (`--echo-server`, with `--floor`): a trivial SSE server on loopback that
//!   pushes a snapshot the moment an upload request has arrived. Run in place of the servers,
//!   it measures the load generator's own floor: the same upload client, workers, parser and
//!   clocks, without the server's work.
//!
//! Method. The coordinator starts the servers, creates S sessions (member ids 1..=S), samples
//! RSS, has the workers open W watchers per session (spread round-robin over the instances and
//! the workers), waits until every watcher has its first snapshot, samples RSS again, idles
//! `--idle-secs` counting the bytes idle watchers receive, then uploads a 64×48 JPEG at R per
//! second round-robin over the sessions (and instances). Latency runs from the moment the
//! upload request is sent to each watcher's receipt of the snapshot holding the new image id.
//! Both ends take `CLOCK_MONOTONIC`, which is the same clock in every process on the machine.
//!
//! Reported: RSS per idle watcher (RSS after the idle period − RSS before the watchers, over the
//! watchers, per instance and overall); latency p50/p90/p99/p99.9/max over every delivery and
//! deliveries received against expected; snapshot reads per change from `/metrics`, summed over
//! instances (one per instance per change); bus doorbells each instance received against the
//! uploads of the sessions it serves; bytes received per idle watcher per minute; server
//! CPU time per delivered event, and the load generator's beside it. Each run also prints a
//! one-line row to stderr, and `--beside-nchan` both rows together at the end.
//!
//! Server settings. Every `QRUPLOAD__*` variable in the bench's environment reaches the
//! servers, so limits a benchmark must raise (streams per address or per member, request
//! rates) are raised from the command line:
//! `QRUPLOAD__LIMITS__STREAMS_PER_IP=0 cargo bench --bench fanout -- …`. The bench sets the listen
//! addresses, the database, blob root, bus and upload-token key itself, and defaults
//! `upload.max_images`, `upload.max_session_bytes` and `log.level` unless they are given.
//!
//! CPU per delivered event excluding the upload: before the measured uploads, the same number
//! (at most 500, `--calibrate-uploads N`, 0 to skip) go at the same rate to sessions nobody
//! watches; their server CPU per upload, times the measured uploads, is subtracted from the
//! measured phase's server CPU, and the rest is divided by the deliveries. The servers answer
//! uploads with `Server-Timing` (`server.http.server_timing`), so the report also has each
//! upload stage's percentiles and the slowest uploads stage by stage; and the heartbeats the
//! watchers received per millisecond, which shows whether they are spread.
//!
//! Flags: `--sessions S --watchers W --rate R --uploads U` (default one per session)
//! `--idle-watchers N` (N more watchers, 100 per session, on sessions that get no upload)
//! `--calibrate-uploads N`
//! `--idle-secs N` `--nchan` `--beside-nchan` `--instances N` (more than one: PostgreSQL + Redis; `--pg-redis` for one)
//! `--server-cpu C` (servers pinned with `taskset`; the coordinator and its workers then pin
//! to `--load-cpu`, by default the next core) `--per-worker N` (sockets per worker, default
//! 12500) `--sources-per-worker N` (default 4) `--connect-concurrency N` (watchers opening at
//! once per worker, default 128) `--connect-timeout-secs N` `--binary PATH` `--floor`
//! `--out FILE` `--label TEXT` `--postgres URL` (an admin URL) `--redis URL`
//! `--bus redis|redis_cluster|nats` `--nats URL` `--redis-cluster URL,URL,…`.
//!
//!     cargo build --release
//!     cargo bench --bench fanout -- --sessions 100 --watchers 100 --rate 50 --uploads 100 --server-cpu 0
//!
//! `scripts/bench_all.sh` runs every shape recorded in docs/BENCHMARKS.md and redraws the plot.

use std::{
    cell::{Cell, RefCell},
    collections::{BTreeMap, HashMap, hash_map::DefaultHasher},
    hash::{Hash, Hasher},
    io::Write as _,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::Stdio,
    rc::Rc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpSocket, TcpStream},
    sync::{Semaphore, mpsc},
};

/// The snapshot event name the watchers ask for (the server's default).
const SNAPSHOT_EVENT: &str = "upload_by_qr";

mod coordinator;
mod echo;
mod nchan;
mod report;
mod sse;
mod worker;

use sse::SseParser;

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    // Each watcher is a socket: take every descriptor the hard limit allows, in every process.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let flag_value = |name: &str| {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1))
    };
    if let Some(k) = flag_value("--worker") {
        let id = k.parse().unwrap_or(0);
        run_local(worker::run(id));
    } else if argv.iter().any(|a| a == "--echo-server") {
        run_local(echo::run());
    } else {
        let args = coordinator::Args::parse(&argv);
        if let Some(cpu) = args.load_cpu {
            // Before any thread exists, so the runtime, the workers and their threads inherit it.
            pin_self(cpu);
        }
        run_local(async move {
            let beside = args.beside_nchan.then(|| {
                let mut nchan = args.clone();
                nchan.nchan = true;
                nchan.beside_nchan = false;
                nchan.label = args.label.as_ref().map(|l| format!("{l} (nchan)"));
                nchan
            });
            let ours = coordinator::run(args).await;
            if let Some(nchan) = beside {
                let theirs = coordinator::run(nchan).await;
                eprintln!("\n{}\n{}", report::row(&ours), report::row(&theirs));
            }
        });
    }
}

/// One thread: the coordinator, a worker and the echo server each run on a single core.
fn run_local<F: std::future::Future<Output = ()>>(future: F) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    tokio::task::LocalSet::new().block_on(&runtime, future);
}

fn pin_self(cpu: usize) {
    let status = std::process::Command::new("taskset")
        .args(["-pc", &cpu.to_string(), &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("fanout: could not pin the load generator to core {cpu} (taskset)");
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process on the machine, so a send time
/// taken by the coordinator and a receive time taken by a worker can be subtracted.
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Writes one JSON line to stdout (the pipe to the coordinator, or the final report).
fn emit(value: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// A `/proc/PID/status` field in its unit (kB for the memory fields).
fn proc_status(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}
