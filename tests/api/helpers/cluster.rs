//! Several instances of the app behind one URL, as production runs them: one database, one
//! blob folder, one bus and one upload-token key, each instance with its own listeners.

use std::ops::Deref;

use qrupload::conf::{Config, Secret};

use super::{TestApp, config};

/// Shared by every instance, so a token minted by one is accepted by the others.
const TOKEN_KEY: &str = "a shared key for every instance of this cluster";

/// Instances started on a shared SQLite file and blob folder (a test points them at
/// PostgreSQL and a bus through `edit`), each ready before the test goes on. Derefs to the
/// instances: `&cluster[0]`, `cluster.iter()`.
pub struct Cluster {
    // Declared first, so the instances are told to stop before the shared folder goes.
    apps: Vec<TestApp>,
    shared: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` instances one after another, each on [`config`] with the shared backends,
    /// then as `edit` changes it (the same edit for all).
    pub async fn start(n: usize, edit: impl Fn(&mut Config)) -> Cluster {
        let mut cluster = Cluster::empty();
        for _ in 0..n {
            let (config, dir) = cluster.instance_config(&edit);
            let app = TestApp::spawn_config(config, dir).await;
            app.wait_ready(true).await;
            cluster.apps.push(app);
        }
        cluster
    }

    /// [`Cluster::start`] with every instance started at the same moment, as a deployment
    /// brings them up against an empty database: their migrations race. For PostgreSQL,
    /// whose migrations take a lock (SQLite's do not).
    pub async fn start_together(n: usize, edit: impl Fn(&mut Config)) -> Cluster {
        let mut cluster = Cluster::empty();
        let starts = (0..n).map(|_| {
            let (config, dir) = cluster.instance_config(&edit);
            TestApp::spawn_config(config, dir)
        });
        let apps = futures::future::join_all(starts).await;
        for app in &apps {
            app.wait_ready(true).await;
        }
        cluster.apps = apps;
        cluster
    }

    fn empty() -> Cluster {
        Cluster {
            apps: Vec::new(),
            shared: tempfile::tempdir().expect("shared dir"),
        }
    }

    /// One instance's configuration and its own folder.
    fn instance_config(&self, edit: &impl Fn(&mut Config)) -> (Config, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = config(dir.path());
        config.data.database.url = Secret::new(format!(
            "sqlite://{}/shared.db?mode=rwc",
            self.shared.path().display()
        ));
        config.data.blob.root = self.shared.path().join("blobs").display().to_string();
        config.auth.upload_token_key = Some(Secret::new(TOKEN_KEY));
        edit(&mut config);
        (config, dir)
    }
}

impl Deref for Cluster {
    type Target = [TestApp];

    fn deref(&self) -> &[TestApp] {
        &self.apps
    }
}
