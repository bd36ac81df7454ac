//! `--worker K`: holds its share of the watchers and reports over stdout.
//!
//! stdin, one JSON line each: `{"cmd":"connect","sources":[…],"groups":[{"addr","path",
//! "count"}],"concurrency","timeout_ms","event"}`, then `{"cmd":"stats"}` any number of
//! times, then `{"cmd":"report"}`. stdout: `ready` once every watcher has its first
//! snapshot or has failed, `stats`, and `report` with every delivery's receive time.

use super::*;

struct Shared {
    id: usize,
    event: String,
    timeout: Duration,
    total: usize,
    done: Cell<usize>,
    connected: RefCell<Vec<u64>>,
    failed: Cell<u64>,
    errors: RefCell<BTreeMap<String, u64>>,
    closed: Cell<u64>,
    bytes: Cell<u64>,
    deliveries: Cell<u64>,
    arrivals: RefCell<HashMap<Box<str>, Vec<u64>>>,
    /// Heartbeats received per millisecond of `CLOCK_MONOTONIC`: whether they are spread.
    heartbeats: RefCell<HashMap<u64, u32>>,
}

impl Shared {
    fn finish_one(&self) {
        self.done.set(self.done.get() + 1);
        let done = self.done.get();
        if done.is_multiple_of(5000) && done < self.total {
            eprintln!("fanout worker {}: {done}/{} watchers", self.id, self.total);
        }
        if done == self.total {
            self.ready();
        }
    }

    fn ready(&self) {
        emit(&json!({
            "event": "ready",
            "worker": self.id,
            "connected": *self.connected.borrow(),
            "failed": self.failed.get(),
            "errors": *self.errors.borrow(),
        }));
    }

    fn fail(&self, error: String) {
        self.failed.set(self.failed.get() + 1);
        *self.errors.borrow_mut().entry(error).or_default() += 1;
        self.finish_one();
    }

    fn arrive(&self, id: &str, at: u64) {
        self.deliveries.set(self.deliveries.get() + 1);
        let mut arrivals = self.arrivals.borrow_mut();
        match arrivals.get_mut(id) {
            Some(times) => times.push(at),
            None => {
                arrivals.insert(id.into(), vec![at]);
            }
        }
    }

    fn stats(&self) -> Value {
        let connected: u64 = self.connected.borrow().iter().sum();
        json!({
            "event": "stats",
            "worker": self.id,
            "done": self.done.get(),
            "open": connected - self.closed.get(),
            "closed": self.closed.get(),
            "bytes": self.bytes.get(),
            "deliveries": self.deliveries.get(),
        })
    }
}

pub async fn run(id: usize) {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut shared: Option<Rc<Shared>> = None;
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(cmd) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        match cmd["cmd"].as_str() {
            Some("connect") => shared = Some(connect(id, &cmd)),
            Some("stats") => {
                if let Some(s) = &shared {
                    emit(&s.stats());
                }
            }
            Some("report") => {
                let arrivals = shared
                    .as_ref()
                    .map(|s| std::mem::take(&mut *s.arrivals.borrow_mut()))
                    .unwrap_or_default();
                let heartbeats = shared
                    .as_ref()
                    .map(|s| std::mem::take(&mut *s.heartbeats.borrow_mut()))
                    .unwrap_or_default();
                let heartbeats: HashMap<String, u32> = heartbeats
                    .into_iter()
                    .map(|(ms, n)| (ms.to_string(), n))
                    .collect();
                emit(&json!({
                    "event": "report",
                    "worker": id,
                    "arrivals": arrivals,
                    "heartbeats_per_ms": heartbeats,
                    "cpu_s": cpu_seconds(std::process::id()),
                    "rss_kib": proc_status(std::process::id(), "VmRSS:"),
                }));
                return;
            }
            _ => {}
        }
    }
}

fn connect(id: usize, cmd: &Value) -> Rc<Shared> {
    let sources: Vec<Ipv4Addr> = cmd["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str()?.parse().ok())
        .collect();
    let groups: Vec<(SocketAddr, Rc<[u8]>, u64)> = cmd["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| {
            let addr: SocketAddr = g["addr"].as_str()?.parse().ok()?;
            let path = g["path"].as_str()?;
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
            );
            Some((addr, request.into_bytes().into(), g["count"].as_u64()?))
        })
        .collect();
    let shared = Rc::new(Shared {
        id,
        event: cmd["event"].as_str().unwrap_or(SNAPSHOT_EVENT).to_owned(),
        timeout: Duration::from_millis(cmd["timeout_ms"].as_u64().unwrap_or(120_000)),
        total: groups.iter().map(|g| g.2 as usize).sum(),
        done: Cell::new(0),
        connected: RefCell::new(vec![0; groups.len()]),
        failed: Cell::new(0),
        errors: RefCell::default(),
        closed: Cell::new(0),
        bytes: Cell::new(0),
        deliveries: Cell::new(0),
        arrivals: RefCell::default(),
        heartbeats: RefCell::default(),
    });
    if shared.total == 0 || sources.is_empty() {
        shared.ready();
        return shared;
    }
    // Bounded opening: this many watchers between connect and first snapshot at once.
    let gate = Rc::new(Semaphore::new(
        cmd["concurrency"].as_u64().unwrap_or(128) as usize
    ));
    let mut n = 0;
    for (group, (addr, request, count)) in groups.into_iter().enumerate() {
        for _ in 0..count {
            let source = sources[n % sources.len()];
            n += 1;
            tokio::task::spawn_local(watch(
                shared.clone(),
                gate.clone(),
                source,
                addr,
                request.clone(),
                group,
            ));
        }
    }
    shared
}

async fn watch(
    shared: Rc<Shared>,
    gate: Rc<Semaphore>,
    source: Ipv4Addr,
    addr: SocketAddr,
    request: Rc<[u8]>,
    group: usize,
) {
    let permit = gate.acquire().await.ok();
    let mut parser = SseParser::default();
    let mut buf = vec![0u8; 4096];
    let opened = tokio::time::timeout(
        shared.timeout,
        open(&shared, source, addr, &request, &mut parser, &mut buf),
    )
    .await;
    let mut stream = match opened {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return shared.fail(e),
        Err(_) => {
            return shared.fail(format!(
                "no first snapshot within {}s",
                shared.timeout.as_secs()
            ));
        }
    };
    shared.connected.borrow_mut()[group] += 1;
    shared.finish_one();
    drop(permit);
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let at = now_ns();
                shared.bytes.set(shared.bytes.get() + n as u64);
                let pings = parser.heartbeats;
                let fed = parser.feed(&buf[..n], &shared.event, &mut |id| {
                    shared.arrive(id, at);
                });
                if parser.heartbeats > pings {
                    let beats = (parser.heartbeats - pings) as u32;
                    *shared
                        .heartbeats
                        .borrow_mut()
                        .entry(at / 1_000_000)
                        .or_default() += beats;
                }
                if fed.is_err() || parser.ended {
                    break;
                }
            }
        }
    }
    shared.closed.set(shared.closed.get() + 1);
}

async fn open(
    shared: &Shared,
    source: Ipv4Addr,
    addr: SocketAddr,
    request: &[u8],
    parser: &mut SseParser,
    buf: &mut [u8],
) -> Result<TcpStream, String> {
    let err = |what: &'static str| move |e: std::io::Error| format!("{what}: {e}");
    let socket = TcpSocket::new_v4().map_err(err("socket"))?;
    socket
        .bind(SocketAddr::new(source.into(), 0))
        .map_err(err("bind"))?;
    let mut stream = socket.connect(addr).await.map_err(err("connect"))?;
    let _ = stream.set_nodelay(true);
    stream.write_all(request).await.map_err(err("write"))?;
    while parser.snapshots == 0 {
        let n = stream.read(buf).await.map_err(err("read"))?;
        if n == 0 {
            return Err("closed before the first snapshot".into());
        }
        shared.bytes.set(shared.bytes.get() + n as u64);
        parser.feed(&buf[..n], &shared.event, &mut |_| {})?;
        if parser.ended {
            return Err("stream ended before the first snapshot".into());
        }
    }
    Ok(stream)
}
