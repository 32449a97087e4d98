//! PostgreSQL's day partitions of the event tables.

/// Makes sure both event tables have a partition for each of `days`.
pub(crate) async fn ensure_days(pool: &sqlx::PgPool, days: &[i32]) -> anyhow::Result<()> {
    for &day in days {
        anyhow::ensure!(
            crate::domain::Day::from_key(day).is_some(),
            "not a day: {day}"
        );
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(0x6d74_7061_7274_0000_i64 ^ i64::from(day))
            .execute(&mut *tx)
            .await?;
        for table in ["smtp_rows", "access_rows"] {
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS {table}_{day} PARTITION OF {table} FOR VALUES FROM ({day}) TO ({})",
                day + 1
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

/// Drops the partitions of days before `before_day`; returns how many.
pub(crate) async fn drop_days_before(pool: &sqlx::PgPool, before_day: i32) -> anyhow::Result<u64> {
    const LIST: &str = "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
        JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname IN ('smtp_rows', 'access_rows')";
    let names: Vec<String> = sqlx::query_scalar(LIST).fetch_all(pool).await?;
    let mut dropped = 0;
    for name in names {
        let Some(day) = name.rsplit('_').next().and_then(|d| d.parse::<i32>().ok()) else {
            continue;
        };
        if day < before_day && crate::domain::Day::from_key(day).is_some() {
            let table = if name.starts_with("smtp_rows_") {
                "smtp_rows"
            } else {
                "access_rows"
            };
            let sql = format!("DROP TABLE IF EXISTS {table}_{day}");
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pool).await?;
            dropped += 1;
        }
    }
    Ok(dropped)
}
