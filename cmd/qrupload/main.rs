//! The qrupload binary: parse flags, load config, start telemetry, build the app, run until a
//! signal. Everything else lives in the library.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};
use qrupload::{Application, conf::Config, data, telemetry};

#[derive(Parser)]
#[command(
    name = "qrupload",
    version,
    about = "Photos from a phone to a desktop page by QR code"
)]
struct Cli {
    /// Folder holding config.yaml and the {APP_ENV}.yaml overlays.
    #[arg(long, default_value = "configs", global = true)]
    conf: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP and gRPC (the default).
    Serve,
    /// Manage the database schema.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Print the REST API's OpenAPI document (the committed docs/openapi.json).
    Openapi,
}

#[derive(Subcommand)]
enum MigrateAction {
    /// Apply pending migrations.
    Up,
    /// Roll back migrations (the last one unless --steps says otherwise).
    Down {
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// List migrations and whether each is applied.
    Status,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli.conf) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command.unwrap_or(Command::Serve), config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    let _telemetry = telemetry::init(&config.log, &config.trace)?;
    match command {
        Command::Serve => {
            raise_fd_limit();
            let app = Application::build(config).await?;
            app.run_until(shutdown_signal()).await
        }
        Command::Migrate { action } => {
            let db = data::connect(config.data.database.url.expose(), 1)
                .await
                .context("data.database.url: cannot connect")?;
            match action {
                MigrateAction::Up => data::migrate_up(&db).await?,
                MigrateAction::Down { steps } => data::migrate_down(&db, Some(steps)).await?,
                MigrateAction::Status => {
                    for (name, applied) in data::migration_status(&db).await? {
                        println!("{} {name}", if applied { "applied" } else { "pending" });
                    }
                }
            }
            Ok(())
        }
        Command::Openapi => {
            print!("{}", qrupload::service::http::openapi::document_json());
            Ok(())
        }
    }
}

/// Each SSE watcher holds a socket: take every descriptor the hard limit allows.
fn raise_fd_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open file limit raised"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open file limit"),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
