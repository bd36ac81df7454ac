use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// One row per resumable (tus) upload: how far it got and which blobs hold its bytes, so any
/// instance can continue an upload another one started.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TusUploads::Table)
                    .if_not_exists()
                    .col(string_len(TusUploads::Id, 64).primary_key())
                    .col(string_len(TusUploads::Identifier, 64))
                    .col(big_integer(TusUploads::UploadLength))
                    .col(big_integer(TusUploads::UploadOffset).default(0))
                    // Names of the part blobs in order, comma-separated.
                    .col(text(TusUploads::Parts).default(""))
                    .col(text_null(TusUploads::Metadata))
                    .col(string_len(TusUploads::State, 16))
                    .col(string_len_null(TusUploads::ImageId, 64))
                    .col(timestamp_with_time_zone(TusUploads::CreatedAt))
                    .col(timestamp_with_time_zone(TusUploads::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_tus_uploads_identifier")
                    .table(TusUploads::Table)
                    .col(TusUploads::Identifier)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // The janitor's sweep: unfinished uploads by expiry.
        manager
            .create_index(
                Index::create()
                    .name("idx_tus_uploads_state_expires")
                    .table(TusUploads::Table)
                    .col(TusUploads::State)
                    .col(TusUploads::ExpiresAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(TusUploads::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum TusUploads {
    Table,
    Id,
    Identifier,
    UploadLength,
    UploadOffset,
    Parts,
    Metadata,
    State,
    ImageId,
    CreatedAt,
    ExpiresAt,
}
