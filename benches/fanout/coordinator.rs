//! Starts the servers and the workers, drives the phases and prints the report.

use super::*;
use crate::report::{percentiles, round3};

use sea_orm::ConnectionTrait;

/// Watchers per session of `--idle-watchers`.
const IDLE_PER_SESSION: usize = 100;

/// Doorbells an instance's hub received from the bus.
const DOORBELLS: &str = "qrupload_bus_changes_received_total";

#[derive(Clone)]
pub struct Args {
    sessions: usize,
    watchers: usize,
    /// Watchers of sessions that get no upload, 100 per session, beside the measured ones.
    idle_watchers: usize,
    /// Uploads to a session nobody watches, before the measured ones: the upload's own CPU.
    calibrate: Option<usize>,
    rate: f64,
    uploads: usize,
    idle_secs: u64,
    instances: usize,
    binary: PathBuf,
    server_cpu: Option<usize>,
    pub load_cpu: Option<usize>,
    per_worker: usize,
    sources_per_worker: usize,
    concurrency: usize,
    connect_timeout_secs: u64,
    floor: bool,
    pub nchan: bool,
    /// Run the same shape against nginx + nchan right after, and print both rows.
    pub beside_nchan: bool,
    shared_data: bool,
    out: Option<PathBuf>,
    pub label: Option<String>,
    postgres: String,
    redis: String,
    /// The bus of several instances: `redis`, `redis_cluster` or `nats`.
    bus: String,
    nats: String,
    /// Nodes of a Redis Cluster, comma-separated, for `--bus redis_cluster`.
    redis_cluster: String,
}

impl Args {
    pub fn parse(argv: &[String]) -> Args {
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
        let mut a = Args {
            sessions: 10,
            watchers: 10,
            idle_watchers: 0,
            calibrate: None,
            rate: 20.0,
            uploads: 0,
            idle_secs: 20,
            instances: 1,
            binary: target.join("release/qrupload"),
            server_cpu: None,
            load_cpu: None,
            per_worker: 12_500,
            sources_per_worker: 4,
            concurrency: 128,
            connect_timeout_secs: 120,
            floor: false,
            nchan: false,
            beside_nchan: false,
            shared_data: false,
            out: None,
            label: None,
            postgres: "postgres://postgres@127.0.0.1:5432/postgres".into(),
            redis: "redis://127.0.0.1:6379".into(),
            bus: "redis".into(),
            nats: "nats://127.0.0.1:4222".into(),
            redis_cluster: String::new(),
        };
        let mut it = argv.iter();
        while let Some(flag) = it.next() {
            let mut value = || it.next().cloned().unwrap_or_default();
            match flag.as_str() {
                "--sessions" => a.sessions = value().parse().unwrap_or(a.sessions),
                "--watchers" => a.watchers = value().parse().unwrap_or(a.watchers),
                "--idle-watchers" => a.idle_watchers = value().parse().unwrap_or(0),
                "--calibrate-uploads" => a.calibrate = value().parse().ok(),
                "--rate" => a.rate = value().parse().unwrap_or(a.rate),
                "--uploads" => a.uploads = value().parse().unwrap_or(a.uploads),
                "--idle-secs" => a.idle_secs = value().parse().unwrap_or(a.idle_secs),
                "--instances" => a.instances = value().parse().unwrap_or(1),
                "--binary" => a.binary = value().into(),
                "--server-cpu" => a.server_cpu = value().parse().ok(),
                "--load-cpu" => a.load_cpu = value().parse().ok(),
                "--per-worker" => a.per_worker = value().parse().unwrap_or(a.per_worker),
                "--sources-per-worker" => {
                    a.sources_per_worker = value().parse().unwrap_or(a.sources_per_worker)
                }
                "--connect-concurrency" => a.concurrency = value().parse().unwrap_or(a.concurrency),
                "--connect-timeout-secs" => {
                    a.connect_timeout_secs = value().parse().unwrap_or(a.connect_timeout_secs)
                }
                "--floor" => a.floor = true,
                "--nchan" => a.nchan = true,
                "--beside-nchan" => a.beside_nchan = true,
                "--pg-redis" => a.shared_data = true,
                "--out" => a.out = Some(value().into()),
                "--label" => a.label = Some(value()),
                "--postgres" => a.postgres = value(),
                "--redis" => a.redis = value(),
                "--bus" => a.bus = value(),
                "--nats" => a.nats = value(),
                "--redis-cluster" => a.redis_cluster = value(),
                _ => {}
            }
        }
        a.instances = a.instances.max(1);
        a.sessions = a.sessions.max(1);
        a.per_worker = a.per_worker.max(1);
        a.sources_per_worker = a.sources_per_worker.max(1);
        if a.uploads == 0 {
            a.uploads = a.sessions;
        }
        if a.floor || a.nchan {
            a.instances = 1;
            a.shared_data = false;
            a.beside_nchan = false;
        }
        if a.instances > 1 {
            a.shared_data = true;
        }
        if a.load_cpu.is_none()
            && let Some(cpu) = a.server_cpu
        {
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            a.load_cpu = Some((cpu + 1) % cores);
        }
        a
    }
}

/// A server process: the release binary, the echo server or nginx.
pub(crate) struct Server {
    child: std::process::Child,
    port: u16,
    log: Option<PathBuf>,
}

impl Server {
    pub(crate) fn new(child: std::process::Child, port: u16, log: Option<PathBuf>) -> Server {
        Server { child, port, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Whether the process has exited, and how.
    fn exit(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    /// The warning and error lines of its log, without their timestamps, each with how
    /// many times it was written.
    fn warnings(&self) -> BTreeMap<String, u64> {
        let text = self
            .log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        let mut lines = BTreeMap::new();
        for line in text.lines().filter(|l| {
            [
                "WARN", "ERROR", "panicked", "[warn]", "[error]", "[crit]", "[alert]",
            ]
            .iter()
            .any(|w| l.contains(w))
        }) {
            let message = line.split_once(' ').map_or(line, |(_, rest)| rest).trim();
            let message: String = message.chars().take(300).collect();
            *lines.entry(message).or_default() += 1;
        }
        lines
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An error and its sources, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

pub(crate) fn command(a: &Args, program: &Path) -> std::process::Command {
    let mut c = match a.server_cpu {
        Some(cpu) => {
            let mut c = std::process::Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(program);
            c
        }
        None => std::process::Command::new(program),
    };
    die_with_parent(&mut c);
    c
}

/// The child is killed when the coordinator ends, however it ends.
fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls prctl,
    // which is async-signal-safe and touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Where the servers keep their data.
enum Data {
    Sqlite,
    Shared { database_url: String },
}

fn start_server(a: &Args, data: &Data, dir: &Path, n: usize) -> Server {
    let port = free_port();
    let log = dir.join(format!("server-{n}.log"));
    let mut cmd = command(a, &a.binary);
    cmd.arg("--conf")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("configs"))
        .arg("serve")
        .env("QRUPLOAD__SERVER__HTTP__ADDR", format!("127.0.0.1:{port}"))
        .env("QRUPLOAD__SERVER__GRPC__ADDR", "127.0.0.1:0")
        .env("QRUPLOAD__DATA__BLOB__KIND", "fs")
        .env(
            "QRUPLOAD__DATA__BLOB__ROOT",
            dir.join("blobs").display().to_string(),
        );
    match data {
        Data::Sqlite => {
            cmd.env(
                "QRUPLOAD__DATA__DATABASE__URL",
                format!("sqlite://{}/bench.db?mode=rwc", dir.display()),
            )
            .env("QRUPLOAD__DATA__BUS__KIND", "memory");
        }
        Data::Shared { database_url } => {
            let bus_url = match a.bus.as_str() {
                "nats" => &a.nats,
                "redis_cluster" => &a.redis_cluster,
                _ => &a.redis,
            };
            cmd.env("QRUPLOAD__DATA__DATABASE__URL", database_url)
                .env("QRUPLOAD__DATA__BUS__KIND", &a.bus)
                .env("QRUPLOAD__DATA__BUS__URL", bus_url)
                .env(
                    "QRUPLOAD__AUTH__UPLOAD_TOKEN_KEY",
                    "the fan-out benchmark's key, shared by every instance",
                );
        }
    }
    // Defaults a benchmark needs; the environment, inherited as a whole, may override them.
    for (key, value) in [
        ("QRUPLOAD__UPLOAD__MAX_IMAGES", "100000"),
        ("QRUPLOAD__UPLOAD__MAX_SESSION_BYTES", "100GiB"),
        ("QRUPLOAD__LOG__LEVEL", "warn"),
        ("QRUPLOAD__SERVER__HTTP__SERVER_TIMING", "true"),
    ] {
        if std::env::var_os(key).is_none() {
            cmd.env(key, value);
        }
    }
    let log_file = std::fs::File::create(&log).expect("server log file");
    let child = cmd
        .stdout(log_file.try_clone().expect("server log file"))
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}): cargo build --release first",
                a.binary.display()
            )
        });
    Server {
        child,
        port,
        log: Some(log),
    }
}

fn start_echo(a: &Args) -> Server {
    let exe = std::env::current_exe().expect("own path");
    let mut child = command(a, &exe)
        .arg("--echo-server")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the echo server");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("echo stdout");
    let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
    let port = serde_json::from_str::<Value>(&line)
        .ok()
        .and_then(|v| v["port"].as_u64());
    Server {
        child,
        port: port.expect("the echo server's port") as u16,
        log: None,
    }
}

async fn metric(client: &reqwest::Client, base: &str, name: &str) -> f64 {
    let text = match client.get(format!("{base}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|v| v.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

async fn wait_ready(client: &reqwest::Client, server: &mut Server, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Some(status) = server.exit() {
            let log = server
                .log
                .as_ref()
                .and_then(|p| std::fs::read_to_string(p).ok())
                .unwrap_or_default();
            panic!("the server exited ({status}) during start-up:\n{log}");
        }
        let ok = client
            .get(format!("{}{path}", server.base()))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{}{path} never answered 200", server.base());
}

/// The worker processes and their event lines.
struct Workers {
    children: Vec<tokio::process::Child>,
    stdins: Vec<tokio::process::ChildStdin>,
    events: mpsc::UnboundedReceiver<Value>,
    queued: HashMap<String, Vec<Value>>,
}

impl Workers {
    fn spawn(n: usize) -> Workers {
        let exe = std::env::current_exe().expect("own path");
        let (tx, events) = mpsc::unbounded_channel();
        let mut children = Vec::new();
        let mut stdins = Vec::new();
        for k in 0..n {
            let mut cmd = std::process::Command::new(&exe);
            die_with_parent(&mut cmd);
            let mut child = tokio::process::Command::from(cmd)
                .args(["--worker", &k.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("start a worker");
            stdins.push(child.stdin.take().expect("worker stdin"));
            let stdout = child.stdout.take().expect("worker stdout");
            let tx = tx.clone();
            tokio::task::spawn_local(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        let _ = tx.send(v);
                    }
                }
            });
            children.push(child);
        }
        Workers {
            children,
            stdins,
            events,
            queued: HashMap::new(),
        }
    }

    fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(|c| c.id()).collect()
    }

    async fn send(&mut self, k: usize, cmd: &Value) {
        let line = format!("{cmd}\n");
        if let Err(e) = self.stdins[k].write_all(line.as_bytes()).await {
            eprintln!("fanout: worker {k} is gone: {e}");
        }
    }

    async fn send_all(&mut self, cmd: &Value) {
        for k in 0..self.stdins.len() {
            self.send(k, cmd).await;
        }
    }

    /// One event of `kind` from every worker, or what arrived before `within` ran out.
    async fn take(&mut self, kind: &str, within: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.queued.get(kind).map_or(0, Vec::len) >= self.stdins.len() {
                break;
            }
            tokio::select! {
                event = self.events.recv() => match event {
                    Some(v) => {
                        let k = v["event"].as_str().unwrap_or("").to_owned();
                        self.queued.entry(k).or_default().push(v);
                    }
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => {
                    eprintln!("fanout: timed out waiting for the workers' {kind}");
                    break;
                }
            }
        }
        self.queued.remove(kind).unwrap_or_default()
    }

    async fn stats(&mut self) -> (u64, u64, u64) {
        self.send_all(&json!({"cmd": "stats"})).await;
        let stats = self.take("stats", Duration::from_secs(30)).await;
        let sum = |f: &str| stats.iter().filter_map(|s| s[f].as_u64()).sum::<u64>();
        (sum("bytes"), sum("open"), sum("deliveries"))
    }
}

fn multipart(photo: &[u8], boundary: &str) -> bytes::Bytes {
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(photo);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body.into()
}

struct Upload {
    session: usize,
    image: Option<String>,
    sent: u64,
    answered: u64,
    status: u16,
    /// The answer's body or the transport error, for a failed upload.
    error: Option<String>,
    /// The server's stage times (`Server-Timing`), in ms.
    timing: Vec<(String, f64)>,
}

/// A `Server-Timing` header's `name;dur=MS` entries.
fn server_timing(headers: &reqwest::header::HeaderMap) -> Vec<(String, f64)> {
    headers
        .get_all("server-timing")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|entry| {
            let mut parts = entry.trim().split(';');
            let name = parts.next()?.trim().to_owned();
            let dur = parts.find_map(|p| p.trim().strip_prefix("dur="))?;
            Some((name, dur.parse().ok()?))
        })
        .collect()
}

/// Where the upload time went: each stage's percentiles, the time outside the handler
/// (connection, request parsing, answer: the client's time minus the server's total), and
/// the slowest uploads stage by stage.
fn upload_stages(uploads: &[Upload]) -> (Value, Value, Value) {
    let timed: Vec<&Upload> = uploads
        .iter()
        .filter(|u| u.image.is_some() && !u.timing.is_empty())
        .collect();
    let mut by_stage: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut outside = Vec::new();
    for u in &timed {
        for (name, ms) in &u.timing {
            by_stage.entry(name).or_default().push(*ms);
        }
        if let Some((_, total)) = u.timing.iter().find(|(n, _)| n == "total") {
            outside.push((u.answered - u.sent) as f64 / 1e6 - total);
        }
    }
    let stages: serde_json::Map<String, Value> = by_stage
        .into_iter()
        .map(|(name, mut v)| {
            v.sort_by(f64::total_cmp);
            (name.to_owned(), percentiles(&v))
        })
        .collect();
    outside.sort_by(f64::total_cmp);
    let mut slowest: Vec<&&Upload> = timed.iter().collect();
    slowest.sort_by_key(|u| std::cmp::Reverse(u.answered - u.sent));
    let slowest: Vec<Value> = slowest
        .iter()
        .take(5)
        .map(|u| {
            let mut row = serde_json::Map::new();
            row.insert("sent_ns".into(), json!(u.sent));
            row.insert(
                "answer_ms".into(),
                json!(round3((u.answered - u.sent) as f64 / 1e6)),
            );
            for (name, ms) in &u.timing {
                row.insert(name.clone(), json!(round3(*ms)));
            }
            Value::Object(row)
        })
        .collect();
    (Value::Object(stages), percentiles(&outside), json!(slowest))
}

/// Heartbeats received per millisecond, over every worker: if they were synchronous, one
/// millisecond would hold every watcher's; spread, the busiest holds one group's.
fn heartbeat_spread(reports: &[Value], watchers: u64) -> Value {
    let mut per_ms: BTreeMap<u64, u64> = BTreeMap::new();
    for r in reports {
        for (ms, n) in r["heartbeats_per_ms"].as_object().into_iter().flatten() {
            if let Ok(ms) = ms.parse::<u64>() {
                *per_ms.entry(ms).or_default() += n.as_u64().unwrap_or(0);
            }
        }
    }
    let received: u64 = per_ms.values().sum();
    let max_1ms = per_ms.values().copied().max().unwrap_or(0);
    let mut per_10ms: BTreeMap<u64, u64> = BTreeMap::new();
    for (ms, n) in &per_ms {
        *per_10ms.entry(ms / 10).or_default() += n;
    }
    let max_10ms = per_10ms.values().copied().max().unwrap_or(0);
    let span_ms = match (per_ms.keys().next(), per_ms.keys().next_back()) {
        (Some(first), Some(last)) => last - first + 1,
        _ => 0,
    };
    json!({
        "received": received,
        "milliseconds_with_any": per_ms.len(),
        "span_ms": span_ms,
        "max_in_1ms": max_1ms,
        "max_in_10ms": max_10ms,
        "max_share_of_watchers_in_10ms": round3(max_10ms as f64 / watchers.max(1) as f64),
    })
}

/// One run of one shape; returns the report it printed.
pub async fn run(a: Args) -> Value {
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let loadavg: Vec<f64> = loadavg
        .split_whitespace()
        .take(3)
        .filter_map(|v| v.parse().ok())
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    // A request that gets no answer (a server out of descriptors accepts nothing) fails
    // instead of stalling the run.
    let control = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client");

    // Data: SQLite for one instance, a fresh PostgreSQL database plus Redis for several.
    let mut database: Option<(sea_orm::DatabaseConnection, String)> = None;
    let data = if a.shared_data {
        let admin = qrupload::data::connect(&a.postgres, 1)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {}: {e}", a.postgres));
        let name = format!("qrupload_bench_{}_{}", std::process::id(), started_unix);
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the bench database");
        let base = a
            .postgres
            .rsplit_once('/')
            .map_or(a.postgres.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        database = Some((admin, name));
        Data::Shared { database_url: url }
    } else {
        Data::Sqlite
    };

    let mut servers: Vec<Server> = if a.floor {
        vec![start_echo(&a)]
    } else if a.nchan {
        vec![crate::nchan::start(&a, dir.path())]
    } else {
        (0..a.instances)
            .map(|n| start_server(&a, &data, dir.path(), n))
            .collect()
    };
    let ready_path = if a.shared_data { "/readyz" } else { "/healthz" };
    // nchan: the snapshot each channel holds, as the server's session holds its images.
    let mut channel_images: Vec<Vec<String>> = vec![Vec::new(); a.sessions];
    for server in &mut servers {
        wait_ready(&control, server, ready_path).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pids: Vec<u32> = servers.iter().map(Server::pid).collect();
    let rss = |field: &str| -> Vec<u64> { pids.iter().map(|&p| proc_status(p, field)).collect() };
    let rss_start = rss("VmRSS:");

    // Sessions, round-robin over the instances: the measured ones, then those of the idle
    // watchers (never uploaded to), then one per instance that nobody watches (calibration).
    let idle_sessions = a.idle_watchers.div_ceil(IDLE_PER_SESSION);
    let calibrating = !a.floor && !a.nchan && a.calibrate.unwrap_or(a.uploads.min(500)) > 0;
    let unwatched = if calibrating { servers.len() } else { 0 };
    let all_sessions = a.sessions + idle_sessions + unwatched;
    let mut sessions = Vec::with_capacity(all_sessions);
    for s in 0..all_sessions {
        let base = servers[s % servers.len()].base();
        let member = s + 1;
        if a.nchan {
            // A channel exists once published to; its first message is the empty snapshot.
            let id = format!("s{s}");
            let res = control
                .post(format!("{base}/pub/{id}"))
                .body(crate::nchan::snapshot(&[]))
                .send()
                .await
                .expect("publish the first snapshot");
            assert!(res.status().is_success(), "nchan publish: {}", res.status());
            sessions.push((id, String::new(), member));
            continue;
        }
        let res = control
            .post(format!("{base}/v1/api/upload-sessions"))
            .json(&json!({ "member_id": member }))
            .send()
            .await
            .expect("create a session");
        let status = res.status();
        let body: Value = res.json().await.unwrap_or_default();
        assert!(status.is_success(), "create a session: {status} {body}");
        let id = body["identifier"].as_str().unwrap_or_default().to_owned();
        let token = body["upload_url"]
            .as_str()
            .and_then(|u| u.split_once("#t="))
            .map(|(_, t)| t.to_owned())
            .unwrap_or_default();
        sessions.push((id, token, member));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss("VmRSS:");

    // Watchers: watcher w of session s goes to instance (s + w) mod N and worker (s·W + w)
    // mod K. With fewer watchers per session than instances, each instance serves some
    // sessions only, which shows the bus's per-session subscriptions. The idle watchers'
    // sessions follow, 100 watchers each.
    let watchers_of = |s: usize| -> usize {
        if s < a.sessions {
            a.watchers
        } else {
            let i = s - a.sessions;
            (a.idle_watchers - i * IDLE_PER_SESSION).min(IDLE_PER_SESSION)
        }
    };
    let total = a.sessions * a.watchers + a.idle_watchers;
    let n_workers = total.div_ceil(a.per_worker).max(1);
    assert!(
        2 + n_workers * a.sources_per_worker <= 255,
        "too many source addresses: lower --sources-per-worker"
    );
    let mut plan: Vec<BTreeMap<(usize, usize), u64>> = vec![BTreeMap::new(); n_workers];
    let mut n = 0;
    for s in 0..a.sessions + idle_sessions {
        for w in 0..watchers_of(s) {
            let k = n % n_workers;
            n += 1;
            *plan[k].entry((s, (s + w) % servers.len())).or_default() += 1;
        }
    }
    let mut workers = Workers::spawn(n_workers);
    let connect_start = Instant::now();
    for (k, groups) in plan.iter().enumerate() {
        let sources: Vec<String> = (0..a.sources_per_worker)
            .map(|i| format!("127.0.0.{}", 2 + k * a.sources_per_worker + i))
            .collect();
        let groups: Vec<Value> = groups
            .iter()
            .map(|(&(s, inst), &count)| {
                let (id, _, member) = &sessions[s];
                let path = if a.nchan {
                    format!("/sub/{id}")
                } else {
                    format!("/v1/api/sse/events?event={SNAPSHOT_EVENT}&member_id={member}&identifier={id}")
                };
                json!({
                    "addr": servers[inst].addr(),
                    "path": path,
                    "count": count,
                })
            })
            .collect();
        let cmd = json!({
            "cmd": "connect",
            "sources": sources,
            "groups": groups,
            "event": SNAPSHOT_EVENT,
            "concurrency": a.concurrency,
            "timeout_ms": a.connect_timeout_secs * 1000,
        });
        workers.send(k, &cmd).await;
    }
    let within = Duration::from_secs(a.connect_timeout_secs * (1 + total as u64 / 5000) + 60);
    let ready = workers.take("ready", within).await;
    let connect_secs = connect_start.elapsed().as_secs_f64();
    let mut by_session = vec![0u64; all_sessions];
    let mut by_instance = vec![0u64; servers.len()];
    let mut failed = 0;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for r in &ready {
        let k = r["worker"].as_u64().unwrap_or(0) as usize;
        let counts = r["connected"].as_array().cloned().unwrap_or_default();
        for ((&(s, inst), _), c) in plan[k].iter().zip(counts) {
            let c = c.as_u64().unwrap_or(0);
            by_session[s] += c;
            by_instance[inst] += c;
        }
        failed += r["failed"].as_u64().unwrap_or(0);
        if let Some(e) = r["errors"].as_object() {
            for (msg, n) in e {
                *errors.entry(msg.clone()).or_default() += n.as_u64().unwrap_or(0);
            }
        }
    }
    let connected: u64 = by_instance.iter().sum();
    if ready.len() < n_workers {
        eprintln!(
            "fanout: only {}/{n_workers} workers finished connecting",
            ready.len()
        );
    }
    eprintln!(
        "fanout: {connected}/{total} watchers have their first snapshot ({failed} failed) in {connect_secs:.1}s"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_watching = rss("VmRSS:");
    let fds_watching: Vec<usize> = pids.iter().map(|&p| open_fds(p)).collect();

    // Idle: heartbeats only.
    let (idle_bytes_start, _, _) = workers.stats().await;
    tokio::time::sleep(Duration::from_secs(a.idle_secs)).await;
    let (idle_bytes_end, open_after_idle, _) = workers.stats().await;
    let rss_idle = rss("VmRSS:");
    let rss_hwm = rss("VmHWM:");

    let photo = qrupload::biz::imaging::testdata::jpeg_with_exif(64, 48, 1, false);
    let boundary = "qrupload-fanout-bench-boundary";
    let body = multipart(&photo, boundary);
    let content_type = format!("multipart/form-data; boundary={boundary}");

    // Calibration: the same uploads at the same rate to sessions nobody watches, so the
    // server's CPU per upload without any fan-out; subtracted from the measured phase's CPU,
    // it leaves the CPU per delivered event excluding the upload.
    let calibration = if calibrating {
        let count = a.calibrate.unwrap_or(a.uploads.min(500));
        let cpu_before: f64 = pids.iter().map(|&p| cpu_seconds(p)).sum();
        let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / a.rate));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tasks = Vec::with_capacity(count);
        for n in 0..count {
            interval.tick().await;
            let s = a.sessions + idle_sessions + n % unwatched;
            let (id, token, _) = sessions[s].clone();
            let base = servers[s % servers.len()].base();
            let request = control
                .post(format!("{base}/v1/api/upload-sessions/{id}/images"))
                .bearer_auth(token)
                .header(reqwest::header::CONTENT_TYPE, &content_type)
                .body(body.clone());
            tasks.push(tokio::task::spawn_local(async move {
                request
                    .send()
                    .await
                    .is_ok_and(|r| r.status().as_u16() == 201)
            }));
        }
        let mut ok = 0u64;
        for t in tasks {
            ok += u64::from(t.await.unwrap_or(false));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let cpu: f64 = pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>() - cpu_before;
        Some((count, ok, cpu))
    } else {
        None
    };

    // Uploads at the given rate, round-robin over sessions and instances.
    let mut reads_before = Vec::new();
    let mut doorbells_before = Vec::new();
    for server in &servers {
        reads_before
            .push(metric(&control, &server.base(), "qrupload_db_snapshot_reads_total").await);
        doorbells_before.push(metric(&control, &server.base(), DOORBELLS).await);
    }
    let worker_pids = workers.pids();
    let load_cpu = || -> f64 {
        worker_pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>() + cpu_seconds(std::process::id())
    };
    let server_cpu_before: Vec<f64> = pids.iter().map(|&p| cpu_seconds(p)).collect();
    let load_cpu_before = load_cpu();
    let (_, _, deliveries_before) = workers.stats().await;
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / a.rate));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let upload_start = now_ns();
    let mut tasks = Vec::with_capacity(a.uploads);
    for n in 0..a.uploads {
        interval.tick().await;
        let session = n % a.sessions;
        let (id, token, _) = sessions[session].clone();
        let base = servers[n % servers.len()].base();
        // nchan: the publisher names the image and sends the session's new snapshot.
        let published = a.nchan.then(|| format!("n{n}"));
        let request = match &published {
            Some(image) => {
                channel_images[session].push(image.clone());
                control
                    .post(format!("{base}/pub/{id}"))
                    .body(crate::nchan::snapshot(&channel_images[session]))
            }
            None => control
                .post(format!("{base}/v1/api/upload-sessions/{id}/images"))
                .bearer_auth(token)
                .header(reqwest::header::CONTENT_TYPE, &content_type)
                .body(body.clone()),
        };
        tasks.push(tokio::task::spawn_local(async move {
            let sent = now_ns();
            let mut timing = Vec::new();
            let (status, image, error) = match request.send().await {
                Ok(res) => {
                    let status = res.status().as_u16();
                    timing = server_timing(res.headers());
                    let text = res.text().await.unwrap_or_default();
                    let body: Value = serde_json::from_str(&text).unwrap_or_default();
                    match (published, body["images"][0]["id"].as_str()) {
                        (Some(image), _) if status < 300 => (status, Some(image), None),
                        (None, Some(id)) => (status, Some(id.to_owned()), None),
                        _ => (status, None, Some(text.chars().take(300).collect())),
                    }
                }
                Err(e) => (0, None, Some(error_chain(&e.without_url()))),
            };
            Upload {
                session,
                image,
                sent,
                answered: now_ns(),
                status,
                error,
                timing,
            }
        }));
    }
    let mut uploads = Vec::with_capacity(tasks.len());
    for t in tasks {
        if let Ok(u) = t.await {
            uploads.push(u);
        }
    }
    let upload_secs = (now_ns() - upload_start) as f64 / 1e9;
    let expected: u64 = uploads
        .iter()
        .filter(|u| u.image.is_some())
        .map(|u| by_session[u.session])
        .sum();
    let settle = Instant::now();
    loop {
        let (_, _, delivered) = workers.stats().await;
        if delivered - deliveries_before >= expected || settle.elapsed() > Duration::from_secs(30) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let server_cpu: Vec<f64> = pids
        .iter()
        .zip(&server_cpu_before)
        .map(|(&p, before)| cpu_seconds(p) - before)
        .collect();
    let load_cpu_used = load_cpu() - load_cpu_before;
    let mut reads = Vec::new();
    let mut doorbells = Vec::new();
    for ((server, before), doorbells_before) in
        servers.iter().zip(&reads_before).zip(&doorbells_before)
    {
        reads.push(
            metric(&control, &server.base(), "qrupload_db_snapshot_reads_total").await - before,
        );
        doorbells.push(metric(&control, &server.base(), DOORBELLS).await - doorbells_before);
    }
    // An instance should hear exactly the uploads of the sessions it has watchers of.
    let mut served = vec![std::collections::BTreeSet::new(); servers.len()];
    for groups in &plan {
        for &(s, inst) in groups.keys() {
            served[inst].insert(s);
        }
    }
    let doorbells_expected: Vec<usize> = served
        .iter()
        .map(|sessions| {
            uploads
                .iter()
                .filter(|u| u.image.is_some() && sessions.contains(&u.session))
                .count()
        })
        .collect();

    // Receive times from every worker.
    workers.send_all(&json!({"cmd": "report"})).await;
    let reports = workers.take("report", Duration::from_secs(120)).await;
    let sent: HashMap<&str, (u64, u64)> = uploads
        .iter()
        .filter_map(|u| Some((u.image.as_deref()?, (u.sent, u.answered))))
        .collect();
    let mut latencies = Vec::with_capacity(expected as usize);
    // Receipt relative to the upload's answer: negative when the event came first. Shows
    // how much of the latency is the upload request itself.
    let mut after_answer = Vec::with_capacity(expected as usize);
    let mut unmatched = 0u64;
    let mut worker_rss = 0u64;
    for r in &reports {
        worker_rss = worker_rss.max(r["rss_kib"].as_u64().unwrap_or(0));
        for (id, times) in r["arrivals"].as_object().into_iter().flatten() {
            let Some(&(at, answered)) = sent.get(id.as_str()) else {
                unmatched += times.as_array().map_or(0, Vec::len) as u64;
                continue;
            };
            for t in times.as_array().into_iter().flatten() {
                let t = t.as_u64().unwrap_or(0);
                latencies.push(t.saturating_sub(at) as f64 / 1e6);
                after_answer.push((t as f64 - answered as f64) / 1e6);
            }
        }
    }
    // Per upload, its last watcher: the time the change took to reach every watcher.
    let mut last_after_answer = Vec::with_capacity(sent.len());
    let mut last_after_send = Vec::with_capacity(sent.len());
    {
        let mut last: HashMap<&str, u64> = HashMap::new();
        for r in &reports {
            for (id, times) in r["arrivals"].as_object().into_iter().flatten() {
                if let Some((key, _)) = sent.get_key_value(id.as_str()) {
                    let latest = times.as_array().into_iter().flatten();
                    let latest = latest.filter_map(Value::as_u64).max().unwrap_or(0);
                    let entry = last.entry(key).or_default();
                    *entry = (*entry).max(latest);
                }
            }
        }
        for (id, t) in last {
            let (at, answered) = sent[id];
            last_after_answer.push((t as f64 - answered as f64) / 1e6);
            last_after_send.push(t.saturating_sub(at) as f64 / 1e6);
        }
    }
    last_after_answer.sort_by(f64::total_cmp);
    last_after_send.sort_by(f64::total_cmp);
    latencies.sort_by(f64::total_cmp);
    after_answer.sort_by(f64::total_cmp);
    let received = latencies.len() as u64;
    let mut upload_ms: Vec<f64> = uploads
        .iter()
        .filter(|u| u.image.is_some())
        .map(|u| (u.answered - u.sent) as f64 / 1e6)
        .collect();
    upload_ms.sort_by(f64::total_cmp);
    let uploads_ok = uploads.iter().filter(|u| u.image.is_some()).count();
    let (stages, outside_handler, slowest_uploads) = upload_stages(&uploads);
    let mut upload_statuses: BTreeMap<String, u64> = BTreeMap::new();
    for u in &uploads {
        *upload_statuses.entry(u.status.to_string()).or_default() += 1;
    }
    let mut upload_errors: BTreeMap<String, u64> = BTreeMap::new();
    for e in uploads.iter().filter_map(|u| u.error.as_ref()) {
        *upload_errors.entry(e.clone()).or_default() += 1;
    }

    let per_watcher = |before: u64, after: u64, n: u64| {
        round3(after.saturating_sub(before) as f64 / n.max(1) as f64)
    };
    let rss_delta: u64 = rss_idle
        .iter()
        .zip(&rss_before)
        .map(|(after, before)| after.saturating_sub(*before))
        .sum();
    let by_instance_kib: Vec<f64> = (0..servers.len())
        .map(|i| per_watcher(rss_before[i], rss_idle[i], by_instance[i]))
        .collect();
    let server_exits: Vec<Option<String>> = servers.iter_mut().map(Server::exit).collect();
    let warnings: Vec<BTreeMap<String, u64>> = servers.iter().map(Server::warnings).collect();
    let shape = format!(
        "{}x{}@{}{}",
        a.sessions,
        a.watchers,
        a.rate,
        if a.instances > 1 {
            format!(" ×{} instances", a.instances)
        } else {
            String::new()
        }
    ) + &if a.idle_watchers > 0 {
        format!(" +{} idle", a.idle_watchers)
    } else {
        String::new()
    };
    let report = json!({
        "bench": "fanout",
        "label": a.label.clone().unwrap_or(shape),
        "mode": if a.floor { "floor" } else if a.nchan { "nchan" } else { "server" },
        "unix_time": started_unix,
        "loadavg_at_start": loadavg,
        "server_cpu": a.server_cpu,
        "load_cpu": a.load_cpu,
        "instances": servers.len(),
        "data": if a.floor || a.nchan { "none".to_owned() } else if a.shared_data { format!("postgres+{}", a.bus) } else { "sqlite+memory".to_owned() },
        "sessions": a.sessions,
        "watchers_per_session": a.watchers,
        "watchers": total,
        "idle_watchers": a.idle_watchers,
        "watchers_connected": connected,
        "watchers_connected_by_instance": by_instance,
        "watchers_failed": failed,
        "connect_errors": errors,
        "connect_secs": round3(connect_secs),
        "watchers_open_after_idle": open_after_idle,
        "workers": n_workers,
        "worker_rss_kib_max": worker_rss,
    });
    let memory = json!({
        "uploads": a.uploads,
        "uploads_ok": uploads_ok,
        "upload_statuses": upload_statuses,
        "upload_errors": upload_errors,
        "upload_rate_per_s": a.rate,
        "upload_rate_achieved_per_s": round3(a.uploads as f64 / upload_secs.max(1e-9)),
        "rss_kib_start": rss_start,
        "rss_kib_before": rss_before,
        "rss_kib_watching": rss_watching,
        "rss_kib_idle": rss_idle,
        "rss_kib_hwm": rss_hwm,
        "server_fds_watching": fds_watching,
        "rss_kib_per_idle_watcher": round3(rss_delta as f64 / connected.max(1) as f64),
        "rss_kib_per_idle_watcher_by_instance": by_instance_kib,
    });
    let delivery = json!({
        "latency_ms": percentiles(&latencies),
        "upload_request_ms": percentiles(&upload_ms),
        "receipt_after_upload_answer_ms": percentiles(&after_answer),
        "last_watcher_after_upload_answer_ms": percentiles(&last_after_answer),
        "last_watcher_after_upload_sent_ms": percentiles(&last_after_send),
        "deliveries": { "received": received, "expected": expected, "unmatched": unmatched },
        "db_snapshot_reads_per_change": round3(reads.iter().sum::<f64>() / uploads_ok.max(1) as f64),
        "db_snapshot_reads_by_instance": reads,
        "bus_doorbells_by_instance": doorbells,
        "bus_doorbells_expected_by_instance": doorbells_expected,
        "idle_secs": a.idle_secs,
        "idle_bytes_per_watcher_per_minute": round3(
            (idle_bytes_end - idle_bytes_start) as f64 / connected.max(1) as f64 * 60.0
                / a.idle_secs.max(1) as f64
        ),
        "server_cpu_s_upload_phase": server_cpu.iter().map(|c| round3(*c)).collect::<Vec<_>>(),
        "server_cpu_us_per_delivered_event": round3(server_cpu.iter().sum::<f64>() * 1e6 / received.max(1) as f64),
        "calibration": calibration.map(|(count, ok, cpu)| json!({
            "uploads_to_unwatched_sessions": count,
            "uploads_ok": ok,
            "server_cpu_s": round3(cpu),
            "server_cpu_us_per_upload": round3(cpu * 1e6 / ok.max(1) as f64),
        })),
        "server_cpu_us_per_delivered_event_excl_upload": calibration.map(|(_, ok, cpu)| {
            let per_upload = cpu / ok.max(1) as f64;
            let fanout = server_cpu.iter().sum::<f64>() - per_upload * uploads_ok as f64;
            round3(fanout.max(0.0) * 1e6 / received.max(1) as f64)
        }),
        "upload_stages_ms": stages,
        "upload_outside_handler_ms": outside_handler,
        "slowest_uploads": slowest_uploads,
        "heartbeats": heartbeat_spread(&reports, connected),
        "load_cpu_us_per_delivered_event": round3(load_cpu_used * 1e6 / received.max(1) as f64),
        "server_exit": server_exits,
        "server_warnings": warnings,
    });
    let mut report = report;
    for part in [memory, delivery] {
        if let (Some(into), Value::Object(from)) = (report.as_object_mut(), part) {
            into.extend(from);
        }
    }
    emit(&report);
    eprintln!("{}", crate::report::row(&report));
    if let Some(path) = &a.out {
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| writeln!(f, "{report}"));
        if let Err(e) = appended {
            eprintln!("fanout: cannot append to {}: {e}", path.display());
        }
    }

    drop(workers);
    drop(servers);
    if let Some((admin, name)) = database {
        let dropped = admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await;
        if let Err(e) = dropped {
            eprintln!("fanout: could not drop database {name}: {e}");
        }
    }
    report
}
