//! A small TCP relay between a client and the app that misbehaves like a phone's network:
//! it cuts every connection once the client has sent a given number of bytes in all, refuses
//! new connections for a while after a cut, and can throttle what the client sends.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    time::Instant,
};

#[derive(Default)]
pub struct RelayPlan {
    /// Client bytes (counted over all connections) at which the current connection is cut.
    pub cut_at: Vec<u64>,
    /// How long new connections are refused after a cut.
    pub refuse_for: Duration,
    /// Client bytes per second, or unlimited.
    pub rate: Option<u64>,
}

pub struct Relay {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

struct State {
    upstream: SocketAddr,
    /// Bumped by every cut: a network that goes away takes every open connection with it.
    outage: tokio::sync::watch::Sender<u64>,
    sent: AtomicU64,
    cuts: AtomicU64,
    plan: Mutex<RelayPlan>,
    refuse_until: Mutex<Option<Instant>>,
}

impl Relay {
    pub async fn start(upstream: SocketAddr, plan: RelayPlan) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("relay binds");
        let addr = listener.local_addr().expect("relay address");
        let state = Arc::new(State {
            upstream,
            outage: tokio::sync::watch::channel(0).0,
            sent: AtomicU64::new(0),
            cuts: AtomicU64::new(0),
            plan: Mutex::new(plan),
            refuse_until: Mutex::new(None),
        });
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let refusing = shared
                    .refuse_until
                    .lock()
                    .map(|u| u.is_some_and(|t| Instant::now() < t))
                    .unwrap_or(false);
                if refusing {
                    // Reset at once, as an unreachable network does.
                    let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
                    drop(client);
                    continue;
                }
                tokio::spawn(pump(client, shared.clone()));
            }
        });
        Relay { addr, state, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Bytes the client sent through the relay, over every connection.
    pub fn sent(&self) -> u64 {
        self.state.sent.load(Ordering::SeqCst)
    }

    /// Changes what the relay does from now on (counts carry on).
    pub fn set_plan(&self, plan: RelayPlan) {
        if let Ok(mut current) = self.state.plan.lock() {
            *current = plan;
        }
    }

    pub fn cuts(&self) -> u64 {
        self.state.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(mut client: TcpStream, state: Arc<State>) {
    let Ok(mut server) = TcpStream::connect(state.upstream).await else {
        return;
    };
    let mut outage = state.outage.subscribe();
    outage.mark_unchanged();
    // Closing resets, as a network that goes away does, rather than ending politely.
    let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let upstream = async {
        let mut buf = vec![0u8; 16 * 1024];
        let started = Instant::now();
        let mut mine = 0u64;
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let (cut, rate) = {
                let plan = state.plan.lock().expect("plan");
                let before = state.sent.load(Ordering::SeqCst);
                let cut = plan
                    .cut_at
                    .iter()
                    .copied()
                    .find(|&at| at > before && at <= before + n as u64)
                    .map(|at| (at - before) as usize);
                (cut, plan.rate)
            };
            let take = cut.unwrap_or(n);
            if let Some(rate) = rate {
                mine += take as u64;
                let due = started + Duration::from_secs_f64(mine as f64 / rate as f64);
                tokio::time::sleep_until(due).await;
            }
            if server_write.write_all(&buf[..take]).await.is_err() {
                return;
            }
            state.sent.fetch_add(take as u64, Ordering::SeqCst);
            if cut.is_some() {
                state.cuts.fetch_add(1, Ordering::SeqCst);
                let refuse_for = state.plan.lock().expect("plan").refuse_for;
                if let Ok(mut until) = state.refuse_until.lock() {
                    *until = Some(Instant::now() + refuse_for);
                }
                let _ = server_write.flush().await;
                state.outage.send_modify(|n| *n += 1);
                return;
            }
        }
    };
    let downstream = async {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    };
    // Whichever side ends first ends the connection (a cut closes both).
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
        _ = outage.changed() => {}
    }
}
