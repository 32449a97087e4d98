//! The PostgreSQL bulk path (day partitions, COPY), reachable from the
//! integration tests, which test it on a real server. Not an interface:
//! the writer and the nightly purge call the functions themselves.

use sqlx::{PgConnection, PgPool};

use super::records::{AccessRecord, SmtpRecord};

pub async fn ensure_days(pool: &PgPool, days: &[i32]) -> anyhow::Result<()> {
    super::partitions::ensure_days(pool, days).await
}

pub async fn drop_days_before(pool: &PgPool, before_day: i32) -> anyhow::Result<u64> {
    super::partitions::drop_days_before(pool, before_day).await
}

pub fn forget(pool: &PgPool) {
    super::partitions::forget(pool)
}

pub async fn write_smtp(conn: &mut PgConnection, rows: &[SmtpRecord<'_>]) -> anyhow::Result<u64> {
    super::pg_copy::write_smtp(conn, rows).await
}

pub async fn write_access(
    conn: &mut PgConnection,
    rows: &[AccessRecord<'_>],
) -> anyhow::Result<u64> {
    super::pg_copy::write_access(conn, rows).await
}
