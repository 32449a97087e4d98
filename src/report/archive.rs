//! The ZIP attachment. All zip code is here, because the zip crate's API
//! moves between versions.

use std::io::{Cursor, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::{Scope, ScopedJoinHandle};

use chrono::{Datelike, NaiveDateTime, Timelike};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// A ZIP entry's options: deflated, stamped with `modified` (local time,
/// as ZIP stores it).
fn options(modified: NaiveDateTime) -> SimpleFileOptions {
    let stamp = zip::DateTime::from_date_and_time(
        u16::try_from(modified.year()).unwrap_or(1980),
        modified.month() as u8,
        modified.day() as u8,
        modified.hour() as u8,
        modified.minute() as u8,
        modified.second() as u8,
    )
    .unwrap_or_default();
    SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .last_modified_time(stamp)
        .unix_permissions(0o644)
}

/// What a [`Page`] hands to the thread that zips.
enum Piece {
    /// The next file of the ZIP, by name.
    File(String),
    Bytes(Vec<u8>),
    /// A ZIP whose files are added as they are (deflated already).
    Zip(Vec<u8>),
}

/// Bytes handed on to the zipping thread at a time.
const PIECE: usize = 1 << 20;

/// A page being rendered (an [`std::io::Write`]): kept in memory while it
/// is at most `zip_over` bytes; once larger, handed on in pieces of 1 MiB
/// to a thread of `scope` that deflates it into a ZIP while the rest is
/// rendered, so a large report takes about the longer of the two, not
/// their sum.
pub struct Page<'scope, 'env> {
    scope: &'scope Scope<'scope, 'env>,
    name: String,
    always: bool,
    zip_over: usize,
    modified: NaiveDateTime,
    held: Vec<u8>,
    zipper: Option<Zipper<'scope>>,
}

struct Zipper<'scope> {
    to: SyncSender<Piece>,
    done: ScopedJoinHandle<'scope, anyhow::Result<Vec<u8>>>,
}

/// A rendered page: as it is, or zipped with the files added at the end.
pub enum Rendered {
    Plain(Vec<u8>),
    Zipped(Vec<u8>),
}

impl<'scope, 'env> Page<'scope, 'env> {
    /// The page `name`, zipped once larger than `zip_over` bytes (`None`:
    /// zipped whatever its size), each file stamped with `modified`.
    pub fn new(
        scope: &'scope Scope<'scope, 'env>,
        name: &str,
        zip_over: Option<u64>,
        modified: NaiveDateTime,
    ) -> Page<'scope, 'env> {
        Page {
            scope,
            name: name.to_owned(),
            always: zip_over.is_none(),
            zip_over: zip_over.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX)),
            modified,
            held: Vec::new(),
            zipper: None,
        }
    }

    /// Starts the zipping thread with what is held so far.
    fn spill(&mut self) -> std::io::Result<()> {
        let (to, from) = sync_channel::<Piece>(4);
        let modified = self.modified;
        let done = self.scope.spawn(move || deflate(from, modified));
        let held = std::mem::take(&mut self.held);
        let z = Zipper { to, done };
        send(&z.to, Piece::File(self.name.clone()))?;
        send(&z.to, Piece::Bytes(held))?;
        self.held = Vec::with_capacity(PIECE);
        self.zipper = Some(z);
        Ok(())
    }

    /// The page as it is, when it stayed small and `extra` is not wanted;
    /// otherwise the ZIP of the page and of the files of the ZIP `extra`
    /// gives ([`zip_files`], made while the page is still being deflated:
    /// on another thread, it deflates at the same time), copied in as they
    /// are.
    pub fn finish(
        mut self,
        extra: impl FnOnce() -> anyhow::Result<Vec<u8>>,
    ) -> anyhow::Result<Rendered> {
        if self.zipper.is_none() {
            if !self.always && self.held.len() <= self.zip_over {
                return Ok(Rendered::Plain(self.held));
            }
            self.spill()?;
        }
        let Some(z) = self.zipper.take() else {
            unreachable!("spilled above")
        };
        if !self.held.is_empty() {
            send(&z.to, Piece::Bytes(std::mem::take(&mut self.held)))?;
        }
        let extra = extra().and_then(|zip| Ok(send(&z.to, Piece::Zip(zip))?));
        drop(z.to);
        let bytes = z
            .done
            .join()
            .map_err(|_| anyhow::anyhow!("the thread zipping the report stopped"))??;
        // The page's own failure first: it says more.
        extra?;
        Ok(Rendered::Zipped(bytes))
    }
}

impl Write for Page<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.held.extend_from_slice(buf);
        match &self.zipper {
            None if self.always || self.held.len() > self.zip_over => self.spill()?,
            Some(z) if self.held.len() >= PIECE => {
                let piece = std::mem::replace(&mut self.held, Vec::with_capacity(PIECE));
                send(&z.to, Piece::Bytes(piece))?;
            }
            _ => {}
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn send(to: &SyncSender<Piece>, piece: Piece) -> std::io::Result<()> {
    // The thread only stops early on an error, which `finish` returns.
    to.send(piece)
        .map_err(|_| std::io::Error::other("the thread zipping the report stopped"))
}

/// The zipping thread: files and their bytes, in the order they come.
fn deflate(from: Receiver<Piece>, modified: NaiveDateTime) -> anyhow::Result<Vec<u8>> {
    let mut w = ZipWriter::new(Cursor::new(Vec::with_capacity(4 * PIECE)));
    let mut open = false;
    for piece in from {
        match piece {
            Piece::File(name) => {
                w.start_file(name, options(modified))?;
                open = true;
            }
            Piece::Bytes(b) => {
                anyhow::ensure!(open, "bytes before any file");
                w.write_all(&b)?;
            }
            Piece::Zip(z) => {
                w.merge_archive(zip::ZipArchive::new(Cursor::new(z))?)?;
                open = false;
            }
        }
    }
    Ok(w.finish()?.into_inner())
}

/// A ZIP of `files`, each stamped with `modified`: files a [`Page`] adds
/// to its own ZIP, deflated apart (on a thread of their own while the page
/// is deflated on another).
pub fn zip_files(
    files: Vec<(String, Vec<u8>)>,
    modified: NaiveDateTime,
) -> anyhow::Result<Vec<u8>> {
    let size: usize = files.iter().map(|(_, b)| b.len()).sum();
    let mut w = ZipWriter::new(Cursor::new(Vec::with_capacity(size / 8 + 1024)));
    for (name, bytes) in files {
        w.start_file(name, options(modified))?;
        w.write_all(&bytes)?;
    }
    Ok(w.finish()?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn when() -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2026, 11, 23)
            .unwrap()
            .and_hms_opt(9, 41, 17)
            .unwrap()
    }

    fn written(zip_over: Option<u64>, page: &[u8], extra: bool) -> Rendered {
        std::thread::scope(|s| {
            let mut p = Page::new(s, "r.html", zip_over, when());
            // In uneven writes, as a template writes.
            for chunk in page.chunks(7919) {
                p.write_all(chunk).unwrap();
            }
            p.finish(|| {
                let files = if extra {
                    vec![("r.csv".to_owned(), b"a,b\n".to_vec())]
                } else {
                    Vec::new()
                };
                zip_files(files, when())
            })
            .unwrap()
        })
    }

    fn unzipped(z: &[u8], name: &str) -> Vec<u8> {
        let mut archive = zip::ZipArchive::new(Cursor::new(z)).unwrap();
        let mut out = Vec::new();
        archive
            .by_name(name)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn a_small_page_stays_as_it_is() {
        let page = b"<p>small</p>".repeat(10);
        match written(Some(1000), &page, true) {
            Rendered::Plain(b) => assert_eq!(b, page),
            Rendered::Zipped(_) => panic!("zipped a page of {} bytes", page.len()),
        }
    }

    #[test]
    fn a_page_past_the_limit_is_zipped_whole_with_the_extra_files() {
        // Past one piece, so it goes to the thread in several.
        let page: Vec<u8> = (0..3 * PIECE + 17).map(|i| (i % 251) as u8).collect();
        for (zip_over, extra) in [
            (Some(1000), true),
            (None, false),
            (Some(PIECE as u64), true),
        ] {
            let Rendered::Zipped(z) = written(zip_over, &page, extra) else {
                panic!("not zipped past {zip_over:?}");
            };
            assert!(unzipped(&z, "r.html") == page, "page changed in the zip");
            assert!(z.len() < page.len() / 10, "deflated: {} bytes", z.len());
            let mut archive = zip::ZipArchive::new(Cursor::new(&z)).unwrap();
            assert_eq!(archive.len(), if extra { 2 } else { 1 });
            let m = archive.by_name("r.html").unwrap().last_modified().unwrap();
            assert_eq!((m.year(), m.month(), m.day(), m.hour()), (2026, 11, 23, 9));
            if extra {
                assert_eq!(unzipped(&z, "r.csv"), b"a,b\n");
            }
        }
        // Asked to zip always: even a small page.
        for page in [&b"<p>x</p>"[..], b""] {
            let Rendered::Zipped(z) = written(None, page, false) else {
                panic!("asked to zip, kept {page:?} plain");
            };
            assert_eq!(unzipped(&z, "r.html"), page);
        }
    }
}
