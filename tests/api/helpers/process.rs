//! The real `qrupload` binary, started as an operator would (`serve --conf configs` with
//! `QRUPLOAD__…` variables), with everything it prints captured, and stopped by signals.

use std::{
    io::{BufRead, BufReader, Read},
    net::SocketAddr,
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;
use tokio::time::Instant;

pub const TOKEN_KEY: &str = "a fixed upload token key for the fault tests";

pub struct Server {
    child: Child,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    output: Arc<Mutex<String>>,
}

impl Server {
    /// Starts the binary on `dir` (SQLite database and blob folder there), listening on
    /// 127.0.0.1 (port 0 unless `QRUPLOAD__SERVER__HTTP__ADDR` is given), logging JSON lines;
    /// `env` (`QRUPLOAD__…` variables, as an operator sets them) wins. Returns once it has
    /// logged the addresses it serves on.
    pub async fn start(dir: &Path, env: &[(&str, &str)]) -> Server {
        let mut vars: Vec<(String, String)> = vec![
            ("QRUPLOAD__SERVER__HTTP__ADDR".into(), "127.0.0.1:0".into()),
            ("QRUPLOAD__SERVER__GRPC__ADDR".into(), "127.0.0.1:0".into()),
            ("QRUPLOAD__SERVER__SHUTDOWN_GRACE".into(), "3s".into()),
            (
                "QRUPLOAD__SERVER__PUBLIC_BASE_URL".into(),
                "http://127.0.0.1".into(),
            ),
            (
                "QRUPLOAD__DATA__DATABASE__URL".into(),
                format!("sqlite://{}/qrupload.db?mode=rwc", dir.display()),
            ),
            (
                "QRUPLOAD__DATA__BLOB__ROOT".into(),
                dir.join("blobs").display().to_string(),
            ),
            ("QRUPLOAD__AUTH__UPLOAD_TOKEN_KEY".into(), TOKEN_KEY.into()),
            ("QRUPLOAD__LOG__FORMAT".into(), "json".into()),
            ("QRUPLOAD__LOG__LEVEL".into(), "info".into()),
        ];
        for (k, v) in env {
            vars.retain(|(key, _)| key != k);
            vars.push(((*k).into(), (*v).into()));
        }
        let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut command = Command::new(env!("CARGO_BIN_EXE_qrupload"));
        command
            .arg("--conf")
            .arg(&configs)
            .arg("serve")
            .env_remove("APP_ENV")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("QRUPLOAD__")) {
            command.env_remove(key);
        }
        command.envs(vars);
        let mut child = command.spawn().expect("the qrupload binary starts");
        let output = Arc::new(Mutex::new(String::new()));
        if let Some(out) = child.stdout.take() {
            capture(out, output.clone());
        }
        if let Some(err) = child.stderr.take() {
            capture(err, output.clone());
        }

        let deadline = Instant::now() + Duration::from_secs(60);
        let (http, grpc) = loop {
            let text = output.lock().map(|o| o.clone()).unwrap_or_default();
            if let Some(addrs) = text.lines().find_map(serving_line) {
                break addrs;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("qrupload exited at start-up ({status}):\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "qrupload did not log \"serving\" within 60 s:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Server {
            child,
            http,
            grpc,
            output,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Everything the process printed so far, stdout and stderr.
    pub fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// SIGKILL: no cleanup of any kind runs.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as an orchestrator stops a container.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-s", "TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -s TERM: {status}");
    }

    /// Waits for the process to end (a deadline for the outcome, not a timing assertion).
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "qrupload did not exit within {within:?}:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Copies a pipe into `output`, line by line, until the process closes it.
fn capture(pipe: impl Read + Send + 'static, output: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            if let Ok(mut o) = output.lock() {
                o.push_str(&line);
                o.push('\n');
            }
        }
    });
}

/// The bound addresses from the JSON log line `"serving"`.
fn serving_line(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let v: Value = serde_json::from_str(line).ok()?;
    let fields = &v["fields"];
    if fields["message"] != "serving" {
        return None;
    }
    Some((
        fields["http"].as_str()?.parse().ok()?,
        fields["grpc"].as_str()?.parse().ok()?,
    ))
}
