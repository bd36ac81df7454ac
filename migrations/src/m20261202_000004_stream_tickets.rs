use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Stream tickets: short-lived, single-use credentials for the SSE route, kept as hashes so
/// any instance can accept one and a database leak reveals none.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(StreamTickets::Table)
                    .if_not_exists()
                    .col(string_len(StreamTickets::TicketHash, 64).primary_key())
                    .col(string_len(StreamTickets::Identifier, 64))
                    .col(big_integer(StreamTickets::MemberId))
                    .col(timestamp_with_time_zone_null(
                        StreamTickets::MemberExpiresAt,
                    ))
                    .col(timestamp_with_time_zone(StreamTickets::ExpiresAt))
                    .col(timestamp_with_time_zone(StreamTickets::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_stream_tickets_session")
                            .from(StreamTickets::Table, StreamTickets::Identifier)
                            .to(UploadSessions::Table, UploadSessions::Identifier)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Unused tickets are purged by expiry.
        manager
            .create_index(
                Index::create()
                    .name("idx_stream_tickets_expires_at")
                    .table(StreamTickets::Table)
                    .col(StreamTickets::ExpiresAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(StreamTickets::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum StreamTickets {
    Table,
    TicketHash,
    Identifier,
    MemberId,
    MemberExpiresAt,
    ExpiresAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum UploadSessions {
    Table,
    Identifier,
}
