//! data: the implementations of biz's traits — sea-orm repositories, blob stores, event buses.
//!
//! Rules of this layer:
//! - It depends on biz, never the other way; what it returns is biz's types and [`BizError`].
//! - Database and storage errors are mapped once, here ([`db_err`]): lost connections become
//!   `Unavailable` (503, retry), anything else `Internal` with the cause kept for the log only.
//! - Constructors that read configuration ([`S3BlobStore::new`], [`RedisBus::start`],
//!   [`NatsBus::start`]) refuse it with their own error types, naming the key: those are
//!   startup errors, not [`BizError`]s.
//! - The embedded defaults (SQLite file, local folder, in-process bus) and the production
//!   engines (PostgreSQL, Redis) sit behind the same traits; `app` picks one from config.

mod blob_fs;
mod blob_s3;
mod bus_interest;
mod bus_memory;
mod bus_nats;
mod bus_redis;
mod bus_redis_cluster;
pub mod entity;
mod outbox;
mod repo;
mod tickets;
mod tus_repo;

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, DbErr,
    RuntimeErr, TransactionTrait,
};

pub use blob_fs::FsBlobStore;
pub use blob_s3::{S3BlobStore, S3ConfigError};
pub use bus_memory::MemoryBus;
pub use bus_nats::{NatsBus, NatsUrlError};
pub use bus_redis::{RedisBus, RedisUrlError};
pub use outbox::SqlWebhookOutbox;
pub use repo::SqlSessionRepo;
pub use tickets::SqlStreamTicketRepo;
pub use tus_repo::SqlTusRepo;

use crate::biz::BizError;

/// How long a query waits for a connection when the caller does not say
/// (`data.database.acquire_timeout`'s default).
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens the database named by `url`. For a SQLite file, its folder is created if missing.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    connect_with(url, max_connections, DEFAULT_ACQUIRE_TIMEOUT).await
}

/// [`connect`] with the time a query may wait for a connection, or for a new one to open,
/// before it fails with a pool timeout (which [`db_err`] turns into 503): while the database
/// is down, requests answer within this time instead of queueing.
pub async fn connect_with(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<DatabaseConnection, DbErr> {
    let sqlite = url.starts_with("sqlite:");
    if sqlite && let Some(dir) = sqlite_dir(url) {
        std::fs::create_dir_all(&dir)
            .map_err(|e| DbErr::Custom(format!("creating {}: {e}", dir.display())))?;
    }
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .sqlx_logging(false)
        .connect_timeout(acquire_timeout)
        .acquire_timeout(acquire_timeout)
        // SQLite takes one writer at a time; one connection turns lock contention into a
        // queue instead of SQLITE_BUSY errors, and keeps `sqlite::memory:` one database.
        .max_connections(if sqlite { 1 } else { max_connections });
    let db = Database::connect(options).await?;
    if sqlite && !url.contains(":memory:") {
        db.execute_unprepared("PRAGMA journal_mode=WAL").await?;
    }
    Ok(db)
}

fn sqlite_dir(url: &str) -> Option<std::path::PathBuf> {
    let path = url
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()?;
    if path.is_empty() || path.contains(":memory:") {
        return None;
    }
    std::path::Path::new(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| p.to_path_buf())
}

/// A fixed key for PostgreSQL's advisory lock around migrations.
const MIGRATION_LOCK_KEY: i64 = 0x7172_7570_6c6f_6164; // "qrupload"

/// Applies pending migrations. On PostgreSQL, under a transaction-scoped advisory lock, so
/// instances starting together take turns: the second finds nothing left to do.
pub async fn migrate_up(db: &DatabaseConnection) -> Result<(), DbErr> {
    match db.get_database_backend() {
        DatabaseBackend::Postgres => {
            let txn = db.begin().await?;
            txn.execute_unprepared(&format!(
                "SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"
            ))
            .await?;
            Migrator::up(&txn, None).await?;
            txn.commit().await
        }
        _ => Migrator::up(db, None).await,
    }
}

/// Rolls back the last `steps` migrations (all when `None`).
pub async fn migrate_down(db: &DatabaseConnection, steps: Option<u32>) -> Result<(), DbErr> {
    Migrator::down(db, steps).await
}

/// Each migration's name and whether it is applied.
pub async fn migration_status(db: &DatabaseConnection) -> Result<Vec<(String, bool)>, DbErr> {
    let applied: Vec<String> = Migrator::get_applied_migrations(db)
        .await?
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    Ok(Migrator::migrations()
        .iter()
        .map(|m| (m.name().to_owned(), applied.iter().any(|a| a == m.name())))
        .collect())
}

/// The one place database errors become biz errors.
pub fn db_err(e: DbErr) -> BizError {
    use sea_orm::sqlx::Error as Sqlx;
    let lost = match &e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(inner)) | DbErr::Query(RuntimeErr::SqlxError(inner)) => {
            match inner.as_ref() {
                Sqlx::Io(_) | Sqlx::PoolTimedOut | Sqlx::PoolClosed | Sqlx::WorkerCrashed => true,
                Sqlx::Database(db) => db.code().is_some_and(|code| server_going_away(&code)),
                _ => false,
            }
        }
        _ => false,
    };
    if lost {
        BizError::unavailable(format!("database: {e}"))
    } else {
        BizError::internal(format!("database: {e}"))
    }
}

/// Whether a failed COMMIT may still have taken effect: the connection broke before the
/// server's answer arrived. An error the server sent means the transaction was rolled back.
pub(crate) fn commit_outcome_unknown(e: &DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    match e {
        DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(inner)) | DbErr::Query(RuntimeErr::SqlxError(inner)) => {
            matches!(
                inner.as_ref(),
                Sqlx::Io(_) | Sqlx::Tls(_) | Sqlx::Protocol(_) | Sqlx::WorkerCrashed
            )
        }
        _ => false,
    }
}

/// SQLSTATEs of a server that ended the session: class 08 (connection exception) and
/// 57P01–57P03 (shutting down, crashed, not yet accepting). The statement was not carried out,
/// so this is "try again", not a fault of the request.
fn server_going_away(sqlstate: &str) -> bool {
    sqlstate.starts_with("08") || matches!(sqlstate, "57P01" | "57P02" | "57P03")
}

#[cfg(test)]
mod blob_tests;
#[cfg(test)]
mod bus_tests;
#[cfg(test)]
mod tests;
