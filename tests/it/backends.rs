//! The two backends: the PostgreSQL schema kept in step with SQLite's,
//! and several ingest processes (one per mail host) writing to one
//! database at the same time.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mailtrail::store::Store;

use crate::support::{
    TestDb, config_text, database_url, fresh_postgres, generated_log, postgres_server,
};

/// One line per table, column, primary key and index, in words both
/// backends can be compared in: names, a type class, nullability, and
/// which columns (in order) each unique or plain index covers.
async fn schema(store: &Store) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    match store {
        Store::Sqlite(p) => {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name <> '_sqlx_migrations'",
            )
            .fetch_all(p)
            .await
            .unwrap();
            for t in tables {
                out.insert(format!("table {t}"));
                let cols: Vec<(String, String, i64, i64)> = sqlx::query_as(
                    "SELECT name, type, \"notnull\", pk FROM pragma_table_info($1) ORDER BY cid",
                )
                .bind(&t)
                .fetch_all(p)
                .await
                .unwrap();
                let mut pk: Vec<(i64, String)> = Vec::new();
                for (name, ty, notnull, in_pk) in cols {
                    // A primary key column is never null, declared or not.
                    let null = if notnull == 1 || in_pk > 0 {
                        "not null"
                    } else {
                        "null"
                    };
                    let class = match SQLITE_BOOLEANS.contains(&(t.as_str(), name.as_str())) {
                        true if class(&ty) == "integer" => "boolean",
                        _ => class(&ty),
                    };
                    out.insert(format!("column {t}.{name} {class} {null}"));
                    if in_pk > 0 {
                        pk.push((in_pk, name));
                    }
                }
                pk.sort();
                let pk: Vec<String> = pk.into_iter().map(|(_, n)| n).collect();
                out.insert(format!("primary key {t} ({})", pk.join(", ")));
                let indexes: Vec<(String, i64, String)> =
                    sqlx::query_as("SELECT name, \"unique\", origin FROM pragma_index_list($1)")
                        .bind(&t)
                        .fetch_all(p)
                        .await
                        .unwrap();
                for (name, unique, origin) in indexes {
                    if origin == "pk" {
                        continue;
                    }
                    let cols: Vec<String> =
                        sqlx::query_scalar("SELECT name FROM pragma_index_info($1) ORDER BY seqno")
                            .bind(&name)
                            .fetch_all(p)
                            .await
                            .unwrap();
                    out.insert(index_line(&t, unique == 1, &cols));
                }
            }
        }
        Store::Postgres(p) => {
            let cols: Vec<(String, String, String, String)> = sqlx::query_as(
                "SELECT c.table_name::text, c.column_name::text, c.data_type::text, c.is_nullable::text \
                 FROM information_schema.columns c JOIN information_schema.tables t \
                   ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
                 WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' AND c.table_name <> '_sqlx_migrations'",
            )
            .fetch_all(p)
            .await
            .unwrap();
            for (t, name, ty, nullable) in cols {
                out.insert(format!("table {t}"));
                let null = if nullable == "NO" { "not null" } else { "null" };
                out.insert(format!("column {t}.{name} {} {null}", class(&ty)));
            }
            let indexes: Vec<(String, bool, bool, Vec<String>)> = sqlx::query_as(
                "SELECT t.relname::text, ix.indisunique, ix.indisprimary, \
                   ARRAY(SELECT a.attname::text FROM unnest(ix.indkey) WITH ORDINALITY k(attnum, n) \
                         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum ORDER BY k.n) \
                 FROM pg_index ix JOIN pg_class t ON t.oid = ix.indrelid \
                 JOIN pg_namespace ns ON ns.oid = t.relnamespace \
                 WHERE ns.nspname = 'public' AND t.relname <> '_sqlx_migrations'",
            )
            .fetch_all(p)
            .await
            .unwrap();
            let mut with_pk = BTreeSet::new();
            for (t, unique, primary, cols) in indexes {
                if primary {
                    out.insert(format!("primary key {t} ({})", cols.join(", ")));
                    with_pk.insert(t);
                } else {
                    out.insert(index_line(&t, unique, &cols));
                }
            }
            // SQLite says "()" for a table without a primary key.
            let tables: Vec<String> = out
                .iter()
                .filter_map(|l| l.strip_prefix("table ").map(str::to_owned))
                .collect();
            for t in tables {
                if !with_pk.contains(&t) {
                    out.insert(format!("primary key {t} ()"));
                }
            }
        }
    }
    out
}

/// SQLite has no boolean type: these columns hold 0 or 1 as INTEGER
/// there and are BOOLEAN on PostgreSQL (sqlx maps both to `bool`).
const SQLITE_BOOLEANS: &[(&str, &str)] = &[("access_rows", "tls")];

fn index_line(table: &str, unique: bool, cols: &[String]) -> String {
    let kind = if unique { "unique index" } else { "index" };
    format!("{kind} {table} ({})", cols.join(", "))
}

/// The class of a declared type, as both dialects spell it.
fn class(ty: &str) -> &'static str {
    match ty.to_ascii_lowercase().as_str() {
        "integer" | "bigint" | "smallint" | "int" => "integer",
        "text" | "character varying" => "text",
        "blob" | "bytea" => "bytes",
        "boolean" => "boolean",
        "real" | "double precision" => "real",
        other => panic!("a column type this test does not know: {other}"),
    }
}

async fn migrations(store: &Store) -> Vec<(i64, String)> {
    const SQL: &str = "SELECT version, description FROM _sqlx_migrations ORDER BY version";
    crate::on_any_pool!(store, p => sqlx::query_as(SQL).fetch_all(p).await.unwrap())
}

#[tokio::test]
#[cfg_attr(
    not(mailtrail_postgres),
    ignore = "needs a PostgreSQL server in MAILTRAIL_TEST_POSTGRES"
)]
async fn the_postgres_schema_is_the_sqlite_schema() {
    let server = postgres_server().expect("MAILTRAIL_TEST_POSTGRES is set");
    let dir = tempfile::tempdir().unwrap();
    let lite = Store::open(&format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("s.db").display()
    ))
    .await
    .unwrap();
    let pg = Store::open(&fresh_postgres(&server)).await.unwrap();
    assert_eq!(migrations(&lite).await, migrations(&pg).await);
    let (a, b) = (schema(&lite).await, schema(&pg).await);
    assert!(a.len() > 50, "{a:#?}");
    let only_sqlite: Vec<_> = a.difference(&b).collect();
    let only_postgres: Vec<_> = b.difference(&a).collect();
    assert!(
        only_sqlite.is_empty() && only_postgres.is_empty(),
        "only in SQLite: {only_sqlite:#?}\nonly in PostgreSQL: {only_postgres:#?}"
    );
}

/// The lines of a log of several hosts, by host (the fourth field of a
/// traditional syslog line), in order.
fn split_by_host(log: &Path) -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(log).unwrap();
    let mut hosts: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        let host = line.split_whitespace().nth(3).unwrap().to_owned();
        match hosts.iter_mut().find(|(h, _)| *h == host) {
            Some((_, lines)) => lines.push(line.to_owned()),
            None => hosts.push((host, vec![line.to_owned()])),
        }
    }
    hosts
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut s = lines.join("\n");
    s.push('\n');
    std::fs::write(path, s).unwrap();
}

fn ingest_cmd(config: &Path, agent: &str, log: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailtrail"));
    c.arg("--config")
        .arg(config)
        .args(["ingest", "--agent", agent])
        .arg(log);
    c
}

fn succeeded(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ingest_processes_write_one_database_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = generated_log(dir.path(), 200_000, 11);
    let hosts = split_by_host(&log);
    assert_eq!(hosts.len(), 2, "the generator writes two hosts");

    // What each host's log gives alone, each in a database of its own.
    let mut want_smtp = Vec::new();
    let mut want_access = Vec::new();
    for (host, lines) in &hosts {
        let alone = TestDb::new().await;
        let path = alone.dir.path().join(format!("{host}.log"));
        write_lines(&path, lines);
        alone.ingest(&[path]).await.unwrap();
        want_smtp.extend(alone.dump().await);
        want_access.extend(alone.dump_access().await);
    }
    want_smtp.sort();
    want_access.sort();
    assert!(want_smtp.len() > 5_000 && want_access.len() > 5_000);

    // Both hosts into one database, one process each, at the same time,
    // twice: the logs as they were at some point, then grown to the end,
    // so each process also resumes its own messages in flight.
    let url = database_url(dir.path(), "shared");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, config_text(&url, 5_000)).unwrap();
    let paths: Vec<PathBuf> = hosts
        .iter()
        .map(|(h, _)| dir.path().join(format!("live-{h}.log")))
        .collect();
    for round in [2, 1] {
        for ((_, lines), path) in hosts.iter().zip(&paths) {
            write_lines(path, &lines[..lines.len() / round]);
        }
        let children: Vec<_> = hosts
            .iter()
            .zip(&paths)
            .map(|((h, _), p)| ingest_cmd(&config, h, p).spawn().unwrap())
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "round {round}");
        }
    }
    let shared = TestDb {
        config: mailtrail::config::Config::from_toml(&config_text(&url, 5_000)).unwrap(),
        store: Store::open(&url).await.unwrap(),
        url,
        dir,
    };
    let mut got_smtp = shared.dump().await;
    let mut got_access = shared.dump_access().await;
    got_smtp.sort();
    got_access.sort();
    assert_eq!(got_smtp.len(), want_smtp.len());
    assert!(got_smtp == want_smtp, "the SMTP rows differ");
    assert_eq!(got_access.len(), want_access.len());
    assert!(got_access == want_access, "the access rows differ");
    // One mailbox row per address, whoever created it first.
    let (rows, addresses): (i64, i64) = crate::on_any_pool!(&shared.store, p => sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT address) FROM mailboxes",
    )
    .fetch_one(p)
    .await
    .unwrap());
    assert_eq!(rows, addresses);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ingest_under_the_same_agent_is_refused() {
    let db = TestDb::new().await;
    let log = crate::support::fixture("mail.log");
    let config = db.dir.path().join("config.toml");
    std::fs::write(&config, db.config_text()).unwrap();
    let held = mailtrail::ingest::AgentLock::take(&db.store, "mx1")
        .await
        .unwrap();
    let out = ingest_cmd(&config, "mx1", &log).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another ingest with agent \"mx1\""), "{err}");
    assert!(
        db.dump().await.is_empty(),
        "the refused ingest wrote nothing"
    );
    // Another name is free, and so is this one once released.
    succeeded(ingest_cmd(&config, "mx2", &log).output().unwrap());
    held.release().await.unwrap();
    let text = succeeded(ingest_cmd(&config, "mx1", &log).output().unwrap());
    assert!(text.contains("lines"), "{text}");
}

/// `serve` copies SQLite's write-ahead log into the database itself, off
/// the writers' path: everything the log holds is copied, and the next
/// write starts the log again from its beginning instead of growing it
/// (so no commit reaches `wal_autocheckpoint` and does the copy while
/// holding the write lock). PostgreSQL has nothing to do.
#[tokio::test]
async fn the_write_ahead_log_is_checkpointed_and_restarts() {
    let db = TestDb::new().await;
    let log = generated_log(db.dir.path(), 20_000, 11);
    db.ingest(&[log]).await.unwrap();
    // The ingest checkpoints as it goes (how much is left depends on how
    // busy the machine was); 60 commits after it leave at least 60 frames.
    for day in 0..60 {
        db.store
            .record_job(20250101 + day, "test", "", 0)
            .await
            .unwrap();
    }
    let (frames, copied) = db.store.wal_checkpoint().await.unwrap();
    if let Store::Postgres(_) = db.store {
        assert_eq!((frames, copied), (0, 0));
        return;
    }
    assert!(
        frames >= 60,
        "an ingest and 60 commits left {frames} frames"
    );
    assert_eq!(
        copied, frames,
        "a passive checkpoint with no reader copies all"
    );
    db.store.record_job(20261123, "test", "", 0).await.unwrap();
    let (again, copied) = db.store.wal_checkpoint().await.unwrap();
    assert!(
        again < 10,
        "one small write after a full checkpoint: the log restarted, {again} frames (was {frames})"
    );
    assert_eq!(copied, again);
}
