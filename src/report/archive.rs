//! The ZIP attachment. All zip code is here, because the zip crate's API
//! moves between versions.

use std::io::{Cursor, Write};

use chrono::{Datelike, NaiveDateTime, Timelike};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// One ZIP holding `files` (name, content), deflated, each stamped with
/// `modified` (local time, as ZIP stores it).
pub fn zip(files: &[(&str, &[u8])], modified: NaiveDateTime) -> anyhow::Result<Vec<u8>> {
    let stamp = zip::DateTime::from_date_and_time(
        u16::try_from(modified.year()).unwrap_or(1980),
        modified.month() as u8,
        modified.day() as u8,
        modified.hour() as u8,
        modified.minute() as u8,
        modified.second() as u8,
    )
    .unwrap_or_default();
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .last_modified_time(stamp)
        .unix_permissions(0o644);
    let capacity = files.iter().map(|(_, b)| b.len() / 6).sum::<usize>() + 1024;
    let mut w = ZipWriter::new(Cursor::new(Vec::with_capacity(capacity)));
    for (name, bytes) in files {
        w.start_file(*name, options)?;
        w.write_all(bytes)?;
    }
    Ok(w.finish()?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn files_come_back_out() {
        let when = chrono::NaiveDate::from_ymd_opt(2026, 11, 23)
            .unwrap()
            .and_hms_opt(9, 41, 17)
            .unwrap();
        let big = "row,".repeat(10_000);
        let z = zip(&[("a.html", b"<p>x</p>"), ("b.csv", big.as_bytes())], when).unwrap();
        assert!(z.len() < big.len() / 10, "deflated: {} bytes", z.len());
        let mut archive = zip::ZipArchive::new(Cursor::new(z)).unwrap();
        assert_eq!(archive.len(), 2);
        let mut s = String::new();
        archive
            .by_name("b.csv")
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, big);
        let f = archive.by_name("a.html").unwrap();
        let m = f.last_modified().unwrap();
        assert_eq!((m.year(), m.month(), m.day(), m.hour()), (2026, 11, 23, 9));
    }
}
