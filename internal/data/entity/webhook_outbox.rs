use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_outbox")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub event_id: String,
    pub endpoint: String,
    pub identifier: String,
    pub event_type: String,
    pub payload: String,
    /// `pending` or `dead`; delivered rows are deleted.
    pub status: String,
    pub attempts: i32,
    pub created_at: ChronoDateTimeUtc,
    pub next_attempt_at: ChronoDateTimeUtc,
    pub lease_until: Option<ChronoDateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
