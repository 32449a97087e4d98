//! Shapes that other sites' logs take, each in a log of that shape, with
//! the counts of what happened.

use super::tests::{clock, count, run, settings};
use super::*;

type Got = Vec<(String, Kind, Option<String>)>;

/// Feeds lines (no end of input) to `c`; returns all rows so far.
fn feed(c: &mut Correlator, clk: &mut Clock, lines: &str, out: &mut Rows) -> Got {
    for l in lines.lines().map(str::trim).filter(|l| !l.is_empty()) {
        c.feed(clk, l.as_bytes(), out);
    }
    out.smtp
        .iter()
        .map(|r| (r.mailbox.to_string(), r.kind, r.recipient.clone()))
        .collect()
}

/// The lines of `text` in the order given by `order` (indexes).
fn reorder(text: &str, order: &[usize]) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(order.len(), lines.len());
    order.iter().map(|&i| format!("{}\n", lines[i])).collect()
}

/// A message submitted with AUTH (alice) for carol, to two recipients,
/// through a content filter that answers as Proxmox Mail Gateway does:
/// `250 2.5.0 OK (<its own id>)`, no queued-as, and re-injects without
/// XFORWARD. Lines: 0-2 the original, 3-5 the copy's start, 6-8 the two
/// hand-offs and removed, 9-11 the copy's deliveries and removed.
const PMG: &str = "
    Nov  3 11:00:00 mail postfix/submission/smtpd[10]: AAAA01: client=pc.example.net[192.0.2.7], sasl_method=PLAIN, sasl_username=alice@example.edu
    Nov  3 11:00:00 mail postfix/cleanup[11]: AAAA01: message-id=<m1@pc.example.net>
    Nov  3 11:00:00 mail postfix/qmgr[2]: AAAA01: from=<carol@example.edu>, size=300, nrcpt=2 (queue active)
    Nov  3 11:00:01 mail postfix/smtpd[20]: BBBB02: client=localhost[127.0.0.1]
    Nov  3 11:00:01 mail postfix/cleanup[11]: BBBB02: message-id=<m1@pc.example.net>
    Nov  3 11:00:01 mail postfix/qmgr[2]: BBBB02: from=<carol@example.edu>, size=900, nrcpt=2 (queue active)
    Nov  3 11:00:01 mail postfix/smtp[12]: AAAA01: to=<x@remote.test>, relay=127.0.0.1[127.0.0.1]:10024, delay=1, delays=0/0/0/1, dsn=2.5.0, status=sent (250 2.5.0 OK (5E8F4C5A0000A1B2C3D4))
    Nov  3 11:00:01 mail postfix/smtp[12]: AAAA01: to=<y@remote.test>, relay=127.0.0.1[127.0.0.1]:10024, delay=1, delays=0/0/0/1, dsn=2.5.0, status=sent (250 2.5.0 OK (5E8F4C5A0000A1B2C3D4))
    Nov  3 11:00:01 mail postfix/qmgr[2]: AAAA01: removed
    Nov  3 11:00:02 mail postfix/smtp[13]: BBBB02: to=<x@remote.test>, relay=mx.remote.test[192.0.2.9]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 accepted)
    Nov  3 11:00:02 mail postfix/smtp[13]: BBBB02: to=<y@remote.test>, relay=mx.remote.test[192.0.2.9]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 accepted)
    Nov  3 11:00:02 mail postfix/qmgr[2]: BBBB02: removed
";

fn assert_pmg_counted_once(text: &str) {
    let mut c = Correlator::new(settings());
    let mut clk = clock();
    let mut out = Rows::default();
    feed(&mut c, &mut clk, text, &mut out);
    c.finish(&mut out);
    let got: Got = out
        .smtp
        .iter()
        .map(|r| (r.mailbox.to_string(), r.kind, r.recipient.clone()))
        .collect();
    for who in ["carol@example.edu", "alice@example.edu"] {
        assert_eq!(count(&got, who, Kind::Sent), 2, "{who}\n{text}");
        assert_eq!(count(&got, who, Kind::AuthRcv), 1, "{who}\n{text}");
    }
    assert_eq!(got.len(), 6, "{got:?}\n{text}");
    // The deliveries carry the original client, and the copy's queue ID.
    for r in out.smtp.iter().filter(|r| r.kind == Kind::Sent) {
        assert_eq!(r.sender_ip.as_deref(), Some("192.0.2.7"));
        assert_eq!(r.queue_id.as_deref(), Some("BBBB02"));
        assert_eq!(r.relay.as_deref(), Some("mx.remote.test[192.0.2.9]:25"));
    }
    assert_eq!(c.stats.handoffs_waiting, 0);
    assert_eq!(
        c.stats.unattributed.total(),
        0,
        "{:?}",
        c.stats.unattributed
    );
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn a_filter_that_names_no_queue_id_is_followed_by_message_id() {
    // As logged: the copy's lines come before the filter's answer.
    assert_pmg_counted_once(PMG);
    // The answer first.
    assert_pmg_counted_once(&reorder(PMG, &[0, 1, 2, 6, 7, 8, 3, 4, 5, 9, 10, 11]));
    // The hand-off before the original's own from= (lines of one second
    // read out of order), and the copy's from= before its client=.
    assert_pmg_counted_once(&reorder(PMG, &[0, 1, 6, 7, 2, 5, 3, 4, 8, 9, 10, 11]));
    // The copy's deliveries before anything links it.
    assert_pmg_counted_once(&reorder(PMG, &[3, 4, 5, 9, 10, 11, 0, 1, 2, 6, 7, 8]));
    // The original's Message-ID last, after its hand-offs were followed
    // (found by the order property on the real capture).
    assert_pmg_counted_once(&reorder(PMG, &[0, 2, 6, 7, 3, 4, 5, 9, 10, 11, 1, 8]));
}

#[test]
fn a_filter_that_names_the_copy_in_other_words_is_followed() {
    // `250 OK, sent <its id> <NEWID>`; the copy's Message-ID was rewritten,
    // so only the queue ID can link it.
    let (rows, c) = run("
        Nov  3 11:00:00 mail postfix/smtpd[10]: AAAA11: client=pc.example.net[192.0.2.7], sasl_method=PLAIN, sasl_username=alice@example.edu
        Nov  3 11:00:00 mail postfix/cleanup[11]: AAAA11: message-id=<m2@pc.example.net>
        Nov  3 11:00:00 mail postfix/qmgr[2]: AAAA11: from=<alice@example.edu>, size=300, nrcpt=1 (queue active)
        Nov  3 11:00:01 mail postfix/smtp[12]: AAAA11: to=<x@remote.test>, relay=127.0.0.1[127.0.0.1]:10024, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 OK, sent 4A5B6C7D 1A2B3C4D5E)
        Nov  3 11:00:01 mail postfix/qmgr[2]: AAAA11: removed
        Nov  3 11:00:01 mail postfix/smtpd[20]: 1A2B3C4D5E: client=localhost[127.0.0.1]
        Nov  3 11:00:01 mail postfix/cleanup[11]: 1A2B3C4D5E: message-id=<rewritten@filter.example.edu>
        Nov  3 11:00:01 mail postfix/qmgr[2]: 1A2B3C4D5E: from=<alice@example.edu>, size=900, nrcpt=1 (queue active)
        Nov  3 11:00:02 mail postfix/smtp[13]: 1A2B3C4D5E: to=<x@remote.test>, relay=mx.remote.test[192.0.2.9]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 accepted)
        Nov  3 11:00:02 mail postfix/qmgr[2]: 1A2B3C4D5E: removed
    ");
    assert_eq!(count(&rows, "alice@example.edu", Kind::Sent), 1);
    assert_eq!(count(&rows, "alice@example.edu", Kind::AuthRcv), 1);
    assert_eq!(rows.len(), 2);
    assert_eq!(c.stats.handoffs_waiting, 0);
}

#[test]
fn a_filter_that_refuses_is_a_row_of_its_own_and_no_delivery() {
    let mut c = Correlator::new(settings());
    let mut clk = clock();
    let mut out = Rows::default();
    let got = feed(&mut c, &mut clk, "
        Nov  3 12:00:00 mail postfix/submission/smtpd[10]: CCCC01: client=pc.example.net[192.0.2.7], sasl_method=PLAIN, sasl_username=alice@example.edu
        Nov  3 12:00:00 mail postfix/qmgr[2]: CCCC01: from=<alice@example.edu>, size=300, nrcpt=1 (queue active)
        Nov  3 12:00:01 mail postfix/smtp[12]: CCCC01: to=<x@remote.test>, relay=127.0.0.1[127.0.0.1]:10024, delay=1, delays=0/0/0/1, dsn=2.7.0, status=sent (250 2.7.0 BLOCKED (5E8F4C5A0000A1B2C3D5))
        Nov  3 12:00:01 mail postfix/qmgr[2]: CCCC01: removed
        Nov  3 12:00:05 mail postfix/submission/smtpd[10]: CCCC02: client=pc.example.net[192.0.2.7], sasl_method=PLAIN, sasl_username=alice@example.edu
        Nov  3 12:00:05 mail postfix/qmgr[2]: CCCC02: from=<alice@example.edu>, size=300, nrcpt=1 (queue active)
        Nov  3 12:00:06 mail postfix/smtp[12]: CCCC02: to=<y@remote.test>, relay=127.0.0.1[127.0.0.1]:10024, delay=1, delays=0/0/0/1, dsn=5.7.1, status=bounced (host 127.0.0.1[127.0.0.1] said: 554 5.7.1 Rejected by the content filter (in reply to end of DATA command))
        Nov  3 12:00:06 mail postfix/qmgr[2]: CCCC02: removed
        Nov  3 12:00:07 mail postfix/qmgr[2]: CCCC03: from=<alice@example.edu>, size=300, nrcpt=1 (queue active)
        Nov  3 12:00:07 mail postfix/pickup[4]: CCCC03: uid=1000 from=<alice@example.edu>
        Nov  3 12:00:08 mail postfix/lmtp[14]: CCCC03: to=<bob@example.edu>, relay=127.0.0.1[127.0.0.1]:24, delay=1, delays=0/0/0/1, dsn=5.2.2, status=bounced (host 127.0.0.1[127.0.0.1] said: 552 5.2.2 <bob@example.edu> Mailbox is full (in reply to end of DATA command))
        Nov  3 12:00:08 mail postfix/qmgr[2]: CCCC03: removed
    ", &mut out);
    let a = "alice@example.edu";
    assert_eq!(count(&got, a, Kind::Blocked), 2, "{got:?}");
    assert_eq!(count(&got, a, Kind::Sent), 0, "{got:?}");
    // An internal relay's refusal of a recipient that is not a filter's
    // policy refusal is the bounce it is.
    assert_eq!(count(&got, a, Kind::Bounced), 1);
    assert_eq!(count(&got, a, Kind::AuthRcv), 2);
    let blocked: Vec<_> = out
        .smtp
        .iter()
        .filter(|r| r.kind == Kind::Blocked)
        .collect();
    assert!(blocked[0].response.as_deref().unwrap().contains("BLOCKED"));
    assert!(
        blocked[1]
            .response
            .as_deref()
            .unwrap()
            .contains("554 5.7.1")
    );
    assert!(
        blocked
            .iter()
            .all(|r| r.sender_ip.as_deref() == Some("192.0.2.7"))
    );
    // Nothing waits: a refusal is not a hand-off.
    c.finish(&mut out);
    assert_eq!(c.stats.handoffs_waiting, 0);
    assert_eq!(c.in_flight(), 0);
}

/// Mail from a web application on the mail host: loopback, no AUTH, one
/// recipient delivered, one deferred; `removed` never comes.
const WEBMAIL: &str = "
    Nov  3 12:00:00 mail postfix/smtpd[30]: DDDD01: client=localhost[127.0.0.1]
    Nov  3 12:00:00 mail postfix/cleanup[11]: DDDD01: message-id=<w1@example.edu>
    Nov  3 12:00:00 mail postfix/qmgr[2]: DDDD01: from=<bob@example.edu>, size=300, nrcpt=2 (queue active)
    Nov  3 12:00:01 mail postfix/smtp[31]: DDDD01: to=<a@remote.test>, relay=mx.remote.test[192.0.2.9]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 ok)
    Nov  3 12:00:01 mail postfix/smtp[32]: DDDD01: to=<b@slow.test>, relay=none, delay=1, delays=1/0/0/0, dsn=4.4.1, status=deferred (connect to slow.test[192.0.2.1]:25: Connection refused)
";

#[test]
fn internal_mail_without_auth_shows_once_the_link_window_has_passed() {
    let b = "bob@example.edu";
    let mut c = Correlator::new(settings());
    let mut clk = clock();
    let mut out = Rows::default();
    // It may be a content filter's copy: it waits.
    let got = feed(&mut c, &mut clk, WEBMAIL, &mut out);
    assert!(got.is_empty(), "{got:?}");
    // A minute of log time later nothing has claimed it: it is bob's,
    // while still queued.
    let got = feed(
        &mut c,
        &mut clk,
        "Nov  3 12:01:10 mail postfix/smtpd[33]: connect from x.example.net[192.0.2.50]",
        &mut out,
    );
    assert_eq!(count(&got, b, Kind::Sent), 1);
    assert_eq!(count(&got, b, Kind::Deferred), 1);
    // Deleted by the admin, then another minute: closed, nothing expired.
    let got = feed(
        &mut c,
        &mut clk,
        "
        Nov  3 12:05:00 mail postfix/postsuper[40]: DDDD01: removed
        Nov  3 12:06:00 mail postfix/smtpd[33]: connect from x.example.net[192.0.2.50]
        ",
        &mut out,
    );
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(c.in_flight(), 0);

    // A one-shot ingest that ends first shows it at its end.
    let (rows, c) = run(WEBMAIL);
    assert_eq!(count(&rows, b, Kind::Sent), 1);
    assert_eq!(count(&rows, b, Kind::Deferred), 1);
    assert_eq!(c.stats.unattributed.total(), 0);
}

#[test]
fn lines_of_one_second_in_any_order() {
    // `removed` before the message's last delivery; from= after the
    // deliveries; the AUTH client= line last.
    let lines = "
        Nov  3 13:00:00 mail postfix/submission/smtpd[1]: EEEE01: client=pc[192.0.2.5], sasl_method=PLAIN, sasl_username=alice@example.edu
        Nov  3 13:00:00 mail postfix/qmgr[2]: EEEE01: from=<carol@example.edu>, size=1, nrcpt=2 (queue active)
        Nov  3 13:00:01 mail postfix/smtp[3]: EEEE01: to=<x@r.test>, relay=r.test[192.0.2.1]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 ok)
        Nov  3 13:00:01 mail postfix/smtp[4]: EEEE01: to=<y@r.test>, relay=r.test[192.0.2.1]:25, delay=1, delays=0/0/0/1, dsn=5.0.0, status=bounced (550 no)
        Nov  3 13:00:01 mail postfix/qmgr[2]: EEEE01: removed
    ";
    let want = {
        let (mut r, _) = run(lines);
        r.sort();
        r
    };
    assert_eq!(want.len(), 6, "{want:?}");
    for order in [
        [0, 1, 2, 4, 3],
        [2, 3, 4, 1, 0],
        [4, 3, 2, 1, 0],
        [1, 4, 0, 3, 2],
    ] {
        let text = reorder(lines, &order);
        let mut c = Correlator::new(settings());
        let mut clk = clock();
        let mut out = Rows::default();
        feed(&mut c, &mut clk, &text, &mut out);
        // The log goes on: everything is settled without an end of input.
        let mut got = feed(
            &mut c,
            &mut clk,
            "Nov  3 13:00:30 mail postfix/smtpd[9]: connect from x[192.0.2.50]",
            &mut out,
        );
        got.sort();
        assert_eq!(got, want, "{order:?}");
        for r in &out.smtp {
            assert_eq!(r.sender_ip.as_deref(), Some("192.0.2.5"), "{order:?}");
        }
        assert_eq!(c.in_flight(), 0, "{order:?}");
    }
}

#[test]
fn a_copy_whose_original_is_not_in_the_input_keeps_its_deliveries() {
    // The input starts after the original's client= and from=: only its
    // hand-off is there. The copy names its own sender.
    let (rows, c) = run("
        Nov  3 14:00:01 mail postfix/smtp[12]: FFFF01: to=<x@remote.test>, relay=127.0.0.1[127.0.0.1]:10025, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as FFFF02)
        Nov  3 14:00:01 mail postfix/qmgr[2]: FFFF01: removed
        Nov  3 14:00:01 mail postfix/smtpd[20]: FFFF02: client=localhost[127.0.0.1], orig_queue_id=FFFF01, orig_client=pc.example.net[192.0.2.7]
        Nov  3 14:00:01 mail postfix/qmgr[2]: FFFF02: from=<dave@cs.example.edu>, size=1, nrcpt=1 (queue active)
        Nov  3 14:00:02 mail postfix/smtp[13]: FFFF02: to=<x@remote.test>, relay=mx.remote.test[192.0.2.9]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 accepted)
        Nov  3 14:00:02 mail postfix/qmgr[2]: FFFF02: removed
    ");
    assert_eq!(count(&rows, "dave@cs.example.edu", Kind::Sent), 1);
    assert_eq!(rows.len(), 1);
    // The hand-off was followed, not counted, and nothing was lost.
    assert_eq!(
        c.stats.unattributed.total(),
        0,
        "{:?}",
        c.stats.unattributed
    );
    assert_eq!(c.stats.handoffs_waiting, 0);

    // Without any trace of the original.
    let (rows, _) = run("
        Nov  3 14:00:01 mail postfix/smtpd[20]: FFFF02: client=localhost[127.0.0.1], orig_queue_id=FFFF01, orig_client=pc.example.net[192.0.2.7]
        Nov  3 14:00:01 mail postfix/qmgr[2]: FFFF02: from=<dave@cs.example.edu>, size=1, nrcpt=1 (queue active)
        Nov  3 14:00:02 mail postfix/smtp[13]: FFFF02: to=<x@remote.test>, relay=mx.remote.test[192.0.2.9]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 accepted)
    ");
    assert_eq!(count(&rows, "dave@cs.example.edu", Kind::Sent), 1);
}

#[test]
fn one_wrong_clock_drops_nothing() {
    let mut c = Correlator::new(settings());
    let mut clk = clock();
    let mut out = Rows::default();
    let got = feed(&mut c, &mut clk, "
        Nov  3 15:00:00 mx1 postfix/submission/smtpd[1]: ABCD01: client=pc[192.0.2.5], sasl_method=PLAIN, sasl_username=alice@example.edu
        Nov  3 15:00:00 mx1 postfix/qmgr[2]: ABCD01: from=<alice@example.edu>, size=1, nrcpt=1 (queue active)
        Nov  3 15:00:01 mx1 postfix/smtp[3]: ABCD01: to=<a@slow.test>, relay=none, delay=1, delays=1/0/0/0, dsn=4.4.1, status=deferred (connect to slow.test[192.0.2.1]:25: Connection refused)
        2026-12-28T15:00:02+08:00 mx1 postfix/smtpd[9]: connect from x[192.0.2.9]
        2026-12-28T15:00:02+08:00 mx2 postfix/smtpd[9]: connect from x[192.0.2.9]
        2026-12-28T15:00:03+08:00 mx2 postfix/smtpd[9]: connect from x[192.0.2.9]
        2026-12-28T15:00:04+08:00 mx2 postfix/smtpd[9]: connect from x[192.0.2.9]
        2026-12-28T15:00:05+08:00 mx2 postfix/smtpd[9]: connect from x[192.0.2.9]
        Nov  3 15:10:01 mx1 postfix/qmgr[2]: ABCD01: from=<alice@example.edu>, size=1, nrcpt=1 (queue active)
        Nov  3 15:10:02 mx1 postfix/smtp[3]: ABCD01: to=<a@slow.test>, relay=slow.test[192.0.2.1]:25, delay=602, delays=600/0/1/1, dsn=2.0.0, status=sent (250 ok)
        Nov  3 15:10:02 mx1 postfix/qmgr[2]: ABCD01: removed
        Nov  3 15:10:30 mx1 postfix/smtpd[9]: connect from x[192.0.2.9]
    ", &mut out);
    let a = "alice@example.edu";
    assert_eq!(count(&got, a, Kind::Deferred), 1);
    assert_eq!(count(&got, a, Kind::Sent), 1);
    assert_eq!(
        c.stats.unattributed.total(),
        0,
        "{:?}",
        c.stats.unattributed
    );
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn what_has_no_mailbox_is_counted_by_cause() {
    let long = format!("{}@example.edu", "x".repeat(260));
    let (rows, c) = run(&format!("
        Nov  3 16:00:00 mail postfix/smtpd[8]: NOQUEUE: reject: RCPT from x[192.0.2.8]: 554 5.7.1 <a@example.edu>: Recipient address rejected; from=<spam@elsewhere.test> to=<a@example.edu> proto=ESMTP helo=<x>
        Nov  3 16:00:01 mail postfix/qmgr[2]: ABCE01: from=<>, size=3147, nrcpt=1 (queue active)
        Nov  3 16:00:01 mail postfix/local[5]: ABCE01: to=<alice@example.edu>, relay=local, delay=0.03, delays=0.01/0/0/0.02, dsn=2.0.0, status=sent (delivered to mailbox)
        Nov  3 16:00:01 mail postfix/qmgr[2]: ABCE01: removed
        Nov  3 16:00:02 mail postfix/smtp[5]: ABCE02: to=<z@r.test>, relay=r.test[192.0.2.1]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 ok)
        Nov  3 16:00:02 mail postfix/qmgr[2]: ABCE02: removed
        Nov  3 16:00:03 mail postfix/pickup[4]: ABCE03: uid=1000 from=<{long}>
        Nov  3 16:00:03 mail postfix/smtp[5]: ABCE03: to=<z@r.test>, relay=r.test[192.0.2.1]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 ok)
        Nov  3 16:00:03 mail postfix/qmgr[2]: ABCE03: removed
    "));
    assert!(rows.is_empty(), "{rows:?}");
    let u = &c.stats.unattributed;
    assert_eq!(
        (u.not_local, u.null_sender, u.sender_unseen, u.bad_address),
        (1, 1, 1, 1),
        "{u:?}"
    );
    // A line like a message's with a damaged queue ID is unrecognised, not
    // noise.
    let (_, c) = run(
        "Nov  3 16:00:02 mail postfix/smtp[5]: 7E1AEC2C388XXXX: to=<z@r.test>, relay=r.test[192.0.2.1]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 ok)",
    );
    assert_eq!(c.stats.lines_unrecognised, 1);
    assert_eq!(c.stats.lines_noise, 0);
}

#[test]
fn lines_read_again_add_no_row() {
    // The whole log, then its lines again up to the hand-offs (a copy of
    // the file taken earlier, say), then the log goes on.
    let lines: Vec<&str> = PMG
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut c = Correlator::new(settings());
    let mut clk = clock();
    let mut out = Rows::default();
    feed(&mut c, &mut clk, PMG, &mut out);
    c.finish(&mut out);
    let mut keys: Vec<(String, i64)> = out
        .smtp
        .iter()
        .map(|r| (r.mailbox.to_string(), r.key))
        .collect();
    keys.sort();
    keys.dedup();
    for cut in 1..=lines.len() {
        let mut c2 = Correlator::restore(settings(), &c.snapshot()).unwrap();
        let mut again = Rows::default();
        feed(&mut c2, &mut clk, &lines[..cut].join("\n"), &mut again);
        c2.finish(&mut again);
        feed(
            &mut c2,
            &mut clk,
            "Nov  3 11:30:00 mail postfix/smtpd[9]: connect from x[192.0.2.50]",
            &mut again,
        );
        for r in &again.smtp {
            assert!(
                keys.binary_search(&(r.mailbox.to_string(), r.key)).is_ok(),
                "cut {cut}: a new row {r:?}"
            );
        }
    }
}
