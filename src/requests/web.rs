//! The web form (axum): a mailbox, a kind of report, dates, a language and
//! a verification code drawn as an image (sealed in the form; see
//! [`captcha`](super::captcha)). An accepted form writes the same
//! request row as every other channel; the worker renders and mails it to
//! the mailbox, and nowhere else.
//!
//! Refused, each with a page that says why: a client outside
//! `web.allowed_networks`, a mailbox outside `local_domains`, a wrong,
//! used or expired code, a missing proof of work (unless the site accepts
//! the code alone), dates outside the retention window, too many requests
//! or failed guesses per client address or per mailbox. Cross-site posts are
//! refused by tower-http's CSRF layer (Sec-Fetch-Site / Origin). The
//! client's address is the socket's peer, or the last address in
//! `X-Forwarded-For` that is not a trusted proxy when the peer is one.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use minijinja::context;
use serde::Deserialize;

use super::captcha;
use crate::config::{Config, Lang};
use crate::domain::{DateRange, Day, InputError};
use crate::report::render::{render_page, strings, text};
use crate::report::{Channel, Kind, Requester, Spec};
use crate::store::{Guess, Limits, PostOutcome, Store};

pub use crate::health::Health;

/// Shared by the handlers.
#[derive(Clone)]
pub struct WebState {
    pub store: Store,
    pub config: Arc<Config>,
    pub health: Arc<Health>,
    /// Seals the verification codes (from the database, shared by every
    /// process serving the form).
    pub key: Arc<captcha::Key>,
    /// Where posts are written (see [`Posts`]).
    pub posts: Posts,
}

/// One post to write, and where to say what became of it.
type Post = (
    crate::store::Post,
    tokio::sync::oneshot::Sender<anyhow::Result<PostOutcome>>,
);

/// Writes posts in groups: one task takes every post waiting and commits
/// them in one transaction, so posts that arrive together share a commit
/// instead of queueing for SQLite's one write lock one by one.
#[derive(Clone)]
pub struct Posts(tokio::sync::mpsc::Sender<Post>);

impl Posts {
    /// Starts the writing task; it ends when every `Posts` is dropped.
    pub fn start(store: Store) -> Posts {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Post>(1024);
        tokio::spawn(async move {
            let mut group: Vec<Post> = Vec::new();
            while rx.recv_many(&mut group, 256).await > 0 {
                let (items, replies): (Vec<_>, Vec<_>) = group.drain(..).unzip();
                match store.use_challenges(&items).await {
                    Ok(results) => {
                        for (reply, r) in replies.into_iter().zip(results) {
                            let _ = reply.send(Ok(r));
                        }
                    }
                    Err(e) => {
                        let msg = format!("{e:#}");
                        for reply in replies {
                            let _ = reply.send(Err(anyhow::anyhow!("{msg}")));
                        }
                    }
                }
            }
        });
        Posts(tx)
    }

    /// Uses a code up and, if there is a request, checks its limits and
    /// writes it.
    pub async fn write(&self, post: crate::store::Post) -> anyhow::Result<PostOutcome> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.0
            .send((post, tx))
            .await
            .map_err(|_| anyhow::anyhow!("the post writer stopped"))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("the post writer stopped"))?
    }
}

/// The routes of the form, with its limits and CSRF protection.
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/", get(form))
        .route("/captcha/{id}", get(captcha_png))
        .route("/request", post(submit))
        .route("/health", get(health))
        .layer(DefaultBodyLimit::max(8 * 1024))
        .layer(tower_http::csrf::CsrfLayer::new())
        .with_state(state)
}

/// The client's address: the peer's, or, when the peer is a trusted
/// proxy, the last one in `X-Forwarded-For` that is not. Always in
/// canonical form ([`crate::net::canonical`]): an IPv4 client reaching a
/// `[::]` listener, or named so by a proxy, is its IPv4 address, for the
/// networks it is checked against and for the limits that count it.
pub fn client_ip(config: &Config, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let peer = crate::net::canonical(peer);
    let trusted = |ip: &IpAddr| crate::net::in_networks(&config.web.trusted_proxies, *ip);
    if !trusted(&peer) {
        return peer;
    }
    // From the right, past the proxies' own entries: what the first trusted
    // proxy saw. Entries further left were written by the client and are
    // never read, not even to find them malformed: a proxy that appends
    // (nginx's $proxy_add_x_forwarded_for) puts the client's own header in
    // front of the real address, and a client that sent garbage there must
    // not be taken for the proxy itself.
    let values: Vec<&[u8]> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    for value in values.into_iter().rev() {
        for part in value.rsplit(|&b| b == b',') {
            let ip = crate::net::parse_canonical(part);
            match ip {
                Some(ip) if trusted(&ip) => continue,
                Some(ip) => return ip,
                // Unreadable where a trusted proxy wrote: believe nothing.
                None => return peer,
            }
        }
    }
    peer
}

#[derive(Debug, Default, Deserialize)]
pub struct LangQuery {
    lang: Option<String>,
}

/// The form's fields, as typed.
#[derive(Debug, Default, Clone, Deserialize, serde::Serialize)]
pub struct FormFields {
    #[serde(default)]
    pub mailbox: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub lang: String,
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub challenge: String,
    /// The proof of work's answer, found by the page's script.
    #[serde(default)]
    pub pow: String,
    /// Not empty when the PDF is asked for (`report.pdf = "on_request"`).
    #[serde(default)]
    pub pdf: String,
}

/// A fresh nonce for a page's Content-Security-Policy: the page's own
/// `<style>` and `<script>` carry it, and nothing else runs.
fn csp_nonce() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn page(status: StatusCode, html: anyhow::Result<String>, nonce: &str) -> Response {
    let csp = format!(
        "default-src 'none'; img-src 'self'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; \
         form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    );
    match html {
        Ok(h) => (
            status,
            [
                (header::CACHE_CONTROL, "no-store".to_owned()),
                (header::X_FRAME_OPTIONS, "DENY".to_owned()),
                (header::CONTENT_SECURITY_POLICY, csp),
            ],
            Html(h),
        )
            .into_response(),
        Err(e) => {
            tracing::error!("page failed: {e:#}");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

fn message(status: StatusCode, lang: Lang, ok: bool, title_key: &str, msg: String) -> Response {
    let title = strings(lang).get(title_key).cloned().unwrap_or_default();
    let nonce = csp_nonce();
    page(
        status,
        render_page(
            "message.html",
            lang,
            context! { title => title, message => msg, ok => ok, again => true, csp_nonce => nonce.clone() },
        ),
        &nonce,
    )
}

fn lang_of(config: &Config, s: Option<&str>) -> Lang {
    s.and_then(|l| l.parse().ok())
        .unwrap_or(config.report.default_language)
}

/// The retention window: (first day, today).
fn window(config: &Config) -> anyhow::Result<(Day, Day)> {
    let today = config.today()?;
    Ok((config.retention_start(today), today))
}

/// Checks the client's network; the refusal page when it is outside.
fn refuse_outside(s: &WebState, ip: IpAddr, lang: Lang) -> Option<Response> {
    if crate::net::in_networks(&s.config.web.allowed_networks, ip) {
        return None;
    }
    Some(message(
        StatusCode::FORBIDDEN,
        lang,
        false,
        "err_title",
        text(lang, "err_network", &[("ip", &ip.to_string())]),
    ))
}

/// The form, with a new verification code.
fn show_form(
    s: &WebState,
    lang: Lang,
    f: &FormFields,
    errors: &[String],
    status: StatusCode,
) -> Response {
    let nonce = csp_nonce();
    let result = (|| {
        let now = Utc::now().timestamp();
        let id = captcha::seal(
            &s.key,
            &captcha::new_code(),
            now + i64::from(s.config.web.code_ttl_secs),
        );
        let (first, today) = window(&s.config)?;
        let mut f = f.clone();
        if f.lang.is_empty() {
            f.lang = lang.as_str().to_owned();
        }
        if f.from.is_empty() {
            f.from = today.pred().to_string();
        }
        render_page(
            "form.html",
            lang,
            context! {
                f => minijinja::Value::from(minijinja::value::Serde(&f)),
                errors => errors.to_vec(),
                challenge => id,
                domain => s.config.default_domain.clone(),
                min_date => first.to_string(),
                max_date => today.to_string(),
                retention_days => s.config.retention_days,
                code_width => captcha::WIDTH,
                code_height => captcha::HEIGHT,
                pow_bits => s.config.web.proof_of_work_bits,
                code_alone => s.config.web.code_alone_accepted,
                help_address => s.config.help.address.clone(),
                help_url => s.config.help.url.clone(),
                csp_nonce => nonce.clone(),
                pdf_choice => s.config.report.pdf == crate::config::PdfMode::OnRequest,
            },
        )
    })();
    page(status, result, &nonce)
}

async fn form(
    State(s): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
) -> Response {
    let lang = lang_of(&s.config, q.lang.as_deref());
    let ip = client_ip(&s.config, peer.ip(), &headers);
    if let Some(r) = refuse_outside(&s, ip, lang) {
        return r;
    }
    show_form(&s, lang, &FormFields::default(), &[], StatusCode::OK)
}

async fn captcha_png(
    State(s): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let ip = client_ip(&s.config, peer.ip(), &headers);
    if !crate::net::in_networks(&s.config.web.allowed_networks, ip) {
        return StatusCode::FORBIDDEN.into_response();
    }
    let code = match captcha::open(&s.key, &id) {
        Some(o) if o.expires_at > Utc::now().timestamp() => o.code,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    match captcha::png(&code) {
        Ok(png) => (
            [
                (header::CONTENT_TYPE, "image/png"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            png,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Why a form was not accepted.
enum Refusal {
    /// Show the form again with these messages.
    Fix(Vec<String>),
    /// Too many requests: a page, status 429.
    Rate(String),
}

/// Checks a submitted form; the spec of the report when it is accepted.
/// `unverified` is the message key of what was wrong with its
/// verification, if anything.
async fn check(
    s: &WebState,
    ip: IpAddr,
    lang: Lang,
    f: &FormFields,
    unverified: Option<&str>,
) -> anyhow::Result<Result<Spec, Refusal>> {
    let c = &s.config;
    let now = Utc::now().timestamp();
    let mut errors = Vec::new();
    if let Some(key) = unverified {
        errors.push(text(lang, key, &[]));
    }
    // `judy+tag` is judy's mailbox (her report, her limit); an address a
    // relay would route elsewhere is no mailbox.
    let mailbox = match c.local_domains().mailbox(&f.mailbox) {
        Ok(m) => Some(m),
        Err(InputError::NotLocal(m)) => {
            errors.push(text(lang, "err_not_local", &[("mailbox", &m)]));
            None
        }
        Err(InputError::RoutedMailbox(_) | InputError::NoOwner(_)) => {
            errors.push(text(
                lang,
                "err_mailbox_routed",
                &[("mailbox", f.mailbox.trim())],
            ));
            None
        }
        Err(_) => {
            errors.push(text(lang, "err_mailbox", &[("mailbox", f.mailbox.trim())]));
            None
        }
    };
    let kind = Kind::parse(f.kind.trim());
    if kind.is_none() {
        errors.push(text(lang, "err_kind", &[]));
    }
    let (first, today) = window(c)?;
    let range = (|| -> Result<DateRange, InputError> {
        let from = Day::parse(&f.from)?;
        let to = if f.to.trim().is_empty() {
            from
        } else {
            Day::parse(&f.to)?
        };
        DateRange::new(from, to)
    })();
    let range = match range {
        Ok(r) if r.from >= first && r.to <= today => Some(r),
        Ok(_) => {
            errors.push(text(
                lang,
                "err_range",
                &[
                    ("days", &c.retention_days.to_string()),
                    ("from", &first.to_string()),
                    ("to", &today.to_string()),
                ],
            ));
            None
        }
        Err(_) => {
            errors.push(text(lang, "err_dates", &[]));
            None
        }
    };
    let (Some(mailbox), Some(kind), Some(range), true) = (mailbox, kind, range, errors.is_empty())
    else {
        return Ok(Err(Refusal::Fix(errors)));
    };
    let report_lang = f.lang.parse().unwrap_or(lang);
    Ok(Ok(Spec {
        mailbox,
        kind,
        range,
        lang: report_lang,
        requester: Requester {
            channel: Channel::Web,
            client_ip: ip.to_string(),
            at: now,
        },
    }))
}

async fn submit(
    State(s): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<FormFields>,
) -> Response {
    let lang = lang_of(&s.config, Some(f.lang.as_str()));
    let ip = client_ip(&s.config, peer.ip(), &headers);
    if let Some(r) = refuse_outside(&s, ip, lang) {
        return r;
    }
    let now = Utc::now().timestamp();
    let c = &s.config.web;
    let challenge = f.challenge.trim();
    let token = captcha::open(&s.key, challenge).filter(|o| o.expires_at > now);
    // The proof of work first: a post without it learns nothing of its
    // code. The token opened, so `challenge` is its one spelling.
    let unverified = match &token {
        None => Some("err_code"),
        Some(_)
            if !c.code_alone_accepted
                && !captcha::pow_ok(challenge, f.pow.trim(), c.proof_of_work_bits) =>
        {
            Some("err_pow")
        }
        Some(t) if t.code != f.code.trim() => Some("err_code"),
        Some(_) => None,
    };
    let checked = check(&s, ip, lang, &f, unverified).await;
    // The code is used up whatever else is wrong, so it cannot be guessed
    // at; when everything is right, with the request in one transaction.
    // The limits are checked where the request is written, so that posts
    // arriving together cannot pass them together.
    // The PDF, where the site lets the owner choose it.
    let purpose = if !f.pdf.is_empty() && s.config.report.pdf == crate::config::PdfMode::OnRequest {
        super::Purpose::ReportPdf
    } else {
        super::Purpose::Report
    };
    let request = match &checked {
        Ok(Ok(spec)) => Some((
            super::new_request(spec, None, purpose),
            Limits {
                client_since: now - 3600,
                client_cap: i64::from(c.max_per_client_per_hour),
                mailbox_since: now - 86_400,
                mailbox_cap: i64::from(c.max_per_mailbox_per_day),
            },
        )),
        _ => None,
    };
    // Every post is a guess at a code, counted against its client and the
    // mailbox it names when it fails (its base mailbox: `bob+1`, `bob+2`
    // ... are all bob's guesses).
    let domains = s.config.local_domains();
    let asked = crate::domain::Mailbox::parse(&f.mailbox, domains.addressing())
        .ok()
        .map(|m| m.as_str().to_owned());
    let post = crate::store::Post {
        nonce: token.as_ref().map(|t| t.nonce.clone()),
        expires_at: token.as_ref().map_or(0, |t| t.expires_at),
        guess: Guess {
            client_ip: ip.to_string(),
            mailbox: asked.clone(),
            failed: unverified.is_some(),
            at: now,
            since: now - 3600,
            client_cap: i64::from(c.max_guesses_per_client_per_hour),
            mailbox_cap: i64::from(c.max_guesses_per_mailbox_per_hour),
        },
        request,
    };
    let outcome = match s.posts.write(post).await {
        Ok(o) => o,
        Err(e) => {
            tracing::error!("cannot store the request: {e:#}");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let checked = match (checked, outcome) {
        (_, PostOutcome::GuessesFromClient) => Ok(Err(Refusal::Rate(text(
            lang,
            "err_guesses_client",
            &[("ip", &ip.to_string())],
        )))),
        (_, PostOutcome::GuessesForMailbox) => Ok(Err(Refusal::Rate(text(
            lang,
            "err_guesses_mailbox",
            &[("mailbox", asked.as_deref().unwrap_or_default())],
        )))),
        // Right in every way, but the code was used before.
        (Ok(Ok(_)), PostOutcome::CodeUsed) => {
            Ok(Err(Refusal::Fix(vec![text(lang, "err_code", &[])])))
        }
        (Ok(Ok(_)), PostOutcome::ClientLimited) => Ok(Err(Refusal::Rate(text(
            lang,
            "err_rate_client",
            &[("ip", &ip.to_string())],
        )))),
        (Ok(Ok(spec)), PostOutcome::MailboxLimited) => Ok(Err(Refusal::Rate(text(
            lang,
            "err_rate_mailbox",
            &[("mailbox", spec.mailbox.as_str())],
        )))),
        (c, _) => c,
    };
    let spec = match checked {
        Ok(Ok(spec)) => spec,
        Ok(Err(Refusal::Fix(errors))) => {
            let kept = FormFields {
                code: String::new(),
                challenge: String::new(),
                pow: String::new(),
                ..f
            };
            return show_form(&s, lang, &kept, &errors, StatusCode::UNPROCESSABLE_ENTITY);
        }
        Ok(Err(Refusal::Rate(msg))) => {
            return message(StatusCode::TOO_MANY_REQUESTS, lang, false, "err_title", msg);
        }
        Err(e) => {
            tracing::error!("form check failed: {e:#}");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    if let PostOutcome::Written(id) = outcome {
        tracing::info!(request = id, mailbox = %spec.mailbox, client = %ip, "web request");
    }
    message(
        StatusCode::OK,
        lang,
        true,
        "ok_title",
        text(lang, "ok_body", &[("mailbox", spec.mailbox.as_str())]),
    )
}

/// `/health`: 200 when the follower's last pass is recent and left
/// nothing unread, every followed path can be read, and the relay took the
/// worker's last attempt; 503 otherwise, with every reason in `problems`.
/// JSON either way (see [`Health::judge`]). The reasons name paths, the
/// relay and database errors: a client outside `web.allowed_networks` gets
/// the status and `ok` only.
async fn health(
    State(s): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let outbox = s.store.outbox_counts().await.map_err(|e| format!("{e:#}"));
    let (ok, mut body) = s
        .health
        .judge(&s.config.ingest.paths, Utc::now().timestamp(), outbox);
    let ip = client_ip(&s.config, peer.ip(), &headers);
    if !s
        .config
        .web
        .allowed_networks
        .iter()
        .any(|n| n.contains(&ip))
    {
        body = serde_json::json!({ "ok": ok });
    }
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(proxies: &str) -> Config {
        Config::from_toml(&format!(
            "local_domains = [\"example.edu\"]\ndefault_domain = \"example.edu\"\n[web]\ntrusted_proxies = [{proxies}]\n"
        ))
        .unwrap()
    }

    use axum::http::HeaderValue;

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().unwrap());
        h
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let none = config("");
        assert_eq!(
            client_ip(&none, ip("192.0.2.9"), &xff("140.114.1.2")),
            ip("192.0.2.9")
        );
        let c = config("\"10.0.0.0/8\"");
        assert_eq!(
            client_ip(&c, ip("10.0.0.5"), &xff("140.114.1.2")),
            ip("140.114.1.2")
        );
        // A client that sends its own header: the proxy appends the real
        // address, which is the one taken.
        assert_eq!(
            client_ip(&c, ip("10.0.0.5"), &xff("127.0.0.1, 140.114.1.2")),
            ip("140.114.1.2")
        );
        // Two proxies in a row.
        assert_eq!(
            client_ip(&c, ip("10.0.0.5"), &xff("140.114.1.2, 10.0.0.7")),
            ip("140.114.1.2")
        );
        // Garbage where the proxy wrote: the peer.
        assert_eq!(
            client_ip(&c, ip("10.0.0.5"), &xff("nonsense")),
            ip("10.0.0.5")
        );
        // Garbage the client wrote in front of what the proxy appended is
        // never read: the client is not taken for the proxy.
        assert_eq!(
            client_ip(&c, ip("10.0.0.5"), &xff("nonsense, 192.0.2.66")),
            ip("192.0.2.66")
        );
        let mut two = HeaderMap::new();
        two.append("x-forwarded-for", HeaderValue::from_bytes(b"\xff").unwrap());
        two.append("x-forwarded-for", "192.0.2.66".parse().unwrap());
        assert_eq!(client_ip(&c, ip("10.0.0.5"), &two), ip("192.0.2.66"));
        assert_eq!(
            client_ip(&c, ip("10.0.0.5"), &HeaderMap::new()),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn ipv4_mapped_peers_and_forwarded_addresses_are_ipv4() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // A client through a [::] listener, no proxy: its IPv4 address, so
        // that it is one key for the limits whichever way it came.
        let none = config("");
        assert_eq!(
            client_ip(&none, ip("::ffff:192.0.2.9"), &HeaderMap::new()),
            ip("192.0.2.9")
        );
        // A proxy at an IPv4 address, seen mapped, is trusted, and what it
        // forwards is read in canonical form too.
        let c = config("\"10.0.0.0/8\"");
        assert_eq!(
            client_ip(&c, ip("::ffff:10.0.0.5"), &xff("::ffff:140.114.1.2")),
            ip("140.114.1.2")
        );
        // A mapped proxy entry in the header is skipped as a proxy.
        assert_eq!(
            client_ip(
                &c,
                ip("::ffff:10.0.0.5"),
                &xff("140.114.1.2, ::ffff:10.0.0.7")
            ),
            ip("140.114.1.2")
        );
        // Not a proxy when mapped from outside the network.
        assert_eq!(
            client_ip(&c, ip("::ffff:192.0.2.1"), &xff("140.114.1.2")),
            ip("192.0.2.1")
        );
    }
}
