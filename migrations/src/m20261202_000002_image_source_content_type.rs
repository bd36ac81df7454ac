use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// What the client sent, beside what is stored: a HEIC upload is stored as a JPEG rendition.
/// Rows from before this column were stored as they came, so they take their content type.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Images::Table)
                    .add_column(string_len_null(Images::SourceContentType, 32))
                    .to_owned(),
            )
            .await?;
        let backfill = Query::update()
            .table(Images::Table)
            .value(Images::SourceContentType, Expr::col(Images::ContentType))
            .and_where(Expr::col(Images::SourceContentType).is_null())
            .to_owned();
        manager.exec_stmt(backfill).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Images::Table)
                    .drop_column(Images::SourceContentType)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Images {
    Table,
    ContentType,
    SourceContentType,
}
