//! Rows about mail received by local mailboxes (see [`received`]).
//!
//! Postfix's rows for a local recipient (its delivery, a forward, a
//! refusal, a hold) carry what the message's other lines say of it: the
//! client, the envelope sender, the Message-ID, the size and the subject.
//! Those lines come first in the order the programs write them, but syslog
//! may reorder lines of the same second, so a row waits in its lifecycle
//! ([`Msg::inbound`]) until the sender and the Message-ID are known, and no
//! longer than [`GRACE_US`] of its host's clock; then it goes out with what
//! is known. Dovecot's lines and the spam filter's are rows of their own at
//! once; reports join them to Postfix's by the LMTP session, the queue ID
//! or the Message-ID.

use super::*;

/// Roles a line's key is varied by, so that one line's rows for one
/// mailbox never share a key.
const ROLE_FORWARD: i64 = 0x51;
const ROLE_REDIRECT: i64 = 0x52;
const ROLE_HOLD: i64 = 0x53;
const ROLE_QUARANTINE: i64 = 0x54;

/// How long a Sieve redirect waits for the delivery of its copy.
const REDIRECT_WAIT_US: i64 = 3600 * 1_000_000;
/// Most Sieve redirects remembered at once (the oldest are forgotten).
const MAX_REDIRECTS: usize = 10_000;
/// Longest subject kept, in bytes (RFC 5322's line limit).
const MAX_SUBJECT: usize = 998;

fn vary(key: i64, role: i64) -> i64 {
    key ^ role.wrapping_mul(0x9E37_79B9_7F4A_7C15u64 as i64)
}

/// `NAME[ADDR]`, as Postfix names a client, in one allocation (`format!`
/// grew it in several, once per row of received mail).
fn client_text(name: &str, ip: &str) -> String {
    let mut s = String::with_capacity(name.len() + ip.len() + 2);
    s.push_str(name);
    s.push('[');
    s.push_str(ip);
    s.push(']');
    s
}

fn cut(b: &[u8], max: usize) -> String {
    let mut end = b.len().min(max);
    while end < b.len() && end > 0 && (b[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    lossy(&b[..end])
}

impl Correlator {
    /// A local mailbox's address for `raw`, or `None`: decided on the
    /// normalised address in the scratch buffer, so that the remote
    /// recipients of outgoing mail (most deliveries) cost no allocation.
    fn local_mailbox(&self, raw: &[u8]) -> Option<Text> {
        let mut s = self.scratch.borrow_mut();
        if !normalize_logged_address_into(raw, &self.default_domain, &mut s)
            || s.len() > MAX_ADDRESS
            || !self.em.settings.local.is_local_address(&s)
        {
            return None;
        }
        strip_extension(&mut s, &self.delimiters);
        Some(Text::from(s.as_str()))
    }

    fn message_row(
        &mut self,
        ctx: &LineCtx<'_>,
        key: i64,
        mailbox: Text,
        kind: received::MsgKind,
    ) -> MessageRow {
        MessageRow {
            key,
            time_us: ctx.time_us,
            day: self.em.days.day_key(ctx.time_us),
            mailbox,
            kind: kind as i16,
            host: self.state.hosts[ctx.host as usize].clone(),
            ..MessageRow::default()
        }
    }

    /// What a Postfix line adds about mail for local recipients; called
    /// after the line has been handled for senders.
    pub(super) fn inbound(&mut self, ctx: &LineCtx<'_>, ev: Event<'_>) {
        use received::MsgKind;
        match ev {
            Event::Client {
                qid, client_name, ..
            } => {
                let key = (ctx.host, Qid::new(qid));
                // The name alone (most fit inline in a `Text`); its address
                // is the lifecycle's own client address.
                let Some(m) = self.state.messages.get_mut(&key) else {
                    return;
                };
                if m.client_name.is_none() {
                    m.client_name = Some(lossy_text(client_name));
                }
                if !m.inbound.is_empty() {
                    self.release_inbound(key, false);
                }
            }
            Event::MessageId { qid, id } => {
                let key = (ctx.host, Qid::new(qid));
                let Some(m) = self.state.messages.get_mut(&key) else {
                    return;
                };
                if m.msgid_text.is_none() && id.len() > 2 {
                    // As logged, cut like a subject: a stranger chooses it.
                    m.msgid_text = Some(if id.len() > MAX_SUBJECT {
                        Text::from(cut(id, MAX_SUBJECT))
                    } else {
                        lossy_text(id)
                    });
                }
                if !m.inbound.is_empty() {
                    self.release_inbound(key, false);
                }
            }
            Event::QueueActive { qid, size, .. } => {
                let key = (ctx.host, Qid::new(qid));
                let Some(m) = self.state.messages.get_mut(&key) else {
                    return;
                };
                if let Some(n) = size {
                    m.size = Some(n as i64);
                }
                if !m.inbound.is_empty() {
                    self.release_inbound(key, false);
                }
            }
            Event::Expired { qid, .. } => self.release_inbound((ctx.host, Qid::new(qid)), false),
            Event::Subject { qid, subject } => {
                let key = (ctx.host, Qid::new(qid));
                let m = self.lifecycle(key, ctx, true);
                if m.subject.is_none() {
                    m.subject = Some(cut(subject, MAX_SUBJECT));
                }
                self.release_inbound(key, false);
            }
            Event::Kept {
                qid,
                action,
                matched,
                reason,
                from,
                to,
            } => {
                let Some(mailbox) = to.and_then(|t| self.local_mailbox(t)) else {
                    return;
                };
                let kind = if action.ends_with(b"hold") {
                    MsgKind::Held
                } else {
                    MsgKind::Dropped
                };
                let key = (ctx.host, Qid::new(qid));
                let mut row =
                    self.message_row(ctx, vary(self.line_key(ctx), ROLE_HOLD), mailbox, kind);
                row.protocol = Some(lossy_text(action));
                row.sender = from.map(lossy);
                row.other = Some(cut(matched, MAX_SUBJECT));
                row.reply = (!reason.is_empty()).then(|| lossy(reason));
                self.wait_inbound(key, ctx, row);
            }
            Event::Reject {
                qid,
                action,
                stage,
                client_name,
                client_ip,
                reply,
                from,
                to,
                ..
            } => {
                let Some(mailbox) = to.and_then(|t| self.local_mailbox(t)) else {
                    return;
                };
                let mut row = self.message_row(ctx, self.line_key(ctx), mailbox, MsgKind::Refused);
                row.protocol = Some(lossy_text(action));
                row.status = (!stage.is_empty()).then(|| lossy_text(stage));
                row.sender = Some(from.map(lossy).unwrap_or_default());
                row.client = client_ip.map(|ip| {
                    client_text(
                        &String::from_utf8_lossy(client_name.unwrap_or_default()),
                        &String::from_utf8_lossy(ip),
                    )
                });
                row.reply = Some(lossy(reply));
                match qid {
                    Some(q) if postfix::is_qid(q) => {
                        let key = (ctx.host, Qid::new(q));
                        self.wait_inbound(key, ctx, row);
                    }
                    _ => {
                        self.msg_out.push(row);
                    }
                }
            }
            Event::Delivery {
                qid,
                to,
                orig_to,
                relay,
                dsn,
                status,
                response,
            } => self.inbound_delivery(ctx, qid, (to, orig_to), relay, dsn, status, response),
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn inbound_delivery(
        &mut self,
        ctx: &LineCtx<'_>,
        qid: &[u8],
        (to, orig_to): (&[u8], Option<&[u8]>),
        relay: &[u8],
        dsn: &[u8],
        status: Status,
        response: &[u8],
    ) {
        use received::MsgKind;
        let key = (ctx.host, Qid::new(qid));
        let daemon = postfix::daemon(ctx.program).unwrap_or_default();
        let nets = &self.em.settings.internal_relays;
        let (relay_text, internal) = self.relays.get(relay, |r| relay_is_internal(nets, r));
        let status_word = match status {
            Status::Sent => "sent",
            Status::Bounced => "bounced",
            Status::Deferred => "deferred",
        };
        // A Sieve redirect's copy being delivered.
        if !self.state.redirects.is_empty()
            && let Some(h) = self.state.messages.get(&key).and_then(|m| m.msgid)
            && let Some(addr) = self.address(to)
            && let Some(i) = self
                .state
                .redirects
                .iter()
                .position(|r| r.host == ctx.host && r.msgid == h && r.to == addr)
        {
            let r = if status == Status::Deferred {
                self.state.redirects[i].clone()
            } else {
                self.state.redirects.remove(i)
            };
            let mut row = self.message_row(
                ctx,
                vary(self.line_key(ctx), ROLE_REDIRECT),
                r.mailbox,
                MsgKind::RedirectResult,
            );
            row.queue_id = Some(lossy_text(qid));
            row.other = Some(lossy(to));
            row.status = Some(Text::from(status_word));
            row.reply = Some(lossy(response));
            row.protocol = Some(lossy_text(daemon));
            row.message_id = self
                .state
                .messages
                .get(&key)
                .and_then(|m| m.msgid_text.as_ref())
                .map(|t| t.to_string());
            self.msg_out.push(row);
        }
        // A hand-off to a content filter is not a delivery: its copy's is.
        if internal && matches!(daemon, b"smtp" | b"lmtp") && status == Status::Sent {
            return;
        }
        let to_local = self.local_mailbox(to);
        let orig_local = orig_to.and_then(|o| self.local_mailbox(o));
        if let Some(o) = orig_local.clone()
            && Some(&o) != to_local.as_ref()
        {
            let mut row = self.message_row(
                ctx,
                vary(self.line_key(ctx), ROLE_FORWARD),
                o,
                MsgKind::Forwarded,
            );
            row.protocol = Some(lossy_text(daemon));
            row.other = Some(lossy(to));
            row.status = Some(Text::from(status_word));
            row.reply = Some(lossy(response));
            self.wait_inbound(key, ctx, row);
        }
        let Some(mailbox) = to_local else {
            return;
        };
        let kind = match status {
            Status::Sent => MsgKind::Delivered,
            Status::Bounced => MsgKind::Bounced,
            Status::Deferred => MsgKind::Deferred,
        };
        let mut row = self.message_row(ctx, self.line_key(ctx), mailbox, kind);
        row.protocol = Some(self.dsns.get(daemon));
        row.session = received::lmtp_session(response).map(lossy_text);
        // A plain delivery keeps only what a report shows: the LMTP
        // session (which joins Dovecot's lines), or local(8)'s and
        // virtual(8)'s words on where it went. A failed one keeps the relay,
        // its DSN and the whole reply.
        if kind == MsgKind::Delivered {
            if row.session.is_none() {
                row.reply = Some(lossy(response));
            }
        } else {
            row.other = Some(relay_text.to_string());
            row.status = (!dsn.is_empty()).then(|| self.dsns.get(dsn));
            row.reply = Some(lossy(response));
        }
        self.wait_inbound(key, ctx, row);
    }

    /// The lifecycle of `key` (made if new), as [`Correlator::msg`] gives
    /// it: the rows of an old lifecycle of the same queue ID that this line
    /// closes go out with the call's SMTP rows.
    fn lifecycle(&mut self, key: MsgKey, ctx: &LineCtx<'_>, starts: bool) -> &mut Msg {
        let mut spill = std::mem::take(&mut self.spill);
        self.msg(key, ctx, starts, &mut spill);
        self.spill = spill;
        self.state
            .messages
            .get_mut(&key)
            .expect("Correlator::msg made the lifecycle")
    }

    /// Puts `row` in the lifecycle of `key` to wait for the message's other
    /// lines, and gives out what is ready.
    fn wait_inbound(&mut self, key: MsgKey, ctx: &LineCtx<'_>, row: MessageRow) {
        let m = self.lifecycle(key, ctx, false);
        if m.inbound.is_empty() {
            m.inbound_at = ctx.now_us;
        }
        m.inbound.push(row);
        self.release_inbound(key, false);
    }

    /// Gives out the rows waiting in the lifecycle of `key` that are
    /// complete, or all of them (`force`), completed with what is known.
    pub(super) fn release_inbound(&mut self, key: MsgKey, force: bool) {
        let Some(m) = self.state.messages.get_mut(&key) else {
            return;
        };
        if m.inbound.is_empty() {
            return;
        }
        let sender_known = m.own.sender != Sender::Unknown;
        let msgid_known = m.msgid_text.is_some();
        let ready = |r: &MessageRow| force || (msgid_known && (sender_known || r.sender.is_some()));
        if !m.inbound.iter().any(ready) {
            return;
        }
        let rows = std::mem::take(&mut m.inbound);
        let mut keep = Vec::new();
        let origin_ip = match &m.link {
            Link::Claimed {
                origin: Some(o), ..
            } => o.client_ip.clone(),
            _ => None,
        };
        for mut r in rows {
            if !ready(&r) {
                keep.push(r);
                continue;
            }
            r.queue_id.get_or_insert_with(|| m.qid.clone());
            if r.message_id.is_none() {
                r.message_id = m.msgid_text.as_ref().map(|t| t.to_string());
            }
            if r.sender.is_none() {
                r.sender = match &m.own.sender {
                    Sender::Null => Some(String::new()),
                    Sender::Addr(a) => Some(a.to_string()),
                    Sender::Unknown | Sender::Bad => None,
                };
            }
            if r.client.is_none() {
                // A content filter's copy came from the filter: the client
                // is the original's.
                r.client = match (&origin_ip, &m.client_name, &m.own.client_ip) {
                    (Some(ip), _, _) => Some(client_text("", ip)),
                    (None, Some(name), Some(ip)) => Some(client_text(name, ip)),
                    (None, Some(name), None) => Some(name.to_string()),
                    (None, None, _) => None,
                };
            }
            if r.size.is_none() {
                r.size = m.size;
            }
            if r.subject.is_none() {
                r.subject = m.subject.clone();
            }
            self.msg_out.push(r);
        }
        m.inbound = keep;
    }

    /// A Dovecot line about a message or a folder: a row for the mailbox
    /// it names. Returns whether the line was one.
    pub(super) fn dovecot_message(&mut self, ctx: &LineCtx<'_>, msg: &[u8]) -> bool {
        use received::MsgKind;
        let Some(f) = received::dovecot_fact(msg) else {
            return false;
        };
        let Some(mailbox) = self.local_mailbox(f.user) else {
            return true;
        };
        if f.kind == MsgKind::Redirected
            && let (Some(id), Some(to)) = (f.message_id, f.other.and_then(|o| self.address(o)))
        {
            if self.state.redirects.len() >= MAX_REDIRECTS {
                self.state.redirects.remove(0);
            }
            self.state.redirects.push(Redirect {
                host: ctx.host,
                msgid: xxh3_64(id),
                to,
                mailbox: mailbox.clone(),
                at_us: ctx.now_us,
            });
        }
        let mut row = self.message_row(ctx, self.line_key(ctx), mailbox, f.kind);
        row.protocol = Some(self.dsns.get(f.protocol));
        row.session = f.session.map(lossy_text);
        row.message_id = f.message_id.map(lossy);
        row.folder = f.folder.map(lossy);
        row.other = f.other.map(lossy);
        row.uid = f.uid;
        row.size = f.size;
        row.sender = f.from.map(|s| cut(s, MAX_SUBJECT));
        row.subject = f.subject.map(|s| cut(s, MAX_SUBJECT));
        row.status = f.status.map(lossy_text);
        row.reply = f.reply.map(lossy);
        self.msg_out.push(row);
        true
    }

    /// A spam filter's verdict line: a row for each local recipient.
    pub(super) fn filter_line(&mut self, ctx: &LineCtx<'_>, v: received::Verdict<'_>) {
        use received::MsgKind;
        let base = self.line_key(ctx);
        let mut seen: Vec<Text> = Vec::new();
        for rcpt in &v.recipients {
            let Some(mailbox) = self.local_mailbox(rcpt) else {
                continue;
            };
            if seen.contains(&mailbox) {
                continue;
            }
            seen.push(mailbox.clone());
            let mut row = self.message_row(ctx, base, mailbox.clone(), MsgKind::Spam);
            row.protocol = Some(lossy_text(ctx.program));
            row.queue_id = v.queue_id.map(lossy_text);
            row.message_id = v.message_id.map(lossy);
            row.sender = v.from.map(lossy);
            row.client = v
                .client_ip
                .map(|ip| client_text("", &String::from_utf8_lossy(ip)));
            row.status = Some(Text::from(v.action.as_str()));
            row.reply = v.score.clone();
            if v.quarantined {
                let mut q = row.clone();
                q.key = vary(base, ROLE_QUARANTINE);
                q.kind = MsgKind::Held as i16;
                q.status = Some(Text::from("quarantine"));
                q.reply = Some(v.action.clone());
                self.msg_out.push(q);
            }
            self.msg_out.push(row);
        }
    }

    /// Sieve redirects whose copy was not seen delivered within
    /// [`REDIRECT_WAIT_US`] are forgotten.
    /// (At the end of input they stay, for the next run's lines.)
    pub(super) fn expire_redirects(&mut self) {
        if self.state.redirects.is_empty() {
            return;
        }
        let (clocks, idle) = (&self.state.clocks, self.idle_us);
        self.state.redirects.retain(|r| {
            clocks[r.host as usize].now().saturating_add(idle)
                < r.at_us.saturating_add(REDIRECT_WAIT_US)
        });
    }
}
