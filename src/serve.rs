//! `mailtrail serve`: everything in one process. It follows the configured
//! log files, runs the nightly scheduler and the outbox worker, and serves
//! the web form, until SIGTERM or SIGINT; then it stops taking requests,
//! lets a pass or a send under way finish (what is not sent stays queued),
//! and returns. Every batch of rows is committed with its checkpoint, so a
//! stop at any moment loses and repeats nothing.
//!
//! The form's connections are bounded in number and in time, and dropped
//! a few seconds after a stop whatever their clients do (see [`http`]).
//!
//! On SQLite it also copies the write-ahead log into the database a few
//! times a second, off the writers' path (see
//! [`crate::store::WalCheckpointer`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use crate::config::Config;
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
    tracing::info!(listen = %config.web.listen, "web form");
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

    let worker = {
        let (store, config, stop) = (store.clone(), config.clone(), stop_rx.clone());
        let mailer = crate::mail::Mailer::new(&config.smtp)?;
        tokio::spawn(async move {
            crate::mail::run(&store, &config, &mailer, WORKER_POLL, stopped(stop)).await
        })
    };

    let follower = {
        let (store, config, stop, health) = (
            store.clone(),
            config.clone(),
            stop_rx.clone(),
            health.clone(),
        );
        let settings = Settings::from_config(&config)?;
        tokio::spawn(async move {
            crate::ingest::follow(
                &store,
                settings,
                &config.ingest.paths,
                config.ingest.batch_lines,
                FOLLOW_POLL,
                |report, unread| {
                    health
                        .last_pass
                        .store(chrono::Utc::now().timestamp(), Ordering::Relaxed);
                    health.lag_bytes.store(unread, Ordering::Relaxed);
                    health.waiting.store(report.waiting, Ordering::Relaxed);
                    if report.rows_new > 0 {
                        tracing::debug!(rows = report.rows_new, "ingested");
                    }
                },
                stopped(stop),
            )
            .await
        })
    };

    shutdown.await;
    tracing::info!("stopping");
    let _ = stop_tx.send(true);
    let (w, f, s) = tokio::join!(worker, follower, web);
    checkpointer.stop().await;
    sched.shutdown().await?;
    w??;
    f??;
    s??;
    Ok(())
}
