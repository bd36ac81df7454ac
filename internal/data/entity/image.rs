use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "images")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub identifier: String,
    pub position: i32,
    pub content_type: String,
    /// What the client sent; NULL only in rows written before the column existed.
    pub source_content_type: Option<String>,
    pub width: i32,
    pub height: i32,
    pub size: i64,
    pub sha256: String,
    pub idempotency_key: Option<String>,
    pub idempotency_index: Option<i32>,
    pub created_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::upload_session::Entity",
        from = "Column::Identifier",
        to = "super::upload_session::Column::Identifier"
    )]
    UploadSession,
}

impl Related<super::upload_session::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::UploadSession.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
