//! A PostgreSQL cluster of a test's own: initialised in a temp dir, served on a free port, and
//! stopped and started by the test while the app keeps running.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
};

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement};

pub struct OwnPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// initdb and postgres refuse to run as root: then they run as the `postgres` user.
    as_postgres: bool,
}

impl OwnPostgres {
    /// A new cluster, started. `None` (the test skips) when the server binaries (`initdb`,
    /// `pg_ctl`) are absent, unless `QRUPLOAD_TEST_POSTGRES_URL` asks for PostgreSQL tests.
    pub fn start() -> Option<OwnPostgres> {
        let required = std::env::var("QRUPLOAD_TEST_POSTGRES_URL").is_ok();
        let Some(bin) = server_bin_dir() else {
            assert!(
                !required,
                "QRUPLOAD_TEST_POSTGRES_URL is set but initdb and pg_ctl are not installed"
            );
            eprintln!("skipping: no PostgreSQL server binaries (initdb, pg_ctl)");
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let as_postgres = is_root();
        if as_postgres {
            run(Command::new("chown")
                .arg("-R")
                .arg("postgres:")
                .arg(dir.path()));
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let pg = OwnPostgres {
            dir,
            bin,
            port,
            as_postgres,
        };
        let data = pg.data_dir();
        pg.run_tool(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
        );
        pg.start_server();
        Some(pg)
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl start`, waiting until it accepts connections.
    pub fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log").display().to_string();
        self.run_tool(
            "pg_ctl",
            &[
                "-D",
                &self.data_dir(),
                "-l",
                &log,
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// `pg_ctl stop -m fast`: sessions are ended, open transactions rolled back.
    pub fn stop_server(&self) {
        self.run_tool(
            "pg_ctl",
            &[
                "-D",
                &self.data_dir(),
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                "stop",
            ],
        );
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn run_tool(&self, tool: &str, args: &[&str]) {
        let mut command = self.command(tool);
        command.args(args);
        run(&mut command);
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-D", &self.data_dir(), "-m", "immediate", "stop"])
            .output();
    }
}

fn run(command: &mut Command) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A folder holding both `initdb` and `pg_ctl`: on the `PATH`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian keeps them off the `PATH`).
fn server_bin_dir() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&path).find(|d| has_both(d))
    {
        // Through symlinks to the real folder, where pg_ctl also finds `postgres`.
        return dir
            .join("pg_ctl")
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|d| has_both(d))
        .collect();
    versions.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop()
}

/// Makes every upload's COMMIT wait while the gate is closed, so that the test can act while a
/// commit is in flight: a deferred trigger on `images` sleeps at COMMIT until the row in
/// `commit_gate` is gone. The wait depends on no other connection, so a server shutting down
/// cannot let the commit through by ending the connection that held it (as a lock would);
/// the sleep is interrupted and the transaction rolls back. [`CommitGate::open`] lets the
/// commits through.
pub async fn hold_commits(url: &str) -> CommitGate {
    let admin = qrupload::data::connect(url, 1)
        .await
        .expect("connect to the test cluster");
    admin
        .execute_unprepared(
            "CREATE TABLE IF NOT EXISTS commit_gate (closed int);
             INSERT INTO commit_gate VALUES (1);
             CREATE OR REPLACE FUNCTION hold_commit() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               WHILE EXISTS (SELECT 1 FROM commit_gate) LOOP
                 PERFORM pg_sleep(0.02);
               END LOOP;
               RETURN NULL;
             END $$;
             CREATE CONSTRAINT TRIGGER hold_commit AFTER INSERT ON images
               DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION hold_commit();",
        )
        .await
        .expect("install the commit trigger");
    CommitGate { admin }
}

pub struct CommitGate {
    admin: DatabaseConnection,
}

impl CommitGate {
    /// Waits until a COMMIT is blocked on the gate.
    pub async fn until_a_commit_waits(&self) {
        let deadline = tokio::time::Instant::now() + super::wire::PATIENCE;
        loop {
            let row = self
                .admin
                .query_one_raw(Statement::from_string(
                    DatabaseBackend::Postgres,
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'",
                ))
                .await
                .expect("pg_stat_activity");
            let waiting: i64 = row
                .and_then(|r| r.try_get_by_index(0).ok())
                .unwrap_or_default();
            if waiting > 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no COMMIT reached the gate"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Lets the waiting commits through.
    pub async fn open(&self) {
        self.admin
            .execute_unprepared("DELETE FROM commit_gate")
            .await
            .expect("open the gate");
    }
}
