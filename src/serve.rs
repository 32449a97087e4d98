//! `mailtrail serve`: everything in one process. It follows the configured
//! log files, runs the nightly scheduler and the outbox worker, and serves
//! the web form, until SIGTERM or SIGINT; then it stops taking requests,
//! lets a pass or a send under way finish (what is not sent stays queued),
//! and returns. Every batch of rows is committed with its checkpoint, so a
//! stop at any moment loses and repeats nothing.
//!
//! A part that cannot go on (the follower or the worker, after a failing
//! database has been retried for `database_retry_secs`) ends the process
//! with an error, for its service manager to restart it; the restarted
//! follower resumes from the last committed batch.
//!
//! The form's connections are bounded in number and in time, and dropped
//! a few seconds after a stop whatever their clients do (see [`http`]).
//!
//! On SQLite it also copies the write-ahead log into the database a few
//! times a second, off the writers' path (see
//! [`crate::store::WalCheckpointer`]).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use crate::config::Config;
use crate::health::RELAY;
use crate::ingest::correlate::Settings;
use crate::requests::web::{Health, WebState, router};
use crate::store::Store;

mod http;

/// How often the followed files are read.
pub const FOLLOW_POLL: Duration = Duration::from_millis(500);
/// How often the worker looks for requests and due mail.
pub const WORKER_POLL: Duration = Duration::from_secs(2);

/// A future that resolves when the watched flag turns true.
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Runs the service until `shutdown` resolves.
pub async fn run(
    config: Config,
    store: Store,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let health = Arc::new(Health::default());
    let (stop_tx, stop_rx) = watch::channel(false);

    let listener = tokio::net::TcpListener::bind(config.web.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.web.listen))?;
    let bound = listener.local_addr().unwrap_or(config.web.listen);
    tracing::info!(listen = %bound, "web form and /health listening");
    let key = store.web_key(&crate::requests::captcha::new_key()).await?;
    let app = router(WebState {
        store: store.clone(),
        config: config.clone(),
        health: health.clone(),
        key: Arc::new(key),
        posts: crate::requests::web::Posts::start(store.clone()),
    });
    let limits = http::Limits::from_config(&config.web)?;
    tracing::info!(max_connections = limits.max_connections, "web form limits");
    let web = tokio::spawn(http::serve(listener, app, limits, stopped(stop_rx.clone())));

    let mut sched = crate::schedule::start(store.clone(), config.clone()).await?;
    let checkpointer = crate::store::WalCheckpointer::start(&store);

    let retry_for = Duration::from_secs(config.database_retry_secs);
    let smtp = &config.smtp;
    tracing::info!(
        relay = %format!("{}:{}", smtp.host, smtp.port),
        tls = ?smtp.tls,
        auth = smtp.username.is_some(),
        "sending mail through the relay"
    );
    let mut worker = {
        let (store, config, stop, health) = (
            store.clone(),
            config.clone(),
            stop_rx.clone(),
            health.clone(),
        );
        let mailer = crate::mail::Mailer::new(&config.smtp)?;
        tokio::spawn(async move {
            let relay = format!("{}:{}", config.smtp.host, config.smtp.port);
            let on_pass = |p: &crate::mail::Pass| match &p.last_attempt {
                Some(Ok(())) => health.relay.clear(RELAY),
                Some(Err(e)) => health.relay.set(
                    RELAY,
                    &format!("the last attempt through {relay} failed: {e}"),
                ),
                None => {}
            };
            crate::mail::run(
                &store,
                &config,
                &mailer,
                WORKER_POLL,
                retry_for,
                on_pass,
                stopped(stop),
            )
            .await
            .map(|_| ())
        })
    };

    let mut follower = {
        let (store, config, stop, health) = (
            store.clone(),
            config.clone(),
            stop_rx.clone(),
            health.clone(),
        );
        let settings = Settings::from_config(&config)?;
        if config.ingest.paths.is_empty() {
            tracing::warn!("ingest.paths is empty: no log is followed");
        }
        for p in &config.ingest.paths {
            tracing::info!(path = %p.display(), "following");
        }
        tokio::spawn(async move {
            crate::ingest::follow_with(
                &store,
                settings,
                &config.ingest.paths,
                config.ingest.batch_lines,
                FOLLOW_POLL,
                &health,
                retry_for,
                |report| {
                    if report.rows_new > 0 {
                        tracing::debug!(rows = report.rows_new, "ingested");
                    }
                },
                stopped(stop),
            )
            .await
        })
    };

    // Runs until the shutdown signal, or until the follower, the worker or
    // the nightly job gives up; then the rest is stopped as on a signal, and the process
    // ends with the part's error.
    let mut gave_up: Option<anyhow::Error> = None;
    let (mut w, mut f) = (None, None);
    tokio::select! {
        _ = shutdown => tracing::info!("stopping"),
        r = &mut follower => {
            let r = flatten(r, "the follower");
            if let Err(e) = &r {
                tracing::error!("{e:#}");
            }
            f = Some(r);
        }
        r = &mut worker => {
            let r = flatten(r, "the outbox worker");
            if let Err(e) = &r {
                tracing::error!("{e:#}");
            }
            w = Some(r);
        }
        e = sched.gave_up() => {
            tracing::error!("{e:#}");
            gave_up = Some(e);
        }
    }
    let _ = stop_tx.send(true);
    let f = match f {
        Some(r) => r,
        None => flatten(follower.await, "the follower"),
    };
    let w = match w {
        Some(r) => r,
        None => flatten(worker.await, "the outbox worker"),
    };
    let s = web.await;
    checkpointer.stop().await;
    sched.shutdown().await?;
    for r in [f, w] {
        if let Err(e) = r {
            gave_up.get_or_insert(e);
        }
    }
    if let Some(e) = gave_up {
        return Err(e);
    }
    s??;
    Ok(())
}

/// A part's outcome, whether it returned or its task died.
fn flatten(
    r: Result<anyhow::Result<()>, tokio::task::JoinError>,
    part: &str,
) -> anyhow::Result<()> {
    r.with_context(|| format!("{part} failed"))?
}
