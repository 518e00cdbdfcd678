//! Reads a letter's HTML — the `html` block of `rules/templates` as rendered and
//! stored — into the blocks a letter is made of.
//!
//! This is not an HTML engine: it knows the handful of elements and classes the
//! letter templates use (see `rules/templates/README.md`) and lets the text of
//! anything else flow as paragraphs, so an admin's new `<div>` never loses words.
//! Templates are our own and rendered by MiniJinja, so the markup is well formed;
//! stray end tags are ignored rather than refused.

use crate::{Block, Cell, Letter, PdfError, Row, Run, Table};

/// Elements that never have content or an end tag.
const VOID: [&str; 8] = ["br", "meta", "link", "img", "hr", "input", "col", "wbr"];
/// Elements whose content is not printed.
const HIDDEN: [&str; 4] = ["head", "style", "script", "title"];

#[derive(Debug, Default)]
struct Element {
    tag: String,
    classes: Vec<String>,
    colspan: usize,
    children: Vec<Node>,
}

#[derive(Debug)]
enum Node {
    Element(Element),
    Text(String),
}

impl Element {
    fn has_class(&self, c: &str) -> bool {
        self.classes.iter().any(|x| x == c)
    }

    fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The first element below this one (depth first) with `tag`.
    fn find(&self, tag: &str) -> Option<&Element> {
        self.elements()
            .find_map(|e| if e.tag == tag { Some(e) } else { e.find(tag) })
    }
}

/// Reads `html` into a [`Letter`]: its title and language for the PDF's metadata,
/// its blocks for the pages.
pub fn read(html: &str) -> Result<Letter, PdfError> {
    let root = parse(html)?;
    let language = attribute_of(html, "html", "lang").unwrap_or_default();
    let title = root
        .find("title")
        .map(|t| collapse(&plain_text(t)))
        .unwrap_or_default();
    // A fragment without <body> is what the outbox stores for a letter whose
    // template has no html block: its text in a <pre>.
    let body = root.find("body").unwrap_or(&root);
    let mut blocks = Vec::new();
    read_blocks(body, &mut blocks)?;
    if blocks.is_empty() {
        return Err(PdfError::Html("the letter has no text".into()));
    }
    Ok(Letter {
        title,
        language,
        blocks,
    })
}

/// The value of `attr` on the first `<tag …>` in `html`.
fn attribute_of(html: &str, tag: &str, attr: &str) -> Option<String> {
    let open = format!("<{tag}");
    let start = html.find(&open)?;
    let end = start + html[start..].find('>')?;
    attributes(&html[start + open.len()..end])
        .into_iter()
        .find(|(k, _)| k == attr)
        .map(|(_, v)| v)
}

fn read_blocks(e: &Element, out: &mut Vec<Block>) -> Result<(), PdfError> {
    // Loose inline content between blocks gathers into one paragraph.
    let mut loose: Vec<Run> = Vec::new();
    let flush = |loose: &mut Vec<Run>, out: &mut Vec<Block>| {
        let runs = tidy(std::mem::take(loose));
        if !runs.is_empty() {
            out.push(Block::Paragraph(runs));
        }
    };
    for n in &e.children {
        let c = match n {
            Node::Text(t) => {
                inline_text(t, false, false, &mut loose);
                continue;
            }
            Node::Element(c) => c,
        };
        if HIDDEN.contains(&c.tag.as_str()) {
            continue;
        }
        if is_inline(c) {
            inline(c, false, false, &mut loose);
            continue;
        }
        flush(&mut loose, out);
        match c.tag.as_str() {
            "h1" => out.push(Block::Title(collapse(&plain_text(c)))),
            "h2" | "h3" | "h4" => out.push(Block::Heading(collapse(&plain_text(c)))),
            "p" => {
                let runs = runs_of(c, false);
                if !runs.is_empty() {
                    out.push(Block::Paragraph(runs));
                }
            }
            "table" => out.push(Block::Table(table(c)?)),
            "pre" => {
                let text = plain_text_pre(c);
                out.extend(
                    text.split("\n\n")
                        .map(|p| p.trim_matches('\n'))
                        .filter(|p| !p.trim().is_empty())
                        .map(|p| {
                            Block::Paragraph(vec![Run {
                                text: p.lines().map(str::trim_end).collect::<Vec<_>>().join("\n"),
                                bold: false,
                            }])
                        }),
                );
            }
            "div" if c.has_class("head") => out.push(head(c)),
            "div" if c.has_class("meta") => out.push(Block::Meta(lines_of(c))),
            "div" if c.has_class("pay") => {
                let mut inner = Vec::new();
                read_blocks(c, &mut inner)?;
                out.push(Block::Boxed(inner));
            }
            "div" if c.has_class("parties") => out.push(Block::Columns(
                c.elements().map(|col| lines_runs(col, false)).collect(),
            )),
            "div" if c.has_class("sign") => out.push(signatures(c)),
            "div" if c.has_class("closing") => {
                let mut inner = Vec::new();
                read_blocks(c, &mut inner)?;
                out.push(Block::KeepTogether(inner));
            }
            _ => read_blocks(c, out)?,
        }
    }
    flush(&mut loose, out);
    Ok(())
}

fn is_inline(e: &Element) -> bool {
    matches!(
        e.tag.as_str(),
        "strong" | "b" | "em" | "i" | "a" | "span" | "br" | "small" | "u" | "code"
    )
}

/// The address window and the sender: the recipient's lines with the return
/// address above them, ours on the right.
fn head(e: &Element) -> Block {
    let mut return_line = String::new();
    let mut recipient = Vec::new();
    let mut sender = Vec::new();
    for c in e.elements() {
        if c.has_class("recipient") {
            for r in c.elements() {
                if r.has_class("return") {
                    return_line = collapse(&plain_text(r));
                } else {
                    recipient.extend(lines_runs(r, false));
                }
            }
        } else if c.has_class("sender") {
            sender = lines_runs(c, false);
        }
    }
    Block::Head {
        return_line,
        recipient,
        sender,
    }
}

/// Signature fields: each `.field` is a line to sign on with its caption below,
/// in as many columns as the block has; a `.sign` without fields is one caption.
fn signatures(e: &Element) -> Block {
    let columns: Vec<Vec<String>> = e
        .elements()
        .map(|col| {
            col.elements()
                .filter(|f| f.has_class("field"))
                .map(|f| collapse(&plain_text(f)))
                .collect::<Vec<_>>()
        })
        .filter(|c| !c.is_empty())
        .collect();
    if columns.is_empty() {
        Block::Signatures(vec![vec![collapse(&plain_text(e))]])
    } else {
        Block::Signatures(columns)
    }
}

fn table(e: &Element) -> Result<Table, PdfError> {
    let mut rows = Vec::new();
    collect_rows(e, e.has_class("totals"), &mut rows);
    let widest = rows
        .iter()
        .map(|r: &Row| r.cells.iter().map(|c| c.span).sum::<usize>())
        .max()
        .unwrap_or(0);
    if widest == 0 {
        return Err(PdfError::Html("a <table> has no cells".into()));
    }
    Ok(Table {
        columns: widest,
        rows,
    })
}

fn collect_rows(e: &Element, bold: bool, rows: &mut Vec<Row>) {
    for c in e.elements() {
        match c.tag.as_str() {
            "tr" => {
                let bold = bold || c.has_class("totals");
                let cells: Vec<Cell> = c
                    .elements()
                    .filter(|x| x.tag == "td" || x.tag == "th")
                    .map(|x| Cell {
                        text: collapse(&plain_text(x)),
                        header: x.tag == "th",
                        numeric: x.has_class("num"),
                        bold: bold || x.tag == "th" || x.find("strong").is_some(),
                        span: x.colspan.max(1),
                    })
                    .collect();
                if !cells.is_empty() {
                    rows.push(Row { cells });
                }
            }
            "thead" | "tbody" | "tfoot" => collect_rows(c, bold || c.has_class("totals"), rows),
            _ => {}
        }
    }
}

/// `white-space: pre-line` blocks (`.lines`) keep their line breaks; `<br>` breaks
/// a line anywhere.
fn lines_of(e: &Element) -> Vec<String> {
    lines_runs(e, false)
        .into_iter()
        .map(|l| l.into_iter().map(|r| r.text).collect::<String>())
        .collect()
}

fn lines_runs(e: &Element, bold: bool) -> Vec<Vec<Run>> {
    let mut runs = Vec::new();
    gather(e, bold, false, &mut runs);
    let mut lines = vec![Vec::new()];
    for r in runs {
        let mut parts = r.text.split('\n');
        if let Some(first) = parts.next() {
            push_run(lines.last_mut().expect("one line"), first, r.bold);
        }
        for p in parts {
            lines.push(Vec::new());
            push_run(lines.last_mut().expect("one line"), p, r.bold);
        }
    }
    lines
        .into_iter()
        .map(tidy)
        .filter(|l| !l.is_empty())
        .collect()
}

fn push_run(line: &mut Vec<Run>, text: &str, bold: bool) {
    if !text.is_empty() {
        line.push(Run {
            text: text.to_string(),
            bold,
        });
    }
}

/// A paragraph's runs: whitespace collapsed, `<br>` kept as `\n`.
fn runs_of(e: &Element, bold: bool) -> Vec<Run> {
    let mut runs = Vec::new();
    for n in &e.children {
        match n {
            Node::Text(t) => inline_text(t, bold, false, &mut runs),
            Node::Element(c) => inline(c, bold, false, &mut runs),
        }
    }
    tidy(runs)
}

fn inline(e: &Element, bold: bool, pre: bool, runs: &mut Vec<Run>) {
    if HIDDEN.contains(&e.tag.as_str()) {
        return;
    }
    if e.tag == "br" {
        runs.push(Run {
            text: "\n".into(),
            bold,
        });
        return;
    }
    let bold = bold || matches!(e.tag.as_str(), "strong" | "b" | "h1" | "h2" | "h3" | "th");
    let pre = pre || e.has_class("lines");
    // A block inside inline content (a `.lines` div in a column) starts a line.
    let block = !is_inline(e);
    if block && !runs.is_empty() {
        runs.push(Run {
            text: "\n".into(),
            bold,
        });
    }
    for n in &e.children {
        match n {
            Node::Text(t) => inline_text(t, bold, pre, runs),
            Node::Element(c) => inline(c, bold, pre, runs),
        }
    }
    if block {
        runs.push(Run {
            text: "\n".into(),
            bold,
        });
    }
}

/// Like [`runs_of`] but keeping line breaks of `.lines` blocks.
fn gather(e: &Element, bold: bool, pre: bool, runs: &mut Vec<Run>) {
    let pre = pre || e.has_class("lines");
    for n in &e.children {
        match n {
            Node::Text(t) => inline_text(t, bold, pre, runs),
            Node::Element(c) => inline(c, bold, pre, runs),
        }
    }
}

fn inline_text(t: &str, bold: bool, pre: bool, runs: &mut Vec<Run>) {
    let text = if pre {
        t.split('\n')
            .map(collapse_keep_edges)
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        collapse_keep_edges(t)
    };
    if !text.is_empty() {
        runs.push(Run { text, bold });
    }
}

/// Joins neighbouring runs of the same weight, collapses spaces across them and
/// trims each line's ends.
fn tidy(runs: Vec<Run>) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for r in runs {
        match out.last_mut() {
            Some(last) if last.bold == r.bold => last.text.push_str(&r.text),
            _ => out.push(r),
        }
    }
    // Collapse spaces at run borders and around line breaks.
    let mut prev_space = true;
    for r in &mut out {
        let mut s = String::with_capacity(r.text.len());
        for ch in r.text.chars() {
            if ch == '\n' {
                while s.ends_with(' ') {
                    s.pop();
                }
                s.push('\n');
                prev_space = true;
            } else if ch == ' ' {
                if !prev_space {
                    s.push(' ');
                }
                prev_space = true;
            } else {
                s.push(ch);
                prev_space = false;
            }
        }
        r.text = s;
    }
    // No leading or trailing breaks or spaces on the whole paragraph.
    while let Some(last) = out.last_mut() {
        let t = last.text.trim_end_matches([' ', '\n']).len();
        last.text.truncate(t);
        if last.text.is_empty() {
            out.pop();
        } else {
            break;
        }
    }
    while let Some(first) = out.first_mut() {
        let t = first.text.trim_start_matches([' ', '\n']).to_string();
        first.text = t;
        if first.text.is_empty() {
            out.remove(0);
        } else {
            break;
        }
    }
    out
}

fn plain_text(e: &Element) -> String {
    let mut s = String::new();
    for n in &e.children {
        match n {
            Node::Text(t) => s.push_str(t),
            Node::Element(c) if c.tag == "br" => s.push(' '),
            Node::Element(c) if !HIDDEN.contains(&c.tag.as_str()) || e.tag == "title" => {
                s.push(' ');
                s.push_str(&plain_text(c));
                s.push(' ');
            }
            Node::Element(_) => {}
        }
    }
    s
}

/// Text as written, line breaks and all.
fn plain_text_pre(e: &Element) -> String {
    let mut s = String::new();
    for n in &e.children {
        match n {
            Node::Text(t) => s.push_str(t),
            Node::Element(c) if c.tag == "br" => s.push('\n'),
            Node::Element(c) => s.push_str(&plain_text_pre(c)),
        }
    }
    s
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whitespace runs become one space, keeping one at either end if there was one,
/// so `a <strong>b</strong>` keeps its space.
fn collapse_keep_edges(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for ch in s.chars() {
        if ch.is_whitespace() {
            space = true;
        } else {
            if space {
                out.push(' ');
            }
            space = false;
            out.push(ch);
        }
    }
    if space {
        out.push(' ');
    }
    out
}

// ---------------------------------------------------------------------------
// Tokens to a tree.
// ---------------------------------------------------------------------------

fn parse(html: &str) -> Result<Element, PdfError> {
    let mut stack: Vec<Element> = vec![Element {
        tag: "#root".into(),
        ..Element::default()
    }];
    let mut rest = html;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            push_text(&mut stack, rest)?;
            break;
        };
        if lt > 0 {
            push_text(&mut stack, &rest[..lt])?;
        }
        rest = &rest[lt..];
        if let Some(after) = rest.strip_prefix("<!--") {
            let end = after
                .find("-->")
                .ok_or_else(|| PdfError::Html("a comment `<!--` is never closed".into()))?;
            rest = &after[end + 3..];
            continue;
        }
        let end = rest
            .find('>')
            .ok_or_else(|| PdfError::Html(format!("a tag is never closed: `{}`", prefix(rest))))?;
        let tag_src = &rest[1..end];
        rest = &rest[end + 1..];
        if tag_src.starts_with('!') || tag_src.starts_with('?') {
            continue;
        }
        if let Some(name) = tag_src.strip_prefix('/') {
            close(&mut stack, &name.trim().to_ascii_lowercase());
            continue;
        }
        let self_closing = tag_src.ends_with('/');
        let tag_src = tag_src.trim_end_matches('/');
        let name_end = tag_src
            .find(|c: char| c.is_whitespace())
            .unwrap_or(tag_src.len());
        let name = tag_src[..name_end].to_ascii_lowercase();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
            // `a < b` in text that escaped escaping: keep it as text.
            push_text(&mut stack, &format!("<{tag_src}>"))?;
            continue;
        }
        let attrs = attributes(&tag_src[name_end..]);
        let el = Element {
            classes: attrs
                .iter()
                .filter(|(k, _)| k == "class")
                .flat_map(|(_, v)| v.split_whitespace().map(str::to_string))
                .collect(),
            colspan: attrs
                .iter()
                .find(|(k, _)| k == "colspan")
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(1)
                .clamp(1, 64),
            tag: name.clone(),
            children: Vec::new(),
        };
        // Elements that end their open sibling, as browsers do.
        match name.as_str() {
            "p" => close_open(&mut stack, &["p"], &["div", "td", "th", "body"]),
            "tr" => close_open(&mut stack, &["tr"], &["table", "thead", "tbody", "tfoot"]),
            "td" | "th" => close_open(&mut stack, &["td", "th"], &["tr", "table"]),
            _ => {}
        }
        if self_closing || VOID.contains(&name.as_str()) {
            stack
                .last_mut()
                .expect("the root stays")
                .children
                .push(Node::Element(el));
        } else {
            if stack.len() > 256 {
                return Err(PdfError::Html(
                    "elements nested deeper than 256 levels".into(),
                ));
            }
            stack.push(el);
        }
    }
    while stack.len() > 1 {
        pop(&mut stack);
    }
    Ok(stack.pop().expect("the root stays"))
}

fn push_text(stack: &mut [Element], raw: &str) -> Result<(), PdfError> {
    let text = decode(raw)?;
    stack
        .last_mut()
        .expect("the root stays")
        .children
        .push(Node::Text(text));
    Ok(())
}

fn pop(stack: &mut Vec<Element>) {
    let el = stack.pop().expect("more than the root");
    stack
        .last_mut()
        .expect("the root stays")
        .children
        .push(Node::Element(el));
}

/// Closes `name` and everything opened inside it; an end tag with nothing to
/// close is ignored.
fn close(stack: &mut Vec<Element>, name: &str) {
    if let Some(i) = stack.iter().rposition(|e| e.tag == name) {
        if i == 0 {
            return;
        }
        while stack.len() > i {
            pop(stack);
        }
    }
}

/// Closes an open element of `names` unless one of `barriers` lies in between.
fn close_open(stack: &mut Vec<Element>, names: &[&str], barriers: &[&str]) {
    for (i, e) in stack.iter().enumerate().rev() {
        if names.contains(&e.tag.as_str()) {
            while stack.len() > i {
                pop(stack);
            }
            return;
        }
        if barriers.contains(&e.tag.as_str()) {
            return;
        }
    }
}

fn attributes(src: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = src.trim_start();
    while !rest.is_empty() {
        let name_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let name = rest[..name_end].to_ascii_lowercase();
        rest = rest[name_end..].trim_start();
        let mut value = String::new();
        if let Some(v) = rest.strip_prefix('=') {
            let v = v.trim_start();
            let (val, tail) = match v.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let body = &v[1..];
                    let end = body.find(q).unwrap_or(body.len());
                    (&body[..end], body.get(end + 1..).unwrap_or(""))
                }
                _ => {
                    let end = v.find(char::is_whitespace).unwrap_or(v.len());
                    (&v[..end], &v[end..])
                }
            };
            value = decode(val).unwrap_or_else(|_| val.to_string());
            rest = tail.trim_start();
        }
        if !name.is_empty() {
            out.push((name, value));
        }
    }
    out
}

/// Character references as MiniJinja's escaping writes them, and the common
/// named ones an admin may type.
fn decode(raw: &str) -> Result<String, PdfError> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        // A reference is short and ASCII; look no further than that.
        let window = rest
            .char_indices()
            .take_while(|&(i, c)| i < 12 && (c.is_ascii_alphanumeric() || "&#;".contains(c)))
            .map(|(i, c)| i + c.len_utf8())
            .last()
            .unwrap_or(1);
        let Some(semi) = rest[..window].find(';') else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let name = &rest[1..semi];
        let ch =
            match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some('\u{a0}'),
                "euro" => Some('€'),
                "ndash" => Some('–'),
                "mdash" => Some('—'),
                "middot" => Some('·'),
                "shy" => Some('\u{ad}'),
                _ => {
                    let code = if let Some(hex) =
                        name.strip_prefix("#x").or_else(|| name.strip_prefix("#X"))
                    {
                        u32::from_str_radix(hex, 16).ok()
                    } else if let Some(dec) = name.strip_prefix('#') {
                        dec.parse().ok()
                    } else {
                        None
                    };
                    match code {
                        Some(c) => Some(char::from_u32(c).ok_or_else(|| {
                            PdfError::Html(format!("`&{name};` is not a character"))
                        })?),
                        None => None,
                    }
                }
            };
        match ch {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// At most 40 characters of what the letter had, for an error message.
fn prefix(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_are_decoded_and_unknown_ones_kept() {
        assert_eq!(
            decode("A &amp; B &lt;x&gt; &#x2f; &#39; &bogus; 5 & 6 &gt; Ltda. – São").unwrap(),
            "A & B <x> / ' &bogus; 5 & 6 > Ltda. – São"
        );
        assert!(decode("&#x110000;").is_err());
    }

    #[test]
    fn a_letter_reads_into_blocks() {
        let l = read(
            "<!DOCTYPE html><html lang=\"de\"><head><title>Mahnung – C1</title><style>p{}</style></head><body>\
             <div class=\"head\"><div class=\"recipient\"><div class=\"return\">Us · Street 1</div>\
             <div class=\"lines\">Weber &amp; Co\nHauptstr. 2\n10115 Berlin</div></div>\
             <div class=\"sender\"><strong>Us</strong><div class=\"lines\">Street 1\n\nus@example</div></div></div>\
             <div class=\"meta\">Kundennummer C1<br>Datum: 23.11.2026</div>\
             <h1>Letzte   Mahnung</h1><p>Sehr geehrte <strong>Damen</strong> und Herren,</p>\
             <table><thead><tr><th>Rechnung</th><th class=\"num\">Betrag</th></tr></thead>\
             <tbody><tr><td>INV-1</td><td class=\"num\">1.234,50 EUR</td></tr></tbody>\
             <tr class=\"totals\"><td>Summe</td><td class=\"num\">1.234,50 EUR</td></tr></table>\
             <div class=\"pay\"><strong>Bitte zahlen.</strong><br>IBAN DE89</div></body></html>",
        )
        .unwrap();
        assert_eq!(
            (l.title.as_str(), l.language.as_str()),
            ("Mahnung – C1", "de")
        );
        let Block::Head {
            return_line,
            recipient,
            sender,
        } = &l.blocks[0]
        else {
            panic!("{:?}", l.blocks[0]);
        };
        assert_eq!(return_line, "Us · Street 1");
        let text = |lines: &[Vec<Run>]| {
            lines
                .iter()
                .map(|l| l.iter().map(|r| r.text.as_str()).collect::<String>())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            text(recipient),
            ["Weber & Co", "Hauptstr. 2", "10115 Berlin"]
        );
        assert_eq!(text(sender), ["Us", "Street 1", "us@example"]);
        assert!(sender[0][0].bold && !sender[1][0].bold);
        assert_eq!(
            l.blocks[1],
            Block::Meta(vec!["Kundennummer C1".into(), "Datum: 23.11.2026".into()])
        );
        assert_eq!(l.blocks[2], Block::Title("Letzte Mahnung".into()));
        let Block::Paragraph(p) = &l.blocks[3] else {
            panic!("{:?}", l.blocks[3]);
        };
        assert_eq!(
            p.iter()
                .map(|r| (r.text.as_str(), r.bold))
                .collect::<Vec<_>>(),
            [
                ("Sehr geehrte ", false),
                ("Damen", true),
                (" und Herren,", false)
            ]
        );
        let Block::Table(t) = &l.blocks[4] else {
            panic!("{:?}", l.blocks[4]);
        };
        assert_eq!((t.columns, t.rows.len()), (2, 3));
        assert!(t.rows[0].cells[1].header && t.rows[0].cells[1].numeric);
        assert_eq!(t.rows[1].cells[1].text, "1.234,50 EUR");
        assert!(!t.rows[1].cells[0].bold && t.rows[2].cells[0].bold);
        let Block::Boxed(inner) = &l.blocks[5] else {
            panic!("{:?}", l.blocks[5]);
        };
        assert_eq!(
            inner[0],
            Block::Paragraph(vec![
                Run {
                    text: "Bitte zahlen.".into(),
                    bold: true
                },
                Run {
                    text: "\nIBAN DE89".into(),
                    bold: false
                }
            ])
        );
    }

    #[test]
    fn a_letter_stored_as_text_keeps_its_lines_and_paragraphs() {
        let l = read("<pre>Dear Weber &amp; Co,\n\n* INV-1\n    Fee: EUR 5.00\n\n\nRegards</pre>")
            .unwrap();
        let texts: Vec<&str> = l
            .blocks
            .iter()
            .map(|b| match b {
                Block::Paragraph(r) => r[0].text.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            texts,
            ["Dear Weber & Co,", "* INV-1\n    Fee: EUR 5.00", "Regards"]
        );
    }

    #[test]
    fn text_outside_known_blocks_is_kept_and_bad_markup_named() {
        let l = read("<body><section>Loose <em>words</em></section><div><p>a<p>b</div></body>")
            .unwrap();
        let texts: Vec<String> = l
            .blocks
            .iter()
            .map(|b| match b {
                Block::Paragraph(r) => r.iter().map(|r| r.text.as_str()).collect(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(texts, ["Loose words", "a", "b"]);
        let err = |h: &str| read(h).unwrap_err().to_string();
        assert!(
            err("<body> </body>").contains("no text"),
            "{}",
            err("<body></body>")
        );
        assert!(err("<body><p>a</p><!-- open").contains("comment"));
        assert!(err("<body><p>a</p><span").contains("never closed"));
        assert!(err("<body><table></table></body>").contains("no cells"));
    }
}
