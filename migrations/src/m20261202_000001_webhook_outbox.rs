use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// One row per event and endpoint, written in the transaction of the change that caused it.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WebhookOutbox::Table)
                    .if_not_exists()
                    .col(
                        big_integer(WebhookOutbox::Id)
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(string_len(WebhookOutbox::EventId, 64))
                    .col(string_len(WebhookOutbox::Endpoint, 2048))
                    .col(string_len(WebhookOutbox::Identifier, 64))
                    .col(string_len(WebhookOutbox::EventType, 32))
                    .col(text(WebhookOutbox::Payload))
                    .col(string_len(WebhookOutbox::Status, 16))
                    .col(integer(WebhookOutbox::Attempts).default(0))
                    .col(timestamp_with_time_zone(WebhookOutbox::CreatedAt))
                    .col(timestamp_with_time_zone(WebhookOutbox::NextAttemptAt))
                    .col(timestamp_with_time_zone_null(WebhookOutbox::LeaseUntil))
                    .to_owned(),
            )
            .await?;
        // The dispatcher's claim: pending rows by due time.
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_outbox_status_next")
                    .table(WebhookOutbox::Table)
                    .col(WebhookOutbox::Status)
                    .col(WebhookOutbox::NextAttemptAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(WebhookOutbox::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum WebhookOutbox {
    Table,
    Id,
    EventId,
    Endpoint,
    Identifier,
    EventType,
    Payload,
    Status,
    Attempts,
    CreatedAt,
    NextAttemptAt,
    LeaseUntil,
}
