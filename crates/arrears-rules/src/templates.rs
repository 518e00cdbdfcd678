//! Message templates: reminders, call instructions and letters rendered from
//! MiniJinja files that admins edit in `rules/templates/<lang>/<name>.j2`.
//!
//! Every file defines a `subject` block (one line), a `text` block (plain-text
//! body for e-mail, SMS, portal or call task) and optionally an `html` block (a
//! print-ready letter). The variables a template may read form the fixed
//! schema [`Context`]; anything else is rejected when the templates are loaded,
//! so a typo in a template stops the daemon at start-up (or keeps the previous
//! templates on reload) instead of failing the night's dunning run.
//!
//! Each file is registered twice in one MiniJinja environment: as
//! `<lang>/<name>.j2.txt` without escaping (subject and text) and as
//! `<lang>/<name>.j2.html` with HTML auto-escaping (html). MiniJinja decides
//! auto-escaping per template name, not per block, and a customer called
//! `A & B <script>` must come out escaped in a letter but verbatim in an e-mail.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Serde, Value};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Output, State, UndefinedBehavior};
use rust_decimal::Decimal;
use serde::{Serialize, Serializer};

/// File extension of template files inside a language folder.
pub const TEMPLATE_EXTENSION: &str = "j2";

const TEXT_SUFFIX: &str = ".j2.txt";
const HTML_SUFFIX: &str = ".j2.html";
const REQUIRED_BLOCKS: [&str; 2] = ["subject", "text"];
const HTML_BLOCK: &str = "html";

// ---------------------------------------------------------------------------
// Schema: what a template may read.
// ---------------------------------------------------------------------------

/// Everything a template can see. The caller fills it; templates never compute
/// money (amounts reach them as decimal strings and only the `money` filter
/// turns them into text), so what a letter states is what the books say.
///
/// `level`, `deadline`, `agreement` and `receipt` only make sense for some
/// templates. A template that cannot render without one of them records that
/// at load time, and [`Templates::render`] refuses up front with
/// [`TemplateError::MissingData`] when the caller leaves it out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Context {
    pub customer: Customer,
    pub company: Company,
    pub level: Option<Level>,
    /// The date the run is for; letters are dated with it.
    pub as_of: NaiveDate,
    /// Pay-by date the caller computed (e.g. as_of + 10 days for a final notice).
    pub deadline: Option<NaiveDate>,
    /// All dunnable items of the customer, one message for all of them.
    pub items: Vec<Item>,
    /// One line per currency; amounts of different currencies are never added.
    pub totals: Vec<Total>,
    /// Link to the payment portal; empty when there is none.
    pub payment_link: String,
    pub agreement: Option<Agreement>,
    pub receipt: Option<Receipt>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Customer {
    pub code: String,
    pub name: String,
    /// Code of our company (legal entity) the customer belongs to.
    pub company: String,
    pub language: String,
    pub country: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// Postal address without the name, lines separated by `\n`.
    pub address: Option<String>,
}

/// The creditor: our own company as it appears on letters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Company {
    pub name: String,
    /// Lines separated by `\n`.
    pub address: String,
    pub iban: Option<String>,
    /// How to reach accounts receivable (phone, e-mail), one or more lines.
    pub contact: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Level {
    pub name: String,
    pub number: u32,
    pub ladder: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    pub document_no: String,
    pub document_date: NaiveDate,
    pub due_date: NaiveDate,
    /// Negative before the due date (courtesy notices).
    pub days_overdue: i64,
    pub currency: String,
    #[serde(serialize_with = "decimal_string")]
    pub original_amount: Decimal,
    #[serde(serialize_with = "decimal_string")]
    pub open_amount: Decimal,
    #[serde(serialize_with = "decimal_string")]
    pub fee: Decimal,
    #[serde(serialize_with = "decimal_string")]
    pub interest: Decimal,
    /// open_amount + fee + interest, computed by the caller.
    #[serde(serialize_with = "decimal_string")]
    pub total: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Total {
    pub currency: String,
    #[serde(serialize_with = "decimal_string")]
    pub open_amount: Decimal,
    #[serde(serialize_with = "decimal_string")]
    pub fees: Decimal,
    #[serde(serialize_with = "decimal_string")]
    pub interest: Decimal,
    #[serde(serialize_with = "decimal_string")]
    pub total: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agreement {
    pub id: String,
    #[serde(serialize_with = "decimal_string")]
    pub debt: Decimal,
    pub currency: String,
    pub installments: Vec<Installment>,
    /// None while the agreement still waits for the customer's signature.
    pub signed_on: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Installment {
    pub number: u32,
    pub due: NaiveDate,
    #[serde(serialize_with = "decimal_string")]
    pub principal: Decimal,
    #[serde(serialize_with = "decimal_string")]
    pub interest: Decimal,
    #[serde(serialize_with = "decimal_string")]
    pub amount: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Receipt {
    pub agreement_id: String,
    pub paid_on: NaiveDate,
    #[serde(serialize_with = "decimal_string")]
    pub amount: Decimal,
    pub currency: String,
}

/// The sections of [`Context`] that are `Option` because only some templates use them.
const OPTIONAL_SECTIONS: [&str; 4] = ["level", "deadline", "agreement", "receipt"];

// Decimal's own Serialize depends on crate features (`serde-float` turns it into
// an f64), and feature unification in the daemon's dependency graph could flip
// it; a string keeps amounts exact and out of reach of template arithmetic.
fn decimal_string<S: Serializer>(value: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

impl Context {
    fn has_section(&self, section: &str) -> bool {
        match section {
            "level" => self.level.is_some(),
            "deadline" => self.deadline.is_some(),
            "agreement" => self.agreement.is_some(),
            "receipt" => self.receipt.is_some(),
            _ => true,
        }
    }

    fn without_section(&self, section: &str) -> Context {
        let mut ctx = self.clone();
        match section {
            "level" => ctx.level = None,
            "deadline" => ctx.deadline = None,
            "agreement" => ctx.agreement = None,
            "receipt" => ctx.receipt = None,
            _ => {}
        }
        ctx
    }

    /// A context with every field filled, two currencies and several items:
    /// what templates are checked against at load time, and handy for previews.
    pub fn sample() -> Context {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap_or_default();
        let item = |no: &str, doc: NaiveDate, due: NaiveDate, cur: &str, amounts: [i64; 5]| Item {
            document_no: no.into(),
            document_date: doc,
            due_date: due,
            days_overdue: (d(2026, 11, 23) - due).num_days(),
            currency: cur.into(),
            original_amount: Decimal::new(amounts[0], 2),
            open_amount: Decimal::new(amounts[1], 2),
            fee: Decimal::new(amounts[2], 2),
            interest: Decimal::new(amounts[3], 2),
            total: Decimal::new(amounts[4], 2),
        };
        Context {
            customer: Customer {
                code: "C-10042".into(),
                name: "Sample & Sons <Trading> Ltd".into(),
                company: "1000".into(),
                language: "en".into(),
                country: "GB".into(),
                email: Some("ap@sample.example".into()),
                phone: Some("+44 20 7946 0000".into()),
                address: Some(
                    "Accounts Payable\n1 Sample Street\nLondon EC1A 1AA\nUnited Kingdom".into(),
                ),
            },
            company: Company {
                name: "Arrears Demo GmbH".into(),
                address: "Musterstraße 1\n10115 Berlin\nGermany".into(),
                iban: Some("DE89 3704 0044 0532 0130 00".into()),
                contact: "receivables@arrears.example\n+49 30 1234567".into(),
            },
            level: Some(Level {
                name: "reminder_2".into(),
                number: 3,
                ladder: "standard".into(),
            }),
            as_of: d(2026, 11, 23),
            deadline: Some(d(2026, 12, 3)),
            items: vec![
                item(
                    "INV-2026-0815",
                    d(2026, 9, 1),
                    d(2026, 10, 1),
                    "EUR",
                    [123_450, 123_450, 500, 812, 124_762],
                ),
                item(
                    "INV-2026-0901",
                    d(2026, 9, 20),
                    d(2026, 10, 20),
                    "EUR",
                    [50_000, 20_000, 0, 95, 20_095],
                ),
                item(
                    "INV-2026-0950",
                    d(2026, 10, 1),
                    d(2026, 10, 31),
                    "USD",
                    [99_900, 99_900, 1_000, 310, 101_210],
                ),
            ],
            totals: vec![
                Total {
                    currency: "EUR".into(),
                    open_amount: Decimal::new(143_450, 2),
                    fees: Decimal::new(500, 2),
                    interest: Decimal::new(907, 2),
                    total: Decimal::new(144_857, 2),
                },
                Total {
                    currency: "USD".into(),
                    open_amount: Decimal::new(99_900, 2),
                    fees: Decimal::new(1_000, 2),
                    interest: Decimal::new(310, 2),
                    total: Decimal::new(101_210, 2),
                },
            ],
            payment_link: "https://pay.arrears.example/p/C-10042?t=abc&lang=en".into(),
            agreement: Some(Agreement {
                id: "AGR-2026-0007".into(),
                debt: Decimal::new(144_857, 2),
                currency: "EUR".into(),
                installments: [
                    (d(2026, 12, 15), 48_286),
                    (d(2027, 1, 15), 48_286),
                    (d(2027, 2, 15), 48_285),
                ]
                .into_iter()
                .zip(1..)
                .map(|((due, principal), n)| Installment {
                    number: n,
                    due,
                    principal: Decimal::new(principal, 2),
                    interest: Decimal::new(120 * i64::from(n), 2),
                    amount: Decimal::new(principal + 120 * i64::from(n), 2),
                })
                .collect(),
                signed_on: Some(d(2026, 11, 20)),
            }),
            receipt: Some(Receipt {
                agreement_id: "AGR-2026-0007".into(),
                paid_on: d(2026, 11, 21),
                amount: Decimal::new(145_577, 2),
                currency: "EUR".into(),
            }),
        }
    }

    /// The thin end of real data: optional customer fields missing, one item,
    /// no payment link, an unsigned agreement. Catches templates that print an
    /// empty value or take a branch the rich sample never reaches.
    fn sample_sparse() -> Context {
        let mut ctx = Context::sample();
        ctx.customer.email = None;
        ctx.customer.phone = None;
        ctx.customer.address = None;
        ctx.company.iban = None;
        ctx.items.truncate(1);
        ctx.totals.truncate(1);
        ctx.payment_link = String::new();
        if let Some(agreement) = ctx.agreement.as_mut() {
            agreement.signed_on = None;
            agreement.installments.truncate(1);
        }
        ctx
    }
}

// ---------------------------------------------------------------------------
// Results and errors.
// ---------------------------------------------------------------------------

/// One rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Single line, whitespace collapsed (safe for a mail header).
    pub subject: String,
    /// Plain text, never HTML-escaped.
    pub text: String,
    /// Complete HTML document with escaped values, if the template has an `html` block.
    pub html: Option<String>,
}

/// One thing wrong with one template file, found at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub kind: ProblemKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// The file or folder could not be read.
    Unreadable(String),
    /// A file or folder name that cannot be a language or template name.
    BadName(String),
    /// Two files resolve to the same language and template name.
    Duplicate,
    /// No folder for the default language.
    MissingDefaultLanguage(String),
    Syntax(String),
    /// A variable or attribute that is not in the schema, e.g. `customer.nmae`.
    UnknownVariable(String),
    MissingBlock(&'static str),
    /// A required block renders to nothing with the sample data.
    EmptyBlock(&'static str),
    /// Any other failure while rendering the sample data.
    Render(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {}", self.kind)
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::Unreadable(e) => write!(f, "cannot read: {e}"),
            ProblemKind::BadName(why) => f.write_str(why),
            ProblemKind::Duplicate => {
                f.write_str("another file already defines this template for this language")
            }
            ProblemKind::MissingDefaultLanguage(lang) => {
                write!(f, "no folder for the default language `{lang}`")
            }
            ProblemKind::Syntax(e) => write!(f, "syntax error: {e}"),
            ProblemKind::UnknownVariable(v) => {
                write!(f, "unknown variable `{v}` (not in the template schema)")
            }
            ProblemKind::MissingBlock(b) => {
                write!(f, "missing required block `{{% block {b} %}}`")
            }
            ProblemKind::EmptyBlock(b) => {
                write!(f, "block `{b}` renders empty with the sample data")
            }
            ProblemKind::Render(e) => write!(f, "fails with the sample data: {e}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read template folder {}: {source}", path.display())]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Everything wrong with the templates, all files checked in one pass.
    #[error("{}", list_problems(.0))]
    Invalid(Vec<Problem>),
    #[error("templates missing in the default language `{language}`: {}", names.join(", "))]
    Missing {
        language: String,
        names: Vec<String>,
    },
    #[error(
        "no template `{name}` for language `{language}` nor for the default language `{default}`"
    )]
    NotFound {
        name: String,
        language: String,
        default: String,
    },
    #[error("{}: the template needs `{section}` but the context has none", file.display())]
    MissingData {
        file: PathBuf,
        section: &'static str,
    },
    #[error("{}{}: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Render {
        file: PathBuf,
        line: Option<usize>,
        message: String,
    },
    #[error("template engine setup: {0}")]
    Engine(String),
}

fn list_problems(problems: &[Problem]) -> String {
    let mut out = format!("{} problem(s) in message templates:", problems.len());
    for p in problems {
        out.push_str("\n  ");
        out.push_str(&p.to_string());
    }
    out
}

// ---------------------------------------------------------------------------
// The loaded set.
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct Entry {
    file: PathBuf,
    text_name: String,
    /// Set only when the file has an `html` block.
    html_name: Option<String>,
    /// Optional sections without which this template cannot render.
    required: Vec<&'static str>,
}

/// All templates of a folder, checked and ready to render. `Send + Sync`:
/// meant to sit in an `Arc` (or an `ArcSwap` for reloads) shared by workers.
pub struct Templates {
    env: Environment<'static>,
    default_language: String,
    entries: BTreeMap<(String, String), Entry>,
}

impl fmt::Debug for Templates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Templates")
            .field("default_language", &self.default_language)
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

struct Source {
    language: String,
    name: String,
    file: PathBuf,
    text: String,
}

impl Templates {
    /// Loads every `<dir>/<lang>/<name>.j2` and checks all of them; the error
    /// lists every problem in every file, not just the first.
    pub fn load(dir: &Path, default_language: &str) -> Result<Templates, TemplateError> {
        let default_language = normalize_language(default_language);
        let mut env = new_environment()?;
        let mut problems = Vec::new();
        let sources = discover(dir, &mut problems)?;
        if !language_folder_exists(dir, &default_language) {
            problems.push(Problem {
                file: dir.join(&default_language),
                line: None,
                kind: ProblemKind::MissingDefaultLanguage(default_language.clone()),
            });
        }

        let schema = serde_json::to_value(Context::sample())
            .map_err(|e| TemplateError::Engine(e.to_string()))?;
        let mut entries = BTreeMap::new();
        // `de/` and `DE/` normalise to one language; checked before registering
        // because the second would silently replace the first in the engine.
        let mut seen = BTreeSet::new();
        for source in sources {
            let key = (source.language.clone(), source.name.clone());
            if !seen.insert(key.clone()) {
                problems.push(Problem {
                    file: source.file,
                    line: None,
                    kind: ProblemKind::Duplicate,
                });
                continue;
            }
            match check_source(&mut env, &schema, &source) {
                Ok(entry) => {
                    entries.insert(key, entry);
                }
                Err(mut found) => problems.append(&mut found),
            }
        }

        if problems.is_empty() {
            Ok(Templates {
                env,
                default_language,
                entries,
            })
        } else {
            Err(TemplateError::Invalid(problems))
        }
    }

    /// Checks that every named template exists in the default language, the
    /// one every customer can fall back to (names come from the escalation rules).
    pub fn require(&self, names: &[&str]) -> Result<(), TemplateError> {
        let missing: BTreeSet<&str> = names
            .iter()
            .copied()
            .filter(|n| {
                !self
                    .entries
                    .contains_key(&(self.default_language.clone(), (*n).to_string()))
            })
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(TemplateError::Missing {
                language: self.default_language.clone(),
                names: missing.into_iter().map(str::to_string).collect(),
            })
        }
    }

    /// Renders `name` in `language` (e.g. `de`, `pt-BR`), falling back to the
    /// primary subtag (`pt`) and then to the default language.
    pub fn render(
        &self,
        name: &str,
        language: &str,
        ctx: &Context,
    ) -> Result<Rendered, TemplateError> {
        let (_, entry) = self
            .resolve(name, language)
            .ok_or_else(|| TemplateError::NotFound {
                name: name.to_string(),
                language: language.to_string(),
                default: self.default_language.clone(),
            })?;
        if let Some(section) = entry.required.iter().find(|s| !ctx.has_section(s)) {
            return Err(TemplateError::MissingData {
                file: entry.file.clone(),
                section,
            });
        }
        render_entry(&self.env, entry, Value::from(Serde(ctx))).map_err(|e| TemplateError::Render {
            file: entry.file.clone(),
            line: e.line(),
            message: error_message(&e),
        })
    }

    /// The language folder [`render`](Self::render) would use, if any.
    pub fn language_for(&self, name: &str, language: &str) -> Option<&str> {
        self.resolve(name, language).map(|(lang, _)| lang)
    }

    pub fn default_language(&self) -> &str {
        &self.default_language
    }

    /// Every loaded template as (language, name), sorted.
    pub fn list(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .keys()
            .map(|(lang, name)| (lang.as_str(), name.as_str()))
    }

    fn resolve(&self, name: &str, language: &str) -> Option<(&str, &Entry)> {
        let full = normalize_language(language);
        let primary = full.split('-').next().unwrap_or_default().to_string();
        [full, primary, self.default_language.clone()]
            .into_iter()
            .find_map(|lang| self.entries.get_key_value(&(lang, name.to_string())))
            .map(|((lang, _), entry)| (lang.as_str(), entry))
    }
}

fn new_environment() -> Result<Environment<'static>, TemplateError> {
    let mut env = Environment::new();
    // Strict: a misspelt attribute must fail, not print an empty string into a letter.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let syntax = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .map_err(|e| TemplateError::Engine(e.to_string()))?;
    env.set_syntax(syntax);
    env.set_auto_escape_callback(|name| {
        if name.ends_with(HTML_SUFFIX) {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env.set_formatter(format_value);
    env.add_filter("money", money_filter);
    env.add_filter("date", date_filter);
    env.add_test("zero", zero_test);
    Ok(env)
}

fn language_folder_exists(dir: &Path, language: &str) -> bool {
    fs::read_dir(dir)
        .map(|entries| {
            entries.flatten().any(|e| {
                e.path().is_dir()
                    && e.file_name()
                        .to_str()
                        .is_some_and(|n| normalize_language(n) == language)
            })
        })
        .unwrap_or(false)
}

fn discover(dir: &Path, problems: &mut Vec<Problem>) -> Result<Vec<Source>, TemplateError> {
    let folder_error = |source| TemplateError::Folder {
        path: dir.to_path_buf(),
        source,
    };
    let mut top: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(folder_error)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(folder_error)?;
    top.sort();

    let mut sources = Vec::new();
    for path in top {
        let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if file_name.starts_with('.') {
            continue;
        }
        if !path.is_dir() {
            if has_template_extension(&path) {
                problems.push(bad_name(
                    &path,
                    "templates belong in a language folder, e.g. en/reminder_1.j2",
                ));
            }
            continue;
        }
        if !valid_language(file_name) {
            problems.push(bad_name(
                &path,
                "folder name is not a language tag such as `en`, `de` or `pt-BR`",
            ));
            continue;
        }
        let language = normalize_language(file_name);
        let mut files: Vec<PathBuf> = match fs::read_dir(&path) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && has_template_extension(p))
                .collect(),
            Err(e) => {
                problems.push(Problem {
                    file: path.clone(),
                    line: None,
                    kind: ProblemKind::Unreadable(e.to_string()),
                });
                continue;
            }
        };
        files.sort();
        for file in files {
            let name = file
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("")
                .to_string();
            if !valid_name(&name) {
                problems.push(bad_name(
                    &file,
                    "template name may only use letters, digits, `_` and `-`",
                ));
                continue;
            }
            match fs::read_to_string(&file) {
                Ok(text) => sources.push(Source {
                    language: language.clone(),
                    name,
                    file,
                    text,
                }),
                Err(e) => problems.push(Problem {
                    file,
                    line: None,
                    kind: ProblemKind::Unreadable(e.to_string()),
                }),
            }
        }
    }
    Ok(sources)
}

fn has_template_extension(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()) == Some(TEMPLATE_EXTENSION)
}

fn bad_name(path: &Path, why: &str) -> Problem {
    Problem {
        file: path.to_path_buf(),
        line: None,
        kind: ProblemKind::BadName(why.to_string()),
    }
}

fn valid_language(tag: &str) -> bool {
    let mut parts = tag.split(['-', '_']);
    let primary = parts.next().unwrap_or("");
    (2..=3).contains(&primary.len())
        && primary.chars().all(|c| c.is_ascii_alphabetic())
        && parts.all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn normalize_language(tag: &str) -> String {
    tag.trim().to_ascii_lowercase().replace('_', "-")
}

// ---------------------------------------------------------------------------
// Load-time checks.
// ---------------------------------------------------------------------------

fn check_source(
    env: &mut Environment<'static>,
    schema: &serde_json::Value,
    source: &Source,
) -> Result<Entry, Vec<Problem>> {
    let text_name = format!("{}/{}{TEXT_SUFFIX}", source.language, source.name);
    let html_name = format!("{}/{}{HTML_SUFFIX}", source.language, source.name);
    let problem = |e: &Error| vec![problem_from_error(&source.file, e)];
    env.add_template_owned(text_name.clone(), source.text.clone())
        .map_err(|e| problem(&e))?;
    env.add_template_owned(html_name.clone(), source.text.clone())
        .map_err(|e| problem(&e))?;

    let template = env.get_template(&text_name).map_err(|e| problem(&e))?;
    // Static pass: sees every branch, including ones no sample reaches, but
    // only paths rooted at a context variable (not loop variables).
    let mut problems = unknown_variables(env, schema, source, &template.undeclared_variables(true));
    if !problems.is_empty() {
        return Err(problems);
    }
    let read: BTreeSet<String> = template.undeclared_variables(false).into_iter().collect();

    // Dynamic pass: strict rendering catches attributes of loop variables
    // (`item.bogus`), filters used wrongly and printed empty values.
    let mut has_html = false;
    for ctx in [Context::sample(), Context::sample_sparse()] {
        match check_render(
            env,
            &text_name,
            &html_name,
            &source.file,
            Value::from(Serde(&ctx)),
        ) {
            Ok(html) => has_html = html,
            Err(mut found) => {
                problems.append(&mut found);
                break;
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }

    // A template that reads an optional section only behind `{% if %}` works
    // without it; one that cannot render without it needs the caller to pass it.
    let html = has_html.then_some(html_name);
    let required = OPTIONAL_SECTIONS
        .into_iter()
        .filter(|section| read.contains(*section))
        .filter(|section| {
            let ctx = Context::sample().without_section(section);
            let probe = Entry {
                file: source.file.clone(),
                text_name: text_name.clone(),
                html_name: html.clone(),
                required: Vec::new(),
            };
            render_entry(env, &probe, Value::from(Serde(&ctx))).is_err()
        })
        .collect();
    Ok(Entry {
        file: source.file.clone(),
        text_name,
        html_name: html,
        required,
    })
}

fn unknown_variables(
    env: &Environment<'static>,
    schema: &serde_json::Value,
    source: &Source,
    undeclared: &std::collections::HashSet<String>,
) -> Vec<Problem> {
    let globals: BTreeSet<&str> = env.globals().map(|(name, _)| name).collect();
    let mut unknown: BTreeSet<String> = BTreeSet::new();
    for path in undeclared {
        let mut segments = path.split('.');
        let root = segments.next().unwrap_or_default();
        let Some(mut node) = schema.get(root) else {
            if !globals.contains(root) {
                unknown.insert(root.to_string());
            }
            continue;
        };
        let mut walked = root.to_string();
        for segment in segments {
            walked.push('.');
            walked.push_str(segment);
            // Past a string or list come methods (`.upper()`) and indexes:
            // the engine checks those at render time.
            let Some(fields) = node.as_object() else {
                break;
            };
            match fields.get(segment) {
                Some(next) => node = next,
                None => {
                    unknown.insert(walked.clone());
                    break;
                }
            }
        }
    }
    let mut problems: Vec<Problem> = unknown
        .into_iter()
        .map(|variable| Problem {
            file: source.file.clone(),
            line: locate(&source.text, &variable),
            kind: ProblemKind::UnknownVariable(variable),
        })
        .collect();
    problems.sort_by_key(|p| p.line);
    problems
}

/// Line of the first use of `path` inside a `{{ }}` or `{% %}` tag, so that
/// the word in running text ("your customer number") is not mistaken for it.
fn locate(source: &str, path: &str) -> Option<usize> {
    let mut offset = 0;
    while let Some(start) = source[offset..].find('{').map(|i| offset + i) {
        let close = match source.as_bytes().get(start + 1) {
            Some(b'{') => "}}",
            Some(b'%') => "%}",
            _ => {
                offset = start + 1;
                continue;
            }
        };
        let body_start = start + 2;
        let end = source[body_start..]
            .find(close)
            .map_or(source.len(), |i| body_start + i);
        if let Some(pos) = find_identifier(&source[body_start..end], path) {
            let at = body_start + pos;
            return Some(source[..at].matches('\n').count() + 1);
        }
        offset = end;
    }
    None
}

fn find_identifier(haystack: &str, path: &str) -> Option<usize> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    haystack.match_indices(path).map(|(i, _)| i).find(|&i| {
        let before = haystack[..i].chars().next_back();
        let after = haystack[i + path.len()..].chars().next();
        !before.is_some_and(|c| is_ident(c) || c == '.') && !after.is_some_and(is_ident)
    })
}

/// Renders the sample through every block; returns whether an `html` block exists.
fn check_render(
    env: &Environment<'static>,
    text_name: &str,
    html_name: &str,
    file: &Path,
    ctx: Value,
) -> Result<bool, Vec<Problem>> {
    let one = |e: &Error| vec![problem_from_error(file, e)];
    let template = env.get_template(text_name).map_err(|e| one(&e))?;
    let mut captured = template.render_captured(ctx.clone()).map_err(|e| one(&e))?;
    let mut problems = Vec::new();
    for block in REQUIRED_BLOCKS {
        match captured.with_state_mut(|state| state.render_block(block)) {
            Ok(out) if out.trim().is_empty() => problems.push(Problem {
                file: file.to_path_buf(),
                line: None,
                kind: ProblemKind::EmptyBlock(block),
            }),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::UnknownBlock => problems.push(Problem {
                file: file.to_path_buf(),
                line: None,
                kind: ProblemKind::MissingBlock(block),
            }),
            Err(e) => problems.push(problem_from_error(file, &e)),
        }
    }
    // Errors other than a missing block surface below, where the block is
    // rendered the way it will be sent: escaped.
    let has_html = !matches!(
        captured.with_state_mut(|state| state.render_block(HTML_BLOCK)),
        Err(e) if e.kind() == ErrorKind::UnknownBlock
    );
    if has_html {
        let html = env.get_template(html_name).map_err(|e| one(&e))?;
        let rendered = html
            .render_captured(ctx)
            .and_then(|mut c| c.with_state_mut(|state| state.render_block(HTML_BLOCK)));
        if let Err(e) = rendered {
            problems.push(problem_from_error(file, &e));
        }
    }
    if problems.is_empty() {
        Ok(has_html)
    } else {
        Err(problems)
    }
}

fn problem_from_error(file: &Path, err: &Error) -> Problem {
    let kind = match err.kind() {
        ErrorKind::SyntaxError => ProblemKind::Syntax(err.detail().unwrap_or("").to_string()),
        ErrorKind::UndefinedError => match err.detail().and_then(undefined_name) {
            Some(name) => ProblemKind::UnknownVariable(name),
            None => ProblemKind::Render(error_message(err)),
        },
        _ => ProblemKind::Render(error_message(err)),
    };
    Problem {
        file: file.to_path_buf(),
        line: err.line(),
        kind,
    }
}

/// Pulls `item.bogus` out of MiniJinja's "`item.bogus` is undefined" detail.
fn undefined_name(detail: &str) -> Option<String> {
    let start = detail.find('`')? + 1;
    let len = detail[start..].find('`')?;
    detail[start + len..]
        .starts_with("` is undefined")
        .then(|| detail[start..start + len].to_string())
}

fn error_message(err: &Error) -> String {
    match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    }
}

// ---------------------------------------------------------------------------
// Rendering.
// ---------------------------------------------------------------------------

fn render_entry(env: &Environment<'static>, entry: &Entry, ctx: Value) -> Result<Rendered, Error> {
    let template = env.get_template(&entry.text_name)?;
    let mut captured = template.render_captured(ctx.clone())?;
    let subject = captured.with_state_mut(|s| s.render_block("subject"))?;
    let text = captured.with_state_mut(|s| s.render_block("text"))?;
    let html = match &entry.html_name {
        Some(name) => {
            let template = env.get_template(name)?;
            let mut captured = template.render_captured(ctx)?;
            let html = captured.with_state_mut(|s| s.render_block(HTML_BLOCK))?;
            Some(html.trim().to_string() + "\n")
        }
        None => None,
    };
    Ok(Rendered {
        subject: one_line(&subject),
        text: tidy_text(&text),
        html,
    })
}

/// Collapses all whitespace, newlines included, so a value with a line break
/// cannot inject a header when the subject goes into an e-mail.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Trailing spaces off every line, no blank lines at either end, and at most
/// one blank line in a row (conditional sections leave gaps otherwise).
fn tidy_text(s: &str) -> String {
    let mut out = String::new();
    let mut blank_run = 0;
    for line in s.lines().map(str::trim_end) {
        if line.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() && blank_run > 0 {
            out.push('\n');
        }
        blank_run = 0;
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn format_value(out: &mut Output, state: &mut State, value: &Value) -> Result<(), Error> {
    if value.is_none() {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "printed an empty (none) value; guard it with {% if ... %}",
        ));
    }
    if value.is_number() && !value.is_integer() {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "printed a floating-point number; amounts must come from the data and go through `money` (use `//` for integer division)",
        ));
    }
    minijinja::escape_formatter(out, state, value)
}

// ---------------------------------------------------------------------------
// Filters: money and dates per language.
// ---------------------------------------------------------------------------

/// The language a filter formats for: the folder of the template being
/// rendered, so a German letter shows German numbers even when the customer's
/// own language had no template and the fallback kicked in.
fn language_of(state: &State) -> String {
    let folder = state.name().split('/').next().unwrap_or_default();
    folder.split('-').next().unwrap_or_default().to_string()
}

fn money_filter(state: &State, amount: Value, currency: &str) -> Result<String, Error> {
    let amount = decimal_value(&amount)?;
    let currency = currency.trim();
    if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("money: `{currency}` is not an ISO 4217 currency code such as EUR"),
        ));
    }
    Ok(format_money(amount, currency, &language_of(state)))
}

fn date_filter(state: &State, value: Value) -> Result<String, Error> {
    let date = value
        .as_str()
        .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("date: expected a date (YYYY-MM-DD), got `{value}`"),
            )
        })?;
    Ok(format_date(date, &language_of(state)))
}

fn zero_test(value: Value) -> Result<bool, Error> {
    Ok(decimal_value(&value)?.is_zero())
}

fn decimal_value(value: &Value) -> Result<Decimal, Error> {
    if let Some(s) = value.as_str() {
        return Decimal::from_str(s.trim()).map_err(|_| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("`{s}` is not a decimal amount (amounts cannot be added in a template)"),
            )
        });
    }
    if let Some(i) = value.as_i64().filter(|_| value.is_integer()) {
        return Ok(Decimal::from(i));
    }
    let why = if value.is_number() {
        "floating-point numbers are not allowed for money".to_string()
    } else {
        format!("expected an amount, got {}", value.kind())
    };
    Err(Error::new(ErrorKind::InvalidOperation, why))
}

/// Minor-unit digits per ISO 4217 for the currencies that differ from 2.
fn minor_digits(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        "CLF" | "UYW" => 4,
        _ => 2,
    }
}

/// `en` (and any language without its own rule): `EUR 1,234.50`;
/// `de`: `1.234,50 EUR`; `pt`: `BRL 1.234,50`. Always the ISO code, never a
/// symbol, so `$` cannot be read as the wrong dollar. Rounded half away from
/// zero to the currency's minor units.
pub fn format_money(amount: Decimal, currency: &str, language: &str) -> String {
    let digits = minor_digits(currency);
    let rounded = arrears_core::money::round_to(amount, digits);
    let plain = rounded.abs().to_string();
    let (int_part, frac_part) = plain.split_once('.').unwrap_or((&plain, ""));
    let (group, decimal) = match primary_language(language) {
        "de" | "pt" => ('.', ','),
        _ => (',', '.'),
    };
    let mut number = String::new();
    if rounded.is_sign_negative() && !rounded.is_zero() {
        number.push('-');
    }
    for (i, c) in int_part.chars().enumerate() {
        if i > 0 && (int_part.len() - i) % 3 == 0 {
            number.push(group);
        }
        number.push(c);
    }
    if !frac_part.is_empty() {
        number.push(decimal);
        number.push_str(frac_part);
    }
    match primary_language(language) {
        "de" => format!("{number} {currency}"),
        _ => format!("{currency} {number}"),
    }
}

/// `en`: `23 Nov 2026` (month spelt out so neither side misreads 11/12);
/// `de`: `23.11.2026`; `pt`: `23/11/2026`.
pub fn format_date(date: NaiveDate, language: &str) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (d, m, y) = (date.day(), date.month(), date.year());
    match primary_language(language) {
        "de" => format!("{d:02}.{m:02}.{y}"),
        "pt" => format!("{d:02}/{m:02}/{y}"),
        _ => format!("{d} {} {y}", MONTHS[(m as usize).saturating_sub(1) % 12]),
    }
}

fn primary_language(language: &str) -> &str {
    let tag = language.trim();
    let end = tag.find(['-', '_']).unwrap_or(tag.len());
    match &tag[..end] {
        t if t.eq_ignore_ascii_case("de") => "de",
        t if t.eq_ignore_ascii_case("pt") => "pt",
        _ => "en",
    }
}

// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;
    use std::sync::Arc;

    const OK_TEMPLATE: &str = "\
{% block subject %}Reminder for {{ customer.name }}{% endblock %}
{% block text %}
Dear {{ customer.name }},
{% for item in items %}
- {{ item.document_no }} due {{ item.due_date|date }}: {{ item.open_amount|money(item.currency) }}
{% endfor %}
{% for t in totals %}
Total {{ t.currency }}: {{ t.total|money(t.currency) }}
{% endfor %}
{% endblock %}
";

    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for (path, text) in files {
            let path = dir.path().join(path);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(path, text).expect("write");
        }
        dir
    }

    fn problems(result: Result<Templates, TemplateError>) -> Vec<Problem> {
        match result {
            Err(TemplateError::Invalid(problems)) => problems,
            Err(other) => panic!("expected template problems, got {other}"),
            Ok(_) => panic!("expected template problems, templates loaded"),
        }
    }

    fn context() -> Context {
        let mut ctx = Context::sample();
        ctx.customer.name = "Widget Co".into();
        ctx.items = vec![
            Item {
                document_no: "INV-1".into(),
                document_date: NaiveDate::from_ymd_opt(2026, 9, 1).unwrap(),
                due_date: NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(),
                days_overdue: 53,
                currency: "EUR".into(),
                original_amount: dec!(1234.5),
                open_amount: dec!(1234.5),
                fee: dec!(5),
                interest: dec!(8.12),
                total: dec!(1247.62),
            },
            Item {
                document_no: "INV-2".into(),
                document_date: NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(),
                due_date: NaiveDate::from_ymd_opt(2026, 10, 31).unwrap(),
                days_overdue: 23,
                currency: "JPY".into(),
                original_amount: dec!(150000),
                open_amount: dec!(150000),
                fee: dec!(0),
                interest: dec!(0),
                total: dec!(150000),
            },
        ];
        ctx.totals = vec![
            Total {
                currency: "EUR".into(),
                open_amount: dec!(1234.50),
                fees: dec!(5.00),
                interest: dec!(8.12),
                total: dec!(1247.62),
            },
            Total {
                currency: "JPY".into(),
                open_amount: dec!(150000),
                fees: dec!(0),
                interest: dec!(0),
                total: dec!(150000),
            },
        ];
        ctx
    }

    #[test]
    fn grouped_reminder_with_two_currencies() {
        let dir = folder(&[("en/reminder_1.j2", OK_TEMPLATE)]);
        let t = Templates::load(dir.path(), "en").expect("loads");
        let out = t.render("reminder_1", "en", &context()).expect("renders");
        assert_eq!(out.subject, "Reminder for Widget Co");
        assert_eq!(
            out.text,
            "Dear Widget Co,\n\
             - INV-1 due 1 Oct 2026: EUR 1,234.50\n\
             - INV-2 due 31 Oct 2026: JPY 150,000\n\
             Total EUR: EUR 1,247.62\n\
             Total JPY: JPY 150,000\n"
        );
        assert_eq!(out.html, None);
    }

    #[test]
    fn unknown_top_level_variable_names_file_and_line() {
        let bad = OK_TEMPLATE.replace("Dear {{ customer.name }}", "Dear {{ customr.name }}");
        let dir = folder(&[("en/reminder_1.j2", &bad)]);
        let found = problems(Templates::load(dir.path(), "en"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].file, dir.path().join("en/reminder_1.j2"));
        assert_eq!(found[0].line, Some(3));
        assert_eq!(
            found[0].kind,
            ProblemKind::UnknownVariable("customr".into())
        );
        assert!(found[0]
            .to_string()
            .contains("reminder_1.j2:3: unknown variable `customr`"));
    }

    #[test]
    fn unknown_attribute_of_context_variable_found_in_untaken_branch() {
        // No sample has this country, so only the static pass sees the branch.
        let bad = OK_TEMPLATE.replace(
            "Dear {{ customer.name }},",
            "{% if customer.country == 'XX' %}Hi {{ customer.nmae }}{% endif %}",
        );
        let dir = folder(&[("en/x.j2", &bad)]);
        let found = problems(Templates::load(dir.path(), "en"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            found[0].kind,
            ProblemKind::UnknownVariable("customer.nmae".into())
        );
        assert_eq!(found[0].line, Some(3));
    }

    #[test]
    fn unknown_attribute_in_loop_rejected() {
        let bad = OK_TEMPLATE.replace("{{ item.document_no }}", "{{ item.bogus }}");
        let dir = folder(&[("en/reminder_1.j2", &bad)]);
        let found = problems(Templates::load(dir.path(), "en"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            found[0].kind,
            ProblemKind::UnknownVariable("item.bogus".into())
        );
        assert_eq!(found[0].line, Some(5));
        assert_eq!(found[0].file, dir.path().join("en/reminder_1.j2"));
    }

    #[test]
    fn syntax_error_names_the_line() {
        let bad = OK_TEMPLATE.replace("{{ t.currency }}", "{{ t.currency }");
        let dir = folder(&[("de/reminder_1.j2", &bad)]);
        let found = problems(Templates::load(dir.path(), "de"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(matches!(found[0].kind, ProblemKind::Syntax(_)), "{found:?}");
        assert_eq!(found[0].line, Some(8));
        assert_eq!(found[0].file, dir.path().join("de/reminder_1.j2"));
    }

    #[test]
    fn missing_required_block_rejected() {
        let no_subject = "{% block text %}Hello {{ customer.name }}{% endblock %}";
        let dir = folder(&[("en/x.j2", no_subject)]);
        let found = problems(Templates::load(dir.path(), "en"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].kind, ProblemKind::MissingBlock("subject"));

        let no_text = "{% block subject %}Hello{% endblock %}";
        let dir = folder(&[("en/x.j2", no_text)]);
        let found = problems(Templates::load(dir.path(), "en"));
        assert_eq!(found[0].kind, ProblemKind::MissingBlock("text"));
    }

    #[test]
    fn all_errors_collected_across_files() {
        let unknown = OK_TEMPLATE.replace("{{ item.document_no }}", "{{ item.bogus }}");
        let syntax = OK_TEMPLATE.replace("{% endfor %}", "{% endfro %}");
        let dir = folder(&[
            ("en/a.j2", unknown.as_str()),
            ("en/b.j2", syntax.as_str()),
            ("en/good.j2", OK_TEMPLATE),
        ]);
        let err = Templates::load(dir.path(), "en").expect_err("two bad files");
        let message = err.to_string();
        let found = problems(Err(err));
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].file, dir.path().join("en/a.j2"));
        assert_eq!(found[1].file, dir.path().join("en/b.j2"));
        assert!(message.starts_with("2 problem(s)"), "{message}");
        assert!(
            message.contains("a.j2:5") && message.contains("b.j2:"),
            "{message}"
        );
    }

    #[test]
    fn language_fallback() {
        let de = OK_TEMPLATE.replace("Reminder for", "Zahlungserinnerung für");
        let pt = OK_TEMPLATE.replace("Reminder for", "Lembrete para");
        let dir = folder(&[
            ("en/reminder_1.j2", OK_TEMPLATE),
            ("de/reminder_1.j2", &de),
            ("pt/reminder_1.j2", &pt),
            ("en/only_en.j2", OK_TEMPLATE),
        ]);
        let t = Templates::load(dir.path(), "en").expect("loads");
        let ctx = context();
        let subject = |name, lang| t.render(name, lang, &ctx).expect("renders").subject;
        assert_eq!(
            subject("reminder_1", "de"),
            "Zahlungserinnerung für Widget Co"
        );
        assert_eq!(
            subject("reminder_1", "de-AT"),
            "Zahlungserinnerung für Widget Co"
        );
        assert_eq!(subject("reminder_1", "pt_BR"), "Lembrete para Widget Co");
        assert_eq!(subject("reminder_1", "fr"), "Reminder for Widget Co");
        assert_eq!(subject("only_en", "de"), "Reminder for Widget Co");
        assert_eq!(t.language_for("reminder_1", "fr"), Some("en"));
        // The fallback letter is formatted for the language it is written in.
        let text = t.render("only_en", "de", &ctx).expect("renders").text;
        assert!(text.contains("EUR 1,234.50"), "{text}");
        assert!(matches!(
            t.render("nope", "de", &ctx),
            Err(TemplateError::NotFound { .. })
        ));
    }

    #[test]
    fn require_reports_missing_default_templates() {
        let dir = folder(&[
            ("en/reminder_1.j2", OK_TEMPLATE),
            ("de/final_notice.j2", OK_TEMPLATE),
        ]);
        let t = Templates::load(dir.path(), "en").expect("loads");
        assert!(t.require(&["reminder_1"]).is_ok());
        match t.require(&["reminder_1", "final_notice", "call"]) {
            Err(TemplateError::Missing { language, names }) => {
                assert_eq!(language, "en");
                assert_eq!(names, vec!["call".to_string(), "final_notice".to_string()]);
            }
            other => panic!("expected Missing, got {other:?}"),
        }
    }

    #[test]
    fn missing_default_language_folder_rejected() {
        let dir = folder(&[("de/reminder_1.j2", OK_TEMPLATE)]);
        let found = problems(Templates::load(dir.path(), "en"));
        assert_eq!(
            found[0].kind,
            ProblemKind::MissingDefaultLanguage("en".into())
        );
    }

    #[test]
    fn html_is_escaped_and_text_is_not() {
        let source = "\
{% block subject %}Letter to {{ customer.name }}{% endblock %}
{% block text %}Dear {{ customer.name }}{% endblock %}
{% block html %}<p class=\"to\">{{ customer.name }}</p><p>{{ payment_link }}</p>{% endblock %}
";
        let dir = folder(&[("en/letter.j2", source)]);
        let t = Templates::load(dir.path(), "en").expect("loads");
        let mut ctx = context();
        ctx.customer.name = "Tom & Jerry <script>alert(1)</script>".into();
        let out = t.render("letter", "en", &ctx).expect("renders");
        assert_eq!(
            out.subject,
            "Letter to Tom & Jerry <script>alert(1)</script>"
        );
        assert_eq!(out.text, "Dear Tom & Jerry <script>alert(1)</script>\n");
        let html = out.html.expect("html block");
        assert!(
            html.contains(
                "<p class=\"to\">Tom &amp; Jerry &lt;script&gt;alert(1)&lt;&#x2f;script&gt;</p>"
            ),
            "{html}"
        );
        assert!(html.contains("t=abc&amp;lang=en"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
    }

    #[test]
    fn subject_is_one_line_and_text_is_tidy() {
        let source = "{% block subject %}\n  Hello\n  {{ customer.name }}  \n{% endblock %}\n{% block text %}\n\n\nA   \n\n\n\nB\n\n{% endblock %}";
        let dir = folder(&[("en/x.j2", source)]);
        let t = Templates::load(dir.path(), "en").expect("loads");
        let mut ctx = context();
        ctx.customer.name = "Evil\r\nBcc: x@example.com".into();
        let out = t.render("x", "en", &ctx).expect("renders");
        assert_eq!(out.subject, "Hello Evil Bcc: x@example.com");
        assert_eq!(out.text, "A\n\nB\n");
    }

    #[test]
    fn money_and_date_filters_per_language() {
        let source = "{% block subject %}{{ receipt.amount|money(receipt.currency) }} {{ receipt.paid_on|date }}{% endblock %}{% block text %}{{ items[0].fee|money('KWD') }}|{{ (-5)|money('EUR') }}|{{ '0.004'|money('EUR') }}{% endblock %}";
        let dir = folder(&[
            ("en/m.j2", source),
            ("de/m.j2", source),
            ("pt/m.j2", source),
        ]);
        let t = Templates::load(dir.path(), "en").expect("loads");
        let mut ctx = context();
        ctx.receipt = Some(Receipt {
            agreement_id: "A-1".into(),
            paid_on: NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
            amount: dec!(1234567.505),
            currency: "BRL".into(),
        });
        let render = |lang| {
            let out = t.render("m", lang, &ctx).expect("renders");
            format!("{} / {}", out.subject, out.text.trim_end())
        };
        assert_eq!(
            render("en"),
            "BRL 1,234,567.51 23 Nov 2026 / KWD 5.000|EUR -5.00|EUR 0.00"
        );
        assert_eq!(
            render("de"),
            "1.234.567,51 BRL 23.11.2026 / 5,000 KWD|-5,00 EUR|0,00 EUR"
        );
        assert_eq!(
            render("pt"),
            "BRL 1.234.567,51 23/11/2026 / KWD 5,000|EUR -5,00|EUR 0,00"
        );
        assert_eq!(format_money(dec!(-1234.5), "EUR", "pt-BR"), "EUR -1.234,50");
        assert_eq!(
            format_date(NaiveDate::from_ymd_opt(2026, 1, 5).unwrap(), "en-US"),
            "5 Jan 2026"
        );
    }

    #[test]
    fn float_arithmetic_and_string_addition_rejected() {
        let float = OK_TEMPLATE.replace("{{ item.document_no }}", "{{ item.days_overdue / 7 }}");
        let added = OK_TEMPLATE.replace("t.total|money", "(t.fees + t.interest)|money");
        let floaty_money = OK_TEMPLATE.replace("t.total|money", "1.5|money");
        let dir = folder(&[
            ("en/a.j2", &float),
            ("en/b.j2", &added),
            ("en/c.j2", &floaty_money),
        ]);
        let found = problems(Templates::load(dir.path(), "en"));
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found
                .iter()
                .all(|p| matches!(p.kind, ProblemKind::Render(_))),
            "{found:?}"
        );
        assert_eq!(found[0].line, Some(5));
        assert_eq!(found[1].line, Some(8));
    }

    #[test]
    fn unguarded_optional_value_rejected() {
        let bad = OK_TEMPLATE.replace("Dear {{ customer.name }},", "Phone: {{ customer.phone }}");
        let good = OK_TEMPLATE.replace(
            "Dear {{ customer.name }},",
            "{% if customer.phone %}Phone: {{ customer.phone }}{% endif %}",
        );
        let dir = folder(&[("en/bad.j2", &bad), ("en/good.j2", &good)]);
        let found = problems(Templates::load(dir.path(), "en"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].file, dir.path().join("en/bad.j2"));
        assert_eq!(found[0].line, Some(3));
    }

    #[test]
    fn optional_section_required_only_when_used_unguarded() {
        let needs = "{% block subject %}Agreement {{ agreement.id }}{% endblock %}{% block text %}x{% endblock %}";
        let guarded = "{% block subject %}Hi{% endblock %}{% block text %}{% if deadline %}by {{ deadline|date }}{% else %}soon{% endif %}{% endblock %}";
        let dir = folder(&[("en/needs.j2", needs), ("en/guarded.j2", guarded)]);
        let t = Templates::load(dir.path(), "en").expect("loads");
        let mut ctx = context();
        ctx.agreement = None;
        ctx.deadline = None;
        match t.render("needs", "en", &ctx) {
            Err(TemplateError::MissingData { section, .. }) => assert_eq!(section, "agreement"),
            other => panic!("expected MissingData, got {other:?}"),
        }
        assert_eq!(
            t.render("guarded", "en", &ctx).expect("renders").text,
            "soon\n"
        );
    }

    #[test]
    fn duplicate_language_folders_reported() {
        let bad = OK_TEMPLATE.replace("{{ item.document_no }}", "{{ item.bogus }}");
        let dir = folder(&[
            ("DE/x.j2", bad.as_str()),
            ("de/x.j2", OK_TEMPLATE),
            ("en/x.j2", OK_TEMPLATE),
        ]);
        let found = problems(Templates::load(dir.path(), "en"));
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[1].kind, ProblemKind::Duplicate);
        assert_eq!(found[1].file, dir.path().join("de/x.j2"));
    }

    #[test]
    fn bad_names_reported() {
        let dir = folder(&[
            ("loose.j2", OK_TEMPLATE),
            ("english/x.j2", OK_TEMPLATE),
            ("en/bad name.j2", OK_TEMPLATE),
            ("en/fine.j2", OK_TEMPLATE),
            ("en/notes.txt", "ignored"),
        ]);
        let found = problems(Templates::load(dir.path(), "en"));
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found
            .iter()
            .all(|p| matches!(p.kind, ProblemKind::BadName(_))));
    }

    #[test]
    fn shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Templates>();
        let dir = folder(&[("en/reminder_1.j2", OK_TEMPLATE)]);
        let t = Arc::new(Templates::load(dir.path(), "en").expect("loads"));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let t = Arc::clone(&t);
                std::thread::spawn(move || {
                    t.render("reminder_1", "en", &context()).map(|r| r.subject)
                })
            })
            .collect();
        for h in handles {
            assert_eq!(
                h.join().expect("thread").expect("renders"),
                "Reminder for Widget Co"
            );
        }
    }

    /// The folder shipped in the repository: rules/templates next to the daemon crate.
    const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../rules/templates");

    const ESCALATION_TEMPLATES: [&str; 9] = [
        "pre_due_courtesy",
        "reminder_1",
        "reminder_2",
        "final_notice",
        "collection_call",
        "us_past_due_reminder",
        "us_second_notice",
        "us_final_demand",
        "us_collection_call",
    ];

    #[test]
    fn shipped_templates_load_and_render() {
        let t = match Templates::load(Path::new(SHIPPED), "en") {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        t.require(&ESCALATION_TEMPLATES)
            .expect("escalation templates");
        t.require(&["debt_recognition", "acquittance"])
            .expect("agreement letters");
        for name in [
            "reminder_1",
            "reminder_2",
            "final_notice",
            "collection_call",
            "debt_recognition",
            "acquittance",
        ] {
            assert_eq!(t.language_for(name, "de"), Some("de"), "{name} in German");
        }
        let letters = [
            "final_notice",
            "us_final_demand",
            "debt_recognition",
            "acquittance",
        ];
        let ctx = Context::sample();
        let pairs: Vec<(String, String)> = t
            .list()
            .map(|(l, n)| (l.to_string(), n.to_string()))
            .collect();
        for (lang, name) in pairs {
            let out = t
                .render(&name, &lang, &ctx)
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(
                !out.subject.is_empty() && !out.text.is_empty(),
                "{lang}/{name}"
            );
            assert!(
                !out.text.contains("&amp;"),
                "{lang}/{name}: text is escaped"
            );
            assert!(
                out.text.contains(&ctx.customer.name) || name.contains("call"),
                "{lang}/{name}: addresses the customer"
            );
            assert_eq!(
                out.html.is_some(),
                letters.contains(&name.as_str()),
                "{lang}/{name}"
            );
            if let Some(html) = out.html {
                assert!(html.starts_with("<!DOCTYPE html>"), "{lang}/{name}");
                assert!(
                    html.contains("@page") && html.contains("A4"),
                    "{lang}/{name}"
                );
                assert!(
                    html.contains("Sample &amp; Sons &lt;Trading&gt; Ltd"),
                    "{lang}/{name}"
                );
                for external in ["src=", "<link", "@import", "url("] {
                    assert!(!html.contains(external), "{lang}/{name}: {external}");
                }
            }
        }
        // Grouped reminders list every item with fees and interest, and a total per currency.
        let out = t.render("reminder_2", "de", &ctx).expect("renders");
        for needle in [
            "INV-2026-0815",
            "INV-2026-0950",
            "5,00 EUR",
            "8,12 EUR",
            "1.448,57 EUR",
            "1.012,10 USD",
        ] {
            assert!(
                out.text.contains(needle),
                "{needle} missing in:\n{}",
                out.text
            );
        }
        let out = t.render("final_notice", "en", &ctx).expect("renders");
        let html = out.html.expect("letter");
        for needle in [
            "3 Dec 2026",
            "EUR 1,448.57",
            "USD 1,012.10",
            "EUR 8.12",
            "DE89 3704",
        ] {
            assert!(html.contains(needle), "{needle} missing in final notice");
        }
    }
}
