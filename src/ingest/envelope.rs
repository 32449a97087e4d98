//! The syslog envelope: splitting a line into time, host, program, pid and
//! message.
//!
//! Accepted envelopes, possibly mixed in one file, told apart by their first
//! byte (a letter, a digit, `@` or `<`):
//!
//! * classic syslog, no year, local time, day padded with a space, a zero or
//!   nothing: `Nov  3 10:40:57 mail postfix/smtpd[9708]: ...`
//!   (also Postfix's own `maillog_file` and journalctl `-o short`);
//! * RFC 3339 from rsyslog, any precision, `Z` or an offset that may change
//!   from line to line: `2026-11-23T09:41:17.336189+08:00 mail postfix/...`;
//! * journalctl `-o short-iso`, offset without a colon:
//!   `2026-11-23T09:41:17+0800 mail postfix/...`;
//! * an ISO date and time with no offset (after `T` or a space), local
//!   time: `2026-11-23 01:02:03 mail postfix/...`, and Dovecot's own file
//!   with such a `log_timestamp`;
//! * rsyslog's template with the year first, local time:
//!   `2013 Jun 10 06:28:18.123 gds39d postfix/smtp[16152]: ...`;
//! * Dovecot's own `log_path` file, which has no host:
//!   `Nov 23 00:41:17 imap-login: Info: ...`;
//! * multilog's TAI64N label (daemontools), with or without a host:
//!   `@400000004c91b044077a9e94 imap-login: Info: ...`;
//! * RFC 5424: `<22>1 2026-11-23T09:41:17.336189+08:00 mail postfix/smtpd 1181 - - ...`;
//! * any of the others behind a `<PRI>` prefix.
//!
//! Year-less stamps take their year from [`Clock`], which starts from a
//! reference date (a file's modification time) and steps the year forward
//! when the months wrap from December to January, never dating a stamp more
//! than a day after the reference date.
//!
//! A host over [`MAX_HOST`] bytes or a program over [`MAX_PROGRAM`] makes
//! the line unrecognised: no producer writes them, so they are junk or
//! mischief, and must not reach a row.

use chrono::{LocalResult, NaiveDate, Offset, TimeZone};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// One line's envelope. Slices borrow from the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The line's instant, microseconds since the Unix epoch (UTC).
    pub time_us: i64,
    /// The host that wrote the line; empty where the envelope names none
    /// (Dovecot's own log file, multilog, an RFC 5424 `-`).
    pub host: &'a [u8],
    /// The syslog tag without the pid: `postfix/submission/smtpd`, `dovecot`
    /// (empty for an RFC 5424 `-`).
    pub program: &'a [u8],
    /// The pid in `tag[pid]:`, when present.
    pub pid: Option<u32>,
    /// Everything after `tag[pid]: `.
    pub message: &'a [u8],
}

/// Why a line has no envelope (it is then counted as unrecognised).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeError {
    /// No timestamp in a known form at the start.
    Timestamp,
    /// A timestamp, but no `host tag: ` after it.
    Tag,
}

/// The longest host name: a DNS name is at most 255 bytes (RFC 1035), and
/// RFC 5424 allows no more in HOSTNAME.
pub const MAX_HOST: usize = 255;

/// The longest program (the tag without `[pid]`). Postfix sets no limit on
/// `syslog_name` (main.cf's table gives it a minimum length of 1 and no
/// maximum), but its tags are the admin's short names (`postfix`,
/// `postfix-239.58.50.50/qmgr`, `postfix-smo/submission/smtpd`); through
/// syslog Dovecot's is `dovecot`. The longest real ones are the first words
/// of Dovecot's own file: `imap(USER)<PID><SESSION>` with a mailbox name (at
/// most 254 bytes, RFC 5321's path less its brackets), about 300 bytes in
/// all, and `auth(USER,IP,sasl:MECH)<SESSION>`, whose USER Dovecot cuts to
/// 64 bytes. rsyslog, which writes most of these files, deems 512 bytes
/// far too large for any valid tag (`CONF_TAG_MAXSIZE`).
pub const MAX_PROGRAM: usize = 512;

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian).
pub fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y } as i64;
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
pub fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    ((if m <= 2 { y + 1 } else { y }) as i32, m, d)
}

#[inline]
fn digit(b: u8) -> Option<u32> {
    b.is_ascii_digit().then(|| (b - b'0') as u32)
}

#[inline]
fn two(s: &[u8], at: usize) -> Option<u32> {
    Some(digit(*s.get(at)?)? * 10 + digit(*s.get(at + 1)?)?)
}

/// `HH:MM:SS` at `at`, as seconds of the day.
#[inline]
fn hms(s: &[u8], at: usize) -> Option<u32> {
    if s.get(at + 2) != Some(&b':') || s.get(at + 5) != Some(&b':') {
        return None;
    }
    let (h, m, sec) = (two(s, at)?, two(s, at + 3)?, two(s, at + 6)?);
    (h < 24 && m < 60 && sec <= 60).then_some(h * 3600 + m * 60 + sec.min(59))
}

/// Optional `.fraction` at `at`: returns (microseconds, bytes used).
#[inline]
fn fraction(s: &[u8], at: usize) -> (u32, usize) {
    if s.get(at) != Some(&b'.') {
        return (0, 0);
    }
    let mut us = 0u32;
    let mut n = 0usize;
    while let Some(d) = s.get(at + 1 + n).and_then(|&b| digit(b)) {
        if n < 6 {
            us = us * 10 + d;
        }
        n += 1;
    }
    if n == 0 {
        return (0, 0);
    }
    for _ in n..6 {
        us *= 10;
    }
    (us, n + 1)
}

/// Year inference for one source, saved with the source's checkpoint so a
/// resumed ingest infers exactly what an uninterrupted one would.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct YearState {
    /// The year given to the last year-less stamp.
    pub year: i32,
    /// The month of the last year-less stamp (1-12).
    pub month: u32,
}

/// Converts stamps to instants for one source.
///
/// Keeps small caches keyed by the hour, because consecutive lines almost
/// always share it: the zone lookup then runs once an hour of log, not once a
/// line.
#[derive(Debug, Clone)]
pub struct Clock {
    tz: Tz,
    /// (year, month, day) a year-less stamp is never dated after: the day
    /// after the reference date (the file's modification time, or today for
    /// stdin). The day more allows for a host whose zone is ahead of the
    /// configured one, and for clocks a little off.
    limit: (i32, u32, u32),
    /// The year inference so far; `None` until the first year-less stamp.
    pub year: Option<YearState>,
    /// (days since epoch, hour) of local time → the zone's possible offsets
    /// then, in seconds (two in the repeated hour of autumn).
    local_cache: Option<((i64, u32), (i32, i32))>,
    /// The last instant produced, to choose inside a repeated hour.
    last_utc: i64,
    /// The last valid date seen and its day number.
    date_cache: Option<(i32, u32, u32, i64)>,
    /// The last classic stamp read, with the space after it, and its
    /// instant: a busy log writes many lines a second, and a line whose
    /// stamp is the same bytes has the same instant.
    last_stamp: Option<LastStamp>,
}

/// A classic stamp's bytes and the instant they were read as.
///
/// The bytes are held as two 16-byte words, the unused end zero, and
/// compared word by word with the start of a line, masked to the stamp's
/// length: inline, where comparing slices would call `memcmp` per line.
#[derive(Debug, Clone, Copy)]
struct LastStamp {
    words: [u128; 2],
    masks: [u128; 2],
    len: usize,
    time_us: i64,
}

impl LastStamp {
    /// `Nov  3 10:40:57.123456 ` is 23 bytes.
    const MAX: usize = 32;

    /// The first 32 bytes of `s` as two little-endian words, if it has as
    /// many.
    #[inline]
    fn words(s: &[u8]) -> Option<[u128; 2]> {
        let head: &[u8; 32] = s.get(..32)?.try_into().ok()?;
        let (lo, hi) = head.split_at(16);
        Some([
            u128::from_le_bytes(lo.try_into().ok()?),
            u128::from_le_bytes(hi.try_into().ok()?),
        ])
    }

    /// The stamp that `s` starts with, `len` bytes long, read as `time_us`.
    fn new(s: &[u8], len: usize, time_us: i64) -> Option<LastStamp> {
        if len > Self::MAX {
            return None;
        }
        // Little-endian: byte i of a word is bits 8i..8i+8.
        let mask = |bytes: usize| match bytes {
            0 => 0,
            16.. => u128::MAX,
            n => (1u128 << (8 * n)) - 1,
        };
        let masks = [mask(len.min(16)), mask(len.saturating_sub(16))];
        let [lo, hi] = Self::words(s)?;
        Some(LastStamp {
            words: [lo & masks[0], hi & masks[1]],
            masks,
            len,
            time_us,
        })
    }

    /// The stamp of `s` and the rest, if `s` starts with these bytes.
    #[inline]
    fn reuse<'a>(&self, s: &'a [u8]) -> Option<(i64, &'a [u8])> {
        let [lo, hi] = Self::words(s)?;
        (lo & self.masks[0] == self.words[0] && hi & self.masks[1] == self.words[1])
            .then(|| (self.time_us, &s[self.len..]))
    }
}

impl Clock {
    pub fn new(tz: Tz, reference: NaiveDate, year: Option<YearState>) -> Clock {
        use chrono::Datelike;
        let limit = reference.succ_opt().unwrap_or(reference);
        Clock {
            tz,
            limit: (limit.year(), limit.month(), limit.day()),
            year,
            local_cache: None,
            last_utc: i64::MIN,
            date_cache: None,
            last_stamp: None,
        }
    }

    /// The year for a year-less stamp in `month` (1-12), updating the
    /// inference: a jump back of six months or more is a new year (logs run
    /// forward; the December → January wrap is the only big backward step),
    /// a jump forward of six months or more is a late line from the year
    /// before.
    ///
    /// Whatever the steps say, a stamp is never dated after the reference
    /// date (a day allowed): the file was written by then. A line that
    /// would be is from the year before, and moves the inference nowhere. So
    /// a file whose months go back and forth (files merged by hand, a
    /// central syslog mixing late hosts) is not carried into a year it was
    /// never written in: `Dec` then `Jun` in a file modified in December is
    /// the June before, not the June after.
    fn year_for(&mut self, month: u32, day: u32) -> i32 {
        let limit = self.limit;
        // The latest year this stamp can be in.
        let top = if (limit.0, month, day) > limit {
            limit.0 - 1
        } else {
            limit.0
        };
        let Some(st) = self.year.as_mut() else {
            self.year = Some(YearState { year: top, month });
            return top;
        };
        if month + 6 <= st.month {
            if st.year < top {
                st.year += 1;
                st.month = month;
            }
            st.year.min(top)
        } else if month >= st.month + 6 {
            (st.year - 1).min(top)
        } else if st.year <= top {
            st.month = st.month.max(month);
            st.year
        } else {
            top
        }
    }

    /// Local civil time in the configured zone → UTC seconds.
    fn local_to_utc(&mut self, days: i64, secs_of_day: u32) -> i64 {
        let hour = secs_of_day / 3600;
        let offsets = match self.local_cache {
            Some((k, o)) if k == (days, hour) => o,
            _ => {
                let o = self.zone_offsets(days, hour);
                self.local_cache = Some(((days, hour), o));
                o
            }
        };
        let local = days * 86_400 + secs_of_day as i64;
        let early = local - offsets.0 as i64;
        let late = local - offsets.1 as i64;
        // In the repeated autumn hour, prefer the earlier instant unless that
        // would step back more than half an hour from the previous line: then
        // the clock has already gone round the second time.
        let utc = if early != late && early < self.last_utc.saturating_sub(1800) {
            late
        } else {
            early
        };
        self.last_utc = utc;
        utc
    }

    fn zone_offsets(&self, days: i64, hour: u32) -> (i32, i32) {
        let (y, m, d) = civil_from_days(days);
        let Some(naive) = NaiveDate::from_ymd_opt(y, m, d).and_then(|d| d.and_hms_opt(hour, 30, 0))
        else {
            return (0, 0);
        };
        match self.tz.from_local_datetime(&naive) {
            LocalResult::Single(t) => {
                let o = t.offset().fix().local_minus_utc();
                (o, o)
            }
            LocalResult::Ambiguous(a, b) => (
                a.offset().fix().local_minus_utc(),
                b.offset().fix().local_minus_utc(),
            ),
            // The hour skipped in spring: the stamp cannot exist; read it with
            // the offset from before the change (so it lands an hour later).
            LocalResult::None => {
                let before = naive - chrono::Duration::hours(1);
                let o = self
                    .tz
                    .from_local_datetime(&before)
                    .earliest()
                    .map(|t| t.offset().fix().local_minus_utc())
                    .unwrap_or(0);
                (o, o)
            }
        }
    }

    /// Splits a line into its envelope.
    pub fn split<'a>(&mut self, line: &'a [u8]) -> Result<Envelope<'a>, EnvelopeError> {
        let mut s = line;
        // `<PRI>` from network syslog, then RFC 5424 (a version and a
        // space) or one of the other envelopes.
        if s.first() == Some(&b'<')
            && let Some(end) = s.iter().take(5).position(|&b| b == b'>')
            && end > 1
            && s[1..end].iter().all(u8::is_ascii_digit)
        {
            s = &s[end + 1..];
            if let Some(version) = rfc5424_version(s) {
                return self.rfc5424(&s[version..]);
            }
        }
        let (time_us, rest) = match s.first() {
            // `2013 Jun 10 ...` has a space after its year, ISO a `-`.
            Some(b'0'..=b'9') if s.get(4) == Some(&b' ') => self.year_first_stamp(s)?,
            Some(b'0'..=b'9') => self.iso_stamp(s, true)?,
            Some(b'@') => self.tai64n_stamp(s)?,
            _ => match self.last_stamp.and_then(|l| l.reuse(s)) {
                // Reading it again would change nothing: the year inference
                // and the choice in a repeated hour give what they gave.
                Some(same) => same,
                None => {
                    let (time_us, rest) = self.classic_stamp(s)?;
                    self.last_stamp = LastStamp::new(s, s.len() - rest.len(), time_us);
                    (time_us, rest)
                }
            },
        };
        split_tag(rest).map(|(host, program, pid, message)| Envelope {
            time_us,
            host,
            program,
            pid,
            message,
        })
    }

    /// `Nov  3 10:40:57 rest` → (instant, rest).
    fn classic_stamp<'a>(&mut self, s: &'a [u8]) -> Result<(i64, &'a [u8]), EnvelopeError> {
        let (month, day, secs, us, len) = month_day_time(s).ok_or(EnvelopeError::Timestamp)?;
        let year = self.year_for(month, day);
        let time_us = self.local_instant(year, month, day, secs, us)?;
        Ok((time_us, &s[len..]))
    }

    /// `2013 Jun 10 06:28:18.123 rest` → (instant, rest): an rsyslog
    /// template with the year first, in local time. From a real log:
    /// `2013 Jun 10 06:28:18.123 gds39d postfix/smtp[16152]: 7E1AEC2C388XXXX: to=<k0i3u1e0v4@f1eh43i4.e0f>, relay=none, delay=71766, delays=71766/0.01/0.29/0, dsn=4.4.1, status=deferred (connect to michaela.com[176.74.176.167]:25: Connection refused)`
    fn year_first_stamp<'a>(&mut self, s: &'a [u8]) -> Result<(i64, &'a [u8]), EnvelopeError> {
        let err = EnvelopeError::Timestamp;
        let year = (two(s, 0).ok_or(err)? * 100 + two(s, 2).ok_or(err)?) as i32;
        let after_year = s.get(5..).ok_or(err)?;
        let (month, day, secs, us, len) = month_day_time(after_year).ok_or(err)?;
        let time_us = self.local_instant(year, month, day, secs, us)?;
        Ok((time_us, &after_year[len..]))
    }

    /// A civil time in the configured zone → µs since the epoch; `Err` for
    /// a date that does not exist (`Feb 30`, `Feb 29` of a common year).
    #[inline]
    fn local_instant(
        &mut self,
        year: i32,
        month: u32,
        day: u32,
        secs: u32,
        us: u32,
    ) -> Result<i64, EnvelopeError> {
        let days = match self.date_cache {
            Some((y, m, d, days)) if (y, m, d) == (year, month, day) => days,
            _ => {
                if NaiveDate::from_ymd_opt(year, month, day).is_none() {
                    return Err(EnvelopeError::Timestamp);
                }
                let days = days_from_civil(year, month, day);
                self.date_cache = Some((year, month, day, days));
                days
            }
        };
        Ok(self.local_to_utc(days, secs) * 1_000_000 + us as i64)
    }

    /// `2026-11-23T09:41:17[.ffffff](Z|+08:00|+0800) rest` → (instant, rest).
    /// With `offset_optional`, the offset may be missing (`2026-11-23 01:02:03 rest`
    /// or `2026-11-23T01:02:03 rest`): local time in the configured zone, as
    /// ISO 8601 reads a time with no zone.
    #[inline]
    fn iso_stamp<'a>(
        &mut self,
        s: &'a [u8],
        offset_optional: bool,
    ) -> Result<(i64, &'a [u8]), EnvelopeError> {
        let err = EnvelopeError::Timestamp;
        if s.len() < 20 || s[4] != b'-' || s[7] != b'-' || !(s[10] == b'T' || s[10] == b' ') {
            return Err(err);
        }
        let year = (two(s, 0).ok_or(err)? * 100 + two(s, 2).ok_or(err)?) as i32;
        let (month, day) = (two(s, 5).ok_or(err)?, two(s, 8).ok_or(err)?);
        if NaiveDate::from_ymd_opt(year, month, day).is_none() {
            return Err(err);
        }
        let secs = hms(s, 11).ok_or(err)?;
        let (us, flen) = fraction(s, 19);
        let mut i = 19 + flen;
        let offset: i64 = match s.get(i) {
            Some(b'Z') => {
                i += 1;
                0
            }
            Some(&sign @ (b'+' | b'-')) => {
                let h = two(s, i + 1).ok_or(err)?;
                let (m, len) = if s.get(i + 3) == Some(&b':') {
                    (two(s, i + 4).ok_or(err)?, 6)
                } else {
                    (two(s, i + 3).ok_or(err)?, 5)
                };
                i += len;
                let o = (h * 3600 + m * 60) as i64;
                if sign == b'-' { -o } else { o }
            }
            // Dovecot's own file with `log_timestamp = "%Y-%m-%d %H:%M:%S "`:
            // `2013-08-11 03:56:40 auth-worker(default): Info: pam(username,1.2.3.4): pam_authenticate() failed: Authentication failure (password mismatch?)`
            Some(b' ') if offset_optional => {
                let time_us = self.local_instant(year, month, day, secs, us)?;
                return Ok((time_us, &s[i + 1..]));
            }
            _ => return Err(err),
        };
        if s.get(i) != Some(&b' ') {
            return Err(err);
        }
        let local = days_from_civil(year, month, day) * 86_400 + secs as i64;
        let utc = local - offset;
        self.last_utc = utc;
        Ok((utc * 1_000_000 + us as i64, &s[i + 1..]))
    }

    /// `@` and a TAI64N label, then a space → (instant, rest). multilog
    /// (daemontools), from fail2ban's Dovecot sample:
    /// `@400000004c91b044077a9e94 imap-login: Info: Aborted login (auth failed, 1 attempts): user=<martin@waschbuesch.de>, method=CRAM-MD5, rip=80.187.101.33, lip=80.254.129.240, TLS`
    ///
    /// The label is 16 hex digits of TAI64 seconds and 8 of nanoseconds.
    /// multilog takes the seconds as 2^62 + 10 + Unix time (daemontools'
    /// `tai_now`), with no leap-second table, so taking as much away gives
    /// the Unix time back exactly. A producer that does count leap seconds
    /// (s6-log, on skalibs' default of a system clock in UTC) writes labels
    /// 37 s past 2^62 + Unix time since 2017: those read 27 s late.
    fn tai64n_stamp<'a>(&mut self, s: &'a [u8]) -> Result<(i64, &'a [u8]), EnvelopeError> {
        let err = EnvelopeError::Timestamp;
        if s.get(25) != Some(&b' ') {
            return Err(err);
        }
        let (label, nanos) = (hex(&s[1..17]).ok_or(err)?, hex(&s[17..25]).ok_or(err)?);
        let unix = label
            .checked_sub(TAI64_UNIX_EPOCH)
            .filter(|&u| u <= MAX_UNIX_SECS)
            .ok_or(err)? as i64;
        if nanos >= 1_000_000_000 {
            return Err(err);
        }
        self.last_utc = unix;
        Ok((unix * 1_000_000 + (nanos / 1000) as i64, &s[26..]))
    }

    /// RFC 5424 after `<PRI>VERSION `: `TIMESTAMP HOSTNAME APP-NAME PROCID
    /// MSGID STRUCTURED-DATA [MSG]`. What rsyslog forwards for Postfix:
    /// `<22>1 2026-11-23T09:41:17.336189+08:00 mail postfix/smtpd 1181 - - 520C9C0192: client=pmghost.mydomain.tld[192.168.1.1]`
    ///
    /// `-` stands for a header field with no value; a timestamp with none
    /// has no time, and the line is unrecognised. Structured data is
    /// skipped; PROCID is the pid when it is a number.
    fn rfc5424<'a>(&mut self, s: &'a [u8]) -> Result<Envelope<'a>, EnvelopeError> {
        // The timestamp is RFC 3339 with its `T` and an offset.
        if s.get(10) != Some(&b'T') {
            return Err(EnvelopeError::Timestamp);
        }
        let (time_us, rest) = self.iso_stamp(s, false)?;
        // The RFC's own limits for each field.
        let (host, rest) = header_field(rest, MAX_HOST)?;
        let (program, rest) = header_field(rest, 48)?;
        let (procid, rest) = header_field(rest, 128)?;
        let (_msgid, rest) = header_field(rest, 32)?;
        let message = match skip_structured_data(rest)? {
            [] => &[][..],
            // rsyslog's RSYSLOG_SyslogProtocol23Format writes the space of
            // the message it relays too (`- - -  test`), and a UTF-8 MSG
            // starts with a BOM.
            [b' ', msg @ ..] => {
                let msg = &msg[msg.iter().take_while(|&&b| b == b' ').count()..];
                msg.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(msg)
            }
            _ => return Err(EnvelopeError::Tag),
        };
        Ok(Envelope {
            time_us,
            host,
            program,
            pid: pid(procid),
            message,
        })
    }
}

/// 2^62 + 10: the TAI64 label of the Unix epoch as multilog counts.
const TAI64_UNIX_EPOCH: u64 = (1 << 62) + 10;

/// 9999-12-31T23:59:59Z, the last second an ISO stamp can write.
const MAX_UNIX_SECS: u64 = 253_402_300_799;

/// `Nov  3 10:40:57[.ffffff] ` at the start of `s` → (month, day, seconds
/// of the day, µs, length with the space). Always inlined: with two
/// callers the compiler made it a call on the classic path.
#[inline(always)]
fn month_day_time(s: &[u8]) -> Option<(u32, u32, u32, u32, usize)> {
    let mon = s.get(..3)?;
    let month = MONTHS.iter().position(|m| m[..] == *mon)? as u32 + 1;
    let mut i = 3;
    while s.get(i) == Some(&b' ') && i < 5 {
        i += 1;
    }
    if i == 3 {
        return None;
    }
    let mut day = digit(*s.get(i)?)?;
    i += 1;
    if let Some(d) = s.get(i).and_then(|&b| digit(b)) {
        day = day * 10 + d;
        i += 1;
    }
    if s.get(i) != Some(&b' ') || day == 0 || day > 31 {
        return None;
    }
    let secs = hms(s, i + 1)?;
    let (us, flen) = fraction(s, i + 9);
    let after = i + 9 + flen;
    if s.get(after) != Some(&b' ') {
        return None;
    }
    Some((month, day, secs, us, after + 1))
}

/// Hex digits, either case, as a number (16 digits at most fit).
fn hex(s: &[u8]) -> Option<u64> {
    s.iter().try_fold(0u64, |n, &b| {
        let d = (b as char).to_digit(16)?;
        Some(n << 4 | d as u64)
    })
}

/// A pid of 1 to 9 digits (more might not fit a `u32`).
#[inline]
fn pid(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    digits.iter().try_fold(0u32, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + (b - b'0') as u32)
    })
}

/// The length of RFC 5424's `VERSION ` at the start of `s`: 1 to 3 digits,
/// the first not 0, and a space. (Any other envelope after `<PRI>` starts
/// with a letter, `@`, or a year of four digits.)
fn rfc5424_version(s: &[u8]) -> Option<usize> {
    if !matches!(s.first(), Some(b'1'..=b'9')) {
        return None;
    }
    let n = s.iter().take(4).position(|b| !b.is_ascii_digit())?;
    (s[n] == b' ').then_some(n + 1)
}

/// An RFC 5424 header field and the space after it: 1 to `max` printable
/// ASCII bytes, `-` for none (read as empty) → (value, rest).
fn header_field(s: &[u8], max: usize) -> Result<(&[u8], &[u8]), EnvelopeError> {
    let err = EnvelopeError::Tag;
    let end = s.iter().take(max + 1).position(|&b| b == b' ').ok_or(err)?;
    let value = &s[..end];
    if end == 0 || !value.iter().all(u8::is_ascii_graphic) {
        return Err(err);
    }
    Ok((if value == b"-" { &[][..] } else { value }, &s[end + 1..]))
}

/// Skips RFC 5424 STRUCTURED-DATA: `-`, or one or more `[ID NAME="VALUE"
/// ...]`, where a value escapes `"`, `\` and `]` with a backslash. → the
/// rest after it. From util-linux `logger --rfc5424` (2.38.1):
/// `<13>1 2026-12-07T04:16:58.251299+00:00 vm postfix/smtpd 1181 - [timeQuality tzKnown="1" isSynced="0"][origin@32473 note="say \"hi\", a \\ and a \]"] 520C9C0192: client=pmghost.mydomain.tld[192.168.1.1]`
fn skip_structured_data(s: &[u8]) -> Result<&[u8], EnvelopeError> {
    let err = EnvelopeError::Tag;
    match s.first() {
        Some(b'-') => return Ok(&s[1..]),
        Some(b'[') => {}
        _ => return Err(err),
    }
    let mut i = 0;
    while s.get(i) == Some(&b'[') {
        i = sd_name(s, i + 1)?;
        loop {
            match s.get(i) {
                Some(b']') => {
                    i += 1;
                    break;
                }
                Some(b' ') => {
                    i = sd_name(s, i + 1)?;
                    if s.get(i) != Some(&b'=') || s.get(i + 1) != Some(&b'"') {
                        return Err(err);
                    }
                    i += 2;
                    loop {
                        match s.get(i) {
                            Some(b'"') => break,
                            // A backslash before anything else is itself.
                            Some(b'\\') if matches!(s.get(i + 1), Some(b'"' | b'\\' | b']')) => {
                                i += 2
                            }
                            Some(_) => i += 1,
                            None => return Err(err),
                        }
                    }
                    i += 1;
                }
                _ => return Err(err),
            }
        }
    }
    Ok(&s[i..])
}

/// An SD-NAME starting at `at`: 1 to 32 printable ASCII bytes other than
/// `=`, `]` and `"` → where it ends.
fn sd_name(s: &[u8], at: usize) -> Result<usize, EnvelopeError> {
    let name = s.get(at..).unwrap_or_default();
    match name
        .iter()
        .take(33)
        .position(|&b| !b.is_ascii_graphic() || matches!(b, b'=' | b']' | b'"'))
    {
        Some(n @ 1..=32) => Ok(at + n),
        _ => Err(EnvelopeError::Tag),
    }
}

/// Maps instants to local days (`YYYYMMDD`) in the configured zone.
///
/// Caches the zone's offset per UTC hour: offsets change at most a few times a
/// year, and consecutive events share the hour.
#[derive(Debug, Clone)]
pub struct LocalDays {
    tz: Tz,
    /// UTC hour number → offset in seconds.
    cache: Option<(i64, i64)>,
    /// Last (local day number, `YYYYMMDD`).
    day_cache: Option<(i64, i32)>,
}

impl LocalDays {
    pub fn new(tz: Tz) -> LocalDays {
        LocalDays {
            tz,
            cache: None,
            day_cache: None,
        }
    }

    /// The offset of the zone at `utc_secs`, in seconds.
    pub fn offset_at(&mut self, utc_secs: i64) -> i64 {
        let hour = utc_secs.div_euclid(3600);
        match self.cache {
            Some((h, o)) if h == hour => o,
            _ => {
                let o = chrono::DateTime::from_timestamp(utc_secs, 0)
                    .map(|t| {
                        self.tz
                            .offset_from_utc_datetime(&t.naive_utc())
                            .fix()
                            .local_minus_utc() as i64
                    })
                    .unwrap_or(0);
                self.cache = Some((hour, o));
                o
            }
        }
    }

    /// The local day of an instant given in microseconds, as `YYYYMMDD`.
    pub fn day_key(&mut self, time_us: i64) -> i32 {
        let secs = time_us.div_euclid(1_000_000);
        let local_day = (secs + self.offset_at(secs)).div_euclid(86_400);
        match self.day_cache {
            Some((d, k)) if d == local_day => k,
            _ => {
                let (y, m, d) = civil_from_days(local_day);
                let k = y * 10_000 + m as i32 * 100 + d as i32;
                self.day_cache = Some((local_day, k));
                k
            }
        }
    }
}

/// `host tag[pid]: message` (or `tag: message` with no host) →
/// (host, program, pid, message). A host over [`MAX_HOST`] bytes or a
/// program over [`MAX_PROGRAM`] is an error.
#[allow(clippy::type_complexity)]
fn split_tag(s: &[u8]) -> Result<(&[u8], &[u8], Option<u32>, &[u8]), EnvelopeError> {
    let err = EnvelopeError::Tag;
    // Host and tag are a few bytes each: a plain loop finds their ends
    // sooner than `memchr`, which pays off only on longer spans.
    let space = |b: &[u8]| b.iter().position(|&c| c == b' ');
    let sp = space(s).ok_or(err)?;
    let first = &s[..sp];
    if first.is_empty() {
        return Err(err);
    }
    // A first word ending in ':' is a tag with no host before it (Dovecot's
    // log_path file); hostnames never end in ':'.
    let (host, tag, message) = if first.ends_with(b":") {
        (&s[..0], &first[..first.len() - 1], &s[sp + 1..])
    } else {
        // The tag holds no space, so it ends at the next one, which must
        // follow its colon. The host's length is checked here, where it is
        // known anyway: this is the hot path.
        let rest = &s[sp + 1..];
        let end = space(rest).ok_or(err)?;
        if end < 2 || rest[end - 1] != b':' || sp > MAX_HOST {
            return Err(err);
        }
        (first, &rest[..end - 1], &rest[end + 1..])
    };
    let (program, pid) = match tag.split_last() {
        Some((b']', inner)) => match inner.iter().rposition(|&c| c == b'[') {
            Some(open) => (&inner[..open], pid(&inner[open + 1..])),
            None => (tag, None),
        },
        _ => (tag, None),
    };
    if program.is_empty() || program.len() > MAX_PROGRAM {
        return Err(err);
    }
    Ok((host, program, pid, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn clock(reference: &str) -> Clock {
        Clock::new(
            chrono_tz::Asia::Taipei,
            NaiveDate::parse_from_str(reference, "%Y-%m-%d").unwrap(),
            None,
        )
    }

    fn iso(us: i64) -> String {
        DateTime::<Utc>::from_timestamp_micros(us)
            .unwrap()
            .to_rfc3339()
    }

    #[test]
    fn civil_round_trip() {
        for z in [-1_000_000i64, -1, 0, 1, 10_957, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn classic_padding_variants() {
        let mut c = clock("2026-11-23");
        for line in [
            "Nov  3 10:40:57 mail postfix/smtpd[9708]: connect from x[1.2.3.4]",
            "Nov 03 10:40:57 mail postfix/smtpd[9708]: connect from x[1.2.3.4]",
            "Nov 3 10:40:57 mail postfix/smtpd[9708]: connect from x[1.2.3.4]",
        ] {
            let e = c.split(line.as_bytes()).unwrap();
            assert_eq!(iso(e.time_us), "2026-11-03T02:40:57+00:00", "{line}");
            assert_eq!(e.host, b"mail");
            assert_eq!(e.program, b"postfix/smtpd");
            assert_eq!(e.pid, Some(9708));
            assert_eq!(e.message, b"connect from x[1.2.3.4]");
        }
    }

    #[test]
    fn year_is_inferred_from_reference_and_rolls_over() {
        // A file written until early January holds December lines of the
        // year before, then January lines.
        let mut c = clock("2027-01-02");
        let a = c
            .split(b"Dec 31 23:59:59 mail postfix/qmgr[1]: X: removed")
            .unwrap();
        assert_eq!(iso(a.time_us), "2026-12-31T15:59:59+00:00");
        let b = c
            .split(b"Jan  1 00:00:01 mail postfix/qmgr[1]: X: removed")
            .unwrap();
        assert_eq!(iso(b.time_us), "2026-12-31T16:00:01+00:00");
        // A December line a second late stays in the old year.
        let late = c
            .split(b"Dec 31 23:59:58 mail postfix/qmgr[1]: X: removed")
            .unwrap();
        assert_eq!(iso(late.time_us), "2026-12-31T15:59:58+00:00");
        let d = c
            .split(b"Jan  1 00:00:02 mail postfix/qmgr[1]: X: removed")
            .unwrap();
        assert_eq!(iso(d.time_us), "2026-12-31T16:00:02+00:00");
        assert_eq!(
            c.year,
            Some(YearState {
                year: 2027,
                month: 1
            })
        );
    }

    #[test]
    fn a_stamp_repeated_reads_as_it_did() {
        // Lines through a repeated hour (Europe/Berlin falls back on
        // 2026-10-25) and a new year, each once and each twice in a row:
        // the second reading of a stamp comes from the last-stamp cache and
        // must change nothing.
        let lines = [
            "Oct 25 02:10:00 mail postfix/qmgr[1]: X: removed",
            "Oct 25 02:50:00 mail postfix/qmgr[1]: X: removed",
            "Oct 25 02:10:00 mail postfix/qmgr[1]: X: removed",
            "Oct 25 02:10:00.5 mail postfix/qmgr[1]: X: removed",
            "Oct 25 03:00:00 mail postfix/qmgr[1]: X: removed",
            "Dec 31 23:59:59 mail postfix/qmgr[1]: X: removed",
            "Jan  1 00:00:01 mail postfix/qmgr[1]: X: removed",
            "Dec 31 23:59:58 mail postfix/qmgr[1]: X: removed",
            "Jan  1 00:00:01 mail postfix/qmgr[1]: X: removed",
            // Shorter than the stamp cache looks at.
            "Jan  1 00:00:01 h p: m",
        ];
        let read = |twice: bool| {
            // Written until the day after its last line.
            let mut c = Clock::new(
                chrono_tz::Europe::Berlin,
                NaiveDate::from_ymd_opt(2027, 1, 2).unwrap(),
                None,
            );
            let mut out = Vec::new();
            for l in lines {
                let e = c.split(l.as_bytes()).unwrap();
                out.push((e.time_us, e.host.to_vec(), e.message.to_vec()));
                if twice {
                    let again = c.split(l.as_bytes()).unwrap();
                    assert_eq!(again.time_us, e.time_us, "{l}");
                    assert_eq!(again.message, e.message, "{l}");
                }
            }
            (out, c.year)
        };
        let (once, year_once) = read(false);
        assert_eq!(read(true), (once.clone(), year_once));
        assert_eq!(iso(once[2].0), "2026-10-25T01:10:00+00:00");
        assert_eq!(iso(once[3].0), "2026-10-25T01:10:00.500+00:00");
        assert_eq!(iso(once[6].0), "2026-12-31T23:00:01+00:00");
        // A different line with the stamp of the last one is split anew
        // after the stamp.
        let mut c = clock("2026-11-23");
        c.split(b"Nov  3 10:40:57 mail postfix/qmgr[1]: X: removed")
            .unwrap();
        let e = c
            .split(b"Nov  3 10:40:57 other dovecot: imap-login: x")
            .unwrap();
        assert_eq!((e.host, e.program), (&b"other"[..], &b"dovecot"[..]));
        assert_eq!(iso(e.time_us), "2026-11-03T02:40:57+00:00");
    }

    #[test]
    fn rfc3339_with_changing_offsets() {
        let mut c = clock("2026-11-23");
        let lines = [
            (
                "2023-06-23T14:26:29.336189+02:00 pmg1 postfix/smtpd[1181]: 520C9C0192: client=a[192.168.1.1]",
                "2023-06-23T12:26:29.336189+00:00",
            ),
            (
                "2023-06-23T14:27:40.550799Z pmg1 postfix/smtpd[1181]: 866B7C0192: client=a[192.168.1.1]",
                "2023-06-23T14:27:40.550799+00:00",
            ),
            (
                "2023-06-23T14:28:23.806755-02:00 pmg1 postfix/smtpd[1181]: C4EC9C0192: client=a[192.168.1.1]",
                "2023-06-23T16:28:23.806755+00:00",
            ),
            (
                "2023-09-08T17:20:30+0200 host postfix/qmgr[5]: X: removed",
                "2023-09-08T15:20:30+00:00",
            ),
            (
                "2026-11-23T09:41:17.123+08:00 mail postfix/qmgr[5]: X: removed",
                "2026-11-23T01:41:17.123+00:00",
            ),
        ];
        for (line, want) in lines {
            let e = c.split(line.as_bytes()).unwrap();
            assert_eq!(iso(e.time_us), want, "{line}");
        }
    }

    #[test]
    fn dovecot_own_file_has_no_host() {
        let mut c = clock("2026-11-23");
        let e = c
            .split(b"Jan 29 09:33:58 pop3-login: Info: Aborted login (auth failed, 1 attempts in 2 secs): user=<grace>")
            .unwrap();
        assert_eq!(e.host, b"");
        assert_eq!(e.program, b"pop3-login");
        assert_eq!(e.pid, None);
        assert!(e.message.starts_with(b"Info: Aborted"));
    }

    #[test]
    fn pri_prefix_and_garbage() {
        let mut c = clock("2026-11-23");
        let e = c
            .split(b"<22>Feb  2 09:47:12 mail dovecot: imap-login: Login: user=<a>")
            .unwrap();
        assert_eq!(e.program, b"dovecot");
        for bad in [
            &b""[..],
            b"\x00\xff\xfe garbage",
            b"Foo  2 09:47:12 mail x: y",
            b"Nov 32 09:47:12 mail x: y",
            b"Nov  2 25:47:12 mail x: y",
            b"Nov  2 09:47:12",
            b"Nov  2 09:47:12 mail",
            b"Feb 30 09:47:12 mail x: y",
            b"2026-13-01T00:00:00Z mail x: y",
            b"2026-11-01T00:00:00+08 mail x: y",
        ] {
            assert!(c.split(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        // No offset after `T`: local time, as ISO 8601 reads it.
        let e = c.split(b"2026-11-01T00:00:00 mail x: y").unwrap();
        assert_eq!(iso(e.time_us), "2026-10-31T16:00:00+00:00");
        assert_eq!((e.host, e.program), (&b"mail"[..], &b"x"[..]));
    }

    #[test]
    fn dst_in_a_zone_that_has_it() {
        // Europe/Berlin falls back on 2026-10-25: 02:30 happens twice.
        let mut c = Clock::new(
            chrono_tz::Europe::Berlin,
            NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            None,
        );
        let t = |c: &mut Clock, s: &str| iso(c.split(s.as_bytes()).unwrap().time_us);
        assert_eq!(
            t(&mut c, "Oct 25 02:10:00 h p: m"),
            "2026-10-25T00:10:00+00:00"
        );
        assert_eq!(
            t(&mut c, "Oct 25 02:50:00 h p: m"),
            "2026-10-25T00:50:00+00:00"
        );
        // The clock went back: 02:10 again is the later instant.
        assert_eq!(
            t(&mut c, "Oct 25 02:10:00 h p: m"),
            "2026-10-25T01:10:00+00:00"
        );
        assert_eq!(
            t(&mut c, "Oct 25 03:00:00 h p: m"),
            "2026-10-25T02:00:00+00:00"
        );
        // Spring forward 2026-03-29: 02:30 does not exist.
        let mut c = Clock::new(
            chrono_tz::Europe::Berlin,
            NaiveDate::from_ymd_opt(2026, 4, 1).unwrap(),
            None,
        );
        assert_eq!(
            t(&mut c, "Mar 29 01:59:00 h p: m"),
            "2026-03-29T00:59:00+00:00"
        );
        assert_eq!(
            t(&mut c, "Mar 29 03:00:00 h p: m"),
            "2026-03-29T01:00:00+00:00"
        );
    }

    /// Splits `line` twice, as a file repeating a stamp would have it read:
    /// the second reading (from the stamp cache, for classic stamps) must
    /// agree with the first. → the instant, as RFC 3339 in UTC.
    fn at(c: &mut Clock, line: &str) -> String {
        let e = c
            .split(line.as_bytes())
            .unwrap_or_else(|e| panic!("{line}: {e:?}"));
        let again = c.split(line.as_bytes()).unwrap();
        assert_eq!(again.time_us, e.time_us, "{line}");
        iso(e.time_us)
    }

    #[test]
    fn a_year_less_stamp_is_never_after_the_file() {
        // Files merged by hand, the whole modified in December: December,
        // then June and July, then December again. The summer is the one
        // before, not the next one, and moves the inference nowhere.
        let mut c = clock("2026-12-20");
        let r = "mail postfix/qmgr[1]: X: removed";
        assert_eq!(
            at(&mut c, &format!("Dec  1 12:00:00 {r}")),
            "2026-12-01T04:00:00+00:00"
        );
        assert_eq!(
            at(&mut c, &format!("Jun  5 12:00:00 {r}")),
            "2026-06-05T04:00:00+00:00"
        );
        assert_eq!(
            at(&mut c, &format!("Jul  1 12:00:00 {r}")),
            "2026-07-01T04:00:00+00:00"
        );
        assert_eq!(
            at(&mut c, &format!("Dec  2 12:00:00 {r}")),
            "2026-12-02T04:00:00+00:00"
        );
        assert_eq!(
            c.year,
            Some(YearState {
                year: 2026,
                month: 12
            })
        );

        // Months ahead of the file's date with no wrap between: a late
        // host's lines from the year before.
        let mut c = clock("2026-03-10");
        assert_eq!(
            at(&mut c, &format!("Mar  1 12:00:00 {r}")),
            "2026-03-01T04:00:00+00:00"
        );
        assert_eq!(
            at(&mut c, &format!("Jun  5 12:00:00 {r}")),
            "2025-06-05T04:00:00+00:00"
        );
        assert_eq!(
            at(&mut c, &format!("Mar  2 12:00:00 {r}")),
            "2026-03-02T04:00:00+00:00"
        );
        assert_eq!(
            c.year,
            Some(YearState {
                year: 2026,
                month: 3
            })
        );
    }

    #[test]
    fn a_day_after_the_file_is_allowed_and_no_more() {
        let r = "mail postfix/qmgr[1]: X: removed";
        // A first stamp a day after the file's date is this year's (a host
        // in a zone ahead of the configured one); two days after, the year
        // before.
        let mut c = clock("2026-11-23");
        assert_eq!(
            at(&mut c, &format!("Nov 24 12:00:00 {r}")),
            "2026-11-24T04:00:00+00:00"
        );
        let mut c = clock("2026-11-23");
        assert_eq!(
            at(&mut c, &format!("Nov 25 12:00:00 {r}")),
            "2025-11-25T04:00:00+00:00"
        );
        // A file modified on New Year's Eve, its last lines from a host
        // already in the new year: the wrap is taken.
        let mut c = clock("2026-12-31");
        assert_eq!(
            at(&mut c, &format!("Dec 31 23:59:59 {r}")),
            "2026-12-31T15:59:59+00:00"
        );
        assert_eq!(
            at(&mut c, &format!("Jan  1 00:00:01 {r}")),
            "2026-12-31T16:00:01+00:00"
        );
        // A day further is past the tolerance: the year before.
        assert_eq!(
            at(&mut c, &format!("Jan  2 12:00:00 {r}")),
            "2026-01-02T04:00:00+00:00"
        );
    }

    #[test]
    fn a_file_with_no_wrap_keeps_its_year() {
        let mut c = clock("2026-11-23");
        for (line, want) in [
            ("Nov  1 00:00:00", "2026-10-31T16:00:00+00:00"),
            ("Nov 12 09:30:00", "2026-11-12T01:30:00+00:00"),
            ("Nov 23 23:59:59", "2026-11-23T15:59:59+00:00"),
        ] {
            let line = format!("{line} mail postfix/qmgr[1]: X: removed");
            assert_eq!(at(&mut c, &line), want);
        }
        assert_eq!(
            c.year,
            Some(YearState {
                year: 2026,
                month: 11
            })
        );
    }

    #[test]
    fn stdin_is_dated_by_today() {
        use chrono::Datelike;
        let tz = chrono_tz::Asia::Taipei;
        // What the ingest gives a source with no modification time.
        let today = crate::ingest::source::reference_date(None, tz);
        let line = |d: NaiveDate| {
            d.format("%b %e 12:00:00 mail postfix/qmgr[1]: X: removed")
                .to_string()
        };
        let mut c = Clock::new(tz, today, None);
        assert_eq!(at(&mut c, &line(today)), format!("{today}T04:00:00+00:00"));
        // A week after today is last year's (when that date exists).
        let ahead = today + chrono::Days::new(7);
        if let Some(last_year) = ahead.with_year(ahead.year() - 1) {
            let mut c = Clock::new(tz, today, None);
            assert_eq!(
                at(&mut c, &line(ahead)),
                format!("{last_year}T04:00:00+00:00")
            );
        }
    }

    #[test]
    fn a_resumed_clock_reads_the_rest_as_one_that_never_stopped() {
        let reference = "2027-02-01";
        let lines = [
            "Dec 30 08:00:00",
            "Dec 31 23:59:59",
            "Jan  1 00:00:01",
            // Late, from the old year.
            "Dec 31 23:59:58",
            "Jan 15 10:00:00",
            // Out of place: no later than the file.
            "Jun  3 10:00:00",
            "Jan 20 10:00:00",
            "Feb  1 10:00:00",
        ]
        .map(|l| format!("{l} mail postfix/qmgr[1]: X: removed"));
        let read = |c: &mut Clock, lines: &[String]| -> Vec<i64> {
            lines
                .iter()
                .map(|l| c.split(l.as_bytes()).unwrap().time_us)
                .collect()
        };
        let whole = read(&mut clock(reference), &lines);
        for k in 0..=lines.len() {
            let mut first = clock(reference);
            read(&mut first, &lines[..k]);
            // Saved with the checkpoint as JSON, as the ingest does.
            let saved = first.year.map(|y| serde_json::to_string(&y).unwrap());
            let restored = saved.map(|j| serde_json::from_str(&j).unwrap());
            let mut second = Clock::new(
                chrono_tz::Asia::Taipei,
                NaiveDate::parse_from_str(reference, "%Y-%m-%d").unwrap(),
                restored,
            );
            assert_eq!(read(&mut second, &lines[k..]), whole[k..], "after {k}");
        }
        let want = [
            "2026-12-30T00:00:00+00:00",
            "2026-12-31T15:59:59+00:00",
            "2026-12-31T16:00:01+00:00",
            "2026-12-31T15:59:58+00:00",
            "2027-01-15T02:00:00+00:00",
            "2026-06-03T02:00:00+00:00",
            "2027-01-20T02:00:00+00:00",
            "2027-02-01T02:00:00+00:00",
        ];
        assert_eq!(whole.iter().map(|&t| iso(t)).collect::<Vec<_>>(), want);
    }

    #[test]
    fn tai64n_from_multilog() {
        let mut c = clock("2026-11-23");
        // fail2ban's sample; Debian's daemontools 0.76 (`TZ=UTC
        // tai64nlocal`) prints its label as 2010-09-16 05:50:50.125476500.
        let e = c
            .split(b"@400000004c91b044077a9e94 imap-login: Info: Aborted login (auth failed, 1 attempts): user=<martin@waschbuesch.de>, method=CRAM-MD5, rip=80.187.101.33, lip=80.254.129.240, TLS")
            .unwrap();
        assert_eq!(iso(e.time_us), "2010-09-16T05:50:50.125476+00:00");
        assert_eq!(
            (e.host, e.program, e.pid),
            (&b""[..], &b"imap-login"[..], None)
        );
        assert!(e.message.starts_with(b"Info: Aborted login (auth failed"));
        // The Unix epoch is TAI64 2^62 + 10.
        let e = c.split(b"@400000000000000a00000000 imap-login: x").unwrap();
        assert_eq!(e.time_us, 0);
        // Written by `multilog t` (daemontools 0.76) between Unix times
        // 1796617032.110039565 and 1796617032.119621145, read back with
        // `date +%s.%N` on each side.
        let e = c
            .split(b"@400000006b16335206e6039c imap-login: Info: Aborted login (auth failed, 1 attempts): user=<a>")
            .unwrap();
        assert!((1_796_617_032_110_039..=1_796_617_032_119_621).contains(&e.time_us));
        assert_eq!(e.time_us, 1_796_617_032_115_737);
        // A syslog line through multilog keeps its host (written between
        // 1796617646.228301325 and 1796617646.231336412).
        let e = c
            .split(b"@400000006b1635b80db4992c mail postfix/smtpd[9715]: connect from localhost[127.0.0.1]")
            .unwrap();
        assert!((1_796_617_646_228_301..=1_796_617_646_231_336).contains(&e.time_us));
        assert_eq!(
            (e.host, e.program, e.pid, e.message),
            (
                &b"mail"[..],
                &b"postfix/smtpd"[..],
                Some(9715),
                &b"connect from localhost[127.0.0.1]"[..]
            )
        );
        for bad in [
            &b"@400000004c91b044077a9e9 imap-login: x"[..],
            b"@400000004c91b044077a9e944 imap-login: x",
            b"@400000004c91b044077a9e9g imap-login: x",
            b"@400000004c91b044077a9e94",
            b"@400000004c91b044077a9e94imap-login: x",
            // A billion nanoseconds is a second, not a fraction.
            b"@400000004c91b0443b9aca00 imap-login: x",
            // Before the epoch, and past year 9999.
            b"@3fffffffffffffff00000000 imap-login: x",
            b"@ffffffffffffffff00000000 imap-login: x",
        ] {
            assert_eq!(
                c.split(bad),
                Err(EnvelopeError::Timestamp),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn rfc5424() {
        let mut c = clock("2026-11-23");
        let e = c
            .split(b"<22>1 2026-11-23T09:41:17.336189+08:00 mail postfix/smtpd 1181 - - 520C9C0192: client=pmghost.mydomain.tld[192.168.1.1]")
            .unwrap();
        assert_eq!(iso(e.time_us), "2026-11-23T01:41:17.336189+00:00");
        assert_eq!(
            (e.host, e.program, e.pid, e.message),
            (
                &b"mail"[..],
                &b"postfix/smtpd"[..],
                Some(1181),
                &b"520C9C0192: client=pmghost.mydomain.tld[192.168.1.1]"[..]
            )
        );
        // lograptor's sample has a `-` before its bracketed element, so by
        // the grammar that `-` is the structured data and the element is
        // the start of MSG; its `BOM` is the RFC's notation copied as text.
        let e = c
            .split("<165>1 2003-10-11T22:14:15.003Z frodo.example.com postfix - ID47 - [exampleSDID@17660 iut=\"3\" eventID=\"1011\" eventSource=\"Application\"] - BOM Une entré du journal des événements".as_bytes())
            .unwrap();
        assert_eq!(iso(e.time_us), "2003-10-11T22:14:15.003+00:00");
        assert_eq!(
            (e.host, e.program, e.pid),
            (&b"frodo.example.com"[..], &b"postfix"[..], None)
        );
        assert_eq!(
            e.message,
            "[exampleSDID@17660 iut=\"3\" eventID=\"1011\" eventSource=\"Application\"] - BOM Une entré du journal des événements".as_bytes()
        );
        // RFC 5424's own examples (6.5), with the BOM they stand for.
        let e = c
            .split(b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xEF\xBB\xBF'su root' failed for lonvick on /dev/pts/8")
            .unwrap();
        assert_eq!(
            (e.host, e.program, e.pid, e.message),
            (
                &b"mymachine.example.com"[..],
                &b"su"[..],
                None,
                &b"'su root' failed for lonvick on /dev/pts/8"[..]
            )
        );
        let e = c
            .split(b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.")
            .unwrap();
        assert_eq!(iso(e.time_us), "2003-08-24T12:14:15.000003+00:00");
        assert_eq!(
            (e.host, e.program, e.pid, e.message),
            (
                &b"192.0.2.1"[..],
                &b"myproc"[..],
                Some(8710),
                &b"%% It's time to make the do-nuts."[..]
            )
        );
        let e = c
            .split(b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] \xEF\xBB\xBFAn application event log entry...")
            .unwrap();
        assert_eq!(e.program, b"evntslog");
        assert_eq!(e.message, b"An application event log entry...");
        let e = c
            .split(b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"][examplePriority@32473 class=\"high\"]")
            .unwrap();
        assert_eq!((e.program, e.message), (&b"evntslog"[..], &b""[..]));
        // util-linux `logger --rfc5424` 2.38.1, read from its socket: two
        // elements, a value with `\"`, `\\` and `\]`; then PROCID `-`.
        let e = c
            .split(br#"<13>1 2026-12-07T04:16:58.251299+00:00 vm postfix/smtpd 1181 - [timeQuality tzKnown="1" isSynced="0"][origin@32473 note="say \"hi\", a \\ and a \]"] 520C9C0192: client=pmghost.mydomain.tld[192.168.1.1]"#)
            .unwrap();
        assert_eq!(iso(e.time_us), "2026-12-07T04:16:58.251299+00:00");
        assert_eq!(
            (e.host, e.program, e.pid, e.message),
            (
                &b"vm"[..],
                &b"postfix/smtpd"[..],
                Some(1181),
                &b"520C9C0192: client=pmghost.mydomain.tld[192.168.1.1]"[..]
            )
        );
        let e = c
            .split(b"<13>1 2026-12-07T04:16:58.257737+00:00 vm dovecot - - - imap-login: Login: user=<a>")
            .unwrap();
        assert_eq!(
            (e.host, e.program, e.pid, e.message),
            (
                &b"vm"[..],
                &b"dovecot"[..],
                None,
                &b"imap-login: Login: user=<a>"[..]
            )
        );
        // rsyslog 8.2002's RSYSLOG_SyslogProtocol23Format (rsyslog issue
        // 4384) writes the relayed message's own space too.
        let e = c
            .split(b"<174>1 2020-08-21T13:32:18.596113+02:00 host TestLogging - - -  test")
            .unwrap();
        assert_eq!(iso(e.time_us), "2020-08-21T11:32:18.596113+00:00");
        assert_eq!((e.program, e.message), (&b"TestLogging"[..], &b"test"[..]));
        // `-` for the host and the program: none named.
        let e = c
            .split(b"<34>1 2003-10-11T22:14:15.003Z - - - ID47 - 'su root' failed")
            .unwrap();
        assert_eq!((e.host, e.program), (&b""[..], &b""[..]));
        let long = |n: usize| "h".repeat(n);
        for (bad, why) in [
            (
                "<34>1 - mymachine.example.com su - ID47 - 'su root' failed".to_string(),
                EnvelopeError::Timestamp,
            ),
            (
                "<34>1 2003-10-11T22:14:15.003 mymachine su - ID47 - x".into(),
                EnvelopeError::Timestamp,
            ),
            (
                "<34>1 2003-10-11 22:14:15.003Z mymachine su - ID47 - x".into(),
                EnvelopeError::Timestamp,
            ),
            (
                "<165>1 2003-10-11T22:14:15.003Z m evntslog - ID47 [exampleSDID@32473 iut=\"3\"".into(),
                EnvelopeError::Tag,
            ),
            (
                "<165>1 2003-10-11T22:14:15.003Z m evntslog - ID47 [exampleSDID@32473 iut=\"3\\\"] x".into(),
                EnvelopeError::Tag,
            ),
            (
                "<165>1 2003-10-11T22:14:15.003Z m evntslog - ID47 [a@1 b=\"c\"]x".into(),
                EnvelopeError::Tag,
            ),
            (
                "<165>1 2003-10-11T22:14:15.003Z m evntslog - ID47 [a@1 b=c] x".into(),
                EnvelopeError::Tag,
            ),
            (
                format!("<165>1 2003-10-11T22:14:15.003Z m e - ID47 [{}] x", long(33)),
                EnvelopeError::Tag,
            ),
            (
                "<165>1 2003-10-11T22:14:15.003Z m e - ID47 x".into(),
                EnvelopeError::Tag,
            ),
            (
                "<165>1 2003-10-11T22:14:15.003Z m e - ID47".into(),
                EnvelopeError::Tag,
            ),
            (
                format!("<34>1 2003-10-11T22:14:15.003Z {} su - ID47 - x", long(256)),
                EnvelopeError::Tag,
            ),
            (
                format!("<34>1 2003-10-11T22:14:15.003Z m {} - ID47 - x", long(49)),
                EnvelopeError::Tag,
            ),
            (
                "<34>1 2003-10-11T22:14:15.003Z m\u{7f}x su - ID47 - x".into(),
                EnvelopeError::Tag,
            ),
        ] {
            assert_eq!(c.split(bad.as_bytes()), Err(why), "{bad}");
        }
        // At the RFC's limits.
        let longest = format!(
            "<34>1 2003-10-11T22:14:15.003Z {} {} - ID47 - x",
            long(255),
            long(48)
        );
        let e = c.split(longest.as_bytes()).unwrap();
        assert_eq!((e.host.len(), e.program.len()), (255, 48));
    }

    #[test]
    fn iso_stamps_without_an_offset_are_local_time() {
        let mut c = clock("2026-11-23");
        // Dovecot's own file, `log_timestamp = "%Y-%m-%d %H:%M:%S "`
        // (fail2ban's sample), read in Taipei (UTC+8).
        let e = c
            .split(b"2013-08-11 03:56:40 auth-worker(default): Info: pam(username,1.2.3.4): pam_authenticate() failed: Authentication failure (password mismatch?)")
            .unwrap();
        assert_eq!(iso(e.time_us), "2013-08-10T19:56:40+00:00");
        assert_eq!(
            (e.host, e.program, e.pid),
            (&b""[..], &b"auth-worker(default)"[..], None)
        );
        assert!(e.message.starts_with(b"Info: pam(username,1.2.3.4)"));
        let e = c.split(b"2026-11-23 01:02:03 host tag[42]: msg").unwrap();
        assert_eq!(iso(e.time_us), "2026-11-22T17:02:03+00:00");
        assert_eq!(
            (e.host, e.program, e.pid, e.message),
            (&b"host"[..], &b"tag"[..], Some(42), &b"msg"[..])
        );
        let e = c.split(b"2026-11-23T01:02:03.25 host tag: msg").unwrap();
        assert_eq!(iso(e.time_us), "2026-11-22T17:02:03.250+00:00");
        assert!(c.split(b"2026-02-29 01:02:03 host tag: msg").is_err());

        // The zone's own rules: Europe/Berlin falls back on 2026-10-25,
        // and 02:10 comes twice; it springs forward on 2026-03-29, and
        // 02:30 never comes (read with the offset from before).
        let mut c = Clock::new(
            chrono_tz::Europe::Berlin,
            NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            None,
        );
        let t = |c: &mut Clock, s: &str| iso(c.split(s.as_bytes()).unwrap().time_us);
        assert_eq!(
            t(&mut c, "2013-08-11 03:56:40 auth-worker(default): Info: x"),
            "2013-08-11T01:56:40+00:00"
        );
        assert_eq!(
            t(&mut c, "2026-10-25 02:10:00 h p: m"),
            "2026-10-25T00:10:00+00:00"
        );
        assert_eq!(
            t(&mut c, "2026-10-25 02:50:00 h p: m"),
            "2026-10-25T00:50:00+00:00"
        );
        assert_eq!(
            t(&mut c, "2026-10-25 02:10:00 h p: m"),
            "2026-10-25T01:10:00+00:00"
        );
        assert_eq!(
            t(&mut c, "2026-03-29 02:30:00 h p: m"),
            "2026-03-29T01:30:00+00:00"
        );
    }

    #[test]
    fn rsyslog_template_with_the_year_first() {
        // FgForrest's real log (a Czech site), read in Europe/Prague:
        // summer time, UTC+2.
        let mut c = Clock::new(
            chrono_tz::Europe::Prague,
            NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
            None,
        );
        let e = c
            .split(b"2013 Jun 10 06:28:18.123 gds39d postfix/smtp[16152]: 7E1AEC2C388XXXX: to=<k0i3u1e0v4@f1eh43i4.e0f>, relay=none, delay=71766, delays=71766/0.01/0.29/0, dsn=4.4.1, status=deferred (connect to michaela.com[176.74.176.167]:25: Connection refused)")
            .unwrap();
        assert_eq!(iso(e.time_us), "2013-06-10T04:28:18.123+00:00");
        assert_eq!(
            (e.host, e.program, e.pid),
            (&b"gds39d"[..], &b"postfix/smtp"[..], Some(16152))
        );
        assert!(e.message.starts_with(b"7E1AEC2C388XXXX: to=<"));
        // The year is given: no inference, whatever the reference.
        assert_eq!(c.year, None);
        for bad in [
            &b"2013 Feb 29 06:28:18.123 gds39d postfix/smtp[16152]: x"[..],
            b"2013 Jum 10 06:28:18.123 gds39d postfix/smtp[16152]: x",
            b"2013 Jun 10 06:28 gds39d postfix/smtp[16152]: x",
            b"201x Jun 10 06:28:18.123 gds39d postfix/smtp[16152]: x",
        ] {
            assert_eq!(c.split(bad), Err(EnvelopeError::Timestamp));
        }
    }

    #[test]
    fn unknown_envelopes_stay_errors() {
        let mut c = clock("2026-11-23");
        for bad in [
            // journalctl -o short-full.
            &b"Fri 2023-09-08 17:20:30 CEST host postfix/qmgr[5]: X: removed"[..],
            // journalctl -o json (abridged).
            br#"{"SYSLOG_IDENTIFIER":"postfix/smtpd","__REALTIME_TIMESTAMP":"1789228152650438"}"#,
            b"<22>",
            b"<22>1 ",
            b"@",
            b"1",
            b"2026",
        ] {
            assert!(c.split(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn no_field_longer_than_producers_write() {
        let mut c = clock("2026-11-23");
        let line = |host: &str, program: &str| {
            format!("Nov 23 00:41:17 {host} {program}[1]: connect from x[1.2.3.4]")
        };
        let h255 = "h".repeat(255);
        let p512 = "p".repeat(512);
        let longest = line(&h255, &p512);
        let e = c.split(longest.as_bytes()).unwrap();
        assert_eq!((e.host.len(), e.program.len()), (255, 512));
        let h256 = "h".repeat(256);
        let p513 = "p".repeat(513);
        for bad in [line(&h256, "postfix/smtpd"), line("mail", &p513)] {
            assert_eq!(c.split(bad.as_bytes()), Err(EnvelopeError::Tag));
        }
        // The longest real first word of Dovecot's own file: a mailbox
        // name of 254 bytes, a pid and a session.
        let user = format!("{}@{}", "u".repeat(64), "d".repeat(189));
        let own = format!("Nov 23 00:41:17 imap({user})<4242><oEOptynOHNasEQAB>: Info: Logged out");
        let e = c.split(own.as_bytes()).unwrap();
        assert!(e.program.starts_with(b"imap(") && e.host.is_empty());
        let junk = format!("Nov 23 00:41:17 {p513}: Info: x");
        assert_eq!(c.split(junk.as_bytes()), Err(EnvelopeError::Tag));
    }
}
