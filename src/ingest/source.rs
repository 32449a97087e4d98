//! Inputs: plain, rotated and gzip-compressed files, and stdin, read as
//! lines of bytes.
//!
//! A source is identified by a fingerprint of its first line rather than by
//! its path: `mail.log` renamed to `mail.log.1` and later compressed to
//! `mail.log.2.gz` keeps its fingerprint, so its checkpoint still applies
//! and it is not read twice. Offsets are counted in uncompressed bytes.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;
use flate2::read::MultiGzDecoder;
use xxhash_rust::xxh3::xxh3_64;

/// Bytes read from the input at a time.
const CHUNK: usize = 1 << 20;
/// A "line" longer than this with no newline (binary junk) is cut here and
/// handed on as it is, so memory stays bounded. Postfix itself cuts records
/// at 2,000 bytes; journald allows 48 KiB.
pub const MAX_LINE: usize = 64 * 1024;
/// How much of the first line the fingerprint covers.
const FINGERPRINT_BYTES: usize = 4096;

/// What to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    Stdin,
    File(PathBuf),
}

impl SourceSpec {
    pub fn parse(arg: &str) -> SourceSpec {
        if arg == "-" {
            SourceSpec::Stdin
        } else {
            SourceSpec::File(PathBuf::from(arg))
        }
    }

    /// How the source is named in messages and checkpoints.
    pub fn name(&self) -> String {
        match self {
            SourceSpec::Stdin => "-".to_owned(),
            SourceSpec::File(p) => p.display().to_string(),
        }
    }

    /// Checks that the source can be opened, before anything is ingested.
    ///
    /// Returns `Err` naming the path when it does not exist, is a directory,
    /// or cannot be read.
    pub fn check(&self) -> anyhow::Result<()> {
        if let SourceSpec::File(p) = self {
            let meta =
                std::fs::metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
            if meta.is_dir() {
                anyhow::bail!("cannot read {}: it is a directory", p.display());
            }
            File::open(p).with_context(|| format!("cannot read {}", p.display()))?;
        }
        Ok(())
    }
}

/// An open input, read line by line.
pub struct LineReader {
    name: String,
    inner: Box<dyn Read + Send>,
    buf: Vec<u8>,
    /// Unread data is `buf[start..end]`.
    start: usize,
    end: usize,
    eof: bool,
    /// Uncompressed bytes consumed through the last line returned.
    offset: u64,
    /// Modification time of the file (for year-less stamps).
    pub mtime: Option<SystemTime>,
    /// A plain (uncompressed) file, which `skip` can seek in: a second
    /// handle on the same open file, so a rename cannot swap it.
    seekable: Option<File>,
    /// Leave a last line without its newline unread: it is still being
    /// written (following a live log).
    hold_partial: bool,
}

impl LineReader {
    /// Opens a source; gzip is recognised by its magic bytes, not its name.
    pub fn open(spec: &SourceSpec) -> anyhow::Result<LineReader> {
        let name = spec.name();
        let mut seekable = None;
        let (raw, mtime): (Box<dyn Read + Send>, Option<SystemTime>) = match spec {
            SourceSpec::Stdin => (Box::new(io::stdin()), None),
            SourceSpec::File(p) => {
                let f = File::open(p).with_context(|| format!("cannot read {}", p.display()))?;
                let mtime = f.metadata().and_then(|m| m.modified()).ok();
                seekable = f.try_clone().ok();
                (Box::new(f), mtime)
            }
        };
        let mut r = LineReader {
            name,
            inner: raw,
            buf: vec![0; CHUNK + MAX_LINE],
            start: 0,
            end: 0,
            eof: false,
            offset: 0,
            mtime,
            seekable,
            hold_partial: false,
        };
        r.fill(2)?;
        if r.end >= 2 && r.buf[0] == 0x1f && r.buf[1] == 0x8b {
            r.seekable = None;
            // Put the two peeked bytes back in front of the stream.
            let head = io::Cursor::new(r.buf[..r.end].to_vec());
            let rest = std::mem::replace(&mut r.inner, Box::new(io::empty()));
            r.inner = Box::new(MultiGzDecoder::new(head.chain(rest)));
            r.start = 0;
            r.end = 0;
            r.eof = false;
        }
        Ok(r)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Leaves a last line without its newline unread, for a file that is
    /// still being written: the next pass reads it whole.
    pub fn hold_partial_lines(&mut self) {
        self.hold_partial = true;
    }

    /// Uncompressed bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads until at least `want` unread bytes are buffered or input ends.
    fn fill(&mut self, want: usize) -> anyhow::Result<()> {
        while self.end - self.start < want && !self.eof {
            if self.end == self.buf.len() {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let n = loop {
                match self.inner.read(&mut self.buf[self.end..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(e).with_context(|| format!("error reading {}", self.name));
                    }
                }
            };
            if n == 0 {
                self.eof = true;
            }
            self.end += n;
        }
        Ok(())
    }

    /// The fingerprint: a hash of the first line (its first 4 KiB), or
    /// `None` for an empty input.
    pub fn fingerprint(&mut self) -> anyhow::Result<Option<i64>> {
        debug_assert_eq!(self.offset, 0);
        self.fill(FINGERPRINT_BYTES)?;
        let avail = &self.buf[self.start..self.end];
        if avail.is_empty() {
            return Ok(None);
        }
        let newline = memchr::memchr(b'\n', avail);
        // A first line still being written would give another fingerprint
        // once whole: wait for it.
        if self.hold_partial && newline.is_none() && avail.len() < FINGERPRINT_BYTES {
            return Ok(None);
        }
        let n = newline.map_or(avail.len(), |i| i + 1);
        Ok(Some(xxh3_64(&avail[..n.min(FINGERPRINT_BYTES)]) as i64))
    }

    /// Skips `n` bytes (resuming from a checkpoint). Returns how many were
    /// actually there.
    pub fn skip(&mut self, mut n: u64) -> anyhow::Result<u64> {
        // A plain file past what is buffered: seek instead of reading.
        if self.offset == 0
            && n > (self.end - self.start) as u64
            && let Some(mut f) = self.seekable.take()
        {
            use std::io::{Seek, SeekFrom};
            let len = f.metadata()?.len();
            let to = n.min(len);
            f.seek(SeekFrom::Start(to))?;
            self.inner = Box::new(f);
            self.start = 0;
            self.end = 0;
            self.eof = false;
            self.offset = to;
            return Ok(to);
        }
        let mut skipped = 0;
        while n > 0 {
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
                self.fill(1)?;
                if self.end == 0 {
                    break;
                }
            }
            let take = ((self.end - self.start) as u64).min(n) as usize;
            self.start += take;
            n -= take as u64;
            skipped += take as u64;
        }
        self.offset += skipped;
        Ok(skipped)
    }

    /// The next line without its newline, and whether it was complete (a
    /// last line with no newline is returned with `false`). Lines longer
    /// than [`MAX_LINE`] are returned in pieces.
    pub fn next_line(&mut self) -> anyhow::Result<Option<(&[u8], bool)>> {
        let mut scanned = 0;
        loop {
            // Look no further than one maximal line ahead.
            let limit = self.end.min(self.start + MAX_LINE + 1);
            let avail = &self.buf[(self.start + scanned).min(limit)..limit];
            if let Some(i) = memchr::memchr(b'\n', avail) {
                let s = self.start;
                let e = s + scanned + i;
                self.start = e + 1;
                self.offset += (e + 1 - s) as u64;
                return Ok(Some((&self.buf[s..e], true)));
            }
            scanned = self.end - self.start;
            if self.eof && self.hold_partial && scanned > 0 && scanned < MAX_LINE {
                return Ok(None);
            }
            if scanned >= MAX_LINE || (self.eof && scanned > 0) {
                let s = self.start;
                let e = s + scanned.min(MAX_LINE);
                self.start = e;
                self.offset += (e - s) as u64;
                return Ok(Some((&self.buf[s..e], scanned >= MAX_LINE)));
            }
            if self.eof {
                return Ok(None);
            }
            // Move the partial line to the front and read more behind it.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            let before = self.end;
            self.fill(before + 1)?;
        }
    }
}

/// The date a file's year-less stamps are assumed not to be after.
pub fn reference_date(mtime: Option<SystemTime>, tz: chrono_tz::Tz) -> chrono::NaiveDate {
    let t: chrono::DateTime<chrono::Utc> = mtime.map(Into::into).unwrap_or_else(chrono::Utc::now);
    t.with_timezone(&tz).date_naive()
}

/// True if `path` looks like a file we can read (used by `check-config`).
pub fn readable(path: &Path) -> bool {
    File::open(path).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines_of(path: &Path) -> Vec<(Vec<u8>, bool)> {
        let mut r = LineReader::open(&SourceSpec::File(path.to_owned())).unwrap();
        let mut v = Vec::new();
        while let Some((l, c)) = r.next_line().unwrap() {
            v.push((l.to_vec(), c));
        }
        v
    }

    #[test]
    fn plain_and_gzip_read_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let text = b"one\ntwo\n\nthree without newline";
        let plain = dir.path().join("a.log");
        std::fs::write(&plain, text).unwrap();
        let gz = dir.path().join("a.log.2.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&text[..8]).unwrap();
        let mut bytes = enc.finish().unwrap();
        // A second gzip member, as logrotate's delaycompress + append can make.
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&text[8..]).unwrap();
        bytes.extend(enc.finish().unwrap());
        std::fs::write(&gz, bytes).unwrap();
        let want = vec![
            (b"one".to_vec(), true),
            (b"two".to_vec(), true),
            (b"".to_vec(), true),
            (b"three without newline".to_vec(), false),
        ];
        assert_eq!(lines_of(&plain), want);
        assert_eq!(lines_of(&gz), want);
        let fp = |p: &Path| {
            LineReader::open(&SourceSpec::File(p.to_owned()))
                .unwrap()
                .fingerprint()
                .unwrap()
        };
        assert_eq!(fp(&plain), fp(&gz));
        assert!(fp(&plain).is_some());
    }

    #[test]
    fn empty_file_and_long_lines() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.log");
        std::fs::write(&empty, b"").unwrap();
        assert!(lines_of(&empty).is_empty());
        let mut r = LineReader::open(&SourceSpec::File(empty)).unwrap();
        assert_eq!(r.fingerprint().unwrap(), None);

        let long = dir.path().join("long.log");
        let mut data = vec![b'x'; MAX_LINE * 3 + 10];
        data.push(b'\n');
        data.extend_from_slice(b"after\n");
        std::fs::write(&long, &data).unwrap();
        let got = lines_of(&long);
        let total: usize = got.iter().map(|(l, _)| l.len()).sum();
        assert_eq!(total, MAX_LINE * 3 + 10 + 5);
        assert!(got.iter().all(|(l, _)| l.len() <= MAX_LINE));
        assert_eq!(got.last().unwrap().0, b"after");
    }

    #[test]
    fn skip_resumes_at_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        std::fs::write(&p, b"first\nsecond\nthird\n").unwrap();
        let mut r = LineReader::open(&SourceSpec::File(p.clone())).unwrap();
        r.next_line().unwrap();
        let off = r.offset();
        assert_eq!(off, 6);
        let mut r2 = LineReader::open(&SourceSpec::File(p)).unwrap();
        r2.fingerprint().unwrap();
        assert_eq!(r2.skip(off).unwrap(), off);
        assert_eq!(r2.next_line().unwrap().unwrap().0, b"second");
        assert_eq!(r2.offset(), 13);
    }

    #[test]
    fn missing_paths_are_named() {
        let err = SourceSpec::File("/nonexistent/mail.log".into())
            .check()
            .unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/mail.log"));
        let dir = tempfile::tempdir().unwrap();
        let err = SourceSpec::File(dir.path().to_owned()).check().unwrap_err();
        assert!(format!("{err:#}").contains("directory"));
    }
}
