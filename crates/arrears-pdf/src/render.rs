//! Lays a [`Letter`] out on A4 and writes it with krilla.
//!
//! Every block becomes strips: pieces of a page as wide as the text column, with
//! their height and what to draw, relative to their top. Pages break between
//! strips only, so a table row, a line of a paragraph, the payment box or the
//! signatures are never cut. Coordinates are points from the page's top left.

use std::collections::HashMap;
use std::sync::OnceLock;

use chrono::{Datelike, NaiveDate};
use krilla::color::luma;
use krilla::configure::{Archival, ConfigurationBuilder};
use krilla::geom::{PathBuilder, Point};
use krilla::metadata::{DateTime, Metadata};
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::text::{Font, GlyphId, KrillaGlyph};
use krilla::{Document, SerializeSettings};
use skrifa::instance::{LocationRef, Size};
use skrifa::MetadataProvider;

use crate::{Block, Letter, PdfError, Run, Table};

const MM: f32 = 72.0 / 25.4;
const PAGE_W: f32 = 210.0 * MM;
const PAGE_H: f32 = 297.0 * MM;
// The templates' `@page { margin: 20mm 20mm 20mm 25mm }`: the wider left margin
// is for the punch holes of a file.
const TOP: f32 = 20.0 * MM;
const LEFT: f32 = 25.0 * MM;
const RIGHT: f32 = 20.0 * MM;
const BOTTOM: f32 = 20.0 * MM;
const WIDTH: f32 = PAGE_W - LEFT - RIGHT;
const BODY: f32 = 10.0;
/// A word measured to fit exactly (a table column sized to it) must not wrap
/// on a float's last bit.
const FIT: f32 = 0.01;
const LEADING: f32 = 1.4;

static REGULAR: &[u8] = include_bytes!("../fonts/ArrearsLetterSans-Regular.ttf");
static BOLD: &[u8] = include_bytes!("../fonts/ArrearsLetterSans-Bold.ttf");

/// One face: krilla's handle for embedding, and its glyphs and advances (in em)
/// for measuring, so what is measured is exactly what is drawn.
struct Face {
    font: Font,
    glyphs: HashMap<char, (u32, f32)>,
}

impl Face {
    fn load(data: &'static [u8]) -> Face {
        let font = Font::new(data.into(), 0).expect("the embedded font is valid");
        let r = skrifa::FontRef::new(data).expect("the embedded font is valid");
        let upem = f32::from(
            r.metrics(Size::unscaled(), LocationRef::default())
                .units_per_em,
        );
        let metrics = r.glyph_metrics(Size::unscaled(), LocationRef::default());
        let glyphs = r
            .charmap()
            .mappings()
            .filter_map(|(c, g)| {
                let ch = char::from_u32(c)?;
                Some((
                    ch,
                    (g.to_u32(), metrics.advance_width(g).unwrap_or(0.0) / upem),
                ))
            })
            .collect();
        Face { font, glyphs }
    }

    fn width(&self, text: &str, size: f32) -> f32 {
        text.chars()
            .filter_map(|c| self.glyphs.get(&c))
            .map(|g| g.1)
            .sum::<f32>()
            * size
    }
}

struct Fonts {
    regular: Face,
    bold: Face,
}

impl Fonts {
    fn get() -> &'static Fonts {
        static FONTS: OnceLock<Fonts> = OnceLock::new();
        FONTS.get_or_init(|| Fonts {
            regular: Face::load(REGULAR),
            bold: Face::load(BOLD),
        })
    }

    fn face(&self, bold: bool) -> &Face {
        if bold {
            &self.bold
        } else {
            &self.regular
        }
    }

    fn width(&self, text: &str, size: f32, bold: bool) -> f32 {
        self.face(bold).width(text, size)
    }
}

#[derive(Debug, Clone)]
enum Op {
    Text {
        x: f32,
        /// Baseline.
        y: f32,
        size: f32,
        bold: bool,
        text: String,
    },
    Line {
        x1: f32,
        y1: f32,
        x2: f32,
        y2: f32,
        width: f32,
        gray: u8,
    },
}

impl Op {
    fn moved(&self, dx: f32, dy: f32) -> Op {
        match self.clone() {
            Op::Text {
                x,
                y,
                size,
                bold,
                text,
            } => Op::Text {
                x: x + dx,
                y: y + dy,
                size,
                bold,
                text,
            },
            Op::Line {
                x1,
                y1,
                x2,
                y2,
                width,
                gray,
            } => Op::Line {
                x1: x1 + dx,
                y1: y1 + dy,
                x2: x2 + dx,
                y2: y2 + dy,
                width,
                gray,
            },
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Strip {
    height: f32,
    ops: Vec<Op>,
    /// A heading, or a table's header row: not alone at a page's foot.
    keep_with_next: bool,
    /// For a table row: its header, repeated when the row starts a page.
    header: Option<Box<Strip>>,
}

impl Strip {
    fn gap(height: f32) -> Strip {
        Strip {
            height,
            ..Strip::default()
        }
    }
}

/// Glues strips into one that cannot be split.
fn join(strips: Vec<Strip>) -> Strip {
    let mut out = Strip::default();
    for s in strips {
        out.ops
            .extend(s.ops.iter().map(|o| o.moved(0.0, out.height)));
        out.height += s.height;
    }
    out
}

pub fn render(letter: &Letter, created: NaiveDate) -> Result<Vec<u8>, PdfError> {
    let fonts = Fonts::get();
    check_glyphs(letter, fonts)?;
    let mut strips = Vec::new();
    for b in &letter.blocks {
        layout(b, fonts, LEFT, WIDTH, &mut strips);
    }
    let pages = paginate(strips);
    write(letter, created, fonts, &pages)
}

// ---------------------------------------------------------------------------
// Every character must have a glyph: a legal letter with an empty box where a
// name's letter should be is worse than no letter.
// ---------------------------------------------------------------------------

fn check_glyphs(letter: &Letter, fonts: &Fonts) -> Result<(), PdfError> {
    let mut all = vec![("the title".to_string(), letter.title.as_str())];
    texts(&letter.blocks, "", &mut all);
    for (place, text) in all {
        let missing = text
            .chars()
            .find(|c| !matches!(c, '\n' | '\u{ad}') && !fonts.regular.glyphs.contains_key(c));
        if let Some(ch) = missing {
            return Err(PdfError::MissingGlyph {
                ch,
                place,
                text: text.chars().take(80).collect(),
            });
        }
    }
    Ok(())
}

/// Every text of `blocks` with where it is, in words a reader of the letter
/// would use.
fn texts<'a>(blocks: &'a [Block], path: &str, out: &mut Vec<(String, &'a str)>) {
    let runs = |rs: &'a [Run], place: &str, out: &mut Vec<(String, &'a str)>| {
        out.extend(rs.iter().map(|r| (place.to_string(), r.text.as_str())));
    };
    for (i, b) in blocks.iter().enumerate() {
        let n = i + 1;
        match b {
            Block::Head {
                return_line,
                recipient,
                sender,
            } => {
                out.push(("the return address".into(), return_line));
                recipient
                    .iter()
                    .for_each(|l| runs(l, "the recipient's address", out));
                sender
                    .iter()
                    .for_each(|l| runs(l, "the sender's letterhead", out));
            }
            Block::Meta(lines) => out.extend(
                lines
                    .iter()
                    .map(|l| ("the reference lines".into(), l.as_str())),
            ),
            Block::Title(t) | Block::Heading(t) => out.push((format!("{path}heading {n}"), t)),
            Block::Paragraph(r) => runs(r, &format!("{path}paragraph {n}"), out),
            Block::Table(t) => {
                for (ri, row) in t.rows.iter().enumerate() {
                    for (ci, c) in row.cells.iter().enumerate() {
                        out.push((
                            format!("{path}table {n}, row {}, cell {}", ri + 1, ci + 1),
                            &c.text,
                        ));
                    }
                }
            }
            Block::Boxed(inner) | Block::KeepTogether(inner) => {
                texts(inner, &format!("{path}block {n}: "), out)
            }
            Block::Columns(cols) => cols
                .iter()
                .flatten()
                .for_each(|l| runs(l, &format!("{path}columns {n}"), out)),
            Block::Signatures(cols) => out.extend(
                cols.iter()
                    .flatten()
                    .map(|c| (format!("{path}signatures {n}"), c.as_str())),
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// Blocks to strips.
// ---------------------------------------------------------------------------

fn layout(b: &Block, f: &Fonts, x: f32, width: f32, out: &mut Vec<Strip>) {
    match b {
        Block::Head {
            return_line,
            recipient,
            sender,
        } => out.push(head(f, x, width, return_line, recipient, sender)),
        Block::Meta(lines) => {
            let lh = BODY * LEADING;
            let mut s = Strip::gap(2.0 * MM);
            for l in lines {
                let w = f.width(l, BODY, false);
                s.ops
                    .push(text(x + width - w, s.height + BODY, BODY, false, l));
                s.height += lh;
            }
            s.height += 6.0 * MM;
            out.push(s);
        }
        Block::Title(t) => {
            let mut s = paragraph(f, x, width, &[bold_run(t)], 13.0);
            s.height += 5.0 * MM;
            s.keep_with_next = true;
            out.push(s);
        }
        Block::Heading(t) => {
            let mut s = paragraph(f, x, width, &[bold_run(t)], 10.5);
            s.ops.iter_mut().for_each(|o| *o = o.moved(0.0, 5.0 * MM));
            s.height += 7.0 * MM;
            s.keep_with_next = true;
            out.push(s);
        }
        Block::Paragraph(runs) => {
            for line in lines(f, runs, width, BODY) {
                out.push(line_strip(f, x, &line, BODY));
            }
            out.push(Strip::gap(BODY * 0.8));
        }
        Block::Table(t) => table(f, x, width, t, out),
        Block::Boxed(inner) => {
            let pad_x = 4.0 * MM;
            let pad_y = 3.0 * MM;
            let mut parts = Vec::new();
            for b in inner {
                layout(b, f, x + pad_x, width - 2.0 * pad_x, &mut parts);
            }
            // The last paragraph's space belongs outside the frame.
            if parts.last().is_some_and(|p| p.ops.is_empty()) {
                parts.pop();
            }
            let body = join(parts);
            let h = body.height + 2.0 * pad_y;
            let mut s = Strip::gap(2.0 * MM);
            let top = s.height;
            s.ops
                .extend(body.ops.iter().map(|o| o.moved(0.0, top + pad_y)));
            let (l, r, b) = (x, x + width, top + h);
            for (x1, y1, x2, y2) in [
                (l, top, r, top),
                (r, top, r, b),
                (r, b, l, b),
                (l, b, l, top),
            ] {
                s.ops.push(Op::Line {
                    x1,
                    y1,
                    x2,
                    y2,
                    width: 0.5,
                    gray: 0,
                });
            }
            s.height = b + 5.0 * MM;
            out.push(s);
        }
        Block::KeepTogether(inner) => {
            let mut parts = vec![Strip::gap(4.0 * MM)];
            for b in inner {
                layout(b, f, x, width, &mut parts);
            }
            out.push(join(parts));
        }
        Block::Columns(cols) => {
            let n = cols.len().max(1) as f32;
            let gap = 6.0 * MM;
            let w = (width - gap * (n - 1.0)) / n;
            let mut s = Strip::default();
            let mut tallest: f32 = 0.0;
            for (i, col) in cols.iter().enumerate() {
                let cx = x + i as f32 * (w + gap);
                let mut y = 0.0;
                for l in col {
                    for line in lines(f, l, w, BODY) {
                        let ls = line_strip(f, cx, &line, BODY);
                        s.ops.extend(ls.ops.iter().map(|o| o.moved(0.0, y)));
                        y += ls.height;
                    }
                }
                tallest = tallest.max(y);
            }
            s.height = tallest + 4.0 * MM;
            out.push(s);
        }
        Block::Signatures(cols) => {
            let w = width * 0.45;
            let size = 9.0;
            let mut s = Strip::default();
            let mut tallest: f32 = 0.0;
            for (i, col) in cols.iter().enumerate() {
                let cx = if i == 0 { x } else { x + width - w };
                let mut y = 0.0;
                for caption in col {
                    y += 14.0 * MM;
                    s.ops.push(Op::Line {
                        x1: cx,
                        y1: y,
                        x2: cx + w,
                        y2: y,
                        width: 0.5,
                        gray: 0,
                    });
                    y += 1.0 * MM;
                    let runs = [Run {
                        text: caption.clone(),
                        bold: false,
                    }];
                    for line in lines(f, &runs, w, size) {
                        let ls = line_strip(f, cx, &line, size);
                        s.ops.extend(ls.ops.iter().map(|o| o.moved(0.0, y)));
                        y += ls.height;
                    }
                }
                tallest = tallest.max(y);
            }
            s.height = tallest + 4.0 * MM;
            out.push(s);
        }
    }
}

fn bold_run(t: &str) -> Run {
    Run {
        text: t.to_string(),
        bold: true,
    }
}

fn text(x: f32, y: f32, size: f32, bold: bool, t: &str) -> Op {
    Op::Text {
        x,
        y,
        size,
        bold,
        text: t.to_string(),
    }
}

/// A paragraph of `size` as one unsplittable strip (titles, headings).
fn paragraph(f: &Fonts, x: f32, width: f32, runs: &[Run], size: f32) -> Strip {
    join(
        lines(f, runs, width, size)
            .iter()
            .map(|l| line_strip(f, x, l, size))
            .collect(),
    )
}

/// One line of segments (text, bold) as a strip.
fn line_strip(f: &Fonts, x: f32, line: &[(String, bool)], size: f32) -> Strip {
    let mut s = Strip::gap(size * LEADING);
    let baseline = size * 1.05;
    let mut cx = x;
    for (t, bold) in line {
        s.ops.push(text(cx, baseline, size, *bold, t));
        cx += f.width(t, size, *bold);
    }
    s
}

/// Breaks runs into lines no wider than `width`: at spaces, at `\n`, and inside a
/// word only when the word alone is wider than the line.
fn lines(f: &Fonts, runs: &[Run], width: f32, size: f32) -> Vec<Vec<(String, bool)>> {
    // Words as pieces of differing weight ("Damen," with a bold "Damen").
    enum Tok {
        Word(Vec<(String, bool)>),
        Space,
        Break,
    }
    let mut toks: Vec<Tok> = Vec::new();
    for r in runs {
        let mut word = String::new();
        let flush = |word: &mut String, toks: &mut Vec<Tok>| {
            if word.is_empty() {
                return;
            }
            let piece = (std::mem::take(word), r.bold);
            match toks.last_mut() {
                Some(Tok::Word(pieces)) => pieces.push(piece),
                _ => toks.push(Tok::Word(vec![piece])),
            }
        };
        for ch in r.text.chars() {
            match ch {
                '\n' => {
                    flush(&mut word, &mut toks);
                    toks.push(Tok::Break);
                }
                ' ' => {
                    flush(&mut word, &mut toks);
                    toks.push(Tok::Space);
                }
                '\u{ad}' => {}
                c => word.push(c),
            }
        }
        flush(&mut word, &mut toks);
    }
    let space = f.width(" ", size, false);
    let mut out: Vec<Vec<(String, bool)>> = Vec::new();
    let mut line: Vec<(String, bool)> = Vec::new();
    let mut used = 0.0;
    let mut pending_space = false;
    let push = |line: &mut Vec<(String, bool)>, t: &str, bold: bool| match line.last_mut() {
        Some((s, b)) if *b == bold => s.push_str(t),
        _ => line.push((t.to_string(), bold)),
    };
    for tok in toks {
        match tok {
            Tok::Break => {
                out.push(std::mem::take(&mut line));
                used = 0.0;
                pending_space = false;
            }
            Tok::Space => pending_space = !line.is_empty(),
            Tok::Word(pieces) => {
                let w: f32 = pieces.iter().map(|(t, b)| f.width(t, size, *b)).sum();
                let lead = if pending_space { space } else { 0.0 };
                if !line.is_empty() && used + lead + w > width + FIT {
                    out.push(std::mem::take(&mut line));
                    used = 0.0;
                } else if pending_space {
                    push(&mut line, " ", false);
                    used += space;
                }
                pending_space = false;
                for (t, bold) in pieces {
                    for ch in t.chars() {
                        let cw = f.width(ch.encode_utf8(&mut [0; 4]), size, bold);
                        // Only a word longer than a whole line is cut.
                        if used + cw > width + FIT && w > width + FIT && !line.is_empty() {
                            out.push(std::mem::take(&mut line));
                            used = 0.0;
                        }
                        push(&mut line, ch.encode_utf8(&mut [0; 4]), bold);
                        used += cw;
                    }
                }
            }
        }
    }
    out.push(line);
    // Trailing spaces measure nothing but would be extracted as text.
    for l in &mut out {
        if let Some((t, _)) = l.last_mut() {
            let n = t.trim_end().len();
            t.truncate(n);
        }
        l.retain(|(t, _)| !t.is_empty());
    }
    out
}

fn head(
    f: &Fonts,
    x: f32,
    width: f32,
    return_line: &str,
    recipient: &[Vec<Run>],
    sender: &[Vec<Run>],
) -> Strip {
    // DIN 5008 form B: the window starts 45 mm from the sheet's top, the return
    // address in its first 5 mm; the sheet's top margin is already 20 mm.
    let window_w = 85.0 * MM;
    let mut s = Strip::default();
    let mut y = 17.0 * MM;
    if !return_line.is_empty() {
        let size = 7.0;
        for line in lines(
            f,
            &[Run {
                text: return_line.into(),
                bold: false,
            }],
            window_w,
            size,
        ) {
            let ls = line_strip(f, x, &line, size);
            s.ops.extend(ls.ops.iter().map(|o| o.moved(0.0, y)));
            y += ls.height;
        }
        s.ops.push(Op::Line {
            x1: x,
            y1: y,
            x2: x + window_w,
            y2: y,
            width: 0.3,
            gray: 0,
        });
        y += 3.0 * MM;
    }
    for l in recipient {
        for line in lines(f, l, window_w, BODY) {
            let ls = line_strip(f, x, &line, BODY);
            s.ops.extend(ls.ops.iter().map(|o| o.moved(0.0, y)));
            y += ls.height;
        }
    }
    // The letterhead, right-aligned in what the window leaves free.
    let size = 9.0;
    let free = width - window_w - 5.0 * MM;
    let mut sy: f32 = 0.0;
    for l in sender {
        for line in lines(f, l, free, size) {
            let w: f32 = line.iter().map(|(t, b)| f.width(t, size, *b)).sum();
            let ls = line_strip(f, x + width - w, &line, size);
            s.ops.extend(ls.ops.iter().map(|o| o.moved(0.0, sy)));
            sy += ls.height;
        }
        if l.is_empty() {
            sy += size * LEADING;
        }
    }
    s.height = y.max(sy).max(50.0 * MM) + 2.0 * MM;
    s
}

fn table(f: &Fonts, x: f32, width: f32, t: &Table, out: &mut Vec<Strip>) {
    let n = t.columns;
    let pad_x = 1.5 * MM;
    let pad_y = 1.2 * MM;
    let natural = |size: f32| -> Vec<f32> {
        let mut w = vec![0.0f32; n];
        let mut col;
        for row in &t.rows {
            col = 0;
            for c in &row.cells {
                if col >= n {
                    break;
                }
                if c.span == 1 {
                    // Headers may wrap at spaces; values never.
                    let need = if c.header {
                        c.text
                            .split(' ')
                            .map(|word| f.width(word, size, c.bold))
                            .fold(0.0, f32::max)
                    } else {
                        f.width(&c.text, size, c.bold)
                    };
                    w[col] = w[col].max(need + 2.0 * pad_x);
                }
                col += c.span;
            }
        }
        w
    };
    let mut size = 9.0;
    let mut widths = natural(size);
    let total: f32 = widths.iter().sum();
    if total > width {
        // Too wide: smaller type rather than amounts broken over two lines.
        size = (size * width / total).max(6.0);
        widths = natural(size);
    }
    let total: f32 = widths.iter().sum();
    // Label/value lists (two columns) keep their natural width, as in the HTML;
    // wider tables span the text column.
    let list_like = n <= 2;
    if !list_like && total > 0.0 {
        widths.iter_mut().for_each(|w| *w *= width / total);
    } else if total > width {
        widths.iter_mut().for_each(|w| *w *= width / total);
    }
    let lh = size * 1.3;
    let mut header: Option<Box<Strip>> = None;
    out.push(Strip::gap(3.0 * MM));
    for row in &t.rows {
        let all_header = row.cells.iter().all(|c| c.header);
        let mut s = Strip::default();
        let mut col = 0;
        let mut tallest: f32 = 0.0;
        let mut cx = x;
        for c in &row.cells {
            if col >= n {
                break;
            }
            let span = c.span.min(n - col);
            let w: f32 = widths[col..col + span].iter().sum();
            let inner = (w - 2.0 * pad_x).max(1.0);
            let runs = [Run {
                text: c.text.clone(),
                bold: c.bold,
            }];
            let mut y = pad_y;
            for line in lines(f, &runs, inner, size) {
                let lw: f32 = line.iter().map(|(t, b)| f.width(t, size, *b)).sum();
                let lx = if c.numeric {
                    cx + w - pad_x - lw
                } else {
                    cx + pad_x
                };
                let ls = line_strip_leading(f, lx, &line, size, lh);
                s.ops.extend(ls.ops.iter().map(|o| o.moved(0.0, y)));
                y += lh;
            }
            tallest = tallest.max(y + pad_y);
            cx += w;
            col += span;
        }
        s.height = tallest;
        if !list_like {
            s.ops.push(Op::Line {
                x1: x,
                y1: tallest,
                x2: x + widths.iter().sum::<f32>(),
                y2: tallest,
                width: if all_header { 0.8 } else { 0.3 },
                gray: if all_header { 0 } else { 0x88 },
            });
        }
        if all_header {
            s.keep_with_next = true;
            header = Some(Box::new(s.clone()));
        } else {
            s.header = header.clone();
        }
        out.push(s);
    }
    out.push(Strip::gap(5.0 * MM));
}

fn line_strip_leading(f: &Fonts, x: f32, line: &[(String, bool)], size: f32, lh: f32) -> Strip {
    let mut s = line_strip(f, x, line, size);
    s.height = lh;
    s
}

// ---------------------------------------------------------------------------
// Strips to pages.
// ---------------------------------------------------------------------------

/// Room kept at the foot of every page for its number.
const FOOT: f32 = 8.0 * MM;

fn paginate(strips: Vec<Strip>) -> Vec<Vec<Op>> {
    let limit = PAGE_H - BOTTOM - FOOT;
    let mut pages: Vec<Vec<Op>> = vec![Vec::new()];
    let mut y = TOP;
    for (i, s) in strips.iter().enumerate() {
        let mut need = s.height;
        if s.keep_with_next {
            if let Some(next) = strips.get(i + 1) {
                need += next.height;
            }
        }
        if y + need > limit && y > TOP {
            pages.push(Vec::new());
            y = TOP;
            if let Some(h) = &s.header {
                place(pages.last_mut().expect("a page"), h, y);
                y += h.height;
            }
        }
        // A gap is no content: it does not start a page.
        if s.ops.is_empty() && y == TOP {
            continue;
        }
        place(pages.last_mut().expect("a page"), s, y);
        y += s.height;
    }
    pages
}

fn place(page: &mut Vec<Op>, s: &Strip, y: f32) {
    page.extend(s.ops.iter().map(|o| o.moved(0.0, y)));
}

// ---------------------------------------------------------------------------
// Pages to PDF.
// ---------------------------------------------------------------------------

fn write(
    letter: &Letter,
    created: NaiveDate,
    f: &Fonts,
    pages: &[Vec<Op>],
) -> Result<Vec<u8>, PdfError> {
    let configuration = ConfigurationBuilder::new()
        .with_archival_validator(Archival::A2_U)
        .finish()
        .map_err(|e| PdfError::Write(format!("{e:?}")))?;
    let mut doc = Document::new_with(SerializeSettings {
        configuration,
        // Tagging would need a structure tree; PDF/A-2u does not ask for one.
        enable_tagging: false,
        ..SerializeSettings::default()
    });
    let mut meta = Metadata::new()
        .title(letter.title.clone())
        .producer("Arrears".into())
        .creation_date(
            DateTime::new(u16::try_from(created.year()).unwrap_or(0))
                .month(created.month() as u8)
                .day(created.day() as u8),
        );
    if !letter.language.is_empty() {
        meta = meta.language(letter.language.clone());
    }
    doc.set_metadata(meta);
    let count = pages.len();
    for (n, ops) in pages.iter().enumerate() {
        let mut page =
            doc.start_page_with(PageSettings::from_wh(PAGE_W, PAGE_H).expect("A4 has a size"));
        let mut surface = page.surface();
        let mut ops = ops.clone();
        if count > 1 {
            let label = format!("{} / {count}", n + 1);
            let w = f.width(&label, 8.0, false);
            ops.push(text(
                PAGE_W - RIGHT - w,
                PAGE_H - BOTTOM,
                8.0,
                false,
                &label,
            ));
        }
        for op in &ops {
            match op {
                Op::Text {
                    x,
                    y,
                    size,
                    bold,
                    text,
                } => {
                    let face = f.face(*bold);
                    let mut glyphs = Vec::with_capacity(text.len());
                    for (i, ch) in text.char_indices() {
                        let Some(&(gid, adv)) = face.glyphs.get(&ch) else {
                            continue;
                        };
                        glyphs.push(KrillaGlyph::new(
                            GlyphId::new(gid),
                            adv,
                            0.0,
                            0.0,
                            0.0,
                            i..i + ch.len_utf8(),
                            None,
                        ));
                    }
                    surface.set_stroke(None);
                    surface.set_fill(Some(Fill::default()));
                    surface.draw_glyphs(
                        Point::from_xy(*x, *y),
                        &glyphs,
                        face.font.clone(),
                        text,
                        *size,
                        false,
                    );
                }
                Op::Line {
                    x1,
                    y1,
                    x2,
                    y2,
                    width,
                    gray,
                } => {
                    let mut pb = PathBuilder::new();
                    pb.move_to(*x1, *y1);
                    pb.line_to(*x2, *y2);
                    if let Some(path) = pb.finish() {
                        surface.set_fill(None);
                        surface.set_stroke(Some(Stroke {
                            paint: luma::Color::new(*gray).into(),
                            width: *width,
                            ..Stroke::default()
                        }));
                        surface.draw_path(&path);
                    }
                }
            }
        }
        surface.finish();
        page.finish();
    }
    doc.finish().map_err(|e| PdfError::Write(format!("{e:?}")))
}
