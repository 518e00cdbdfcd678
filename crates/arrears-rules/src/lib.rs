//! Rules: YAML strategies plus Rhai scripts, compiled into one validated [`RuleSet`].
//!
//! Loading is a compiler pass in the style of `vector validate`: it reads every
//! `*.yaml` file and every referenced script, collects **all** errors (each with
//! file, line and column) and only returns a rule set when there are none.
//! `arrears check` and every run use this same code path.

pub mod compliance;
pub mod condition;
pub mod facts;
pub mod guard;
pub mod letters;
pub mod raw;
pub mod script;
pub mod templates;
pub mod yaml;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use arrears_core::money::{Currency, Rates};

/// The largest exchange rate into the base currency the rules may set.
pub const MAX_RATE: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);
pub use condition::Cond;
pub use script::{Hook, Script};

#[derive(Debug, Clone)]
pub struct RuleError {
    pub file: PathBuf,
    /// 1-based line and column, when the place is known.
    pub pos: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some((l, c)) => write!(f, "{}:{l}:{c}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Every problem found in a rule set, in file order.
#[derive(Debug, thiserror::Error)]
#[error("{} error(s) in rules:\n{}", .0.len(), .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
pub struct RuleErrors(pub Vec<RuleError>);

#[derive(Debug, Clone, Copy)]
pub struct CasePolicy {
    pub initial_nad_days: i64,
    pub high_amount: Decimal,
    pub high_days_overdue: i64,
}

#[derive(Debug, Clone)]
pub struct Subcategory {
    pub name: String,
    pub days_to_complete: i64,
    pub instruction: String,
}

#[derive(Debug, Clone)]
pub struct Category {
    pub name: String,
    pub instruction: String,
    pub subcategories: Vec<Subcategory>,
}

#[derive(Debug, Clone)]
pub struct Criterion {
    pub name: String,
    pub when: Cond,
    pub points: Decimal,
    pub weight: Option<Weight>,
    pub exit: bool,
}

#[derive(Debug, Clone)]
pub struct Weight {
    pub field: crate::facts::NumField,
    pub per: Decimal,
    pub points: Decimal,
    pub max: Option<Decimal>,
}

#[derive(Debug, Clone)]
pub struct Strategy {
    pub name: String,
    pub applies_to: Cond,
    /// First match wins; a segment without `when` matches everybody.
    pub segments: Vec<(String, Cond)>,
    pub criteria: Vec<Criterion>,
    /// Sorted by `min_score` descending: the first one at or below the score wins.
    pub profiles: Vec<(String, Decimal)>,
    /// (condition, index into `RuleSet::groups`)
    pub routing: Vec<(Cond, usize)>,
    /// index into `RuleSet::ladders`
    pub ladder: usize,
}

#[derive(Debug, Clone)]
pub struct Absence {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

#[derive(Debug, Clone)]
pub struct Collector {
    pub id: String,
    pub name: String,
    pub email: Option<String>,
    pub substitute: Option<String>,
    pub absences: Vec<Absence>,
}

impl Collector {
    pub fn absent_on(&self, d: NaiveDate) -> bool {
        self.absences.iter().any(|a| a.from <= d && d <= a.to)
    }
}

#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub manager: Option<String>,
    pub collectors: Vec<Collector>,
    pub balance_items: Decimal,
    pub balance_amount: Decimal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LadderMode {
    /// Move up at most one level per run (and per day).
    OneLevelPerRun,
    /// Go straight to the level the age of the oldest item implies.
    JumpToAge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Sms,
    Letter,
    Portal,
    CallTask,
}

impl Channel {
    /// Where a message goes when its channel cannot carry it: paper always arrives.
    pub fn default_fallback(self) -> Vec<Channel> {
        match self {
            Channel::Email => vec![Channel::Letter],
            Channel::Sms | Channel::Portal => vec![Channel::Email, Channel::Letter],
            Channel::Letter | Channel::CallTask => vec![],
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Letter => "letter",
            Channel::Portal => "portal",
            Channel::CallTask => "call_task",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        serde_yaml::from_str(s).ok()
    }
}

#[derive(Debug, Clone)]
pub struct Level {
    pub name: String,
    pub overdue_days: i64,
    pub channel: Channel,
    pub template: String,
    pub min_amount: Decimal,
    pub resend_after_days: Option<i64>,
    pub copy_manager: bool,
    pub event: String,
    /// Base currency, once per item and level.
    pub fee: Decimal,
    pub fallback: Vec<Channel>,
    /// (category, subcategory) a call task assigns.
    pub activity: Option<(String, String)>,
    /// The write-off reason this (last) level proposes its items for.
    pub propose_write_off: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Ladder {
    pub name: String,
    pub mode: LadderMode,
    pub tolerance_days: i64,
    /// Least days between two steps of a customer when an item moves up a level below
    /// the customer's highest: a customer with invoices falling due on many days is
    /// not written to every day.
    pub step_interval_days: i64,
    /// Ordered by `overdue_days`; level number = index + 1.
    pub levels: Vec<Level>,
}

/// The ladders the ERP's dunning procedures stand for (`erp_procedures`), so that a
/// customer is dunned the way the ERP's own records say.
#[derive(Debug, Clone, Default)]
pub struct ErpProcedures {
    /// Procedure name, exactly as the ERP spells it -> index into `RuleSet::ladders`.
    pub ladders: HashMap<String, usize>,
    /// Ladder of a procedure not listed; `None` leaves such a customer on its
    /// strategy's ladder.
    pub default: Option<usize>,
}

/// SAP's usual dunning interval.
pub const DEFAULT_STEP_INTERVAL_DAYS: i64 = 14;

impl LadderMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LadderMode::OneLevelPerRun => "one_level_per_run",
            LadderMode::JumpToAge => "jump_to_age",
        }
    }
}

impl Ladder {
    /// Days overdue an item needs to reach level index `i` (tolerance applies after due).
    pub fn threshold(&self, i: usize) -> i64 {
        let d = self.levels[i].overdue_days;
        if d > 0 {
            d + self.tolerance_days
        } else {
            d
        }
    }

    /// The highest level (1-based, 0 = none) an item `days_overdue` old has reached.
    pub fn level_for_age(&self, days_overdue: i64) -> usize {
        (0..self.levels.len())
            .rev()
            .find(|&i| days_overdue >= self.threshold(i))
            .map_or(0, |i| i + 1)
    }
}

pub struct ScriptSlot {
    pub script: Script,
    pub when: Cond,
}

/// The validated, compiled rules: the only rule type the engine sees.
pub struct RuleSet {
    pub dir: PathBuf,
    /// SHA-256 over every file's name and bytes: identifies exactly what ran.
    pub hash: String,
    pub rates: Rates,
    pub rates_as_of: Option<NaiveDate>,
    pub cases: CasePolicy,
    pub categories: Vec<Category>,
    pub strategies: Vec<Strategy>,
    pub groups: Vec<Group>,
    pub ladders: Vec<Ladder>,
    pub scripts: Vec<ScriptSlot>,
    pub engine: rhai::Engine,
    /// `compliance.yaml`; without it no contact is checked.
    pub compliance: Option<crate::compliance::Policy>,
    /// `templates/`, checked against the escalation levels that name them.
    pub templates: Option<std::sync::Arc<crate::templates::Templates>>,
    /// Interest and fine policy for renegotiations.
    pub interest: Option<arrears_finance::InterestPolicy>,
    pub agreements: Option<raw::AgreementsSection>,
    /// Collector commission (rules/commission.yaml): the `commission` report.
    pub commission: Option<arrears_finance::commission::CommissionPolicy>,
    /// Sender details per company for letters and messages.
    pub correspondence: raw::CorrespondenceSection,
    /// The ERP's dunning procedures mapped to ladders; empty: every customer is
    /// dunned on its strategy's ladder.
    pub erp_procedures: ErpProcedures,
    /// Write-off limits and reasons; without it nothing can be written off.
    pub write_off: Option<raw::WriteOffSection>,
}

impl fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleSet")
            .field("dir", &self.dir)
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

impl RuleSet {
    pub fn subcategory(&self, category: &str, sub: &str) -> Option<&Subcategory> {
        self.categories
            .iter()
            .find(|c| c.name == category)?
            .subcategories
            .iter()
            .find(|s| s.name == sub)
    }

    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    pub fn collector_groups(&self, collector: &str) -> Vec<&Group> {
        self.groups
            .iter()
            .filter(|g| g.collectors.iter().any(|c| c.id == collector))
            .collect()
    }

    pub fn has_hook(&self, hook: Hook) -> bool {
        self.scripts.iter().any(|s| s.script.hooks.contains(&hook))
    }
}

/// Where a section was defined, to name it in semantic errors.
struct Src {
    path: PathBuf,
    text: String,
}

impl Src {
    /// Best-effort place of a value: the first line mentioning `needle` as a YAML value.
    fn find(&self, needle: &str) -> Option<(usize, usize)> {
        self.text.lines().enumerate().find_map(|(i, l)| {
            let code = l.split(" #").next().unwrap_or(l);
            let trimmed = code.trim_start().trim_start_matches("- ");
            if trimmed
                .strip_prefix(needle)
                .is_some_and(|rest| rest.starts_with(':'))
            {
                return Some((i + 1, code.len() - trimmed.len() + 1));
            }
            [
                format!(": {needle}"),
                format!("- {needle}"),
                format!("\"{needle}\""),
                format!("[{needle}"),
                format!(" {needle},"),
                format!(" {needle}]"),
            ]
            .iter()
            .find_map(|p| {
                code.find(p.as_str()).map(|c| {
                    (
                        i + 1,
                        c + 1 + p.len()
                            - needle.len()
                            - usize::from(p.ends_with(',') || p.ends_with(']')),
                    )
                })
            })
        })
    }
}

struct Ctx {
    errors: Vec<RuleError>,
}

impl Ctx {
    fn err(&mut self, src: &Src, needle: Option<&str>, msg: impl Into<String>) {
        self.errors.push(RuleError {
            file: src.path.clone(),
            pos: needle.and_then(|n| src.find(n)),
            message: msg.into(),
        });
    }
}

/// The top-level sections of a rule file; each list section's items are read, and
/// left out when wrong, one by one.
const SECTIONS: &[&str] = &[
    "currency",
    "cases",
    "categories",
    "strategies",
    "groups",
    "ladders",
    "scripts",
    "interest",
    "agreements",
    "correspondence",
    "erp_procedures",
    "commission",
    "write_off",
];

/// What an error in a rule file leaves out: the list item it is in, or else the
/// whole section, so that the rest is checked on values that were read whole.
fn section_unit(path: &[yaml::Step]) -> usize {
    if matches!(path.get(1), Some(yaml::Step::Elem(_))) {
        2
    } else {
        1
    }
}

/// What was left out for YAML errors, so that the checks that would miss it stay
/// quiet: the error already reported is the one to fix, and a second one for the
/// same mistake ("no `strategies` defined", "unknown ladder") misleads.
#[derive(Default)]
struct Broken {
    /// Section → names of its items left out; `None` when the section is left out
    /// whole, or some item of it without a name.
    sections: HashMap<String, Option<HashSet<String>>>,
    /// A top-level key that is no section, perhaps a misspelt one: any section may
    /// be meant.
    unknown: bool,
}

impl Broken {
    fn add<T>(&mut self, text: &str, parsed: &yaml::Parsed<T>) {
        if parsed.value.is_none() {
            // Nothing of the file was read: its sections are those its lines start.
            for line in text.lines() {
                if let Some((key, _)) = line.split_once(':') {
                    if SECTIONS.contains(&key) {
                        self.sections.insert(key.to_string(), None);
                    }
                }
            }
            return;
        }
        // Read only to name the items left out; a file that reads as rules reads as this.
        let doc = (!parsed.left_out.is_empty())
            .then(|| serde_yaml::from_str::<serde_yaml::Value>(text).ok())
            .flatten();
        for path in &parsed.left_out {
            let Some(section) = path.first().and_then(|s| s.key()) else {
                continue;
            };
            if !SECTIONS.contains(&section) {
                self.unknown |= section != "version";
                continue;
            }
            let name = match path.get(1) {
                Some(yaml::Step::Elem(i)) => doc.as_ref().and_then(|d| {
                    let item = d.get(section)?.get(*i)?;
                    item.get("name").or_else(|| item.get("file"))?.as_str()
                }),
                _ => None,
            };
            let entry = self
                .sections
                .entry(section.to_string())
                .or_insert_with(|| Some(HashSet::new()));
            match name {
                Some(n) => {
                    if let Some(names) = entry {
                        names.insert(n.to_string());
                    }
                }
                None => *entry = None,
            }
        }
    }

    /// Whether `section` may be missing because it was left out.
    fn section(&self, section: &str) -> bool {
        self.unknown || self.sections.contains_key(section)
    }

    /// Whether an item `name` of `section` may be missing because it was left out.
    fn item(&self, section: &str, name: &str) -> bool {
        self.unknown
            || self
                .sections
                .get(section)
                .is_some_and(|names| names.as_ref().is_none_or(|n| n.contains(name)))
    }
}

/// Language of the templates every other language falls back to.
pub const DEFAULT_LANGUAGE: &str = "en";

/// Rule files that are not sections of the common shape.
const OWN_LOADER: &[&str] = &["compliance.yaml"];

/// Loads and validates every rule file under `dir`.
pub fn load(dir: &Path) -> Result<RuleSet, RuleErrors> {
    let mut cx = Ctx { errors: Vec::new() };
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            // Files with a shape of their own, read by their own loaders below.
            .filter(|p| !OWN_LOADER.iter().any(|n| p.file_name() == Some(n.as_ref())))
            .collect(),
        Err(e) => {
            return Err(RuleErrors(vec![RuleError {
                file: dir.into(),
                pos: None,
                message: format!("cannot read rules folder: {e}"),
            }]))
        }
    };
    paths.sort();
    if paths.is_empty() {
        cx.errors.push(RuleError {
            file: dir.into(),
            pos: None,
            message: "no *.yaml rule files found".into(),
        });
    }

    let mut hasher = Sha256::new();
    let mut files: Vec<(Src, raw::RuleFile)> = Vec::new();
    let mut broken = Broken::default();
    for path in paths {
        let text = match guard::read_yaml(&path) {
            Ok(t) => t,
            Err(e) => {
                cx.errors.push(RuleError {
                    file: path,
                    pos: e.pos(),
                    message: e.to_string(),
                });
                continue;
            }
        };
        hasher.update(
            path.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        hasher.update(text.as_bytes());
        let parsed = yaml::parse::<Option<raw::RuleFile>>(&text, section_unit);
        for p in &parsed.problems {
            cx.errors.push(RuleError {
                file: path.clone(),
                pos: p.pos,
                message: p.message.clone(),
            });
        }
        broken.add(&text, &parsed);
        if let Some(f) = parsed.value {
            files.push((Src { path, text }, f.unwrap_or_default()));
        }
    }

    let names: Vec<PathBuf> = files.iter().map(|f| f.0.path.clone()).collect();
    macro_rules! section {
        ($field:ident) => {{
            let mut found: Option<(usize, _)> = None;
            for (i, (src, f)) in files.iter_mut().enumerate() {
                if let Some(v) = f.$field.take() {
                    if let Some((first, _)) = &found {
                        cx.errors.push(RuleError {
                            file: src.path.clone(),
                            pos: src.find_key(stringify!($field)),
                            message: format!(
                                "section `{}` is already defined in {}",
                                stringify!($field),
                                names[*first].display()
                            ),
                        });
                    } else {
                        found = Some((i, v));
                    }
                }
            }
            found
        }};
    }
    for (src, f) in &files {
        if let Some(v) = f.version {
            if v != 1 {
                cx.err(
                    src,
                    Some(&v.to_string()),
                    format!("unsupported rules version {v} (this build reads version 1)"),
                );
            }
        }
    }

    let currency = section!(currency);
    let cases = section!(cases);
    let categories = section!(categories);
    let strategies = section!(strategies);
    let groups = section!(groups);
    let ladders = section!(ladders);
    let scripts = section!(scripts);
    let interest = section!(interest);
    let agreements = section!(agreements);
    let correspondence = section!(correspondence);
    let erp_procedures = section!(erp_procedures);
    let commission = section!(commission);
    let write_off = section!(write_off);
    let src_of = |i: usize| &files[i].0;
    if let Some((i, c)) = &commission {
        if let Err(e) = c.validate() {
            // The key to point at: the last name in the field's path.
            let needle = e.field().map(|f| {
                f.rsplit('.')
                    .next()
                    .unwrap_or(f)
                    .split('[')
                    .next()
                    .unwrap_or(f)
                    .to_string()
            });
            cx.err(src_of(*i), needle.as_deref(), e.to_string());
        }
    }
    if let Some((i, p)) = &interest {
        if let Err(e) = p.validate() {
            let needle = e
                .field()
                .map(|f| f.split(['[', '.']).next().unwrap_or(f).to_string());
            cx.err(src_of(*i), needle.as_deref(), e.to_string());
        }
    }
    if let Some((i, a)) = &agreements {
        let src = src_of(*i);
        if a.monthly_rate < Decimal::ZERO || a.monthly_rate > Decimal::from(100) {
            cx.err(
                src,
                Some("monthly_rate"),
                "agreements.monthly_rate: a percentage from 0 to 100",
            );
        }
        if a.max_installments == 0 || a.max_installments > arrears_finance::MAX_INSTALLMENTS {
            cx.err(
                src,
                Some("max_installments"),
                format!(
                    "agreements.max_installments: 1 to {}",
                    arrears_finance::MAX_INSTALLMENTS
                ),
            );
        }
        if a.min_installment < Decimal::ZERO {
            cx.err(
                src,
                Some("min_installment"),
                "agreements.min_installment must not be negative",
            );
        }
        if a.break_after_days < 0 || a.first_due_within_days < 0 {
            cx.err(
                src,
                Some("agreements"),
                "agreements: day counts must not be negative",
            );
        }
        for (role, l) in &a.limits {
            if l.discount_percent < Decimal::ZERO || l.discount_percent > Decimal::from(100) {
                cx.err(
                    src,
                    Some(role.as_str()),
                    format!(
                        "agreements.limits.{}.discount_percent: 0 to 100",
                        role.as_str()
                    ),
                );
            }
        }
    }

    if let Some((i, w)) = &write_off {
        let src = src_of(*i);
        for (role, l) in &w.limits {
            if l.amount.is_some_and(|a| a < Decimal::ZERO) {
                cx.err(
                    src,
                    Some(role.as_str()),
                    format!(
                        "write_off.limits.{}.amount must not be negative",
                        role.as_str()
                    ),
                );
            }
        }
        for r in &w.reasons {
            if r.trim().is_empty() || r.trim() != r {
                cx.err(
                    src,
                    Some("reasons"),
                    format!("write_off.reasons: `{r}` must be a non-empty word without surrounding spaces"),
                );
            }
        }
    }

    // currency
    let mut rates = Rates {
        base: Currency::parse("EUR").expect("EUR"),
        to_base: BTreeMap::new(),
    };
    let mut rates_as_of = None;
    if let Some((i, c)) = &currency {
        match Currency::parse(&c.base) {
            Ok(b) => rates.base = b,
            Err(e) => cx.err(src_of(*i), Some(&c.base), e.to_string()),
        }
        rates_as_of = c.rates_as_of;
        for (code, r) in &c.rates {
            match Currency::parse(code) {
                // Bounded so converted amounts stay summable across a whole portfolio
                // (amounts are bounded by money::MAX_AMOUNT).
                Ok(cur) if *r > Decimal::ZERO && *r <= MAX_RATE => {
                    rates.to_base.insert(cur, *r);
                }
                Ok(_) => cx.err(
                    src_of(*i),
                    Some(code),
                    format!("rate for {code} must be positive and at most {MAX_RATE}, got {r}"),
                ),
                Err(e) => cx.err(src_of(*i), Some(code), e.to_string()),
            }
        }
    } else if !broken.section("currency") {
        cx.errors.push(RuleError {
            file: dir.into(),
            pos: None,
            message: "no `currency` section (base currency and rates)".into(),
        });
    }

    // cases
    let mut policy = CasePolicy {
        initial_nad_days: 3,
        high_amount: Decimal::from(10_000),
        high_days_overdue: 60,
    };
    if let Some((i, c)) = &cases {
        if let Some(d) = c.initial_nad_days {
            if d < 0 {
                cx.err(
                    src_of(*i),
                    Some(&d.to_string()),
                    "initial_nad_days must not be negative",
                );
            }
            policy.initial_nad_days = d;
        }
        if let Some(p) = &c.priority {
            if let Some(a) = p.high_amount {
                if a <= Decimal::ZERO {
                    cx.err(
                        src_of(*i),
                        Some(&a.to_string()),
                        "high_amount must be positive",
                    );
                }
                policy.high_amount = a;
            }
            if let Some(d) = p.high_days_overdue {
                policy.high_days_overdue = d;
            }
        }
    }

    // categories
    let mut cats = Vec::new();
    if let Some((i, cs)) = categories {
        let src = src_of(i);
        let mut seen = HashSet::new();
        for c in cs {
            if !seen.insert(c.name.clone()) {
                cx.err(
                    src,
                    Some(&c.name),
                    format!("duplicate category `{}`", c.name),
                );
            }
            let mut subs = Vec::new();
            let mut seen_sub = HashSet::new();
            for s in c.subcategories {
                if !seen_sub.insert(s.name.clone()) {
                    cx.err(
                        src,
                        Some(&s.name),
                        format!("duplicate subcategory `{}` in `{}`", s.name, c.name),
                    );
                }
                if s.days_to_complete < 0 {
                    cx.err(
                        src,
                        Some(&s.name),
                        format!(
                            "subcategory `{}`: days_to_complete must not be negative",
                            s.name
                        ),
                    );
                }
                subs.push(Subcategory {
                    name: s.name,
                    days_to_complete: s.days_to_complete,
                    instruction: s.instruction,
                });
            }
            if subs.is_empty() {
                cx.err(
                    src,
                    Some(&c.name),
                    format!("category `{}` has no subcategories", c.name),
                );
            }
            cats.push(Category {
                name: c.name,
                instruction: c.instruction,
                subcategories: subs,
            });
        }
    }

    // groups
    let mut grps = Vec::new();
    if let Some((i, gs)) = groups {
        let src = src_of(i);
        let mut seen = HashSet::new();
        let mut all_ids = HashSet::new();
        for g in &gs {
            for c in &g.collectors {
                all_ids.insert(c.id.clone());
            }
        }
        for g in gs {
            if !seen.insert(g.name.clone()) {
                cx.err(src, Some(&g.name), format!("duplicate group `{}`", g.name));
            }
            let ids: HashSet<_> = g.collectors.iter().map(|c| c.id.clone()).collect();
            if ids.len() != g.collectors.len() {
                cx.err(
                    src,
                    Some(&g.name),
                    format!("group `{}` lists a collector twice", g.name),
                );
            }
            if let Some(m) = &g.manager {
                if !all_ids.contains(m) && !broken.section("groups") {
                    cx.err(
                        src,
                        Some(m),
                        format!(
                            "manager `{m}` of group `{}` is not a collector of any group",
                            g.name
                        ),
                    );
                }
            }
            let mut cols = Vec::new();
            for c in g.collectors {
                if let Some(s) = &c.substitute {
                    if *s == c.id {
                        cx.err(
                            src,
                            Some(s),
                            format!("collector `{}` cannot substitute for themselves", c.id),
                        );
                    } else if !all_ids.contains(s) && !broken.section("groups") {
                        cx.err(
                            src,
                            Some(s),
                            format!("substitute `{s}` of `{}` is not a known collector", c.id),
                        );
                    }
                }
                for a in &c.absences {
                    if a.to < a.from {
                        cx.err(
                            src,
                            Some(&a.from.to_string()),
                            format!(
                                "absence of `{}` ends ({}) before it starts ({})",
                                c.id, a.to, a.from
                            ),
                        );
                    }
                }
                cols.push(Collector {
                    email: c.email,
                    name: c.name.unwrap_or_else(|| c.id.clone()),
                    id: c.id,
                    substitute: c.substitute,
                    absences: c
                        .absences
                        .into_iter()
                        .map(|a| Absence {
                            from: a.from,
                            to: a.to,
                        })
                        .collect(),
                });
            }
            let (bi, ba) = g
                .balance
                .map(|b| (b.items, b.amount))
                .unwrap_or((Decimal::ONE, Decimal::ONE));
            if bi < Decimal::ZERO || ba < Decimal::ZERO || bi + ba == Decimal::ZERO {
                cx.err(
                    src,
                    Some(&g.name),
                    format!(
                        "group `{}`: balance weights must be non-negative and not both zero",
                        g.name
                    ),
                );
            }
            grps.push(Group {
                name: g.name,
                manager: g.manager,
                collectors: cols,
                balance_items: bi,
                balance_amount: ba,
            });
        }
    }
    if grps.is_empty() && !broken.section("groups") {
        cx.errors.push(RuleError {
            file: dir.into(),
            pos: None,
            message: "no collection `groups` defined".into(),
        });
    }

    // ladders
    let mut lads = Vec::new();
    let ladders_file = ladders.as_ref().map(|(i, _)| files[*i].0.path.clone());
    if let Some((i, ls)) = ladders {
        let src = src_of(i);
        for l in ls {
            if lads.iter().any(|x: &Ladder| x.name == l.name) {
                cx.err(src, Some(&l.name), format!("duplicate ladder `{}`", l.name));
            }
            let mode = match l.mode.as_deref() {
                None | Some("one_level_per_run") => LadderMode::OneLevelPerRun,
                Some("jump_to_age") => LadderMode::JumpToAge,
                Some(m) => {
                    cx.err(
                        src,
                        Some(m),
                        format!(
                            "ladder `{}`: unknown mode `{m}` (one_level_per_run or jump_to_age)",
                            l.name
                        ),
                    );
                    LadderMode::OneLevelPerRun
                }
            };
            if l.tolerance_days < 0 {
                cx.err(src, Some(&l.name), "tolerance_days must not be negative");
            }
            let step_interval_days = l.step_interval_days.unwrap_or(DEFAULT_STEP_INTERVAL_DAYS);
            if !(0..=366).contains(&step_interval_days) {
                cx.err(
                    src,
                    Some(&l.name),
                    "step_interval_days must be between 0 and 366",
                );
            }
            let mut levels = Vec::new();
            for lv in l.levels {
                let channel = Channel::parse(&lv.channel).unwrap_or_else(|| {
                    cx.err(src, Some(&lv.channel), format!("level `{}`: unknown channel `{}` (email, sms, letter, portal, call_task)", lv.name, lv.channel));
                    Channel::Email
                });
                if let Some(prev) = levels.last() {
                    let prev: &Level = prev;
                    if lv.overdue_days <= prev.overdue_days {
                        cx.err(src, Some(&lv.name), format!("level `{}`: overdue_days ({}) must be greater than the previous level's ({})", lv.name, lv.overdue_days, prev.overdue_days));
                    }
                }
                if lv.resend_after_days.is_some_and(|d| d <= 0) {
                    cx.err(
                        src,
                        Some(&lv.name),
                        format!("level `{}`: resend_after_days must be positive", lv.name),
                    );
                }
                if lv.template.trim().is_empty() {
                    cx.err(
                        src,
                        Some(&lv.name),
                        format!("level `{}`: template must not be empty", lv.name),
                    );
                }
                let min_amount = lv.min_amount.unwrap_or(Decimal::ZERO);
                if min_amount < Decimal::ZERO {
                    cx.err(
                        src,
                        Some(&lv.name),
                        format!("level `{}`: min_amount must not be negative", lv.name),
                    );
                }
                let fee = lv.fee.unwrap_or(Decimal::ZERO);
                if fee < Decimal::ZERO {
                    cx.err(
                        src,
                        Some(&lv.name),
                        format!("level `{}`: fee must not be negative", lv.name),
                    );
                }
                let fallback = match lv.fallback {
                    Some(list) => list
                        .iter()
                        .filter_map(|c| {
                            let ch = Channel::parse(c);
                            if ch.is_none() || ch == Some(Channel::CallTask) {
                                cx.err(src, Some(c), format!("level `{}`: fallback `{c}` is not a message channel (email, sms, letter, portal)", lv.name));
                            }
                            ch
                        })
                        .collect(),
                    None => channel.default_fallback(),
                };
                let activity = match (&lv.activity, channel) {
                    (Some(a), Channel::CallTask) => match a.split_once('/') {
                        Some((c, s)) => Some((c.trim().to_string(), s.trim().to_string())),
                        None => {
                            cx.err(
                                src,
                                Some(a),
                                format!("level `{}`: activity is CATEGORY/SUBCATEGORY", lv.name),
                            );
                            None
                        }
                    },
                    (Some(a), _) => {
                        cx.err(
                            src,
                            Some(a),
                            format!("level `{}`: activity is for call_task levels", lv.name),
                        );
                        None
                    }
                    (None, _) => None,
                };
                if let Some(r) = &lv.propose_write_off {
                    match &write_off {
                        None => cx.err(
                            src,
                            Some(r),
                            format!("level `{}`: propose_write_off needs a `write_off` section (limits)", lv.name),
                        ),
                        Some((_, w)) => {
                            if let Err(e) = w.check_reason(r) {
                                cx.err(src, Some(r), format!("level `{}`: propose_write_off {e}", lv.name));
                            }
                        }
                    }
                }
                levels.push(Level {
                    fee,
                    fallback,
                    activity,
                    propose_write_off: lv.propose_write_off,
                    event: lv.event.unwrap_or_else(|| format!("Reminder: {}", lv.name)),
                    name: lv.name,
                    overdue_days: lv.overdue_days,
                    channel,
                    template: lv.template,
                    min_amount,
                    resend_after_days: lv.resend_after_days,
                    copy_manager: lv.copy_manager,
                });
            }
            if levels.is_empty() {
                cx.err(
                    src,
                    Some(&l.name),
                    format!("ladder `{}` has no levels", l.name),
                );
            }
            // A write-off ends the collection process: an item proposed for it at a
            // middle level would still climb the ladder while it waits.
            let before_last = levels.len().saturating_sub(1);
            for lv in &levels[..before_last] {
                if let Some(r) = &lv.propose_write_off {
                    cx.err(
                        src,
                        Some(r),
                        format!(
                            "level `{}`: propose_write_off is for the last level of ladder `{}`",
                            lv.name, l.name
                        ),
                    );
                }
            }
            lads.push(Ladder {
                name: l.name,
                mode,
                tolerance_days: l.tolerance_days,
                step_interval_days,
                levels,
            });
        }
    }

    // strategies
    let mut strats = Vec::new();
    if let Some((i, ss)) = strategies {
        let src = src_of(i);
        for s in ss {
            let applies_to = compile_opt(&mut cx, src, &s.name, s.applies_to.as_ref());
            let mut segments = Vec::new();
            for seg in s.segments {
                let c = compile_opt(&mut cx, src, &seg.name, seg.when.as_ref());
                segments.push((seg.name, c));
            }
            if segments.is_empty() || !matches!(segments.last(), Some((_, Cond::True))) {
                cx.err(src, Some(&s.name), format!("strategy `{}`: the last segment must have no `when` so every customer gets one", s.name));
            }
            let seg_names: HashSet<String> = segments.iter().map(|(n, _)| n.clone()).collect();
            let mut criteria = Vec::new();
            for c in s.criteria {
                let when = compile_opt(&mut cx, src, &c.name, c.when.as_ref());
                let weight = c
                    .weight
                    .and_then(|w| match crate::facts::NumField::parse(&w.field) {
                        Some(f) if w.per > Decimal::ZERO => Some(Weight {
                            field: f,
                            per: w.per,
                            points: w.points,
                            max: w.max,
                        }),
                        Some(_) => {
                            cx.err(
                                src,
                                Some(&c.name),
                                format!("criterion `{}`: weight.per must be positive", c.name),
                            );
                            None
                        }
                        None => {
                            cx.err(
                                src,
                                Some(&w.field),
                                format!("criterion `{}`: unknown fact `{}`", c.name, w.field),
                            );
                            None
                        }
                    });
                if c.points.is_none() && weight.is_none() && !c.exit {
                    cx.err(
                        src,
                        Some(&c.name),
                        format!(
                            "criterion `{}` gives no points (set `points`, `weight` or `exit`)",
                            c.name
                        ),
                    );
                }
                criteria.push(Criterion {
                    name: c.name,
                    when,
                    points: c.points.unwrap_or_default(),
                    weight,
                    exit: c.exit,
                });
            }
            let mut profiles: Vec<(String, Decimal)> = s
                .profiles
                .into_iter()
                .map(|p| (p.name, p.min_score))
                .collect();
            profiles.sort_by_key(|p| std::cmp::Reverse(p.1));
            let mut routing = Vec::new();
            // The last route may go to a group left out for an error of its own.
            let mut last_to_broken = false;
            for r in s.routing {
                let c = compile_opt(&mut cx, src, &r.group, r.when.as_ref());
                last_to_broken = false;
                match grps.iter().position(|g| g.name == r.group) {
                    Some(g) => routing.push((c, g)),
                    None if broken.item("groups", &r.group) => last_to_broken = true,
                    None => cx.err(
                        src,
                        Some(&r.group),
                        format!(
                            "strategy `{}` routes to unknown group `{}`",
                            s.name, r.group
                        ),
                    ),
                }
            }
            if !matches!(routing.last(), Some((Cond::True, _))) && !last_to_broken {
                cx.err(src, Some(&s.name), format!("strategy `{}`: the last route must have no `when` so every customer reaches a group", s.name));
            }
            // Segment tests must name segments that exist, or a typo silently never matches.
            let mut named = Vec::new();
            criteria
                .iter()
                .for_each(|c| c.when.segments_named(&mut named));
            routing
                .iter()
                .for_each(|(c, _)| c.segments_named(&mut named));
            for n in named {
                if !seg_names.contains(&n) {
                    cx.err(
                        src,
                        Some(&n),
                        format!("strategy `{}` tests unknown segment `{n}`", s.name),
                    );
                }
            }
            let ladder = lads
                .iter()
                .position(|l| l.name == s.ladder)
                .unwrap_or_else(|| {
                    if !broken.item("ladders", &s.ladder) {
                        cx.err(
                            src,
                            Some(&s.ladder),
                            format!("strategy `{}` uses unknown ladder `{}`", s.name, s.ladder),
                        );
                    }
                    0
                });
            strats.push(Strategy {
                name: s.name,
                applies_to,
                segments,
                criteria,
                profiles,
                routing,
                ladder,
            });
        }
    }
    if broken.section("strategies") {
        // The last strategy, or every one, may be the one left out.
    } else if strats.is_empty() {
        cx.errors.push(RuleError {
            file: dir.into(),
            pos: None,
            message: "no `strategies` defined".into(),
        });
    } else if !matches!(strats.last().map(|s| &s.applies_to), Some(Cond::True)) {
        cx.errors.push(RuleError {
            file: dir.into(),
            pos: None,
            message: "the last strategy must have no `applies_to` so every customer has one".into(),
        });
    }

    // erp_procedures
    let mut erp = ErpProcedures::default();
    if let Some((i, e)) = erp_procedures {
        let src = src_of(i);
        let ladder_of = |cx: &mut Ctx, what: &str, name: &str| {
            let found = lads.iter().position(|l| l.name == name);
            if found.is_none() && !broken.item("ladders", name) {
                cx.err(
                    src,
                    Some(name),
                    format!("{what} uses unknown ladder `{name}`"),
                );
            }
            found
        };
        for (procedure, ladder) in e.ladders {
            if procedure.is_empty() {
                // The ERP's "no procedure" is a customer it does not dun, never a name.
                cx.errors.push(RuleError {
                    file: src.path.clone(),
                    pos: src.find("\"\"").or_else(|| src.find("''")),
                    message: "erp_procedures: an empty procedure name never matches: a customer the ERP has no procedure for is not dunned".into(),
                });
                continue;
            }
            let what = format!("ERP procedure `{procedure}`");
            if let Some(l) = ladder_of(&mut cx, &what, &ladder) {
                erp.ladders.insert(procedure, l);
            }
        }
        if let Some(d) = e.default {
            erp.default = ladder_of(&mut cx, "erp_procedures default", &d);
        }
    }

    // scripts
    let engine = script::build_engine();
    let mut slots = Vec::new();
    let all_segments: HashSet<&str> = strats
        .iter()
        .flat_map(|s| s.segments.iter().map(|x| x.0.as_str()))
        .collect();
    if let Some((i, ss)) = scripts {
        for s in ss {
            let when = compile_opt(&mut cx, src_of(i), &s.file, s.when.as_ref());
            let mut named = Vec::new();
            when.segments_named(&mut named);
            let known = |n: &str| all_segments.contains(n) || broken.section("strategies");
            for n in named.iter().filter(|n| !known(n)) {
                cx.err(
                    src_of(i),
                    Some(n),
                    format!("script `{}` tests unknown segment `{n}`", s.file),
                );
            }
            if let Some(ms) = s.budget_ms {
                if !(1..=script::MAX_BUDGET_MS).contains(&ms) {
                    cx.err(
                        src_of(i),
                        Some("budget_ms"),
                        format!(
                            "script `{}`: budget_ms must be 1 to {}",
                            s.file,
                            script::MAX_BUDGET_MS
                        ),
                    );
                }
            }
            match script::compile(&engine, dir, &s.file) {
                Ok(mut sc) => {
                    if let Some(ms) = s.budget_ms {
                        sc.budget = std::time::Duration::from_millis(ms);
                    }
                    hasher.update(s.file.as_bytes());
                    hasher.update(std::fs::read(dir.join(&s.file)).unwrap_or_default());
                    slots.push(ScriptSlot { script: sc, when })
                }
                Err(e) => cx.errors.push(e),
            }
        }
    }

    // The compliance policy and the message templates have loaders of their own; their
    // errors join the others so one `arrears check` shows everything.
    let compliance_path = dir.join("compliance.yaml");
    let compliance = if compliance_path.is_file() {
        if let Ok(text) = std::fs::read(&compliance_path) {
            hasher.update(b"compliance.yaml");
            hasher.update(&text);
        }
        match crate::compliance::Policy::load(&compliance_path) {
            Ok(p) => Some(p),
            Err(errs) => {
                for e in errs {
                    let pos = match &e {
                        crate::compliance::ComplianceError::Syntax { line, column, .. } => {
                            Some((*line, *column))
                        }
                        _ => None,
                    };
                    let text = e.to_string();
                    // The error repeats the file name the RuleError prints anyway.
                    let file = compliance_path.display().to_string();
                    let message = text
                        .strip_prefix(&file)
                        .map(|m| m.trim_start_matches(|c: char| c == ':' || c.is_ascii_digit()))
                        .map(|m| m.trim().to_string())
                        .unwrap_or(text);
                    cx.errors.push(RuleError {
                        file: compliance_path.clone(),
                        pos,
                        message,
                    });
                }
                None
            }
        }
    } else {
        None
    };
    for l in &lads {
        for lv in &l.levels {
            if let Some((c, sub)) = &lv.activity {
                let known = cats
                    .iter()
                    .any(|k| &k.name == c && k.subcategories.iter().any(|x| &x.name == sub));
                if !known && !broken.item("categories", c) {
                    cx.errors.push(RuleError {
                        file: ladders_file.clone().unwrap_or_else(|| dir.to_path_buf()),
                        pos: None,
                        message: format!(
                            "ladder `{}` level `{}`: activity {c}/{sub} is not a category/subcategory of the policy",
                            l.name, lv.name
                        ),
                    });
                }
            }
        }
    }
    let templates_dir = dir.join("templates");
    let templates = if templates_dir.is_dir() {
        hash_tree(&mut hasher, &templates_dir, &templates_dir);
        match crate::templates::Templates::load(&templates_dir, DEFAULT_LANGUAGE) {
            Ok(t) => {
                let mut used: Vec<&str> = lads
                    .iter()
                    .flat_map(|l| l.levels.iter().map(|v| v.template.as_str()))
                    .collect();
                if agreements.is_some() {
                    used.extend(["debt_recognition", "acquittance"]);
                }
                used.sort();
                used.dedup();
                if let Err(e) = t.require(&used) {
                    cx.errors.push(RuleError {
                        file: templates_dir.clone(),
                        pos: None,
                        message: format!("escalation levels name templates that do not exist: {e}"),
                    });
                }
                Some(std::sync::Arc::new(t))
            }
            Err(crate::templates::TemplateError::Invalid(problems)) => {
                for p in problems {
                    cx.errors.push(RuleError {
                        file: p.file.clone(),
                        pos: p.line.map(|l| (l, 1)),
                        message: p.kind.to_string(),
                    });
                }
                None
            }
            Err(e) => {
                cx.errors.push(RuleError {
                    file: templates_dir.clone(),
                    pos: None,
                    message: e.to_string(),
                });
                None
            }
        }
    } else {
        None
    };

    if !cx.errors.is_empty() {
        return Err(RuleErrors(cx.errors));
    }
    let hash = hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(RuleSet {
        dir: dir.to_path_buf(),
        hash,
        rates,
        rates_as_of,
        cases: policy,
        categories: cats,
        strategies: strats,
        groups: grps,
        ladders: lads,
        scripts: slots,
        engine,
        compliance,
        templates,
        interest: interest.map(|x| x.1),
        agreements: agreements.map(|x| x.1),
        commission: commission.map(|x| x.1),
        correspondence: correspondence.map(|x| x.1).unwrap_or_default(),
        erp_procedures: erp,
        write_off: write_off.map(|x| x.1),
    })
}

/// Feeds every file under `dir` (relative name and bytes, in a stable order) to the hash.
fn hash_tree(hasher: &mut Sha256, root: &Path, dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            hash_tree(hasher, root, &p);
        } else if let Ok(bytes) = std::fs::read(&p) {
            let rel = p.strip_prefix(root).unwrap_or(&p);
            hasher.update(rel.as_os_str().as_encoded_bytes());
            hasher.update(&bytes);
        }
    }
}

fn compile_opt(cx: &mut Ctx, src: &Src, owner: &str, c: Option<&raw::Condition>) -> Cond {
    match c.map(condition::compile) {
        None => Cond::True,
        Some(Ok(c)) => c,
        Some(Err(m)) => {
            cx.err(src, Some(owner), format!("`{owner}`: {m}"));
            Cond::True
        }
    }
}

impl Src {
    fn find_key(&self, key: &str) -> Option<(usize, usize)> {
        let pat = format!("{key}:");
        self.text
            .lines()
            .enumerate()
            .find_map(|(i, l)| l.starts_with(&pat).then_some((i + 1, 1)))
    }
}

/// Collectors by id across all groups (a collector may serve several groups).
pub fn collectors_by_id(rules: &RuleSet) -> HashMap<&str, &Collector> {
    rules
        .groups
        .iter()
        .flat_map(|g| g.collectors.iter())
        .map(|c| (c.id.as_str(), c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules")
    }

    fn copy(dir: &Path) {
        for e in std::fs::read_dir(shipped()).unwrap() {
            let e = e.unwrap();
            if e.path().is_file() {
                std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
            }
        }
        for sub in [
            "scripts",
            "templates",
            "templates/en",
            "templates/de",
            "templates/pt",
        ] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
            for e in std::fs::read_dir(shipped().join(sub)).unwrap() {
                let e = e.unwrap();
                if e.path().is_file() {
                    std::fs::copy(e.path(), dir.join(sub).join(e.file_name())).unwrap();
                }
            }
        }
    }

    /// A file of deeply nested flow collections (the 195 KB one from issue 10 took
    /// 16–35 s in the YAML parser) and an oversized one are refused before parsing,
    /// naming the file and the limit; the other files are still checked.
    #[test]
    fn deep_or_huge_rule_files_are_refused_before_parsing() {
        let dir = tempfile::tempdir().unwrap();
        copy(dir.path());
        let depth = 195 * 1024 / 2;
        let deep = format!("groups: {}{}\n", "[".repeat(depth), "]".repeat(depth));
        std::fs::write(dir.path().join("deep.yaml"), &deep).unwrap();
        let huge = format!(
            "# {}\nversion: 1\n",
            "x".repeat(guard::MAX_FILE_BYTES as usize)
        );
        std::fs::write(dir.path().join("huge.yaml"), huge).unwrap();
        std::fs::write(
            dir.path().join("compliance.yaml"),
            format!("version: 1\njurisdictions: {}", "{a: ".repeat(100)),
        )
        .unwrap();
        let errs = load(dir.path()).unwrap_err().0;
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        let deep_err = errs
            .iter()
            .find(|e| e.file.ends_with("deep.yaml"))
            .unwrap_or_else(|| panic!("{text:?}"));
        assert_eq!(deep_err.pos, Some((1, 8 + guard::MAX_FLOW_DEPTH + 1)));
        assert!(
            deep_err.message.contains("nested deeper than 64 levels"),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|e| e.contains("huge.yaml") && e.contains("larger than 1048576 bytes")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|e| e.contains("compliance.yaml:2:") && e.contains("nested deeper")),
            "{text:?}"
        );
        assert_eq!(errs.len(), 3, "{text:?}");
    }

    /// Templates and the compliance policy are checked when the rules load, with the
    /// other errors, not when a message is about to go out.
    #[test]
    fn templates_and_compliance_errors_are_rule_errors() {
        let dir = tempfile::tempdir().unwrap();
        copy(dir.path());
        let r = load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.compliance.is_some() && r.templates.is_some());
        let hash = r.hash.clone();

        let t = dir.path().join("templates/en/reminder_1.j2");
        let text = std::fs::read_to_string(&t).unwrap();
        let first_block = text.find("{% block text %}").unwrap();
        let bad = format!(
            "{}{{% block text %}}{{{{ customer.nmae }}}}{}",
            &text[..first_block],
            &text[first_block + "{% block text %}".len()..]
        );
        std::fs::write(&t, &bad).unwrap();
        let esc = dir.path().join("escalation.yaml");
        let c = dir.path().join("compliance.yaml");
        let c_text = std::fs::read_to_string(&c)
            .unwrap()
            .replacen("08:00", "25:00", 1);
        std::fs::write(&c, c_text).unwrap();

        let errs = load(dir.path()).unwrap_err().0;
        let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        let find = |needle: &str| {
            msgs.iter()
                .find(|m| m.contains(needle))
                .unwrap_or_else(|| panic!("no `{needle}` in {msgs:#?}"))
        };
        let line = bad.lines().position(|l| l.contains("nmae")).unwrap() + 1;
        assert!(
            find("nmae").contains(&format!("reminder_1.j2:{line}")),
            "{msgs:#?}"
        );
        assert!(find("25:00").contains("compliance.yaml"), "{msgs:#?}");

        // With good templates, a level naming one that does not exist is refused.
        copy(dir.path());
        let e_text = std::fs::read_to_string(&esc).unwrap().replacen(
            "template: reminder_2",
            "template: reminder_9",
            1,
        );
        std::fs::write(&esc, e_text).unwrap();
        let errs = load(dir.path()).unwrap_err().0;
        assert!(
            errs.iter().any(|e| e.to_string().contains("reminder_9")),
            "{errs:?}"
        );

        // Put back, the set loads; a template edit alone changes the hash (a reload).
        copy(dir.path());
        std::fs::write(&t, text.replacen("Dear", "Hello", 1)).unwrap();
        let r = load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(r.hash, hash);
    }

    #[test]
    fn the_shipped_rules_load() {
        let r = load(&shipped()).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.strategies.len() >= 2 && !r.scripts.is_empty() && !r.categories.is_empty());
        assert_eq!(r.hash.len(), 16);
        let standard = r.ladders.iter().position(|l| l.name == "standard");
        assert_eq!(r.erp_procedures.ladders.get("Standard").copied(), standard);
        assert_eq!(r.erp_procedures.default, None);
    }

    /// `erp_procedures` names ladders like a strategy does: a name that is no ladder
    /// is an error at the name, for the map and for `default`; a misspelt key, or an
    /// empty procedure name (the ERP's "not dunned"), is refused.
    #[test]
    fn a_commission_table_with_overlapping_tiers_or_a_negative_rate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        copy(dir.path());
        edit(
            dir.path(),
            "commission.yaml",
            &[(
                "{ from: \"150000\", rate: \"2\" }",
                "{ from: \"50000\", rate: \"2\" }",
            )],
        );
        let errs = errors_of(dir.path());
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].file.ends_with("commission.yaml"));
        assert_eq!(
            errs[0].message,
            "commission: `tiers[2].from` tiers overlap: 50000 is not above the tier before it (50000)"
        );
        copy(dir.path());
        edit(
            dir.path(),
            "commission.yaml",
            &[(
                "{ from: \"0\", rate: \"0.5\" }",
                "{ from: \"0\", rate: \"-0.5\" }",
            )],
        );
        let errs = errors_of(dir.path());
        assert_eq!(
            errs[0].message,
            "commission: `segments.key_account[0].rate` a percentage from 0 to 100 (got -0.5)"
        );
        let r = load(&shipped()).unwrap();
        assert_eq!(r.commission.expect("shipped").tiers.len(), 3);
    }

    #[test]
    fn erp_procedures_name_known_ladders_only() {
        let dir = tempfile::tempdir().unwrap();
        copy(dir.path());
        let text = edit(
            dir.path(),
            "escalation.yaml",
            &[(
                "    \"US Standard\": us_standard\n",
                "    \"US Standard\": us_standrd\n  default: gentle\n",
            )],
        );
        let errs = errors_of(dir.path());
        let got: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), 2, "{got:#?}");
        assert!(errs.iter().all(|e| e.file.ends_with("escalation.yaml")));
        let at = |needle: &str| {
            errs.iter()
                .find(|e| e.message.contains(needle))
                .unwrap_or_else(|| panic!("no `{needle}` in {got:#?}"))
                .pos
        };
        assert_eq!(
            at("ERP procedure `US Standard` uses unknown ladder `us_standrd`"),
            Some(place(&text, "us_standrd"))
        );
        assert_eq!(
            at("erp_procedures default uses unknown ladder `gentle`"),
            Some(place(&text, "gentle"))
        );
        let r = dir.path().join("escalation.yaml");
        assert!(got[0].starts_with(&format!(
            "{}:{}:",
            r.display(),
            place(&text, "us_standrd").0
        )));

        copy(dir.path());
        let text = edit(
            dir.path(),
            "escalation.yaml",
            &[(
                "  ladders:\n    \"Standard\"",
                "  ladder:\n    \"Standard\"",
            )],
        );
        let errs = errors_of(dir.path());
        assert_eq!(errs.len(), 1, "{errs:#?}");
        let (line, _) = place(&text, "  ladder:\n    \"Standard\"");
        assert_eq!(errs[0].pos, Some((line, 3)), "{}", errs[0]);
        assert!(
            errs[0]
                .message
                .starts_with("erp_procedures: unknown field `ladder`"),
            "{}",
            errs[0]
        );

        copy(dir.path());
        let text = edit(
            dir.path(),
            "escalation.yaml",
            &[("\"US Standard\": us_standard", "\"\": us_standard")],
        );
        let errs = errors_of(dir.path());
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert_eq!(errs[0].pos, Some(place(&text, "\"\": us_standard")));
        assert!(
            errs[0].message.contains("empty procedure name"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn every_error_is_collected_with_its_place() {
        let dir = tempfile::tempdir().unwrap();
        copy(dir.path());
        let p = dir.path().join("escalation.yaml");
        let text = std::fs::read_to_string(&p).unwrap();
        let text = text
            .replacen("mode: one_level_per_run", "mode: sometimes", 1)
            .replacen("channel: email", "channel: pigeon", 1)
            .replacen("step_interval_days: 14", "step_interval_days: 400", 1);
        std::fs::write(&p, &text).unwrap();
        let s = dir.path().join("strategies.yaml");
        let st =
            std::fs::read_to_string(&s)
                .unwrap()
                .replacen("group: general", "group: genral", 1);
        std::fs::write(&s, &st).unwrap();
        let errs = load(dir.path()).unwrap_err().0;
        let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        let find = |needle: &str| {
            msgs.iter()
                .find(|m| m.contains(needle))
                .unwrap_or_else(|| panic!("no `{needle}` in {msgs:#?}"))
        };
        let line_of =
            |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
        assert!(find("unknown mode `sometimes`")
            .contains(&format!("escalation.yaml:{}:", line_of(&text, "sometimes"))));
        assert!(find("unknown channel `pigeon`")
            .contains(&format!("escalation.yaml:{}:", line_of(&text, "pigeon"))));
        // Placed at its ladder, as tolerance_days is.
        assert!(
            find("step_interval_days must be between 0 and 366").contains(&format!(
                "escalation.yaml:{}:",
                line_of(&text, "name: standard")
            ))
        );
        assert!(find("unknown group `genral`")
            .contains(&format!("strategies.yaml:{}:", line_of(&st, "genral"))));
    }

    #[test]
    fn write_off_rules_are_checked_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        copy(dir.path());
        let esc = dir.path().join("escalation.yaml");
        let text = std::fs::read_to_string(&esc).unwrap();
        // The shipped last level proposes: it loads, with the reason.
        let ok = text.replacen(
            "# propose_write_off: uncollectible",
            "propose_write_off: uncollectible",
            1,
        );
        std::fs::write(&esc, &ok).unwrap();
        let r = load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let std = r.ladders.iter().find(|l| l.name == "standard").unwrap();
        assert_eq!(
            std.levels.last().unwrap().propose_write_off.as_deref(),
            Some("uncollectible")
        );
        assert!(std.levels[..std.levels.len() - 1]
            .iter()
            .all(|l| l.propose_write_off.is_none()));
        // On a middle level, with a reason not listed; a negative limit.
        let bad = ok
            .replacen(
                "propose_write_off: uncollectible",
                "propose_write_off: bored",
                1,
            )
            .replacen(
                "        event: First payment reminder sent\n",
                "        event: First payment reminder sent\n        propose_write_off: uncollectible\n",
                1,
            );
        std::fs::write(&esc, &bad).unwrap();
        let agr = dir.path().join("agreements.yaml");
        let a = std::fs::read_to_string(&agr).unwrap().replacen(
            "amount: \"2000\"",
            "amount: \"-1\"",
            1,
        );
        std::fs::write(&agr, &a).unwrap();
        let msgs: Vec<String> = load(dir.path())
            .unwrap_err()
            .0
            .iter()
            .map(|e| e.to_string())
            .collect();
        let has = |needle: &str| {
            assert!(
                msgs.iter().any(|m| m.contains(needle)),
                "no `{needle}` in {msgs:#?}"
            )
        };
        has("level `reminder_1`: propose_write_off is for the last level of ladder `standard`");
        has("level `call`: propose_write_off reason: `bored` is not one of the write-off reasons");
        has("write_off.limits.supervisor.amount must not be negative");
        // Without a `write_off` section nothing can approve: refused.
        let none = a[..a.find("\nwrite_off:").unwrap()].to_string();
        std::fs::write(&agr, none).unwrap();
        std::fs::write(&esc, &ok).unwrap();
        let msgs: Vec<String> = load(dir.path())
            .unwrap_err()
            .0
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert!(
            msgs.iter()
                .any(|m| m.contains("propose_write_off needs a `write_off` section")),
            "{msgs:#?}"
        );
    }

    #[test]
    fn a_section_defined_twice_or_an_unknown_currency_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        copy(dir.path());
        std::fs::write(
            dir.path().join("extra.yaml"),
            "cases:\n  initial_nad_days: 5\n",
        )
        .unwrap();
        let p = dir.path().join("policy.yaml");
        let text = std::fs::read_to_string(&p)
            .unwrap()
            .replacen("USD:", "USX:", 1)
            .replacen("SEK: \"0.088\"", "SEK: \"2000000\"", 1);
        std::fs::write(&p, text).unwrap();
        let msgs: Vec<String> = load(dir.path())
            .unwrap_err()
            .0
            .iter()
            .map(|e| e.to_string())
            .collect();
        let policy = std::fs::read_to_string(&p).unwrap();
        let cases_line = policy
            .lines()
            .position(|l| l.starts_with("cases:"))
            .unwrap()
            + 1;
        let dup = format!("policy.yaml:{cases_line}:1: section `cases` is already defined in");
        assert!(
            msgs.iter()
                .any(|m| m.contains(&dup) && m.contains("extra.yaml")),
            "{msgs:#?}"
        );
        // A rate beyond the bound would let converted sums overflow.
        assert!(
            msgs.iter()
                .any(|m| m.contains("rate for SEK must be positive and at most 1000000")),
            "{msgs:#?}"
        );
        let line = policy.lines().position(|l| l.contains("USX")).unwrap() + 1;
        assert!(
            msgs.iter()
                .any(|m| m.contains(&format!("policy.yaml:{line}:")) && m.contains("USX")),
            "{msgs:#?}"
        );
    }

    /// Writes `file` of a copy of the shipped rules with each `(old, new)` replaced
    /// once, and returns the new text.
    fn edit(dir: &Path, file: &str, edits: &[(&str, &str)]) -> String {
        let p = dir.join(file);
        let mut text = std::fs::read_to_string(&p).unwrap();
        for (old, new) in edits {
            assert!(text.contains(old), "no `{old}` in {file}");
            text = text.replacen(old, new, 1);
        }
        std::fs::write(&p, &text).unwrap();
        text
    }

    /// 1-based line and column of the first `needle` in `text`.
    fn place(text: &str, needle: &str) -> (usize, usize) {
        let at = text.find(needle).unwrap();
        let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        (
            text[..at].lines().count() + usize::from(at == line_start),
            at - line_start + 1,
        )
    }

    fn errors_of(dir: &Path) -> Vec<RuleError> {
        let errs = load(dir).unwrap_err().0;
        errs.iter().for_each(|e| eprintln!("{e}"));
        errs
    }

    /// Issue 11: an amount that is no number, deep in a strategy, is one error at the
    /// amount itself, not also "no `strategies` defined", nor at its list item.
    #[test]
    fn a_wrong_type_in_a_nested_field_is_one_error_at_the_field() {
        let dir = tempfile::tempdir().unwrap();
        copy(dir.path());
        let text = edit(
            dir.path(),
            "strategies.yaml",
            &[("points: 15", "points: lots")],
        );
        let errs = errors_of(dir.path());
        assert_eq!(errs.len(), 1, "{errs:#?}");
        let e = &errs[0];
        assert!(e.file.ends_with("strategies.yaml"), "{e}");
        assert_eq!(e.pos, Some(place(&text, "lots")), "{e}");
        assert!(
            e.message.starts_with("strategies[0].criteria[1].points: ")
                && e.message.contains("lots"),
            "{e}"
        );

        // A wrong type on a required field does not also report the field missing.
        copy(dir.path());
        let text = edit(
            dir.path(),
            "escalation.yaml",
            &[("overdue_days: 21", "overdue_days: [21]")],
        );
        let errs = errors_of(dir.path());
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert_eq!(errs[0].pos, Some(place(&text, "[21]")), "{}", errs[0]);
        assert!(
            errs[0]
                .message
                .starts_with("ladders[0].levels[2].overdue_days: invalid type: sequence"),
            "{}",
            errs[0]
        );
    }

    /// Issue 11: independent errors in one file are all reported, each at its place,
    /// also two in one list item.
    #[test]
    fn every_yaml_error_in_a_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        copy(dir.path());
        let text = edit(
            dir.path(),
            "strategies.yaml",
            &[
                ("points: 15", "points: lots"),
                ("min_score: 40", "min_score: forty"),
                ("    ladder: standard", "    ladder: [standard]"),
                ("group: us_team", "grup: us_team"),
            ],
        );
        let errs = errors_of(dir.path());
        let got: Vec<_> = errs.iter().map(|e| (e.pos, e.message.as_str())).collect();
        let at = |needle: &str| Some(place(&text, needle));
        assert_eq!(errs.len(), 4, "{got:#?}");
        assert!(errs.iter().all(|e| e.file.ends_with("strategies.yaml")));
        assert_eq!(errs[0].pos, at("lots"), "{got:#?}");
        assert_eq!(errs[1].pos, at("forty"), "{got:#?}");
        assert!(errs[1]
            .message
            .starts_with("strategies[0].profiles[1].min_score: "));
        // An unknown key is placed at the key.
        assert_eq!(errs[2].pos, at("grup"), "{got:#?}");
        assert!(errs[2]
            .message
            .starts_with("strategies[0].routing[1]: unknown field `grup`"));
        assert_eq!(errs[3].pos, at("[standard]"), "{got:#?}");
        assert!(errs[3]
            .message
            .starts_with("strategies[1].ladder: invalid type: sequence"));
    }

    /// Issue 11: errors in several files are all reported, and what refers to an item
    /// left out for its error (a ladder, a group) is no second error.
    #[test]
    fn yaml_errors_in_every_file_are_reported_without_cascades() {
        let dir = tempfile::tempdir().unwrap();
        copy(dir.path());
        let esc = edit(
            dir.path(),
            "escalation.yaml",
            &[("overdue_days: 7", "overdue_days: soon")],
        );
        let strat = edit(
            dir.path(),
            "strategies.yaml",
            &[("points: 15", "points: lots")],
        );
        let g = edit(
            dir.path(),
            "groups.yaml",
            &[("description: Customers", "description: [not, text] #")],
        );
        let errs = errors_of(dir.path());
        let got: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), 3, "{got:#?}");
        let find = |file: &str| {
            errs.iter()
                .find(|e| e.file.ends_with(file))
                .unwrap_or_else(|| panic!("no {file} in {got:#?}"))
        };
        assert_eq!(find("escalation.yaml").pos, Some(place(&esc, "soon")));
        assert_eq!(find("strategies.yaml").pos, Some(place(&strat, "lots")));
        assert_eq!(find("groups.yaml").pos, Some(place(&g, "[not, text]")));

        // A misspelt section is one error: the section it means is not also missing.
        copy(dir.path());
        let text = edit(
            dir.path(),
            "strategies.yaml",
            &[("strategies:", "strategis:")],
        );
        let errs = errors_of(dir.path());
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert_eq!(errs[0].pos, Some(place(&text, "strategis")));
        assert!(errs[0].message.starts_with("unknown field `strategis`"));

        // A file that is no YAML at all is one error, and the sections it holds are
        // not reported missing.
        copy(dir.path());
        std::fs::write(
            dir.path().join("strategies.yaml"),
            "strategies:\n  - name: [x\n",
        )
        .unwrap();
        let errs = errors_of(dir.path());
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(errs[0].file.ends_with("strategies.yaml"));
    }
}
