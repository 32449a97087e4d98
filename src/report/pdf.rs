//! The report as a PDF: the same header, tables and rows as the HTML, in
//! either language, for owners who file or print their records.
//!
//! Chinese needs a font with CJK glyphs, and a PDF reader may have none:
//! the font is embedded (krilla keeps only the glyphs used, so a report
//! carries tens of kilobytes of a 17 MB font), with the text's code points
//! beside the glyphs so that it can be searched and copied. The font is a
//! file of the system's (`report.pdf_font`), read once per process.
//!
//! Layout is plain and predictable: A4 landscape, tables whose cells wrap
//! (a long token from a log breaks anywhere, nothing is cut off; a row
//! taller than what is left of a page goes on on the next) and whose
//! header row repeats on every page, a footer with the mailbox and the
//! page number. The SMTP details are the HTML's: one line per message,
//! its recipients' outcomes under it ([`super::layout`]). Every glyph is placed without shaping, one code
//! point to one glyph, which is all Chinese and Latin text needs; text
//! from logs is first shown with its hidden characters as code points
//! ([`visible`]), as everywhere else.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::Context as _;
use krilla::Document;
use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::surface::Surface;
use krilla::text::{Font, GlyphId, KrillaGlyph};
use skrifa::instance::{LocationRef, Size};
use skrifa::{FontRef, MetadataProvider};

use crate::visible::visible;

/// A4 landscape, in points: wide tables need the width more than the
/// height.
const PAGE_W: f32 = 842.0;
const PAGE_H: f32 = 595.0;
const MARGIN: f32 = 36.0;
const TABLE_SIZE: f32 = 8.0;
const TEXT_SIZE: f32 = 9.5;
const HEADING_SIZE: f32 = 13.0;
const SUBHEADING_SIZE: f32 = 11.0;
const TITLE_SIZE: f32 = 17.0;
const LINE: f32 = 1.35;
const PAD: f32 = 3.0;
/// A character the font must have for the report's Chinese.
const CJK_PROBE: char = '信';

/// A font that can write the reports, loaded once.
#[derive(Clone)]
pub struct PdfFont {
    data: Arc<Vec<u8>>,
    index: u32,
    font: Font,
}

impl std::fmt::Debug for PdfFont {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PdfFont")
            .field("bytes", &self.data.len())
            .field("index", &self.index)
            .finish()
    }
}

impl PdfFont {
    /// Reads the font at `path` (a `.ttf`, `.otf`, or the first font of a
    /// `.ttc`). Returns `Err`, saying what to install, when the file is
    /// missing, is not a font, or has no Chinese.
    pub fn load(path: &Path) -> anyhow::Result<PdfFont> {
        let bytes = std::fs::read(path).with_context(|| {
            format!(
                "cannot read the PDF font {} (report.pdf_font): install a font with Chinese \
                 glyphs, such as Debian's fonts-wqy-zenhei, or set report.pdf = \"never\"",
                path.display()
            )
        })?;
        let data = Arc::new(bytes);
        let index = 0;
        let f = FontRef::from_index(&data, index).map_err(|e| {
            anyhow::anyhow!(
                "the PDF font {} (report.pdf_font) is not a TrueType or OpenType font: {e}",
                path.display()
            )
        })?;
        anyhow::ensure!(
            f.charmap().map(CJK_PROBE).is_some(),
            "the PDF font {} (report.pdf_font) has no Chinese glyphs: choose one that has, \
             such as /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
            path.display()
        );
        let font = Font::new(data.clone().into(), index).with_context(|| {
            format!(
                "the PDF font {} (report.pdf_font) cannot be embedded",
                path.display()
            )
        })?;
        Ok(PdfFont { data, index, font })
    }

    /// The font at `path`, read from disk the first time only.
    pub fn cached(path: &Path) -> anyhow::Result<PdfFont> {
        static FONTS: OnceLock<Mutex<HashMap<PathBuf, PdfFont>>> = OnceLock::new();
        let fonts = FONTS.get_or_init(Default::default);
        if let Some(f) = fonts.lock().unwrap_or_else(|e| e.into_inner()).get(path) {
            return Ok(f.clone());
        }
        let f = PdfFont::load(path)?;
        fonts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path.to_owned(), f.clone());
        Ok(f)
    }
}

/// One column of a table.
#[derive(Debug, Clone)]
pub struct Column {
    pub title: String,
    /// Its share of the width.
    pub weight: f32,
    /// Numbers align right.
    pub right: bool,
}

/// What a report's PDF holds, in order.
#[derive(Debug, Clone)]
pub enum Block {
    Title(String),
    Heading(String),
    /// A table's own title under a heading.
    Subheading(String),
    Text(String),
    Table {
        columns: Vec<Column>,
        rows: Vec<Row>,
    },
}

/// One cell of a row: paragraphs, each on lines of its own (a line break
/// inside a paragraph, as log text may hold, is shown as a code point),
/// across `span` columns.
#[derive(Debug, Clone)]
pub struct Cell {
    pub paras: Vec<String>,
    pub span: usize,
}

impl Cell {
    /// One paragraph in one column.
    pub fn text(s: impl Into<String>) -> Cell {
        Cell {
            paras: vec![s.into()],
            span: 1,
        }
    }
}

/// How a row looks, as the HTML's rows do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Style {
    #[default]
    Plain,
    /// A message's own line, over its recipients' rows: shaded, and ruled
    /// above.
    Group,
    /// Days on which nothing happened, said in one line: grey.
    Quiet,
    /// A table's total: shaded.
    Total,
}

/// A row of a table. Its cells' spans add up to the table's columns.
#[derive(Debug, Clone)]
pub struct Row {
    pub cells: Vec<Cell>,
    pub style: Style,
}

impl From<Vec<String>> for Row {
    /// One cell a column, plain.
    fn from(cells: Vec<String>) -> Row {
        Row {
            cells: cells.into_iter().map(Cell::text).collect(),
            style: Style::Plain,
        }
    }
}

/// A report's PDF.
#[derive(Debug, Clone)]
pub struct Doc {
    pub title: String,
    /// `zh-TW` or `en`, for the PDF's metadata.
    pub lang: &'static str,
    /// On every page's foot, before the page number.
    pub footer: String,
    pub blocks: Vec<Block>,
}

/// Glyphs and widths of one font.
struct Metrics<'a> {
    /// Read once: building a font's character map parses its tables.
    charmap: skrifa::charmap::Charmap<'a>,
    glyphs: skrifa::metrics::GlyphMetrics<'a>,
    upem: f32,
}

impl<'a> Metrics<'a> {
    fn new(f: &'a PdfFont) -> anyhow::Result<Metrics<'a>> {
        let font = FontRef::from_index(&f.data, f.index)?;
        let upem = f32::from(
            font.metrics(Size::unscaled(), LocationRef::default())
                .units_per_em,
        );
        let glyphs = font.glyph_metrics(Size::unscaled(), LocationRef::default());
        Ok(Metrics {
            charmap: font.charmap(),
            glyphs,
            upem,
        })
    }

    /// The glyph of `c` and its advance, in em.
    fn glyph(&self, c: char) -> (u32, f32) {
        let gid = self.charmap.map(c).unwrap_or_default();
        let adv = self.glyphs.advance_width(gid).unwrap_or(self.upem / 2.0) / self.upem;
        (gid.to_u32(), adv)
    }

    fn width(&self, s: &str, size: f32) -> f32 {
        s.chars().map(|c| self.glyph(c).1).sum::<f32>() * size
    }

    /// `s` cut into lines no wider than `width`: at a space when there is
    /// one on the line, else anywhere (Chinese has no spaces, and a long
    /// token from a log has none either). Nothing is left out.
    fn wrap(&self, s: &str, size: f32, width: f32) -> Vec<String> {
        let mut lines = Vec::new();
        for para in s.split('\n') {
            let mut line = String::new();
            let mut w = 0.0;
            let mut last_space: Option<usize> = None;
            for c in para.chars() {
                let cw = self.glyph(c).1 * size;
                if w + cw > width && !line.is_empty() {
                    match last_space {
                        Some(at) if at > 0 => {
                            let rest = line.split_off(at + 1);
                            line.truncate(at);
                            lines.push(std::mem::replace(&mut line, rest));
                        }
                        _ => lines.push(std::mem::take(&mut line)),
                    }
                    w = self.width(&line, size);
                    last_space = None;
                }
                if c == ' ' {
                    last_space = Some(line.len());
                }
                line.push(c);
                w += cw;
            }
            lines.push(line);
        }
        lines
    }
}

/// Writes a line of text with its baseline at `(x, y)`.
fn draw(
    surface: &mut Surface<'_>,
    m: &Metrics<'_>,
    font: &Font,
    x: f32,
    y: f32,
    size: f32,
    s: &str,
) {
    if s.is_empty() {
        return;
    }
    let glyphs: Vec<KrillaGlyph> = s
        .char_indices()
        .map(|(i, c)| {
            let (gid, adv) = m.glyph(c);
            KrillaGlyph::new(
                GlyphId::new(gid),
                adv,
                0.0,
                0.0,
                0.0,
                i..i + c.len_utf8(),
                None,
            )
        })
        .collect();
    surface.draw_glyphs(Point::from_xy(x, y), &glyphs, font.clone(), s, size, false);
}

fn rule(surface: &mut Surface<'_>, x0: f32, x1: f32, y: f32, grey: u8, width: f32) {
    let mut pb = PathBuilder::new();
    pb.move_to(x0, y);
    pb.line_to(x1, y);
    if let Some(path) = pb.finish() {
        surface.set_fill(None);
        surface.set_stroke(Some(Stroke {
            paint: rgb::Color::new(grey, grey, grey).into(),
            width,
            ..Default::default()
        }));
        surface.draw_path(&path);
        surface.set_stroke(None);
        surface.set_fill(Some(Fill::default()));
    }
}

/// A cell placed on its row: where it starts, how wide it is, and its
/// lines.
struct Placed {
    x: f32,
    w: f32,
    right: bool,
    lines: Vec<String>,
}

fn grey(g: u8) -> Fill {
    Fill {
        paint: rgb::Color::new(g, g, g).into(),
        ..Default::default()
    }
}

/// Fills a rectangle in grey `g`, behind what is drawn next.
fn shade(surface: &mut Surface<'_>, x: f32, y: f32, w: f32, h: f32, g: u8) {
    let mut pb = PathBuilder::new();
    if let Some(r) = Rect::from_xywh(x, y, w, h) {
        pb.push_rect(r);
    }
    if let Some(path) = pb.finish() {
        surface.set_fill(Some(grey(g)));
        surface.draw_path(&path);
        surface.set_fill(Some(Fill::default()));
    }
}

/// Lays out `doc` in pages and returns the PDF's bytes.
pub fn write(doc: &Doc, font: &PdfFont) -> anyhow::Result<Vec<u8>> {
    let m = Metrics::new(font)?;
    let mut pdf = Document::new();
    pdf.set_metadata(
        krilla::metadata::Metadata::new()
            .title(visible(&doc.title).into_owned())
            .language(doc.lang.to_owned())
            .creator("mailtrail".to_owned()),
    );
    let settings = || PageSettings::from_wh(PAGE_W, PAGE_H).expect("A4 is a valid page size");
    let mut page_no = 1;
    let mut page = pdf.start_page_with(settings());
    let mut surface = page.surface();
    surface.set_fill(Some(Fill::default()));
    let bottom = PAGE_H - MARGIN - 16.0;
    let mut y = MARGIN;
    let full = PAGE_W - 2.0 * MARGIN;

    // Ends the page (with its footer) and starts the next.
    macro_rules! new_page {
        () => {{
            let foot = format!("{} · {}", doc.footer, page_no);
            draw(
                &mut surface,
                &m,
                &font.font,
                MARGIN,
                PAGE_H - MARGIN + 4.0,
                7.5,
                &visible(&foot),
            );
            surface.finish();
            page.finish();
            page_no += 1;
            page = pdf.start_page_with(settings());
            surface = page.surface();
            surface.set_fill(Some(Fill::default()));
            y = MARGIN;
        }};
    }

    for block in &doc.blocks {
        match block {
            Block::Title(s) | Block::Heading(s) | Block::Subheading(s) | Block::Text(s) => {
                let (size, before) = match block {
                    Block::Title(_) => (TITLE_SIZE, 0.0),
                    Block::Heading(_) => (HEADING_SIZE, 10.0),
                    Block::Subheading(_) => (SUBHEADING_SIZE, 6.0),
                    _ => (TEXT_SIZE, 2.0),
                };
                let lines = m.wrap(&visible(s), size, full);
                // A heading keeps a few lines of what follows with it.
                let need = size * LINE * lines.len() as f32
                    + if matches!(block, Block::Heading(_) | Block::Subheading(_)) {
                        4.0 * TABLE_SIZE * LINE
                    } else {
                        0.0
                    };
                if y + before + need > bottom && y > MARGIN {
                    new_page!();
                } else {
                    y += before;
                }
                for l in lines {
                    if y + size * LINE > bottom {
                        new_page!();
                    }
                    y += size * LINE;
                    draw(
                        &mut surface,
                        &m,
                        &font.font,
                        MARGIN,
                        y - size * 0.25,
                        size,
                        &l,
                    );
                }
            }
            Block::Table { columns, rows } => {
                let total: f32 = columns
                    .iter()
                    .map(|c| c.weight)
                    .sum::<f32>()
                    .max(f32::EPSILON);
                let widths: Vec<f32> = columns.iter().map(|c| c.weight / total * full).collect();
                let lh = TABLE_SIZE * LINE;
                let layout = |row: &Row| -> Vec<Placed> {
                    let mut out = Vec::new();
                    let (mut col, mut x) = (0, MARGIN);
                    for c in &row.cells {
                        if col >= widths.len() {
                            break;
                        }
                        let end = (col + c.span.max(1)).min(widths.len());
                        let w: f32 = widths[col..end].iter().sum();
                        let lines = c
                            .paras
                            .iter()
                            .flat_map(|p| m.wrap(&visible(p), TABLE_SIZE, w - 2.0 * PAD))
                            .collect();
                        out.push(Placed {
                            x,
                            w,
                            right: end == col + 1 && columns[col].right,
                            lines,
                        });
                        (col, x) = (end, x + w);
                    }
                    out
                };
                let lines_of = |cells: &[Placed]| {
                    cells
                        .iter()
                        .map(|c| c.lines.len())
                        .max()
                        .unwrap_or(0)
                        .max(1)
                };
                // Lines `from..to` of a row's cells, at `y`; returns the
                // height they took.
                let put = |surface: &mut Surface<'_>,
                           y: f32,
                           cells: &[Placed],
                           (from, to): (usize, usize),
                           style: Style,
                           head: bool| {
                    let h = (to - from).max(1) as f32 * lh + 2.0 * PAD;
                    if head || matches!(style, Style::Group | Style::Total) {
                        shade(surface, MARGIN, y, full, h, if head { 232 } else { 242 });
                    }
                    if style == Style::Group && from == 0 {
                        rule(surface, MARGIN, MARGIN + full, y, 90, 1.2);
                    }
                    if style == Style::Quiet {
                        surface.set_fill(Some(grey(100)));
                    }
                    for c in cells {
                        let shown = c.lines.get(from..to.min(c.lines.len())).unwrap_or(&[]);
                        for (i, l) in shown.iter().enumerate() {
                            let lx = if c.right {
                                c.x + c.w - PAD - m.width(l, TABLE_SIZE)
                            } else {
                                c.x + PAD
                            };
                            let ly = y + PAD + lh * (i as f32 + 1.0) - TABLE_SIZE * 0.25;
                            draw(surface, &m, &font.font, lx, ly, TABLE_SIZE, l);
                        }
                    }
                    surface.set_fill(Some(Fill::default()));
                    rule(
                        surface,
                        MARGIN,
                        MARGIN + full,
                        y + h,
                        if head { 60 } else { 200 },
                        if head { 0.8 } else { 0.4 },
                    );
                    h
                };
                let head = layout(&Row {
                    cells: columns
                        .iter()
                        .map(|c| Cell::text(c.title.clone()))
                        .collect(),
                    style: Style::Plain,
                });
                let head_lines = lines_of(&head);
                let head_h = head_lines as f32 * lh + 2.0 * PAD;
                if y + 4.0 + head_h + lh * 2.0 > bottom {
                    new_page!();
                }
                y += 4.0;
                y += put(&mut surface, y, &head, (0, head_lines), Style::Plain, true);
                // Lines a page holds under the header.
                let page_lines =
                    (((bottom - MARGIN - head_h - 2.0 * PAD) / lh).floor() as usize).max(1);
                for row in rows {
                    let cells = layout(row);
                    let n = lines_of(&cells);
                    let mut from = 0;
                    let mut fresh = false;
                    loop {
                        let room = ((bottom - y - 2.0 * PAD) / lh).floor().max(0.0) as usize;
                        // A message's line keeps a line of its recipients
                        // with it.
                        let keep = usize::from(row.style == Style::Group && !fresh);
                        if n - from + keep <= room {
                            y += put(&mut surface, y, &cells, (from, n), row.style, false);
                            break;
                        }
                        // A row that fits on a page starts on the next; a
                        // longer one fills this page and goes on on the
                        // next, nothing left out.
                        let whole = from == 0 && n + keep <= page_lines;
                        if !fresh && (whole || room < 2) {
                            new_page!();
                            y += put(&mut surface, y, &head, (0, head_lines), Style::Plain, true);
                            fresh = true;
                            continue;
                        }
                        let to = from + room.max(1).min(n - from);
                        y += put(&mut surface, y, &cells, (from, to), row.style, false);
                        from = to;
                        if from >= n {
                            break;
                        }
                        new_page!();
                        y += put(&mut surface, y, &head, (0, head_lines), Style::Plain, true);
                        fresh = true;
                    }
                }
            }
        }
    }
    let foot = format!("{} · {}", doc.footer, page_no);
    draw(
        &mut surface,
        &m,
        &font.font,
        MARGIN,
        PAGE_H - MARGIN + 4.0,
        7.5,
        &visible(&foot),
    );
    surface.finish();
    page.finish();
    pdf.finish()
        .map_err(|e| anyhow::anyhow!("the PDF could not be written: {e}"))
}

/// What a report's header says beside its mailbox and range, as the
/// HTML's header says it.
pub(super) struct Header<'a> {
    /// When it was asked for, in the report's zone.
    pub requested_at: &'a str,
    pub generated_at: &'a str,
    /// The zone's name.
    pub zone: &'a str,
    /// How far the records may be behind the logs, when known.
    pub behind_minutes: Option<i64>,
    /// The help contact.
    pub notes: &'a super::Notes,
}

/// The PDF of a report: its header, its tables and the rows shown, with
/// the strings of its language.
pub(super) fn document(
    spec: &super::Spec,
    data: &super::Data,
    truncated: Option<&super::Truncation>,
    head: &Header<'_>,
) -> Doc {
    use super::render::{short_time, text};
    let lang = spec.lang;
    let t = |k: &str| text(lang, k, &[]);
    let (from, to) = (spec.range.from.to_string(), spec.range.to.to_string());
    let title = t(&format!("title_{}", spec.kind.as_str()));
    let col = |title: String, weight: f32, right: bool| Column {
        title,
        weight,
        right,
    };
    let mut blocks = vec![
        Block::Title(title.clone()),
        Block::Text(t(&format!("intro_{}", spec.kind.as_str()))),
        Block::Text(format!("{}: {}", t("mailbox"), spec.mailbox)),
        Block::Text(format!(
            "{}: {}",
            t("range"),
            text(
                lang,
                "range_value",
                &[("from", &short_time(&from)), ("to", &short_time(&to))]
            )
        )),
        // Who asked, by which channel: the address only where it means
        // something, as the HTML says it.
        Block::Text(format!(
            "{}: {}",
            t("requested"),
            text(
                lang,
                &format!("requested_{}", spec.requester.channel.as_str()),
                &[
                    ("time", head.requested_at),
                    ("ip", &spec.requester.client_ip),
                ]
            )
        )),
        // The rows' times are shown without their zone, as in the HTML.
        Block::Text(format!(
            "{}: {}",
            t("zone_label"),
            text(lang, "zone_value", &[("zone", head.zone)])
        )),
        Block::Text(format!(
            "{}: {}",
            t("fresh_label"),
            match head.behind_minutes {
                Some(n) => text(lang, "fresh_value", &[("n", &n.to_string())]),
                None => t("fresh_unknown"),
            }
        )),
        Block::Text(format!("{}: {}", t("language"), t("lang_name"))),
        Block::Text(format!("{}: {}", t("generated"), head.generated_at)),
        // Whom to ask, and that the mail is automatic.
        Block::Text(t("auto_mail")),
    ];
    if let Some(a) = head.notes.help_address.as_deref() {
        blocks.push(Block::Text(format!("{} {a}", t("help_mail"))));
    }
    if let Some(u) = head.notes.help_url.as_deref() {
        blocks.push(Block::Text(format!("{} {u}", t("help_page"))));
    }
    if let Some(tr) = truncated {
        blocks.push(Block::Text(text(
            lang,
            "truncated",
            &[
                ("shown", &tr.shown.to_string()),
                ("total", &tr.total.to_string()),
                ("next", &tr.next),
            ],
        )));
    }
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    match data {
        // As the HTML: a report of nothing says only that.
        _ if data.is_empty() => {
            blocks.push(Block::Text(text(
                lang,
                &format!("no_records_{}", spec.kind.as_str()),
                &[("from", &short_time(&from)), ("to", &short_time(&to))],
            )));
        }
        super::Data::Smtp(h) => {
            // As the HTML has them: two tables (what the owner submitted,
            // what became of the deliveries), each with NTHU's column names
            // in zh-TW, runs of days with nothing sent said in one line, and
            // followed by what its columns mean.
            blocks.push(Block::Heading(t("daily")));
            let lines = super::layout::smtp_days(&h.days);
            for (part, names) in [
                ("daily_submitted", &["sum", "auth_blk", "auth_rcv"][..]),
                (
                    "daily_deliveries",
                    &["sent", "bounced", "deferred", "expired"][..],
                ),
            ] {
                let mut columns = vec![col(t("date"), 1.6, false)];
                columns.extend(names.iter().map(|n| col(t(&format!("col_{n}")), 1.0, true)));
                let counts = |c: &crate::history::Counts| -> Vec<String> {
                    names
                        .iter()
                        .map(|n| {
                            match *n {
                                "sum" => c.sum,
                                "auth_blk" => c.auth_blk,
                                "auth_rcv" => c.auth_rcv,
                                "sent" => c.sent,
                                "bounced" => c.bounced,
                                "deferred" => c.deferred,
                                _ => c.expired,
                            }
                            .to_string()
                        })
                        .collect()
                };
                let mut rows: Vec<Row> = lines
                    .iter()
                    .map(|l| match h.days.get(l.index) {
                        Some(d) if !l.quiet => std::iter::once(short_time(&d.date))
                            .chain(counts(&d.counts))
                            .collect::<Vec<_>>()
                            .into(),
                        _ => quiet_row(lang, "quiet_smtp", l, 1 + names.len()),
                    })
                    .collect();
                let mut total: Row = std::iter::once(t("total"))
                    .chain(counts(&h.total.counts))
                    .collect::<Vec<_>>()
                    .into();
                total.style = Style::Total;
                rows.push(total);
                blocks.push(Block::Subheading(t(part)));
                blocks.push(Block::Table { columns, rows });
                for n in names {
                    blocks.push(Block::Text(format!(
                        "{}: {}",
                        t(&format!("col_{n}")),
                        t(&format!("explain_{n}"))
                    )));
                }
            }
            // Why deliveries failed, as the HTML sums it up.
            let reasons = data.reasons();
            if !reasons.is_empty() {
                blocks.push(Block::Heading(t("reasons_heading")));
                for c in reasons {
                    blocks.push(Block::Text(format!(
                        "{} ({}): {} {}",
                        c.label,
                        text(lang, "reasons_rows", &[("n", &c.rows.to_string())]),
                        c.explanation,
                        c.advice
                    )));
                }
            }
            // One line per message, its recipients' outcomes under it
            // (see `templates/report.html`).
            let messages = super::layout::messages(&h.details);
            let count = text(
                lang,
                "details_count",
                &[
                    ("messages", &messages.len().to_string()),
                    ("rows", &h.details.len().to_string()),
                ],
            );
            blocks.push(Block::Heading(format!("{} ({count})", t("details"))));
            let columns = vec![
                col(t("col_time"), 2.0, false),
                col(t("col_host"), 1.7, false),
                col(t("col_recipient"), 2.4, false),
                col(t("col_result"), 2.0, false),
                col(t("col_response"), 5.2, false),
            ];
            let mut rows = Vec::with_capacity(messages.len() + h.details.len());
            for m in &messages {
                rows.push(message_row(m, lang));
                for o in &m.outcomes {
                    rows.push(outcome_row(o, m.host, lang));
                }
            }
            blocks.push(Block::Table { columns, rows });
        }
        super::Data::Access(h) => {
            // The HTML's order: IMAP and POP3 always, the others when the range
            // has any (every day has the same keys).
            let shown: Vec<&str> = ["imap", "pop3", "submission", "managesieve"]
                .into_iter()
                .filter(|p| h.days.first().is_some_and(|d| d.logins.contains_key(p)))
                .collect();
            blocks.push(Block::Heading(t("summary")));
            // Two tables, as the HTML has them: the logins, and what to
            // check (failed logins, deleted mail, who took mail away).
            let mut columns = vec![col(t("date"), 1.4, false)];
            columns.extend(
                shown
                    .iter()
                    .map(|p| col(t(&format!("col_{p}_logins")), 1.0, true)),
            );
            // Runs of days with nothing are one line, as in the HTML.
            let lines = super::layout::access_days(&h.days);
            let rows = lines
                .iter()
                .map(|l| match h.days.get(l.index) {
                    Some(d) if !l.quiet => {
                        let mut r = vec![short_time(&d.date)];
                        r.extend(
                            shown
                                .iter()
                                .map(|p| d.logins.get(p).copied().unwrap_or(0).to_string()),
                        );
                        r.into()
                    }
                    _ => quiet_row(lang, "quiet_access", l, 1 + shown.len()),
                })
                .collect();
            blocks.push(Block::Subheading(t("summary_logins")));
            blocks.push(Block::Table { columns, rows });
            let columns = vec![
                col(t("date"), 1.4, false),
                col(t("col_failed"), 1.0, true),
                col(t("col_deleted"), 1.0, true),
                col(t("col_addresses"), 4.0, false),
            ];
            let rows = lines
                .iter()
                .map(|l| match h.days.get(l.index) {
                    Some(d) if !l.quiet => vec![
                        short_time(&d.date),
                        d.failed_logins.to_string(),
                        d.messages_deleted.to_string(),
                        d.addresses.join(", "),
                    ]
                    .into(),
                    _ => quiet_row(lang, "quiet_access", l, 4),
                })
                .collect();
            blocks.push(Block::Subheading(t("summary_removed")));
            blocks.push(Block::Table { columns, rows });
            for d in &h.days {
                if d.pop3_deleting_addresses.len() > 1 {
                    blocks.push(Block::Text(text(
                        lang,
                        "note_pop3",
                        &[
                            ("date", &super::render::short_time(&d.date)),
                            ("n", &d.pop3_deleting_addresses.len().to_string()),
                            ("addresses", &d.pop3_deleting_addresses.join(", ")),
                        ],
                    )));
                }
            }
            for d in &h.days {
                if !d.master_users.is_empty() {
                    let mut users: Vec<String> = d
                        .master_users
                        .iter()
                        .filter(|u| !u.is_empty())
                        .cloned()
                        .collect();
                    if d.master_users.iter().any(String::is_empty) {
                        users.push(t("master_unnamed"));
                    }
                    blocks.push(Block::Text(text(
                        lang,
                        "note_master",
                        &[
                            ("date", &super::render::short_time(&d.date)),
                            ("users", &users.join(", ")),
                        ],
                    )));
                }
            }
            blocks.push(Block::Heading(t("legend")));
            for k in [
                "login",
                "logout",
                "auth_failed",
                "message_deleted",
                "message_marked_deleted",
                "mailbox_deleted",
            ] {
                blocks.push(Block::Text(format!(
                    "{}: {}",
                    t(&format!("ev_{k}")),
                    t(&format!("ev_{k}_desc"))
                )));
            }
            blocks.push(Block::Heading(format!(
                "{} ({})",
                t("events"),
                h.events.len()
            )));
            // The HTML's columns and words: the event with its
            // protocol, the details in the owner's language.
            let columns = vec![
                col(t("col_time"), 2.6, false),
                col(t("col_event"), 2.0, false),
                col(t("col_remote_ip"), 1.8, false),
                col(t("col_client"), 1.4, false),
                col(t("col_what"), 5.5, false),
            ];
            let none = crate::access::EventFacts::default();
            let rows = h
                .events
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let f = h.facts.get(i).unwrap_or(&none);
                    let mut event = t(&format!("ev_{}", e.kind));
                    if let Some(p) = e.protocol {
                        event = format!("{event} ({})", t(&format!("proto_{p}")));
                    }
                    vec![
                        format!("{}. {}", i + 1, super::render::short_time(&e.time)),
                        event,
                        opt(&e.remote_ip),
                        opt(&e.client),
                        event_details(e, f, lang),
                    ]
                    .into()
                })
                .collect();
            blocks.push(Block::Table { columns, rows });
        }
        super::Data::Received(h) => {
            // As the HTML: the day counts, quiet runs in one line, then one
            // row per message with what became of it in the owner's words.
            blocks.push(Block::Heading(t("rcv_daily")));
            let lines = super::layout::received_days(&h.days);
            for (part, names) in [
                (
                    "rcv_daily_arrived",
                    &["received", "delivered", "forwarded"][..],
                ),
                ("rcv_daily_stopped", &["refused", "held"][..]),
            ] {
                let mut columns = vec![col(t("date"), 1.4, false)];
                columns.extend(names.iter().map(|c| col(t(&format!("col_{c}")), 1.0, true)));
                let rows = lines
                    .iter()
                    .map(|l| match h.days.get(l.index) {
                        Some(d) if !l.quiet => {
                            let mut r = vec![short_time(&d.date)];
                            r.extend(names.iter().map(|c| {
                                match *c {
                                    "received" => d.received,
                                    "delivered" => d.delivered,
                                    "forwarded" => d.forwarded,
                                    "refused" => d.refused,
                                    _ => d.held,
                                }
                                .to_string()
                            }));
                            r.into()
                        }
                        _ => quiet_row(lang, "quiet_received", l, 1 + names.len()),
                    })
                    .collect();
                blocks.push(Block::Subheading(t(part)));
                blocks.push(Block::Table { columns, rows });
            }
            blocks.push(Block::Heading(format!(
                "{} ({})",
                t("rcv_messages"),
                text(
                    lang,
                    "rcv_messages_count",
                    &[("n", &(h.messages.len() + h.omitted).to_string())]
                )
            )));
            blocks.push(Block::Text(t("rcv_locate_tip")));
            let columns = vec![
                col(t("col_time"), 2.4, false),
                col(t("col_sender"), 3.0, false),
                col(t("col_subject"), 3.4, false),
                col(t("col_outcome"), 4.5, false),
            ];
            let rows = h
                .messages
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let sender = if e.bounce_notice {
                        t("w_bounce_notice")
                    } else {
                        opt(&e.sender)
                    };
                    let mut sender = vec![sender];
                    if let Some(s) = &e.server {
                        sender.push(format!("{}: {s}", t("col_server")));
                    }
                    let mut subject = vec![opt(&e.subject)];
                    subject.extend(e.message_id.clone());
                    if let Some(n) = e.size {
                        subject.push(format!("{} {}", t("w_size"), super::render::size(n)));
                    }
                    let paras = |paras| Cell { paras, span: 1 };
                    Row {
                        cells: vec![
                            Cell::text(format!("{}. {}", i + 1, short_time(&e.time))),
                            paras(sender),
                            paras(subject),
                            paras(received_details(e, lang)),
                        ],
                        style: Style::Plain,
                    }
                })
                .collect();
            blocks.push(Block::Table { columns, rows });
        }
    }
    if !data.is_empty() {
        blocks.push(Block::Text(t("not_you")));
    }
    blocks.push(Block::Text(format!(
        "{} {}",
        t("owner_only"),
        t("auto_mail")
    )));
    Doc {
        footer: format!("{title} · {}", spec.mailbox),
        title: format!("{title} · {}", spec.mailbox),
        lang: lang.as_str(),
        blocks,
    }
}

/// A run of days on which nothing happened, in one cell across `span`
/// columns: `{key}_one` for a single day, `{key}` for several.
fn quiet_row(lang: crate::config::Lang, key: &str, l: &super::layout::DayLine, span: usize) -> Row {
    use super::render::{short_time, text};
    let from = short_time(&l.from);
    let said = if l.from == l.to {
        text(lang, &format!("{key}_one"), &[("from", &from)])
    } else {
        text(lang, key, &[("from", &from), ("to", &short_time(&l.to))])
    };
    Row {
        cells: vec![Cell {
            paras: vec![said],
            span,
        }],
        style: Style::Quiet,
    }
}

/// A message's own line: its number and time, the site's server that
/// logged it (with its queue ID, a tooltip in the HTML), and what the
/// server did with it, across the other columns.
fn message_row(m: &super::layout::Message<'_>, lang: crate::config::Lang) -> Row {
    use super::render::{short_time, text};
    let t = |k: &str| text(lang, k, &[]);
    let ip = m.sender_ip.map_or_else(|| t("ip_unknown"), str::to_owned);
    let from = |s: String| match m.sender_ip {
        Some(ip) => format!("{s} {}", text(lang, "msg_from", &[("ip", ip)])),
        None => s,
    };
    let said = if m.refused_after_accept {
        text(lang, "msg_refused_after", &[("ip", &ip)])
    } else {
        match m.status {
            "accepted" => text(lang, "msg_accepted", &[("ip", &ip)]),
            "refused" => from(t("msg_refused")),
            _ => from(t("msg_relayed")),
        }
    };
    let mut host = vec![m.host.to_owned()];
    if let Some(q) = m.queue_id {
        host.push(text(lang, "queue_id_tip", &[("id", q)]));
    }
    Row {
        cells: vec![
            Cell::text(format!("{}. {}", m.n, short_time(m.time))),
            Cell {
                paras: host,
                span: 1,
            },
            Cell {
                paras: vec![said],
                span: 3,
            },
        ],
        style: Style::Group,
    }
}

/// A recipient's outcome under its message: the status in words with the
/// failure's category, and beside the remote reply the next hop and, for
/// a failure, what it means and what to do.
fn outcome_row(o: &crate::history::Detail, host: &str, lang: crate::config::Lang) -> Row {
    use super::render::{next_hop, short_time, text};
    let t = |k: &str| text(lang, k, &[]);
    let mut result = vec![t(&format!("status_{}", o.status))];
    if let Some(c) = o.category_label.as_deref().filter(|c| !c.is_empty()) {
        result.push(c.to_owned());
    }
    let mut response = Vec::new();
    let hop = next_hop(o.relay.as_deref().unwrap_or(""));
    if !hop.is_empty() {
        response.push(format!("{}: {hop}", t("col_next_hop")));
    }
    response.push(o.response.clone().unwrap_or_default());
    if let Some(why) = o.explanation.as_deref().filter(|w| !w.is_empty()) {
        response.push(match o.advice.as_deref().filter(|a| !a.is_empty()) {
            Some(advice) => format!("{why} {advice}"),
            None => why.to_owned(),
        });
    }
    let own = if o.host == host { "" } else { o.host.as_str() };
    Row {
        cells: vec![
            Cell::text(short_time(&o.time)),
            Cell::text(own),
            Cell::text(o.recipient.clone().unwrap_or_default()),
            Cell {
                paras: result,
                span: 1,
            },
            Cell {
                paras: response,
                span: 1,
            },
        ],
        style: Style::Plain,
    }
}

/// What an access event did, worded as the HTML report words it (see
/// `templates/report.html`): POP3 counts as NTHU counts them, sizes in KB
/// and MB, Dovecot's reasons and failures in the owner's language.
/// What became of a received message, a paragraph per fact, in the
/// owner's language (as `templates/report.html` words it).
fn received_details(e: &crate::received::Received, lang: crate::config::Lang) -> Vec<String> {
    use super::render::text;
    let t = |k: &str| text(lang, k, &[]);
    let or_key = |key: String, fallback: &str| {
        let s = t(&key);
        if s == key { fallback.to_owned() } else { s }
    };
    let mut parts = vec![t(&format!("out_{}", e.outcome))];
    if e.deferrals > 0 {
        parts.push(text(
            lang,
            "w_deferrals",
            &[("n", &e.deferrals.to_string())],
        ));
    }
    if let Some(f) = &e.folder {
        parts.push(text(lang, "w_folder", &[("folder", f)]));
    }
    if let Some(r) = &e.rule {
        let name = or_key(format!("rule_{}", r.replace(' ', "_")), r);
        parts.push(text(lang, "w_by", &[("rule", &name)]));
    }
    if let Some(to) = &e.forwarded_to {
        if e.outcome == "auto_replied" {
            parts.push(text(lang, "w_vacation_to", &[("to", to)]));
        } else {
            let mut s = text(lang, "w_forwarded_to", &[("to", to)]);
            if let Some(st) = &e.forward_status {
                s = format!("{s}: {}", or_key(format!("w_forward_{st}"), st));
            }
            parts.push(s);
        }
    }
    if let Some(st) = &e.stage {
        parts.push(text(lang, "w_stage", &[("stage", st)]));
    }
    if let Some(r) = e.reason {
        parts.push(or_key(
            format!("rcv_reason_{r}"),
            e.explanation.as_deref().unwrap_or(""),
        ));
    }
    if let Some(a) = &e.spam_action {
        parts.push(match &e.spam_score {
            Some(sc) => text(lang, "w_spam", &[("action", a), ("score", sc)]),
            None => text(lang, "w_spam_action", &[("action", a)]),
        });
    }
    if let Some(r) = e.reply.as_deref().or(e.forward_reply.as_deref()) {
        parts.push(format!("{}: {r}", t("w_reply")));
    }
    parts
}

fn event_details(
    e: &crate::access::Event,
    f: &crate::access::EventFacts,
    lang: crate::config::Lang,
) -> String {
    use super::render::{size, text};
    let t = |k: &str| text(lang, k, &[]);
    let mut o = String::new();
    match e.kind {
        "logout" => {
            if e.protocol == Some("pop3") {
                match (e.deleted, e.retained) {
                    (Some(d), Some(r)) => {
                        o += &text(
                            lang,
                            "w_pop3_kept",
                            &[
                                ("total", &(d + r).to_string()),
                                ("deleted", &d.to_string()),
                                ("left", &r.to_string()),
                            ],
                        );
                        o += "; ";
                    }
                    (Some(d), None) => {
                        o += &text(lang, "w_pop3_deleted", &[("deleted", &d.to_string())]);
                        o += "; ";
                    }
                    _ => {}
                }
                if let Some(b) = e.size_bytes {
                    o += &text(lang, "w_mailbox_size", &[("size", &size(b))]);
                    o += "; ";
                }
            } else {
                for (key, v) in [
                    ("w_removed", e.expunged),
                    ("w_marked_deleted", e.deleted),
                    ("w_moved_trash", e.trashed),
                ] {
                    if let Some(n) = v {
                        o += &text(lang, key, &[("n", &n.to_string())]);
                        o += "; ";
                    }
                }
                if let Some(b) = e.size_bytes {
                    o += &format!("{} {}; ", t("w_size"), size(b));
                }
            }
            if let (Some(up), Some(down)) = (e.in_bytes, e.out_bytes) {
                o += &text(
                    lang,
                    "w_traffic",
                    &[("up", &size(up)), ("down", &size(down))],
                );
                o += "; ";
            }
            match f.reason_key {
                Some(k) => o += &t(&format!("reason_{k}")),
                None => o += e.reason.as_deref().unwrap_or(""),
            }
        }
        "message_deleted" | "message_marked_deleted" => {
            o += e.message_id.as_deref().unwrap_or("");
            o += " ";
            o += &text(
                lang,
                "w_in_folder",
                &[("folder", e.folder.as_deref().unwrap_or(""))],
            );
        }
        "mailbox_deleted" => o += e.folder.as_deref().unwrap_or(""),
        "login" => {
            if let Some(m) = &f.method {
                o += &text(lang, "w_method", &[("m", m)]);
                o += ", ";
            }
            if let Some(tls) = f.tls {
                o += &t(if tls { "w_tls" } else { "w_no_tls" });
                o += ", ";
            }
            if let Some(ip) = &f.local_ip {
                o += &text(lang, "w_to", &[("ip", ip)]);
            }
            if let Some(u) = &e.master_user {
                let user = if u.is_empty() {
                    t("master_unnamed")
                } else {
                    u.clone()
                };
                // On a line of its own in the HTML; a cell's text here is
                // one paragraph (a line break would be shown as a code point).
                o += " ";
                o += &text(lang, "w_master_user", &[("user", &user)]);
            }
        }
        "auth_failed" => {
            let failure = f.failure.as_deref().unwrap_or("");
            let key = format!("fail_{}", failure.replace(' ', "_"));
            match super::render::strings(lang).get(&key) {
                Some(s) => o += s,
                None => o += failure,
            }
            if let Some(n) = f.attempts {
                o += &format!(" ({})", text(lang, "w_attempts", &[("n", &n.to_string())]));
            }
        }
        _ => o += e.reason.as_deref().unwrap_or(""),
    }
    o
}
