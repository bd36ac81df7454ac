use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "stream_tickets")]
pub struct Model {
    /// SHA-256 of the ticket, hex; the ticket itself is never stored.
    #[sea_orm(primary_key, auto_increment = false)]
    pub ticket_hash: String,
    pub identifier: String,
    pub member_id: i64,
    /// When the JWT the ticket was issued for expires (jwt mode).
    pub member_expires_at: Option<ChronoDateTimeUtc>,
    pub expires_at: ChronoDateTimeUtc,
    pub created_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
