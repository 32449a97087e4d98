//! Inputs: plain, rotated and compressed files, and stdin, read as lines of
//! bytes.
//!
//! A source is identified by a fingerprint of its first line rather than by
//! its path: `mail.log` renamed to `mail.log.1` and later compressed to
//! `mail.log.2.gz` (or `.bz2`, `.xz`, `.zst`) keeps its fingerprint, so its
//! checkpoint still applies and it is not read twice. Offsets are counted in
//! uncompressed bytes.
//!
//! Compression is told by the first bytes, never by the name: gzip, bzip2,
//! xz and zstd (what logrotate's `compress` and the usual `compresscmd`s
//! write), each read across all its members or streams, since logrotate can
//! append to a compressed file. Other compressed formats are refused by name
//! rather than read as hundreds of unrecognised lines. The decoders are pure
//! Rust, so a build from scratch compiles no C for them:
//!
//! * gzip: `flate2` (already used for zip files).
//! * bzip2: the `bzip2` crate, whose default backend since 0.6 is
//!   `libbz2-rs-sys`, a Rust port of libbzip2 by the zlib-rs authors; its
//!   `MultiBzDecoder` reads every stream.
//! * xz: `lzma-rust2`, a port of XZ for Java, decoder only (no `encoder`,
//!   no `unsafe` `optimization`); its `XzReader` reads concatenated streams
//!   and stream padding and checks every block's check. `lzma-rs` was not
//!   taken: its xz decoder writes into a `Write` instead of being read, so
//!   a large file would have to be decoded whole; `liblzma`/`xz2` build
//!   liblzma's C sources.
//! * zstd: `ruzstd`'s frame decoder, driven by `ZstdFrames` here, which
//!   goes from frame to frame, passes over skippable frames (pzstd writes
//!   them) and checks each frame's checksum; `ruzstd`'s own streaming
//!   reader does neither. The `zstd` crate would build libzstd's C sources
//!   (and its Rust backend is marked experimental).
//!
//! Damage (a read error, a truncated or corrupt compressed file) does not
//! end the ingest: the lines before it are read as usual, and the reader
//! then ends as if at the end of the input, keeping a [`Damage`] that says
//! what happened and how far it got.

use std::fs::File;
use std::io::{self, BufRead, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;
use flate2::read::MultiGzDecoder;
use xxhash_rust::xxh3::xxh3_64;

/// Bytes read from the input at a time.
const CHUNK: usize = 1 << 20;
/// The longest line handed on. A longer one (binary junk, a program that
/// logs whole messages) is one line all the same: it is reported once as
/// too long and consumed through its newline without being kept, so memory
/// stays bounded and none of its text is ever parsed as a line of its own.
/// Postfix itself cuts records at 2,000 bytes; journald allows 48 KiB.
pub const MAX_LINE: usize = 64 * 1024;
/// How much of the first line the fingerprint covers.
const FINGERPRINT_BYTES: usize = 4096;
/// The first bytes that tell the format: xz's magic is the longest.
const MAGIC_BYTES: usize = 6;
/// The most memory an xz block's dictionary may ask for, in KiB: `xz -9`
/// needs 65 MiB; a file asking for gigabytes is refused, not obeyed.
const XZ_MEM_LIMIT_KIB: u32 = 256 * 1024;

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

    /// Checks that the source can be opened and is in a format that can be
    /// read, before anything is ingested.
    ///
    /// Returns `Err` naming the path when it does not exist, is a directory,
    /// cannot be read, or is compressed in a format that is not read. Only
    /// regular files are looked into: reading the first bytes of a pipe
    /// (`<(zcat ...)`) would take them from the ingest.
    pub fn check(&self) -> anyhow::Result<()> {
        if let SourceSpec::File(p) = self {
            let meta =
                std::fs::metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
            if meta.is_dir() {
                anyhow::bail!("cannot read {}: it is a directory", p.display());
            }
            let mut f = File::open(p).with_context(|| format!("cannot read {}", p.display()))?;
            if meta.is_file() {
                let mut head = [0; MAGIC_BYTES];
                let n = read_head(&mut f, &mut head)
                    .with_context(|| format!("cannot read {}", p.display()))?;
                Format::sniff(&head[..n]).map_err(|name| unsupported(&self.name(), name))?;
            }
        }
        Ok(())
    }
}

/// How a source is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Plain,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

impl Format {
    /// The format told by a file's first bytes (up to [`MAGIC_BYTES`]), or
    /// the name of a compressed format that is not read. Text that is not
    /// compressed is plain: no log line starts with these bytes.
    fn sniff(head: &[u8]) -> Result<Format, &'static str> {
        let supported: [(&[u8], Format); 4] = [
            (&[0x1f, 0x8b], Format::Gzip),
            (b"BZh", Format::Bzip2),
            (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], Format::Xz),
            (&[0x28, 0xb5, 0x2f, 0xfd], Format::Zstd),
        ];
        for (magic, format) in supported {
            if head.starts_with(magic) {
                return Ok(format);
            }
        }
        // A zstd skippable frame (magic 0x184D2A50 to 0x184D2A5F, little
        // endian) can come first: pzstd starts its files with one.
        if head.len() >= 4 && head[0] & 0xf0 == 0x50 && head[1..4] == [0x2a, 0x4d, 0x18] {
            return Ok(Format::Zstd);
        }
        let unsupported: [(&[u8], &str); 9] = [
            (&[0x1f, 0x9d], "compress (.Z)"),
            (&[0x1f, 0x1e], "pack (.z)"),
            (b"LZIP", "lzip"),
            (&[0x04, 0x22, 0x4d, 0x18], "lz4"),
            (&[0x02, 0x21, 0x4c, 0x18], "lz4 (legacy)"),
            (&[0x89, b'L', b'Z', b'O'], "lzop"),
            (&[0x5d, 0x00, 0x00], "lzma (.lzma)"),
            (&[b'7', b'z', 0xbc, 0xaf, 0x27, 0x1c], "7-Zip"),
            (&[b'P', b'K', 0x03, 0x04], "zip"),
        ];
        for (magic, name) in unsupported {
            if head.starts_with(magic) {
                return Err(name);
            }
        }
        Ok(Format::Plain)
    }

    /// What failed when reading fails, for damage reports.
    fn what(self) -> &'static str {
        match self {
            Format::Plain => "read error",
            Format::Gzip => "gzip data",
            Format::Bzip2 => "bzip2 data",
            Format::Xz => "xz data",
            Format::Zstd => "zstd data",
        }
    }
}

/// The error for a source compressed in a format that is not read.
fn unsupported(name: &str, format: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot read {name}: it is compressed with {format}; \
         only plain text, gzip, bzip2, xz and zstd are read"
    )
}

/// Reads up to `buf.len()` bytes, fewer only at the end of the input.
fn read_head(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Replaces each NUL byte read with `?`, as Postfix logs any byte it
/// cannot print: PostgreSQL's text cannot hold NUL (a row with one would
/// fail its batch, and every retry of it), and both backends must store
/// the same rows.
fn no_nul(read: &mut [u8]) {
    if memchr::memchr(0, read).is_some() {
        read.iter_mut().filter(|b| **b == 0).for_each(|b| *b = b'?');
    }
}

/// One line from [`LineReader::next_line`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// A line that ended with a newline, without it.
    Whole(&'a [u8]),
    /// The last line of the input, which has no newline.
    Last(&'a [u8]),
    /// A line longer than [`MAX_LINE`]: consumed whole, through its
    /// newline, and its bytes never kept.
    TooLong,
}

/// Why a source was not read to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The read or decompression error, with its causes.
    pub error: String,
    /// Uncompressed bytes read before the error.
    pub reached: u64,
    /// The length of a last line that the error cut short, which was not
    /// handed on (it would be parsed as a line it is not); 0 when the error
    /// came between two lines.
    pub cut: u64,
}

/// An open input, read line by line.
pub struct LineReader {
    name: String,
    format: Format,
    inner: Box<dyn Read + Send>,
    buf: Vec<u8>,
    /// Unread data is `buf[start..end]`.
    start: usize,
    end: usize,
    /// The input ended, or failed (then `damage` says how).
    eof: bool,
    /// Uncompressed bytes consumed through the last line returned.
    offset: u64,
    /// Bytes of an over-long line dropped so far (and not yet counted in
    /// `offset`: in follow mode it may have to be read again whole).
    dropped: u64,
    /// Set when the reader has nothing more to give: a partial over-long
    /// line was dropped at the end of the input, or a line was cut by
    /// damage; what follows `offset` has to be read again from a fresh
    /// reader.
    parked: bool,
    /// Why the input ended early, if it did.
    damage: Option<Damage>,
    /// Modification time of the file (for year-less stamps).
    pub mtime: Option<SystemTime>,
    /// The file's device and inode (a file, not stdin), and whether its
    /// offsets are its own bytes (not compressed): how `serve` tells how
    /// much of a followed file is still unread.
    pub file_id: Option<FileId>,
    /// A plain (uncompressed) file, which `skip` can seek in: a second
    /// handle on the same open file, so a rename cannot swap it.
    seekable: Option<File>,
    /// Leave a last line without its newline unread: it is still being
    /// written (following a live log).
    hold_partial: bool,
    /// Following a live plain file: a third handle on it, and the start of
    /// the first line its fingerprint was taken from (see
    /// [`LineReader::replaced`]).
    watch: Option<File>,
    first: Option<Vec<u8>>,
}

impl LineReader {
    /// Opens a source; its format is told by its first bytes, not its name.
    ///
    /// Returns `Err` naming the source when it cannot be opened or its first
    /// bytes read, or when it is compressed in a format that is not read.
    pub fn open(spec: &SourceSpec) -> anyhow::Result<LineReader> {
        let name = spec.name();
        let mut seekable = None;
        let mut watch = None;
        let mut file_id = None;
        let (mut raw, mtime): (Box<dyn Read + Send>, Option<SystemTime>) = match spec {
            SourceSpec::Stdin => (Box::new(io::stdin()), None),
            SourceSpec::File(p) => {
                let f = File::open(p).with_context(|| format!("cannot read {}", p.display()))?;
                let meta = f.metadata().ok();
                let mtime = meta.as_ref().and_then(|m| m.modified().ok());
                file_id = meta.as_ref().map(FileId::of);
                seekable = f.try_clone().ok();
                watch = f.try_clone().ok();
                (Box::new(f), mtime)
            }
        };
        let mut head = [0; MAGIC_BYTES];
        let n = read_head(&mut raw, &mut head).with_context(|| format!("cannot read {name}"))?;
        let format = Format::sniff(&head[..n]).map_err(|f| unsupported(&name, f))?;
        let mut buf = vec![0; CHUNK + MAX_LINE + 1];
        let mut end = 0;
        // A decoder reads the peeked bytes first, then the rest.
        let stream = |raw| io::Cursor::new(head[..n].to_vec()).chain(raw);
        let inner: Box<dyn Read + Send> = match format {
            Format::Plain => {
                buf[..n].copy_from_slice(&head[..n]);
                no_nul(&mut buf[..n]);
                end = n;
                raw
            }
            Format::Gzip => Box::new(MultiGzDecoder::new(stream(raw))),
            Format::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(stream(raw))),
            Format::Xz => Box::new(lzma_rust2::XzReader::new_mem_limit(
                io::BufReader::new(stream(raw)),
                true,
                XZ_MEM_LIMIT_KIB,
            )),
            Format::Zstd => Box::new(ZstdFrames::new(stream(raw))),
        };
        if format != Format::Plain {
            // Offsets count uncompressed bytes: no seeking in the file (and
            // a compressed file is not written to as it is read).
            seekable = None;
            watch = None;
            if let Some(id) = &mut file_id {
                id.plain = false;
            }
        }
        Ok(LineReader {
            name,
            format,
            inner,
            buf,
            start: 0,
            end,
            eof: false,
            offset: 0,
            dropped: 0,
            parked: false,
            damage: None,
            mtime,
            file_id,
            seekable,
            hold_partial: false,
            watch,
            first: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Leaves a last line without its newline unread, for a file that is
    /// still being written: the next pass reads it whole.
    pub fn hold_partial_lines(&mut self) {
        self.hold_partial = true;
    }

    /// Uncompressed bytes consumed so far: through the last line returned.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Why the input ended before its end, once [`LineReader::next_line`]
    /// has returned `None` (or earlier, without `cut` known yet).
    pub fn damage(&self) -> Option<&Damage> {
        self.damage.as_ref()
    }

    /// Reads until at least `want` unread bytes are buffered or input ends.
    /// A failure ends the input here and is kept as its damage.
    fn fill(&mut self, want: usize) {
        while self.end - self.start < want && !self.eof {
            if self.end == self.buf.len() {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                // Bytes of another file: ignored, and nothing more read.
                Ok(_) if self.replaced() => self.eof = true,
                Ok(n) => {
                    no_nul(&mut self.buf[self.end..self.end + n]);
                    self.end += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.fail(e),
            }
        }
    }

    /// Whether the live file being followed no longer begins with the
    /// first line it was fingerprinted by: truncated in place and written
    /// again (logrotate's `copytruncate`) since. Asked after each read, so
    /// bytes read from the file written again are never taken for the
    /// rest of the file the fingerprint names: the checkpoint of that
    /// fingerprint would move past lines that the rotated copy still holds
    /// (read next, from that checkpoint), and they would be lost. A file
    /// shorter than that first line, or unreadable, counts as replaced.
    fn replaced(&self) -> bool {
        use std::os::unix::fs::FileExt;
        let (Some(f), Some(first)) = (&self.watch, &self.first) else {
            return false;
        };
        let mut now = [0u8; FINGERPRINT_BYTES];
        let now = &mut now[..first.len()];
        f.read_exact_at(now, 0).map_or(true, |()| now != &first[..])
    }

    /// Ends the input at an error.
    fn fail(&mut self, e: io::Error) {
        let mut error = format!("{}: {}", self.format.what(), e);
        let mut truncated = e.kind() == io::ErrorKind::UnexpectedEof;
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            let text = c.to_string();
            // Some errors repeat their cause in their own text.
            if !error.contains(&text) {
                error.push_str(": ");
                error.push_str(&text);
            }
            truncated |= c
                .downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::UnexpectedEof);
            cause = c.source();
        }
        if truncated {
            // Whatever each decoder calls it, and however deep it buried
            // it, an end of input where more was due is a truncated file.
            error = format!(
                "{}: the data ends too soon (the file is truncated)",
                self.format.what()
            );
        }
        self.eof = true;
        self.damage = Some(Damage {
            error,
            reached: self.offset + (self.end - self.start) as u64 + self.dropped,
            cut: 0,
        });
    }

    /// The fingerprint: a hash of the first line (its first 4 KiB), or
    /// `None` for an empty input.
    pub fn fingerprint(&mut self) -> Option<i64> {
        debug_assert_eq!(self.offset, 0);
        self.fill(FINGERPRINT_BYTES);
        let avail = &self.buf[self.start..self.end];
        if avail.is_empty() {
            return None;
        }
        let newline = memchr::memchr(b'\n', avail);
        // A first line still being written would give another fingerprint
        // once whole: wait for it. (A damaged file gives no more of it.)
        if self.hold_partial
            && newline.is_none()
            && avail.len() < FINGERPRINT_BYTES
            && self.damage.is_none()
        {
            return None;
        }
        let n = newline.map_or(avail.len(), |i| i + 1);
        let first = &avail[..n.min(FINGERPRINT_BYTES)];
        if self.hold_partial && self.watch.is_some() {
            self.first = Some(first.to_vec());
        }
        Some(xxh3_64(first) as i64)
    }

    /// Skips `n` bytes (resuming from a checkpoint). Returns how many were
    /// actually there.
    pub fn skip(&mut self, mut n: u64) -> u64 {
        // A plain file past what is buffered: seek instead of reading.
        if self.offset == 0
            && n > (self.end - self.start) as u64
            && let Some(mut f) = self.seekable.take()
        {
            use std::io::{Seek, SeekFrom};
            let to = f
                .metadata()
                .map(|m| n.min(m.len()))
                .and_then(|to| f.seek(SeekFrom::Start(to)));
            match to {
                Ok(to) => {
                    self.inner = Box::new(f);
                    self.start = 0;
                    self.end = 0;
                    self.eof = false;
                    self.offset = to;
                    return to;
                }
                Err(e) => {
                    // Nothing before the checkpoint is read again.
                    self.start = self.end;
                    self.fail(e);
                    return 0;
                }
            }
        }
        let mut skipped = 0;
        while n > 0 {
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
                self.fill(1);
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
        skipped
    }

    /// The next line, or `None` at the end of the input (or where damage
    /// ended it: see [`LineReader::damage`]).
    ///
    /// A line longer than [`MAX_LINE`] is [`Line::TooLong`], once, its
    /// bytes dropped as they are read. Following a live file
    /// ([`LineReader::hold_partial_lines`]), a last line without its
    /// newline, however long, is left unread: `offset` stays at its start.
    pub fn next_line(&mut self) -> Option<Line<'_>> {
        if self.parked {
            return None;
        }
        // Bytes after `start` already searched for a newline.
        let mut scanned = 0;
        loop {
            if self.dropped == 0 {
                // Look no further than one maximal line and its newline
                // ahead: finding no newline there means the line is too
                // long. (The hot path: one search per line, no copy.)
                let limit = self.end.min(self.start + MAX_LINE + 1);
                if let Some(i) = memchr::memchr(b'\n', &self.buf[self.start + scanned..limit]) {
                    let s = self.start;
                    let e = s + scanned + i;
                    self.start = e + 1;
                    self.offset += (e + 1 - s) as u64;
                    return Some(Line::Whole(&self.buf[s..e]));
                }
                scanned = limit - self.start;
                if scanned > MAX_LINE {
                    // Too long: drop it from here on.
                    self.dropped = scanned as u64;
                    self.start = limit;
                    scanned = 0;
                }
            } else if let Some(i) = memchr::memchr(b'\n', &self.buf[self.start..self.end]) {
                let n = self.dropped + i as u64 + 1;
                self.start += i + 1;
                self.offset += n;
                self.dropped = 0;
                return Some(Line::TooLong);
            } else {
                self.dropped += (self.end - self.start) as u64;
                self.start = self.end;
            }
            if self.eof {
                return self.at_end(scanned);
            }
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
            } else if self.start + MAX_LINE + 1 > self.buf.len() {
                // Move the partial line to the front and read more behind it.
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let want = self.end - self.start + 1;
            self.fill(want);
        }
    }

    /// The end of the input, with `pending` bytes of a last line that has
    /// no newline buffered (or `dropped` bytes of an over-long one).
    fn at_end(&mut self, pending: usize) -> Option<Line<'_>> {
        let partial = if self.dropped > 0 {
            self.dropped
        } else {
            pending as u64
        };
        if partial == 0 {
            return None;
        }
        if let Some(d) = &mut self.damage {
            // Cut short by the damage: not a line to parse.
            d.cut = partial;
            self.parked = true;
            return None;
        }
        if self.hold_partial {
            // Still being written: the next pass reads it from its start.
            // An over-long one's bytes are gone from here, so this reader
            // is done.
            self.parked = self.dropped > 0;
            return None;
        }
        self.offset += partial;
        if self.dropped > 0 {
            self.dropped = 0;
            return Some(Line::TooLong);
        }
        let s = self.start;
        self.start = self.end;
        Some(Line::Last(&self.buf[s..s + pending]))
    }
}

/// zstd data read as one stream: each frame in turn (`zstd` writes one per
/// file, and logrotate can append more), skippable frames passed over
/// (pzstd writes them), each frame's checksum checked when it has one.
/// Memory: the frame's window (8 MiB at `zstd`'s default levels; frames
/// asking for more than `ruzstd`'s limit of 128 MiB are refused).
struct ZstdFrames<R> {
    source: io::BufReader<R>,
    frame: ruzstd::decoding::FrameDecoder,
    /// A frame is being decoded (its header was read).
    in_frame: bool,
}

impl<R: Read> ZstdFrames<R> {
    fn new(source: R) -> ZstdFrames<R> {
        ZstdFrames {
            source: io::BufReader::new(source),
            frame: ruzstd::decoding::FrameDecoder::new(),
            in_frame: false,
        }
    }
}

impl<R: Read> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use ruzstd::decoding::BlockDecodingStrategy;
        use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame {
                if self.source.fill_buf()?.is_empty() {
                    return Ok(0);
                }
                match self.frame.reset(&mut self.source) {
                    Ok(()) => self.in_frame = true,
                    Err(FrameDecoderError::ReadFrameHeaderError(
                        ReadFrameHeaderError::SkipFrame { length, .. },
                    )) => {
                        let length = u64::from(length);
                        let skipped =
                            io::copy(&mut (&mut self.source).take(length), &mut io::sink())?;
                        if skipped < length {
                            return Err(io::ErrorKind::UnexpectedEof.into());
                        }
                    }
                    Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
                }
                continue;
            }
            // While the frame is decoded, the last window's worth of its
            // output stays behind (later blocks refer to it); all of it can
            // be taken once the frame is finished.
            if self.frame.can_collect() > 0 {
                return self.frame.read(buf);
            }
            if self.frame.is_finished() {
                self.in_frame = false;
                // The checksum covers the frame's whole output, all taken now.
                if let Some(stored) = self.frame.get_checksum_from_data()
                    && self.frame.get_calculated_checksum() != Some(stored)
                {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "zstd frame checksum mismatch",
                    ));
                }
                continue;
            }
            self.frame
                .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBlocks(1))
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
    }
}

/// Which file a path names (device and inode), so that a file renamed by
/// rotation is still known for the one that was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    /// Not compressed: offsets into it are its own bytes.
    pub plain: bool,
}

impl FileId {
    pub fn of(meta: &std::fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            plain: true,
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

    /// What a reader gives, line by line: `Ok` a line's bytes and whether
    /// it had its newline, `Err(())` a line too long.
    type Got = Vec<Result<(Vec<u8>, bool), ()>>;

    fn read_all(r: &mut LineReader) -> Got {
        let mut v = Vec::new();
        while let Some(l) = r.next_line() {
            v.push(match l {
                Line::Whole(l) => Ok((l.to_vec(), true)),
                Line::Last(l) => Ok((l.to_vec(), false)),
                Line::TooLong => Err(()),
            });
        }
        v
    }

    fn open(path: &Path) -> LineReader {
        LineReader::open(&SourceSpec::File(path.to_owned())).unwrap()
    }

    fn lines_of(path: &Path) -> Got {
        read_all(&mut open(path))
    }

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/postfix")
            .join(name)
    }

    /// The lines of `bytes`, split by hand, as a reader should give them.
    fn split(bytes: &[u8]) -> Got {
        bytes
            .split_inclusive(|&b| b == b'\n')
            .map(|l| match l.strip_suffix(b"\n") {
                Some(l) => Ok((l.to_vec(), true)),
                None => Ok((l.to_vec(), false)),
            })
            .collect()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn plain_and_gzip_read_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let text = b"one\ntwo\n\nthree without newline";
        let plain = dir.path().join("a.log");
        std::fs::write(&plain, text).unwrap();
        let gz = dir.path().join("a.log.2.gz");
        let mut bytes = gzip(&text[..8]);
        // A second gzip member, as logrotate's delaycompress + append can make.
        bytes.extend(gzip(&text[8..]));
        std::fs::write(&gz, bytes).unwrap();
        let want: Got = vec![
            Ok((b"one".to_vec(), true)),
            Ok((b"two".to_vec(), true)),
            Ok((b"".to_vec(), true)),
            Ok((b"three without newline".to_vec(), false)),
        ];
        assert_eq!(lines_of(&plain), want);
        assert_eq!(lines_of(&gz), want);
        let fp = |p: &Path| open(p).fingerprint();
        assert_eq!(fp(&plain), fp(&gz));
        assert!(fp(&plain).is_some());
    }

    #[test]
    fn nul_bytes_are_read_as_question_marks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nul.log");
        std::fs::write(&path, b"a\0b\n\0\n\xe4\xb8\0\n\0").unwrap();
        assert_eq!(lines_of(&path), split(b"a?b\n?\n\xe4\xb8?\n?"));
        std::fs::write(&path, gzip(b"a\0\0b\n")).unwrap();
        assert_eq!(lines_of(&path), split(b"a??b\n"));
    }

    #[test]
    fn empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.log");
        std::fs::write(&empty, b"").unwrap();
        assert!(lines_of(&empty).is_empty());
        assert_eq!(open(&empty).fingerprint(), None);
        assert_eq!(open(&empty).damage(), None);
    }

    /// `before`, a line of `long` bytes, `after`.
    fn with_long_line(long: usize) -> Vec<u8> {
        let mut data = b"before\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', long));
        data.extend_from_slice(b"\nafter\n");
        data
    }

    #[test]
    fn a_long_line_is_one_line_too_long() {
        let dir = tempfile::tempdir().unwrap();
        let long = MAX_LINE * 3 + 10;
        let data = with_long_line(long);
        let plain = dir.path().join("long.log");
        std::fs::write(&plain, &data).unwrap();
        // The same through a decoder, whose reads end anywhere.
        let gz = dir.path().join("long.log.gz");
        std::fs::write(&gz, gzip(&data)).unwrap();
        for path in [&plain, &gz] {
            let mut r = open(path);
            assert_eq!(r.next_line(), Some(Line::Whole(b"before")));
            assert_eq!(r.offset(), 7);
            assert_eq!(r.next_line(), Some(Line::TooLong));
            assert_eq!(r.offset(), 7 + long as u64 + 1);
            assert_eq!(r.next_line(), Some(Line::Whole(b"after")));
            assert_eq!(r.offset(), data.len() as u64);
            assert_eq!(r.next_line(), None);
            assert_eq!(r.damage(), None);
        }
    }

    #[test]
    fn the_longest_line_is_read_and_one_more_byte_is_too_long() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("edge.log");
        std::fs::write(&p, with_long_line(MAX_LINE)).unwrap();
        let got = lines_of(&p);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1], Ok((vec![b'x'; MAX_LINE], true)));
        std::fs::write(&p, with_long_line(MAX_LINE + 1)).unwrap();
        let got = lines_of(&p);
        assert_eq!(
            got,
            vec![
                Ok((b"before".to_vec(), true)),
                Err(()),
                Ok((b"after".to_vec(), true))
            ]
        );
    }

    #[test]
    fn a_long_last_line_without_newline_counts_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tail.log");
        let mut data = b"first\n".to_vec();
        data.extend(std::iter::repeat_n(b'y', MAX_LINE * 2 + 3));
        std::fs::write(&p, &data).unwrap();
        let mut r = open(&p);
        assert_eq!(
            read_all(&mut r),
            vec![Ok((b"first".to_vec(), true)), Err(())]
        );
        assert_eq!(r.offset(), data.len() as u64);
        assert_eq!(r.next_line(), None);
    }

    #[test]
    fn following_leaves_a_partial_long_line_for_the_next_pass() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("live.log");
        let mut data = b"first\n".to_vec();
        data.extend(std::iter::repeat_n(b'z', MAX_LINE + 100));
        std::fs::write(&p, &data).unwrap();
        let mut r = open(&p);
        r.hold_partial_lines();
        r.fingerprint().unwrap();
        assert_eq!(r.next_line(), Some(Line::Whole(b"first")));
        assert_eq!(r.next_line(), None);
        assert_eq!(r.next_line(), None, "its tail is not a line either");
        let checkpoint = r.offset();
        assert_eq!(checkpoint, 6);

        // The rest of the line and its newline arrive, then a new line.
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&[b'z'; 50]).unwrap();
        f.write_all(b"\n").unwrap();
        f.write_all(b"Nov 23 10:00:00 mail postfix/qmgr[2]: AB12CD34EF: removed\n")
            .unwrap();
        drop(f);
        let mut r = open(&p);
        r.hold_partial_lines();
        r.fingerprint().unwrap();
        assert_eq!(r.skip(checkpoint), checkpoint);
        assert_eq!(r.next_line(), Some(Line::TooLong));
        assert_eq!(r.offset(), checkpoint + MAX_LINE as u64 + 150 + 1);
        assert_eq!(
            r.next_line(),
            Some(Line::Whole(
                b"Nov 23 10:00:00 mail postfix/qmgr[2]: AB12CD34EF: removed"
            ))
        );
        assert_eq!(r.next_line(), None);
    }

    #[test]
    fn following_stops_at_a_file_truncated_and_written_again() {
        // Larger than the reader's buffer, so that reading its lines goes
        // back to the file for more after the copytruncate below.
        let lines = |tag: &str, n: usize| -> Vec<u8> {
            (0..n)
                .flat_map(|i| format!("{tag} line {i:07}\n").into_bytes())
                .collect()
        };
        let old = lines("old", 150_000);
        assert!(old.len() > CHUNK + MAX_LINE + 1);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("live.log");
        std::fs::write(&p, &old).unwrap();
        let mut r = open(&p);
        r.hold_partial_lines();
        let fp = r.fingerprint().unwrap();
        assert_eq!(r.next_line(), Some(Line::Whole(b"old line 0000000")));
        // copytruncate while the reader holds the file open: emptied in
        // place and written again, longer than the old file.
        let new = lines("new", 300_000);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        f.write_all(&new).unwrap();
        drop(f);
        let mut n = 1;
        while let Some(line) = r.next_line() {
            let Line::Whole(l) = line else {
                panic!("{line:?}")
            };
            assert_eq!(
                l,
                format!("old line {n:07}").as_bytes(),
                "read the new file as the rest of the old one"
            );
            n += 1;
        }
        // What was read before the truncation, and its checkpoint there:
        // the rotated copy holds the rest, read from that checkpoint.
        assert!(n > 1 && n < 150_000, "{n} lines");
        assert_eq!(r.offset(), (n * 17) as u64);
        // The new file is a source of its own, read from its start.
        let mut r = open(&p);
        r.hold_partial_lines();
        assert_ne!(r.fingerprint(), Some(fp));
        assert_eq!(r.next_line(), Some(Line::Whole(b"new line 0000000")));

        // A file only appended to is read to its end.
        std::fs::write(&p, &old).unwrap();
        let mut r = open(&p);
        r.hold_partial_lines();
        r.fingerprint().unwrap();
        assert_eq!(r.next_line(), Some(Line::Whole(b"old line 0000000")));
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"later\n").unwrap();
        drop(f);
        let mut last = Vec::new();
        while let Some(Line::Whole(l)) = r.next_line() {
            last = l.to_vec();
        }
        assert_eq!(last, b"later");
        assert_eq!(r.offset(), old.len() as u64 + 6);
    }

    #[test]
    fn following_leaves_a_partial_short_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("live.log");
        std::fs::write(&p, b"first\nsecond, still being wri").unwrap();
        let mut r = open(&p);
        r.hold_partial_lines();
        assert_eq!(r.next_line(), Some(Line::Whole(b"first")));
        assert_eq!(r.next_line(), None);
        assert_eq!(r.offset(), 6);
    }

    #[test]
    fn skip_resumes_at_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        std::fs::write(&p, b"first\nsecond\nthird\n").unwrap();
        let mut r = open(&p);
        r.next_line().unwrap();
        let off = r.offset();
        assert_eq!(off, 6);
        let mut r2 = open(&p);
        r2.fingerprint().unwrap();
        assert_eq!(r2.skip(off), off);
        assert_eq!(r2.next_line(), Some(Line::Whole(b"second")));
        assert_eq!(r2.offset(), 13);
    }

    #[test]
    fn compressed_rotations_read_as_the_plain_file() {
        let plain = std::fs::read(fixture("mail.log")).unwrap();
        let want = split(&plain);
        assert!(want.len() > 100);
        let fp = open(&fixture("mail.log")).fingerprint();
        for name in [
            "mail.log.gz",
            "mail.log.bz2",
            "mail.log.xz",
            "mail.log.zst",
            "mail.log.pzstd.zst",
            "mail.log.multi.gz",
            "mail.log.multi.bz2",
            "mail.log.multi.xz",
            "mail.log.multi.zst",
        ] {
            let mut r = open(&fixture(name));
            assert_eq!(r.fingerprint(), fp, "{name}");
            assert_eq!(read_all(&mut r), want, "{name}");
            assert_eq!(r.offset(), plain.len() as u64, "{name}");
            assert_eq!(r.damage(), None, "{name}");
        }
    }

    #[test]
    fn concatenated_files_are_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let plain = std::fs::read(fixture("mail.log")).unwrap();
        let mut twice = plain.clone();
        twice.extend_from_slice(&plain);
        let want = split(&twice);
        for (name, between) in [
            ("mail.log.gz", &b""[..]),
            ("mail.log.bz2", b""),
            // xz allows zero padding between streams, in fours.
            ("mail.log.xz", &[0; 8]),
            ("mail.log.zst", b""),
            // A skippable frame of 3 bytes between two frames.
            (
                "mail.log.zst",
                &[0x5e, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3],
            ),
            ("mail.log.pzstd.zst", b""),
        ] {
            let one = std::fs::read(fixture(name)).unwrap();
            let mut bytes = one.clone();
            bytes.extend_from_slice(between);
            bytes.extend_from_slice(&one);
            let p = dir.path().join(name);
            std::fs::write(&p, &bytes).unwrap();
            let mut r = open(&p);
            assert_eq!(read_all(&mut r), want, "{name}");
            assert_eq!(r.damage(), None, "{name}");
        }
    }

    #[test]
    fn truncated_files_give_the_lines_before_the_damage() {
        let dir = tempfile::tempdir().unwrap();
        let plain = std::fs::read(fixture("mail.log")).unwrap();
        let mut twice = plain.clone();
        twice.extend_from_slice(&plain);
        let all = split(&twice);
        for name in ["mail.log.gz", "mail.log.bz2", "mail.log.xz", "mail.log.zst"] {
            let one = std::fs::read(fixture(name)).unwrap();
            // A whole member or stream, then half of another: at least the
            // first one's lines must come out.
            for cut in [one.len() / 2, one.len() - 1] {
                let mut bytes = one.clone();
                bytes.extend_from_slice(&one[..cut]);
                let p = dir.path().join(name);
                std::fs::write(&p, &bytes).unwrap();
                let mut r = open(&p);
                r.fingerprint().unwrap();
                let got = read_all(&mut r);
                assert!(got.len() >= all.len() / 2, "{name} cut at {cut}");
                // Cut in its last bytes (a check after the data), the
                // second may give all its lines; not cut in half.
                assert!(
                    got.len() < all.len() || cut == one.len() - 1,
                    "{name} cut at {cut}"
                );
                assert_eq!(got[..], all[..got.len()], "{name} cut at {cut}");
                let read: u64 = got
                    .iter()
                    .map(|l| l.as_ref().unwrap().0.len() as u64 + 1)
                    .sum();
                assert_eq!(r.offset(), read, "{name} cut at {cut}");
                let d = r.damage().unwrap_or_else(|| panic!("{name} cut at {cut}"));
                assert!(d.error.contains("truncated"), "{name}: {}", d.error);
                assert_eq!(d.reached, r.offset() + d.cut, "{name}: {d:?}");
                // What was cut is the beginning of the next line, never
                // handed on.
                assert!(d.cut < plain.len() as u64, "{name}: {d:?}");
                assert_eq!(r.next_line(), None);
            }
        }
    }

    #[test]
    fn corrupt_data_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["mail.log.gz", "mail.log.bz2", "mail.log.xz", "mail.log.zst"] {
            let mut bytes = std::fs::read(fixture(name)).unwrap();
            // The last bytes hold a check of the whole (gzip's CRC-32 and
            // length, bzip2's stream CRC, xz's stream footer, zstd's
            // checksum).
            let n = bytes.len();
            bytes[n - 3] ^= 0x55;
            let p = dir.path().join(name);
            std::fs::write(&p, &bytes).unwrap();
            let mut r = open(&p);
            read_all(&mut r);
            let d = r.damage();
            assert!(d.is_some(), "{name}");
        }
        // zstd's checksum is checked here, not by the decoder.
        let mut bytes = std::fs::read(fixture("mail.log.zst")).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        let p = dir.path().join("sum.zst");
        std::fs::write(&p, &bytes).unwrap();
        let mut r = open(&p);
        read_all(&mut r);
        assert!(
            r.damage().unwrap().error.contains("checksum"),
            "{:?}",
            r.damage()
        );
    }

    #[test]
    fn damage_at_the_start_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("header.gz");
        std::fs::write(&p, [0x1f, 0x8b, 0x08, 0x00, 0x00]).unwrap();
        let mut r = open(&p);
        assert_eq!(r.fingerprint(), None);
        assert_eq!(r.next_line(), None);
        let d = r.damage().unwrap();
        assert_eq!((d.reached, d.cut), (0, 0));
        assert!(d.error.starts_with("gzip data: "), "{}", d.error);
    }

    #[test]
    fn unsupported_compression_is_named() {
        let dir = tempfile::tempdir().unwrap();
        for (magic, format) in [
            (&[0x1f, 0x9d, 0x90][..], "compress"),
            (b"LZIP\x01", "lzip"),
            (&[0x04, 0x22, 0x4d, 0x18, 0x64], "lz4"),
            (&[0x89, b'L', b'Z', b'O', 0x00], "lzop"),
        ] {
            let p = dir.path().join("mail.log.9.x");
            let mut bytes = magic.to_vec();
            bytes.extend_from_slice(&[0x55; 100]);
            std::fs::write(&p, &bytes).unwrap();
            let spec = SourceSpec::File(p.clone());
            for err in [
                spec.check().unwrap_err(),
                LineReader::open(&spec).err().unwrap(),
            ] {
                let text = format!("{err:#}");
                assert!(text.contains("mail.log.9.x"), "{text}");
                assert!(text.contains(format), "{text}");
            }
        }
        // Short files and text are plain.
        for text in [&b""[..], b"\x1f", b"Nov 23 10:00:00 mail x: y\n", b"BZ"] {
            assert_eq!(Format::sniff(text), Ok(Format::Plain));
        }
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
