use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UploadSessions::Table)
                    .if_not_exists()
                    .col(string_len(UploadSessions::Identifier, 64).primary_key())
                    .col(big_integer(UploadSessions::MemberId))
                    .col(string_len(UploadSessions::TokenHash, 64))
                    .col(string_len(UploadSessions::Status, 16))
                    .col(integer(UploadSessions::ImageCount).default(0))
                    .col(integer(UploadSessions::MaxImages))
                    .col(big_integer(UploadSessions::TotalBytes).default(0))
                    .col(big_integer(UploadSessions::MaxBytes))
                    .col(big_integer(UploadSessions::Version).default(1))
                    .col(integer(UploadSessions::NextPosition).default(1))
                    .col(timestamp_with_time_zone(UploadSessions::ExpiresAt))
                    .col(timestamp_with_time_zone(UploadSessions::CreatedAt))
                    .col(timestamp_with_time_zone_null(UploadSessions::CompletedAt))
                    .to_owned(),
            )
            .await?;
        // The expiry sweep looks for open sessions by expiry.
        manager
            .create_index(
                Index::create()
                    .name("idx_upload_sessions_status_expires_at")
                    .table(UploadSessions::Table)
                    .col(UploadSessions::Status)
                    .col(UploadSessions::ExpiresAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Images::Table)
                    .if_not_exists()
                    .col(string_len(Images::Id, 64).primary_key())
                    .col(string_len(Images::Identifier, 64))
                    .col(integer(Images::Position))
                    .col(string_len(Images::ContentType, 32))
                    .col(integer(Images::Width))
                    .col(integer(Images::Height))
                    .col(big_integer(Images::Size))
                    .col(string_len(Images::Sha256, 64))
                    .col(string_len_null(Images::IdempotencyKey, 128))
                    .col(integer_null(Images::IdempotencyIndex))
                    .col(timestamp_with_time_zone(Images::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_images_session")
                            .from(Images::Table, Images::Identifier)
                            .to(UploadSessions::Table, UploadSessions::Identifier)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_images_identifier_position")
                    .table(Images::Table)
                    .col(Images::Identifier)
                    .col(Images::Position)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // A retried request with the same Idempotency-Key cannot insert its files twice, even
        // when two retries race.
        manager
            .create_index(
                Index::create()
                    .name("uq_images_idempotency")
                    .table(Images::Table)
                    .col(Images::Identifier)
                    .col(Images::IdempotencyKey)
                    .col(Images::IdempotencyIndex)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Images::Table).if_exists().to_owned())
            .await?;
        manager
            .drop_table(
                Table::drop()
                    .table(UploadSessions::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum UploadSessions {
    Table,
    Identifier,
    MemberId,
    TokenHash,
    Status,
    ImageCount,
    MaxImages,
    TotalBytes,
    MaxBytes,
    Version,
    NextPosition,
    ExpiresAt,
    CreatedAt,
    CompletedAt,
}

#[derive(DeriveIden)]
enum Images {
    Table,
    Id,
    Identifier,
    Position,
    ContentType,
    Width,
    Height,
    Size,
    Sha256,
    IdempotencyKey,
    IdempotencyIndex,
    CreatedAt,
}
