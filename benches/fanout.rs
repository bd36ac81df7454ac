//! Fan-out benchmark: how many SSE watchers one instance holds, what each costs, and how fast
//! an upload reaches every watcher. Prints one JSON line.
//!
//! It starts the release binary as its own process (so its RSS and CPU are the server's alone)
//! on SQLite in a temp folder, creates S sessions, opens W watchers per session (source
//! addresses spread over 127.0.0.2, 127.0.0.3, … so more connections fit than one address's
//! ports), lets them idle, then uploads small JPEGs at R per second round-robin and times each
//! upload request's start to each watcher's receipt of a snapshot holding the new image id.
//!
//!     cargo build --release && cargo bench --bench fanout -- --sessions 100 --watchers 100 --rate 50 --uploads 200
//!
//! Server and load share this machine: pin them (`taskset`) for stable figures.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use serde_json::Value;

struct Args {
    sessions: usize,
    watchers: usize,
    rate: f64,
    uploads: usize,
    idle_secs: u64,
    binary: String,
    server_cpu: Option<usize>,
}

fn args() -> Args {
    let mut a = Args {
        sessions: 10,
        watchers: 10,
        rate: 20.0,
        uploads: 50,
        idle_secs: 10,
        binary: "target/release/qrupload".into(),
        server_cpu: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().unwrap_or_default();
        match flag.as_str() {
            "--sessions" => a.sessions = value().parse().unwrap_or(a.sessions),
            "--watchers" => a.watchers = value().parse().unwrap_or(a.watchers),
            "--rate" => a.rate = value().parse().unwrap_or(a.rate),
            "--uploads" => a.uploads = value().parse().unwrap_or(a.uploads),
            "--idle-secs" => a.idle_secs = value().parse().unwrap_or(a.idle_secs),
            "--binary" => a.binary = value(),
            "--server-cpu" => a.server_cpu = value().parse().ok(),
            _ => {}
        }
    }
    a
}

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

/// utime + stime of the process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

async fn metric(client: &reqwest::Client, base: &str, name: &str) -> f64 {
    let text = match client.get(format!("{base}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Server {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(a: &Args, port: u16) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = match a.server_cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string(), &a.binary]);
            c
        }
        None => Command::new(&a.binary),
    };
    let child = cmd
        .args(["--conf", "configs", "serve"])
        .env("QRUPLOAD__SERVER__HTTP__ADDR", format!("127.0.0.1:{port}"))
        .env("QRUPLOAD__SERVER__GRPC__ADDR", "127.0.0.1:0")
        .env(
            "QRUPLOAD__DATA__DATABASE__URL",
            format!("sqlite://{}/b.db?mode=rwc", dir.path().display()),
        )
        .env(
            "QRUPLOAD__DATA__BLOB__ROOT",
            dir.path().join("blobs").display().to_string(),
        )
        .env("QRUPLOAD__UPLOAD__MAX_IMAGES", "100000")
        .env("QRUPLOAD__UPLOAD__MAX_SESSION_BYTES", "100GiB")
        .env("QRUPLOAD__LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start the release binary (cargo build --release first)");
    Server { child, _dir: dir }
}

#[tokio::main]
async fn main() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let a = args();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let server = start_server(&a, port);
    let pid = server.child.id();
    let base = format!("http://127.0.0.1:{port}");
    let control = reqwest::Client::new();
    for _ in 0..200 {
        if control.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = proc_status(pid, "VmRSS:");

    // Sessions.
    let mut sessions = Vec::new();
    for _ in 0..a.sessions {
        let s: Value = control
            .post(format!("{base}/v1/api/upload-sessions"))
            .json(&serde_json::json!({"member_id": 1}))
            .send()
            .await
            .expect("create")
            .json()
            .await
            .expect("json");
        let id = s["identifier"].as_str().unwrap_or_default().to_owned();
        let token = s["upload_url"]
            .as_str()
            .and_then(|u| u.split_once("#t="))
            .map(|(_, t)| t.to_owned())
            .unwrap_or_default();
        sessions.push((id, token));
    }

    // Watchers, over many source addresses.
    let arrivals: Arc<Mutex<Vec<(String, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
    let bytes_in = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(AtomicU64::new(0));
    let clients: Vec<reqwest::Client> = (2..=32u8)
        .map(|n| {
            reqwest::Client::builder()
                .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
                .pool_max_idle_per_host(0)
                .build()
                .expect("client")
        })
        .collect();
    let mut tasks = Vec::new();
    for (s, (id, _)) in sessions.iter().enumerate() {
        for w in 0..a.watchers {
            let client = clients[(s * a.watchers + w) % clients.len()].clone();
            let url =
                format!("{base}/v1/api/sse/events?event=upload_by_qr&member_id=1&identifier={id}");
            let (arrivals, bytes_in, ready) = (arrivals.clone(), bytes_in.clone(), ready.clone());
            tasks.push(tokio::spawn(async move {
                let Ok(res) = client.get(url).send().await else {
                    return;
                };
                let mut stream = res.bytes_stream();
                let mut buffer = String::new();
                let mut seen: std::collections::HashSet<String> = Default::default();
                let mut first = true;
                while let Some(Ok(chunk)) = stream.next().await {
                    bytes_in.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    let now = Instant::now();
                    buffer.push_str(&String::from_utf8_lossy(&chunk));
                    while let Some(end) = buffer.find("\n\n") {
                        let block: String = buffer.drain(..end + 2).collect();
                        if !block.contains("event: upload_by_qr") {
                            continue;
                        }
                        if first {
                            first = false;
                            ready.fetch_add(1, Ordering::Relaxed);
                        }
                        let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: "))
                        else {
                            continue;
                        };
                        let Ok(Value::Array(list)) = serde_json::from_str::<Value>(data) else {
                            continue;
                        };
                        let mut new = Vec::new();
                        for image in list {
                            if let Some(image_id) = image["id"].as_str()
                                && seen.insert(image_id.to_owned())
                            {
                                new.push((image_id.to_owned(), now));
                            }
                        }
                        if let Ok(mut a) = arrivals.lock() {
                            a.extend(new);
                        }
                    }
                }
            }));
        }
    }
    let total = (a.sessions * a.watchers) as u64;
    let wait_start = Instant::now();
    while ready.load(Ordering::Relaxed) < total && wait_start.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connected = ready.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_watching = proc_status(pid, "VmRSS:");

    // Idle: heartbeats only.
    let idle_start_bytes = bytes_in.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(a.idle_secs)).await;
    let idle_bytes = bytes_in.load(Ordering::Relaxed) - idle_start_bytes;

    // Uploads at the given rate, round-robin.
    let reads_before = metric(&control, &base, "qrupload_db_snapshot_reads_total").await;
    let cpu_before = cpu_seconds(pid);
    let photo = qrupload::biz::imaging::testdata::jpeg_with_exif(64, 48, 1, false);
    let sends: Arc<Mutex<HashMap<String, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / a.rate));
    let mut uploads = Vec::new();
    for n in 0..a.uploads {
        interval.tick().await;
        let (id, token) = sessions[n % sessions.len()].clone();
        let (client, base, photo, sends) =
            (control.clone(), base.clone(), photo.clone(), sends.clone());
        uploads.push(tokio::spawn(async move {
            let form = reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(photo).file_name("p.jpg"),
            );
            let sent = Instant::now();
            let res = client
                .post(format!("{base}/v1/api/upload-sessions/{id}/images"))
                .bearer_auth(token)
                .multipart(form)
                .send()
                .await;
            if let Ok(res) = res
                && let Ok(body) = res.json::<Value>().await
                && let Some(image_id) = body["images"][0]["id"].as_str()
                && let Ok(mut s) = sends.lock()
            {
                s.insert(image_id.to_owned(), sent);
            }
        }));
    }
    for u in uploads {
        let _ = u.await;
    }
    let expected = (a.uploads * a.watchers) as u64;
    let settle = Instant::now();
    while (arrivals.lock().map(|a| a.len()).unwrap_or(0) as u64) < expected
        && settle.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu_used = cpu_seconds(pid) - cpu_before;
    let reads = metric(&control, &base, "qrupload_db_snapshot_reads_total").await - reads_before;

    let sends = sends.lock().map(|s| s.clone()).unwrap_or_default();
    let mut latencies: Vec<f64> = arrivals
        .lock()
        .map(|a| {
            a.iter()
                .filter_map(|(id, at)| {
                    sends
                        .get(id)
                        .map(|sent| at.saturating_duration_since(*sent).as_secs_f64() * 1000.0)
                })
                .collect()
        })
        .unwrap_or_default();
    latencies.sort_by(|x, y| x.total_cmp(y));
    let delivered = latencies.len() as u64;
    let report = serde_json::json!({
        "sessions": a.sessions,
        "watchers_per_session": a.watchers,
        "watchers_connected": connected,
        "uploads": a.uploads,
        "upload_rate_per_s": a.rate,
        "rss_kib_before": rss_before,
        "rss_kib_watching": rss_watching,
        "rss_kib_per_idle_watcher": (rss_watching.saturating_sub(rss_before)) as f64 / connected.max(1) as f64,
        "latency_ms": {
            "p50": percentile(&latencies, 0.50),
            "p99": percentile(&latencies, 0.99),
            "max": latencies.last().copied().unwrap_or(f64::NAN),
        },
        "deliveries": { "received": delivered, "expected": expected },
        "db_snapshot_reads_per_change": reads / a.uploads.max(1) as f64,
        "idle_bytes_per_watcher_per_minute": idle_bytes as f64 / connected.max(1) as f64 * 60.0 / a.idle_secs.max(1) as f64,
        "server_cpu_us_per_delivered_event": cpu_used * 1e6 / delivered.max(1) as f64,
    });
    println!("{report}");
    for t in tasks {
        t.abort();
    }
    drop(server);
}
