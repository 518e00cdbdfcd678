//! Letters as PDF: debt recognitions, acquittances and postal reminders, made
//! from the letter HTML that `rules/templates` render and the store keeps.
//!
//! # Layout
//! - `html.rs` reads the letter's HTML into [`Block`]s: the address window,
//!   headings, paragraphs, the item, total and instalment tables, the payment
//!   box, signature fields.
//! - `render.rs` lays the blocks out on A4 (margins as the templates' `@page`),
//!   breaks pages between rows and lines, and writes PDF/A-2u with the font of
//!   `fonts/` embedded.
//!
//! # Why from the HTML
//! The stored HTML is the letter that was issued: a PDF made from it states the
//! same words and the same amounts, even after the templates change, and a
//! postal reminder (of which only the rendered message is kept) gets one too.
//! Wording and translations stay in one place, the template. Amounts reach the
//! PDF as the text the template's `money` filter made of the `Decimal`s; nothing
//! here parses or computes money.
//!
//! # Why krilla
//! krilla (the PDF back end of Typst) writes PDF/A-1 to -4 and checks the
//! document against the chosen standard when it is finished, embeds and subsets
//! TrueType fonts with a ToUnicode map (so the text can be searched and
//! extracted, which the tests rely on), and with its default features off builds
//! on pdf-writer, skrifa and subsetter alone: no shaping engine, no image codecs,
//! no system font lookup. printpdf 0.12 brings an HTML layout engine by default
//! and changed its API wholesale twice lately, genpdf has not been released
//! since 2021, and lopdf is an object-level library that leaves font embedding
//! and PDF/A to its user.

use chrono::NaiveDate;

mod html;
mod render;

/// What went wrong making a letter's PDF, naming the part of the letter.
#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error("letter html: {0}")]
    Html(String),
    #[error(
        "the letter's font has no `{ch}` (U+{code:04X}) in {place}: {text:?}; see crates/arrears-pdf/fonts/README.md",
        code = u32::from(*ch)
    )]
    MissingGlyph {
        ch: char,
        place: String,
        text: String,
    },
    #[error("writing the PDF: {0}")]
    Write(String),
}

/// A letter as laid out: what the HTML said, in reading order.
#[derive(Debug, Clone, PartialEq)]
pub struct Letter {
    /// The document title (the HTML `<title>`), kept in the PDF's metadata.
    pub title: String,
    /// The HTML `lang`, kept in the PDF's metadata (screen readers, PDF/A).
    pub language: String,
    pub blocks: Vec<Block>,
}

/// A piece of text in one weight. `\n` is a line break.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub text: String,
    pub bold: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// The address window (return address above the recipient's lines, placed for
    /// a DIN 5008 / C5 window envelope) and our letterhead on the right.
    Head {
        return_line: String,
        recipient: Vec<Vec<Run>>,
        sender: Vec<Vec<Run>>,
    },
    /// Reference lines (customer number, date), right-aligned.
    Meta(Vec<String>),
    Title(String),
    Heading(String),
    Paragraph(Vec<Run>),
    Table(Table),
    /// Framed, e.g. the pay-by box of a final notice.
    Boxed(Vec<Block>),
    /// Side by side, e.g. creditor and debtor; each column is lines.
    Columns(Vec<Vec<Vec<Run>>>),
    /// Columns of captions, each under a line to sign on.
    Signatures(Vec<Vec<String>>),
    /// Never split across pages (the closing and its signature).
    KeepTogether(Vec<Block>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Columns of the widest row, counting spans.
    pub columns: usize,
    pub rows: Vec<Row>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub cells: Vec<Cell>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub text: String,
    pub header: bool,
    /// Right-aligned and never wrapped: amounts and counts.
    pub numeric: bool,
    pub bold: bool,
    /// Columns it covers (`colspan`).
    pub span: usize,
}

/// Reads a letter's HTML (a template's `html` block as rendered).
pub fn read_html(html: &str) -> Result<Letter, PdfError> {
    html::read(html)
}

/// The letter as PDF/A-2u bytes, dated `created` (the day the letter was
/// written: PDF/A wants a date, and the wall clock would make the same letter
/// come out as different bytes).
pub fn render(letter: &Letter, created: NaiveDate) -> Result<Vec<u8>, PdfError> {
    render::render(letter, created)
}

/// [`read_html`] then [`render`].
pub fn from_html(html: &str, created: NaiveDate) -> Result<Vec<u8>, PdfError> {
    render(&read_html(html)?, created)
}

/// A letter stored without HTML (a template with no `html` block): its subject as
/// title and its text, paragraph by paragraph, keeping line breaks.
pub fn from_text(
    subject: &str,
    text: &str,
    language: &str,
    created: NaiveDate,
) -> Result<Vec<u8>, PdfError> {
    let blocks = std::iter::once(Block::Title(subject.trim().to_string()))
        .chain(
            text.split("\n\n")
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| {
                    Block::Paragraph(vec![Run {
                        text: p.to_string(),
                        bold: false,
                    }])
                }),
        )
        .collect();
    render(
        &Letter {
            title: subject.trim().to_string(),
            language: language.to_string(),
            blocks,
        },
        created,
    )
}
