//! Every letter in `rules/templates` rendered to PDF and read back with a PDF
//! reader: the names, the itemised fees and interest, the totals and the
//! instalments must be in the text a reader gets out of it.

use std::path::Path;

use arrears_rules::templates::{format_money, Context, Templates};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

fn templates() -> Templates {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/templates");
    Templates::load(&dir, "en").expect("the shipped templates load")
}

fn context(language: &str) -> Context {
    let mut c = Context::sample();
    c.customer.language = language.into();
    // Latin-1 beyond ASCII, and markup that must come out as text.
    c.customer.name = "Müller & Söhne <Handel> Ltda. – São Paulo".into();
    c.customer.address = Some("Rua Açaí 12\n01310-000 São Paulo\nBrasil".into());
    c.company.name = "Arrears Demo GmbH".into();
    c
}

/// The letter as the store keeps it: its HTML, or its text in a `<pre>` when the
/// template has no html block (what the outbox stores for a postal reminder).
fn stored(t: &Templates, name: &str, ctx: &Context) -> String {
    let r = t
        .render(name, &ctx.customer.language, ctx)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    r.html.unwrap_or_else(|| {
        format!(
            "<pre>{}</pre>",
            r.text.replace('&', "&amp;").replace('<', "&lt;")
        )
    })
}

fn day() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2026, 11, 23).expect("a date")
}

fn words(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The PDF's text as a reader extracts it, whitespace collapsed.
fn pdf_text(pdf: &[u8]) -> String {
    assert!(pdf.starts_with(b"%PDF-"), "not a PDF");
    words(&pdf_extract::extract_text_from_mem(pdf).expect("the PDF reads back"))
}

fn money(amount: Decimal, currency: &str, lang: &str) -> String {
    words(&format_money(amount, currency, lang))
}

/// Extractors differ in where they put spaces (pdf-extract joins a wrapped
/// line to the next without one), so text is compared without any.
fn assert_has(text: &str, needle: &str, what: &str) {
    let bare = |s: &str| s.split_whitespace().collect::<String>();
    assert!(
        bare(text).contains(&bare(needle)),
        "{what}: `{needle}` is not in the PDF's text:\n{text}"
    );
}

/// Which letters are sent on paper: every template but the collectors' call
/// instructions.
fn letters(t: &Templates) -> Vec<(String, String)> {
    let list: Vec<(String, String)> = t
        .list()
        .filter(|(_, name)| !name.ends_with("collection_call"))
        .map(|(l, n)| (l.to_string(), n.to_string()))
        .collect();
    assert!(list.len() >= 15, "{list:?}");
    list
}

#[test]
fn every_letter_reads_back_with_its_names_and_amounts() {
    let t = templates();
    for (lang, name) in letters(&t) {
        let ctx = context(&lang);
        let source = stored(&t, &name, &ctx);
        let pdf = arrears_pdf::from_html(&source, ctx.as_of)
            .unwrap_or_else(|e| panic!("{lang}/{name}: {e}"));
        let text = pdf_text(&pdf);
        let what = format!("{lang}/{name}");
        let m = |a: Decimal, c: &str| money(a, c, &lang);
        let source_words = words(&source.replace("&amp;", "&"));
        // What the letter states, the PDF states: every amount and document number
        // of the facts that the stored letter shows.
        let mut stated = 0;
        for i in &ctx.items {
            for s in [
                i.document_no.clone(),
                m(i.open_amount, &i.currency),
                m(i.fee, &i.currency),
                m(i.interest, &i.currency),
                m(i.total, &i.currency),
            ] {
                if source_words.contains(&s) {
                    assert_has(&text, &s, &what);
                    stated += 1;
                }
            }
        }
        for tot in &ctx.totals {
            for s in [
                m(tot.fees, &tot.currency),
                m(tot.interest, &tot.currency),
                m(tot.total, &tot.currency),
            ] {
                if source_words.contains(&s) {
                    assert_has(&text, &s, &what);
                    stated += 1;
                }
            }
        }
        assert!(
            stated > 0 || name == "acquittance",
            "{what} states no amount"
        );
        if source_words.contains("Müller") {
            assert_has(&text, &ctx.customer.name, &what);
        }
        assert!(
            !text.contains("EUR 9,999.99"),
            "{what}: extraction is not vacuous"
        );

        match name.as_str() {
            // The letters sent on paper by the ladders: fees and interest per item
            // and per currency, whatever the template's wording.
            "final_notice" | "us_final_demand" => {
                assert_has(&text, &ctx.customer.name, &what);
                for i in &ctx.items {
                    assert_has(&text, &i.document_no, &what);
                    for a in [i.open_amount, i.fee, i.interest, i.total] {
                        assert_has(&text, &m(a, &i.currency), &what);
                    }
                }
                for tot in &ctx.totals {
                    for a in [tot.open_amount, tot.fees, tot.interest, tot.total] {
                        assert_has(&text, &m(a, &tot.currency), &what);
                    }
                }
            }
            "debt_recognition" => {
                assert_has(&text, &ctx.customer.name, &what);
                assert_has(&text, &ctx.company.name, &what);
                for i in &ctx.items {
                    for a in [i.fee, i.interest, i.total] {
                        assert_has(&text, &m(a, &i.currency), &what);
                    }
                }
                let a = ctx.agreement.as_ref().expect("sample agreement");
                assert_has(&text, &m(a.debt, &a.currency), &what);
                for i in &a.installments {
                    for x in [i.principal, i.interest, i.amount] {
                        assert_has(&text, &m(x, &a.currency), &what);
                    }
                }
            }
            "acquittance" => {
                assert_has(&text, &ctx.customer.name, &what);
                let r = ctx.receipt.as_ref().expect("sample receipt");
                assert_has(&text, &m(r.amount, &r.currency), &what);
                assert_has(&text, &r.agreement_id, &what);
            }
            _ => {}
        }
    }
}

#[test]
fn a_long_final_notice_breaks_pages_and_keeps_every_item() {
    let t = templates();
    let mut ctx = context("de");
    let first = ctx.items[0].clone();
    ctx.items = (1..=70)
        .map(|n| {
            let mut i = first.clone();
            i.document_no = format!("RE-{n:04}");
            i.fee = Decimal::new(n, 0);
            i.interest = Decimal::new(n * 7, 2);
            i
        })
        .collect();
    let pdf = arrears_pdf::from_html(&stored(&t, "final_notice", &ctx), ctx.as_of).unwrap();
    let text = pdf_text(&pdf);
    for i in &ctx.items {
        assert_has(&text, &i.document_no, "long de/final_notice");
        assert_has(
            &text,
            &money(i.interest, "EUR", "de"),
            "long de/final_notice",
        );
    }
    let letter = arrears_pdf::read_html(&stored(&t, "final_notice", &ctx)).unwrap();
    assert!(!letter.blocks.is_empty());
    // Pages are numbered once there is more than one, and the table's header
    // row starts every page the table goes on to.
    let pages: usize = text
        .split("1 / ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no page numbers:\n{text}"));
    assert!(pages >= 3, "{pages} pages for 70 items");
    assert_has(&text, &format!("{pages} / {pages}"), "page numbers");
    assert!(
        text.matches("Rechnungsdatum").count() >= pages - 1,
        "{text}"
    );
    assert_eq!(money(dec!(5), "EUR", "de"), "5,00 EUR");
}

#[test]
fn the_pdf_is_pdf_a_with_the_font_embedded() {
    let t = templates();
    let pdf =
        arrears_pdf::from_html(&stored(&t, "debt_recognition", &context("pt")), day()).unwrap();
    let raw = String::from_utf8_lossy(&pdf);
    assert!(
        raw.contains("pdfaid:part") && raw.contains("pdfaid:conformance"),
        "PDF/A metadata"
    );
    assert!(
        raw.contains("ArrearsLetterSans"),
        "the letter font is embedded"
    );
    assert!(raw.contains("/FontFile2"), "as TrueType data");
}

#[test]
fn a_character_the_font_lacks_is_named_with_where_it_is() {
    let html = "<html><body><div class=\"head\"><div class=\"recipient\"><div class=\"lines\">Ωmega Ltd\nStreet 1</div></div></div><p>Hello</p></body></html>";
    let e = arrears_pdf::from_html(html, day()).unwrap_err().to_string();
    assert!(e.contains("U+03A9") && e.contains("recipient"), "{e}");
    let e = arrears_pdf::from_html(
        "<body><table><tr><td>x</td><td>5 ₿</td></tr></table></body>",
        day(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("table 1, row 1, cell 2"), "{e}");
}
