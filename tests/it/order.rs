//! What is stored does not depend on the order of lines within a few
//! seconds, on lines written twice, on lines read again, or on where an
//! ingest was stopped and resumed: a property over the real captures.
//!
//! Each case takes a capture, gives every line a random delay of up to
//! [`JITTER_US`] and reads the lines in the order of their stamp plus delay
//! (lines of the same second may change places with any other, lines
//! further apart keep their order), repeats some lines, and compares the
//! rows with those of the capture read as written. Rows are compared by
//! (mailbox, key), which is what the store keeps one of, and whole.
//! `PROPTEST_CASES` overrides the number of cases (1,000).

use std::collections::BTreeMap;
use std::path::Path;

use mailtrail::domain::LocalDomains;
use mailtrail::ingest::access::AccessRow;
use mailtrail::ingest::correlate::{Correlator, Row, Rows, Settings};
use mailtrail::ingest::envelope::Clock;
use proptest::prelude::*;

use crate::support::{dovecot, fixture};

/// How far apart in log time lines may change places.
const JITTER_US: u32 = 3_000_000;

fn settings() -> Settings {
    Settings {
        local: LocalDomains::new(&[".example.edu".into()], "example.edu"),
        internal_relays: vec!["127.0.0.1/32".parse().unwrap()],
        tz: chrono_tz::Asia::Taipei,
        webmail_networks: vec![],
        agent: "default".into(),
    }
}

/// One capture: its lines, each with its stamp, and the date its year-less
/// stamps are read against.
struct Capture {
    name: &'static str,
    lines: Vec<(i64, String)>,
    reference: chrono::NaiveDate,
}

impl Capture {
    fn load(name: &'static str, path: &Path) -> Capture {
        let text = std::fs::read_to_string(path).unwrap();
        let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
        let reference =
            mailtrail::ingest::source::reference_date(Some(mtime), chrono_tz::Asia::Taipei);
        let mut clock = Clock::new(chrono_tz::Asia::Taipei, reference, None);
        let mut last = 0;
        let lines = text
            .lines()
            .map(|l| {
                if let Ok(e) = clock.split(l.as_bytes()) {
                    last = e.time_us;
                }
                (last, l.to_owned())
            })
            .collect();
        Capture {
            name,
            lines,
            reference,
        }
    }

    fn clock(&self) -> Clock {
        Clock::new(chrono_tz::Asia::Taipei, self.reference, None)
    }
}

/// What the store keeps one row of: (mailbox, key).
type RowKey = (String, i64);

/// The rows of a run, by what the store keeps one of.
#[derive(Debug, Default, PartialEq)]
struct Stored {
    smtp: BTreeMap<RowKey, Row>,
    access: BTreeMap<RowKey, AccessRow>,
}

impl Stored {
    /// Files `rows`; with `same`, every row of a key already filed must be
    /// that row again (a line read twice gives the same row twice).
    fn file(&mut self, rows: &Rows, same: bool) -> Result<(), String> {
        for r in &rows.smtp {
            let k = (r.mailbox.to_string(), r.key);
            match self.smtp.get(&k) {
                Some(old) if same && old != r => {
                    return Err(format!("two rows for one key:\n{old:?}\n{r:?}"));
                }
                Some(_) => {}
                None => {
                    self.smtp.insert(k, r.clone());
                }
            }
        }
        for r in &rows.access {
            let k = (r.mailbox.to_string(), r.key);
            match self.access.get(&k) {
                Some(old) if same && old != r => {
                    return Err(format!("two access rows for one key:\n{old:?}\n{r:?}"));
                }
                Some(_) => {}
                None => {
                    self.access.insert(k, r.clone());
                }
            }
        }
        Ok(())
    }

    fn keys(&self) -> [Vec<&RowKey>; 2] {
        [self.smtp.keys().collect(), self.access.keys().collect()]
    }
}

/// Reads `lines` into `c` and ends the input; returns its rows.
fn read<'a>(c: &mut Correlator, clock: &mut Clock, lines: impl Iterator<Item = &'a str>) -> Rows {
    let mut out = Rows::default();
    for l in lines {
        c.feed(clock, l.as_bytes(), &mut out);
    }
    c.finish(&mut out);
    out
}

fn captures() -> &'static [Capture] {
    static C: std::sync::OnceLock<Vec<Capture>> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        vec![
            Capture::load("postfix", &fixture("mail.log")),
            Capture::load("dovecot", &dovecot("mail.log")),
        ]
    })
}

/// The rows of a capture read as written, once per capture.
fn baseline(i: usize) -> &'static Stored {
    static B: std::sync::OnceLock<Vec<Stored>> = std::sync::OnceLock::new();
    &B.get_or_init(|| {
        captures()
            .iter()
            .map(|cap| {
                let mut c = Correlator::new(settings());
                let rows = read(
                    &mut c,
                    &mut cap.clock(),
                    cap.lines.iter().map(|l| l.1.as_str()),
                );
                let mut s = Stored::default();
                s.file(&rows, true)
                    .unwrap_or_else(|e| panic!("{}: {e}", cap.name));
                assert!(!s.smtp.is_empty() || !s.access.is_empty());
                s
            })
            .collect::<Vec<_>>()
    })[i]
}

#[derive(Debug, Clone)]
struct Case {
    capture: usize,
    /// Per line: its delay, and whether it is written twice.
    jitter: Vec<(u32, bool)>,
    /// Where the ingest is stopped and resumed, and how many lines are
    /// read again afterwards, both as fractions of the capture.
    stop: f64,
    again: f64,
}

fn case() -> impl Strategy<Value = Case> {
    (0..captures().len()).prop_flat_map(|capture| {
        let n = captures()[capture].lines.len();
        (
            proptest::collection::vec((0..=JITTER_US, proptest::bool::weighted(0.05)), n),
            0.0..1.0f64,
            0.0..=1.0f64,
        )
            .prop_map(move |(jitter, stop, again)| Case {
                capture,
                jitter,
                stop,
                again,
            })
    })
}

fn check(case: &Case) -> Result<(), String> {
    let cap = &captures()[case.capture];
    let want = baseline(case.capture);
    // The lines as a syslog relay may deliver them.
    let mut shuffled: Vec<(i64, usize, &str)> = Vec::new();
    for (i, ((t, l), (j, twice))) in cap.lines.iter().zip(&case.jitter).enumerate() {
        shuffled.push((t + i64::from(*j), i, l));
        if *twice {
            // The repeat lands anywhere in the same window.
            let j2 = (j.wrapping_mul(2_654_435_761) ^ i as u32) % (JITTER_US + 1);
            shuffled.push((t + i64::from(j2), i, l));
        }
    }
    shuffled.sort_by_key(|s| (s.0, s.1));
    let lines: Vec<&str> = shuffled.iter().map(|s| s.2).collect();

    // Read with a stop and a resume from the saved state in between.
    let stop = ((lines.len() as f64) * case.stop) as usize;
    let mut clock = cap.clock();
    let mut c = Correlator::new(settings());
    let mut out = Rows::default();
    for l in &lines[..stop] {
        c.feed(&mut clock, l.as_bytes(), &mut out);
    }
    // As the parser thread does before it sends a batch with the state.
    c.seal(&mut out);
    let year = clock.year;
    let mut c = Correlator::restore(settings(), &c.snapshot()).map_err(|e| e.to_string())?;
    let mut clock = Clock::new(chrono_tz::Asia::Taipei, cap.reference, year);
    let rest = read(&mut c, &mut clock, lines[stop..].iter().copied());
    out.smtp.extend(rest.smtp);
    out.access.extend(rest.access);
    let mut got = Stored::default();
    got.file(&out, true)?;
    // The same rows as the capture read as written: no row lost, none
    // added, none different.
    if got.keys() != want.keys() {
        let missing: Vec<_> = want
            .smtp
            .keys()
            .filter(|k| !got.smtp.contains_key(*k))
            .collect();
        let extra: Vec<_> = got
            .smtp
            .iter()
            .filter(|(k, _)| !want.smtp.contains_key(*k))
            .collect();
        if std::env::var("ORDER_DUMP").is_ok() {
            std::fs::write(
                "/tmp/fail.txt",
                format!("stop {stop}\n{}", lines.join("\n")),
            )
            .unwrap();
        }
        return Err(format!(
            "{}: missing {missing:?}, extra {extra:?}",
            cap.name
        ));
    }
    for (k, r) in &got.smtp {
        if want.smtp[k] != *r {
            return Err(format!(
                "{}: row differs:\n{:?}\n{r:?}",
                cap.name, want.smtp[k]
            ));
        }
    }
    for (k, r) in &got.access {
        if want.access[k] != *r {
            return Err(format!(
                "{}: row differs:\n{:?}\n{r:?}",
                cap.name, want.access[k]
            ));
        }
    }

    // Lines already stored, read again from the start (a copy of the file
    // made earlier, behind another first line, so no checkpoint applies):
    // nothing new.
    let again = ((cap.lines.len() as f64) * case.again) as usize;
    let mut clock = cap.clock();
    let rows = read(
        &mut c,
        &mut clock,
        cap.lines[..again].iter().map(|l| l.1.as_str()),
    );
    let mut more = Stored::default();
    more.file(&rows, false)?;
    for k in more.smtp.keys() {
        if !want.smtp.contains_key(k) {
            return Err(format!("{}: read again, a new row {k:?}", cap.name));
        }
    }
    for k in more.access.keys() {
        if !want.access.contains_key(k) {
            return Err(format!("{}: read again, a new access row {k:?}", cap.name));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn order_repeats_and_rereading_change_nothing_stored(case in case()) {
        check(&case).map_err(TestCaseError::fail)?;
    }
}

/// The property would hold for a correlator that stored nothing: the
/// captures give rows, and the shuffle does move lines.
#[test]
fn the_property_has_something_to_hold_on() {
    for (i, cap) in captures().iter().enumerate() {
        let b = baseline(i);
        assert!(b.smtp.len() + b.access.len() > 10, "{}", cap.name);
        let same_second = cap
            .lines
            .windows(2)
            .filter(|w| w[0].0 / 1_000_000 == w[1].0 / 1_000_000)
            .count();
        assert!(
            same_second > cap.lines.len() / 4,
            "{}: lines share seconds",
            cap.name
        );
    }
}
