//! The database schema of qrupload, as sea-orm migrations. The same migrations run on SQLite
//! (the embedded default) and PostgreSQL.

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_create_sessions_and_images;
mod m20261202_000001_webhook_outbox;
mod m20261202_000002_image_source_content_type;
mod m20261202_000003_tus_uploads;
mod m20261202_000004_stream_tickets;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_create_sessions_and_images::Migration),
            Box::new(m20261202_000001_webhook_outbox::Migration),
            Box::new(m20261202_000002_image_source_content_type::Migration),
            Box::new(m20261202_000003_tus_uploads::Migration),
            Box::new(m20261202_000004_stream_tickets::Migration),
        ]
    }
}
