//! Rhai scripts that may override segmentation, scoring, case priority and the
//! escalation step. Each file is compiled once at load; every call runs under the
//! engine limits below, so a runaway script is stopped and reported, never hangs.
//!
//! Scripts see read-only views (`Customer`, `Item`, `Promise`, `Payment`, `Case`);
//! amounts are `Decimal` (the engine is built with `decimal` + `no_float`, so a
//! literal such as `1000.50` in a script is an exact decimal too).

use std::cell::Cell;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rhai::{CallFnOptions, Dynamic, Engine, Scope, AST};
use rust_decimal::Decimal;

use super::RuleError;
use crate::facts::Facts;

/// Hard limits for every script call; generous for real policies, fatal for loops.
pub const MAX_OPERATIONS: u64 = 200_000;
pub const MAX_CALL_LEVELS: usize = 32;
pub const MAX_EXPR_DEPTH: usize = 64;
pub const MAX_STRING_SIZE: usize = 16 * 1024;
// Not lower: `customer.items` is an array too, and key accounts have thousands of items.
// Rhai re-measures a whole array after every change to it, so filling one costs the
// square of its size; the time budget, not this, bounds what that costs a run.
pub const MAX_ARRAY_SIZE: usize = 10_000;
pub const MAX_MAP_SIZE: usize = 1_000;
/// Wall-clock time one hook call may take unless the script's `budget_ms` says otherwise.
pub const DEFAULT_BUDGET: Duration = Duration::from_millis(50);
/// The largest `budget_ms` a script may ask for.
pub const MAX_BUDGET_MS: u64 = 10_000;
/// After this many calls in a row over budget a script is paused for [`PAUSE`]: a hook
/// slow for every customer would otherwise cost its budget once per customer
/// (300 customers × 50 ms = 15 s a run). A pause, not a ban, because a busy machine can
/// make a sound script late a few times too.
pub const MAX_OVERRUNS_IN_A_ROW: u32 = 3;
pub const PAUSE: Duration = Duration::from_secs(60);
// Reading the clock costs about as much as a cheap operation, so it is read once every
// CLOCK_EVERY operations; no single built-in runs long enough within the size limits
// above for that to overshoot the budget noticeably.
const CLOCK_EVERY: u64 = 32;

thread_local! {
    // The deadline of the hook call running on this thread: the engine and its progress
    // callback are shared by every call, the deadline belongs to one.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The token the progress callback stops a script with, to tell it from `throw`.
const OVER_BUDGET: &str = "arrears:over-budget";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hook {
    Segment,
    Score,
    Priority,
    Escalation,
}

impl Hook {
    pub const ALL: [(Hook, &'static str, usize); 4] = [
        (Hook::Segment, "segment", 1),
        (Hook::Score, "score", 2),
        (Hook::Priority, "priority", 2),
        (Hook::Escalation, "escalation", 2),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|h| h.0 == self)
            .map(|h| h.1)
            .unwrap_or("?")
    }
}

/// A script that ran out of limits or failed; the engine keeps the YAML result.
#[derive(Debug, Clone)]
pub struct ScriptError {
    pub file: String,
    /// Line in `file` where the script failed, when Rhai knows it.
    pub line: Option<usize>,
    pub hook: &'static str,
    pub message: String,
    /// True when a safety limit (time, operations, depth, sizes) stopped the script.
    pub limit_hit: bool,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}(): {}", self.file, self.hook, self.message),
            None => write!(f, "{}: {}(): {}", self.file, self.hook, self.message),
        }
    }
}

impl std::error::Error for ScriptError {}

pub fn build_engine() -> Engine {
    let mut e = Engine::new();
    e.set_max_operations(MAX_OPERATIONS)
        .set_max_call_levels(MAX_CALL_LEVELS)
        .set_max_expr_depths(MAX_EXPR_DEPTH, MAX_EXPR_DEPTH)
        .set_max_string_size(MAX_STRING_SIZE)
        .set_max_array_size(MAX_ARRAY_SIZE)
        .set_max_map_size(MAX_MAP_SIZE)
        .set_strict_variables(true);
    // Operation counts do not bound time: one call of a built-in on a large string or
    // array counts as one operation. The deadline does.
    e.on_progress(|ops| {
        if ops % CLOCK_EVERY != 0 {
            return None;
        }
        let over = DEADLINE.with(|d| d.get().is_some_and(|t| Instant::now() >= t));
        over.then(|| Dynamic::from(OVER_BUDGET))
    });
    // Scripts are self-contained: the default resolver would load any file relative
    // to the daemon's working directory (`import "../../etc/x"`). `import` is refused
    // when the rules are loaded; the resolver is a second lock should it get through.
    e.disable_symbol("import");
    e.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
    // Scripts must not write to the daemon's stdout; route `print`/`debug` to tracing.
    e.on_print(|s| tracing::info!(target: "arrears::script", "{s}"));
    e.on_debug(|s, src, pos| tracing::debug!(target: "arrears::script", ?src, %pos, "{s}"));
    register_views(&mut e);
    e
}

/// Calls in a row stopped by the budget, and the pause that follows too many.
#[derive(Debug, Default)]
struct Overruns {
    in_a_row: u32,
    paused_until: Option<Instant>,
}

pub struct Script {
    pub file: String,
    pub ast: AST,
    pub hooks: Vec<Hook>,
    /// Wall-clock time one call may take.
    pub budget: Duration,
    /// Where each hook is defined.
    hook_lines: Vec<(Hook, usize)>,
    overruns: Mutex<Overruns>,
}

/// Compiles one script file; the error carries file, line and column.
pub fn compile(engine: &Engine, rules_dir: &Path, rel: &str) -> Result<Script, RuleError> {
    let path = rules_dir.join(rel);
    let err = |pos, message: String| RuleError {
        file: path.clone(),
        pos,
        message,
    };
    let text = super::guard::read(&path).map_err(|e| match e {
        super::guard::SourceError::Read(e) => err(None, format!("cannot read script: {e}")),
        e => err(None, e.to_string()),
    })?;
    let mut ast = engine.compile(&text).map_err(|e| {
        let p = e.position();
        err(
            p.line().map(|l| (l, p.position().unwrap_or(1))),
            e.err_type().to_string(),
        )
    })?;
    ast.set_source(rel);
    let mut hooks = Vec::new();
    for f in ast.iter_functions() {
        if let Some((hook, name, arity)) = Hook::ALL.iter().find(|h| h.1 == f.name) {
            if f.params.len() != *arity {
                return Err(err(
                    locate_fn(&text, name),
                    format!(
                        "hook `{name}` must take {arity} parameter(s), found {}",
                        f.params.len()
                    ),
                ));
            }
            hooks.push(*hook);
        }
    }
    if hooks.is_empty() {
        return Err(err(
            None,
            "script defines no hook: expected one of fn segment(customer), fn score(customer, score), fn priority(kase, customer) (`case` is reserved in Rhai), fn escalation(customer, level)".into(),
        ));
    }
    hooks.sort();
    let hook_lines = hooks
        .iter()
        .filter_map(|h| locate_fn(&text, h.name()).map(|(l, _)| (*h, l)))
        .collect();
    Ok(Script {
        file: rel.to_string(),
        ast,
        hooks,
        budget: DEFAULT_BUDGET,
        hook_lines,
        overruns: Mutex::new(Overruns::default()),
    })
}

fn locate_fn(text: &str, name: &str) -> Option<(usize, usize)> {
    let pat = format!("fn {name}");
    text.lines()
        .enumerate()
        .find_map(|(i, l)| l.find(&pat).map(|c| (i + 1, c + 1)))
}

impl Script {
    fn call(
        &self,
        engine: &Engine,
        hook: Hook,
        args: impl rhai::FuncArgs,
    ) -> Result<Dynamic, ScriptError> {
        if let Some(until) = self.paused_until() {
            return Err(ScriptError {
                file: self.file.clone(),
                line: self.hook_line(hook),
                hook: hook.name(),
                message: format!(
                    "not called: over its time budget of {} ms in {MAX_OVERRUNS_IN_A_ROW} calls \
                     in a row; paused for {} s more",
                    self.budget.as_millis(),
                    until.saturating_duration_since(Instant::now()).as_secs() + 1
                ),
                limit_hit: true,
            });
        }
        let mut scope = Scope::new();
        let opts = CallFnOptions::new().eval_ast(false).rewind_scope(true);
        DEADLINE.with(|d| d.set(Some(Instant::now() + self.budget)));
        let r =
            engine.call_fn_with_options::<Dynamic>(opts, &mut scope, &self.ast, hook.name(), args);
        DEADLINE.with(|d| d.set(None));
        let over = matches!(&r, Err(e) if is_over_budget(e.unwrap_inner()));
        self.count_overrun(over);
        r.map_err(|e| self.error(hook, &e))
    }

    fn hook_line(&self, hook: Hook) -> Option<usize> {
        self.hook_lines
            .iter()
            .find(|(h, _)| *h == hook)
            .map(|(_, l)| *l)
    }

    fn paused_until(&self) -> Option<Instant> {
        let mut o = self.overruns.lock().unwrap_or_else(PoisonError::into_inner);
        let until = o.paused_until?;
        if Instant::now() < until {
            return Some(until);
        }
        *o = Overruns::default();
        None
    }

    fn count_overrun(&self, over: bool) {
        let mut o = self.overruns.lock().unwrap_or_else(PoisonError::into_inner);
        if !over {
            o.in_a_row = 0;
            return;
        }
        o.in_a_row += 1;
        if o.in_a_row >= MAX_OVERRUNS_IN_A_ROW {
            o.paused_until = Some(Instant::now() + PAUSE);
        }
    }

    fn error(&self, hook: Hook, e: &rhai::EvalAltResult) -> ScriptError {
        use rhai::EvalAltResult as E;
        // The error inside the innermost function call says what went wrong and where;
        // the wrappers only name the functions on the way.
        let inner = e.unwrap_inner();
        let limit_hit = is_over_budget(inner)
            || matches!(
                inner,
                E::ErrorTooManyOperations(..)
                    | E::ErrorStackOverflow(..)
                    | E::ErrorDataTooLarge(..)
                    | E::ErrorTooManyModules(..)
            );
        // Rhai moves a limit error to the place of the call that started the script, which
        // for a hook is nowhere; the hook's own line is then the best there is.
        let pos = innermost_line(e).or_else(|| self.hook_line(hook));
        let message = if is_over_budget(inner) {
            format!(
                "stopped: over its time budget of {} ms (`budget_ms` in `scripts:`)",
                self.budget.as_millis()
            )
        } else {
            // The line is in the report already; Rhai's own "(line 3, position 5)" would
            // name it twice.
            let m = inner.to_string();
            let at = format!(" ({})", inner.position());
            m.strip_suffix(&at).map(str::to_string).unwrap_or(m)
        };
        ScriptError {
            file: self.file.clone(),
            line: pos,
            hook: hook.name(),
            message,
            limit_hit,
        }
    }

    fn bad_return(&self, hook: Hook, want: &str, got: &Dynamic) -> ScriptError {
        ScriptError {
            file: self.file.clone(),
            hook: hook.name(),
            line: None,
            message: format!(
                "must return {want} or (), returned {} `{got}`",
                got.type_name()
            ),
            limit_hit: false,
        }
    }

    pub fn segment(
        &self,
        engine: &Engine,
        c: &CustomerView,
    ) -> Result<Option<String>, ScriptError> {
        let r = self.call(engine, Hook::Segment, (c.clone(),))?;
        if r.is_unit() {
            return Ok(None);
        }
        r.clone()
            .into_string()
            .map(Some)
            .map_err(|_| self.bad_return(Hook::Segment, "a string", &r))
    }

    pub fn score(
        &self,
        engine: &Engine,
        c: &CustomerView,
        score: Decimal,
    ) -> Result<Option<Decimal>, ScriptError> {
        let r = self.call(engine, Hook::Score, (c.clone(), score))?;
        if r.is_unit() {
            return Ok(None);
        }
        if let Some(d) = r.clone().try_cast::<Decimal>() {
            return Ok(Some(d));
        }
        r.as_int()
            .map(|i| Some(Decimal::from(i)))
            .map_err(|_| self.bad_return(Hook::Score, "a number", &r))
    }

    pub fn priority(
        &self,
        engine: &Engine,
        case: &CaseView,
        c: &CustomerView,
    ) -> Result<Option<String>, ScriptError> {
        let r = self.call(engine, Hook::Priority, (case.clone(), c.clone()))?;
        if r.is_unit() {
            return Ok(None);
        }
        r.clone()
            .into_string()
            .map(Some)
            .map_err(|_| self.bad_return(Hook::Priority, "\"high\", \"medium\" or \"low\"", &r))
    }

    pub fn escalation(
        &self,
        engine: &Engine,
        c: &CustomerView,
        level: i64,
    ) -> Result<Option<i64>, ScriptError> {
        let r = self.call(engine, Hook::Escalation, (c.clone(), level))?;
        if r.is_unit() {
            return Ok(None);
        }
        r.as_int()
            .map(Some)
            .map_err(|_| self.bad_return(Hook::Escalation, "a level number", &r))
    }
}

/// The line closest to the failure: a built-in that refuses a value knows no position,
/// the call of it in the script does.
fn innermost_line(e: &rhai::EvalAltResult) -> Option<usize> {
    use rhai::EvalAltResult as E;
    match e {
        E::ErrorInFunctionCall(.., inner, pos) | E::ErrorInModule(.., inner, pos) => {
            innermost_line(inner).or(pos.line())
        }
        _ => e.position().line(),
    }
}

fn is_over_budget(e: &rhai::EvalAltResult) -> bool {
    matches!(e, rhai::EvalAltResult::ErrorTerminated(t, _)
        if t.clone().into_immutable_string().is_ok_and(|s| s == OVER_BUDGET))
}

/// One open item as a script sees it. Kept typed and cheap to clone: a script's
/// `customer.items` copies every item of the customer, key accounts have thousands,
/// and building the strings up front was most of what a score hook cost them.
#[derive(Debug, Clone)]
pub struct ItemData {
    pub document_no: rhai::ImmutableString,
    pub due_date: chrono::NaiveDate,
    pub days_overdue: i64,
    pub original_amount: Decimal,
    pub open_amount: Decimal,
    /// `open_amount` converted to the base currency with the rule set's rates.
    pub open_amount_base: Decimal,
    pub currency: arrears_core::money::Currency,
    pub disputed: bool,
    pub blocked: bool,
}

#[derive(Debug, Clone)]
pub struct PromiseData {
    pub amount: Decimal,
    pub currency: String,
    pub date: String,
    pub status: String,
    /// Empty while open.
    pub judged_on: String,
    /// Empty unless a payment counted toward it.
    pub paid_on: String,
}

#[derive(Debug, Clone)]
pub struct PaymentData {
    pub amount: Decimal,
    pub currency: String,
    pub date: String,
}

#[derive(Debug)]
pub struct CustomerData {
    pub code: String,
    pub name: String,
    pub as_of: String,
    pub facts: Facts,
    /// In the base currency.
    pub credit_limit: Option<Decimal>,
    pub items: Vec<ItemData>,
    pub promises: Vec<PromiseData>,
    pub payments: Vec<PaymentData>,
}

/// What a script receives as `customer`: cheap to clone (one `Arc`).
#[derive(Debug, Clone)]
pub struct CustomerView(pub Arc<CustomerData>);

/// What `priority(case, customer)` receives as `case`.
#[derive(Debug, Clone)]
pub struct CaseView {
    pub document_no: String,
    // Kept typed and formatted only when a script reads them: hooks run once per case.
    pub nad: chrono::NaiveDate,
    pub nad_passed: bool,
    pub days_overdue: i64,
    pub open_amount: Decimal,
    pub open_amount_base: Decimal,
    pub currency: arrears_core::money::Currency,
    /// Priority the ByDesign rule gave, before the script.
    pub proposed: arrears_core::domain::Priority,
}

fn opt<T: Clone + Send + Sync + 'static>(v: &Option<T>) -> Dynamic {
    v.clone().map(Dynamic::from).unwrap_or(Dynamic::UNIT)
}

fn register_views(e: &mut Engine) {
    e.register_type_with_name::<CustomerView>("Customer")
        .register_get("code", |c: &mut CustomerView| c.0.code.clone())
        .register_get("name", |c: &mut CustomerView| c.0.name.clone())
        .register_get("as_of", |c: &mut CustomerView| c.0.as_of.clone())
        .register_get("segment", |c: &mut CustomerView| c.0.facts.segment.clone())
        .register_get("company", |c: &mut CustomerView| c.0.facts.company.clone())
        .register_get("currency", |c: &mut CustomerView| {
            c.0.facts.currency.clone()
        })
        .register_get("country", |c: &mut CustomerView| c.0.facts.country.clone())
        .register_get("score", |c: &mut CustomerView| c.0.facts.score)
        .register_get("open_amount", |c: &mut CustomerView| c.0.facts.open_amount)
        .register_get("overdue_amount", |c: &mut CustomerView| {
            c.0.facts.overdue_amount
        })
        .register_get("max_days_overdue", |c: &mut CustomerView| {
            c.0.facts.max_days_overdue
        })
        .register_get("avg_days_overdue", |c: &mut CustomerView| {
            c.0.facts.avg_days_overdue
        })
        .register_get("open_items", |c: &mut CustomerView| c.0.facts.open_items)
        .register_get("overdue_items", |c: &mut CustomerView| {
            c.0.facts.overdue_items
        })
        .register_get("disputed_items", |c: &mut CustomerView| {
            c.0.facts.disputed_items
        })
        .register_get("blocked_items", |c: &mut CustomerView| {
            c.0.facts.blocked_items
        })
        .register_get("promises_kept", |c: &mut CustomerView| {
            c.0.facts.promises_kept
        })
        .register_get("promises_broken", |c: &mut CustomerView| {
            c.0.facts.promises_broken
        })
        .register_get("promise_kept_rate", |c: &mut CustomerView| {
            opt(&c.0.facts.promise_kept_rate)
        })
        .register_get("promises_made", |c: &mut CustomerView| {
            c.0.facts.promises_made
        })
        .register_get("promises_partial", |c: &mut CustomerView| {
            c.0.facts.promises_partial
        })
        .register_get("promise_avg_delay_days", |c: &mut CustomerView| {
            opt(&c.0.facts.promise_avg_delay_days)
        })
        .register_get("credit_limit", |c: &mut CustomerView| {
            opt(&c.0.credit_limit)
        })
        .register_get("credit_limit_utilisation", |c: &mut CustomerView| {
            opt(&c.0.facts.credit_limit_utilisation)
        })
        .register_get("days_since_last_payment", |c: &mut CustomerView| {
            opt(&c.0.facts.days_since_last_payment)
        })
        .register_get("items", |c: &mut CustomerView| {
            c.0.items
                .iter()
                .cloned()
                .map(Dynamic::from)
                .collect::<rhai::Array>()
        })
        .register_get("promises", |c: &mut CustomerView| {
            c.0.promises
                .iter()
                .cloned()
                .map(Dynamic::from)
                .collect::<rhai::Array>()
        })
        .register_get("payments", |c: &mut CustomerView| {
            c.0.payments
                .iter()
                .cloned()
                .map(Dynamic::from)
                .collect::<rhai::Array>()
        });
    e.register_type_with_name::<ItemData>("Item")
        .register_get("document_no", |i: &mut ItemData| i.document_no.clone())
        .register_get("due_date", |i: &mut ItemData| i.due_date.to_string())
        .register_get("days_overdue", |i: &mut ItemData| i.days_overdue)
        .register_get("original_amount", |i: &mut ItemData| i.original_amount)
        .register_get("open_amount", |i: &mut ItemData| i.open_amount)
        .register_get("open_amount_base", |i: &mut ItemData| i.open_amount_base)
        .register_get("currency", |i: &mut ItemData| i.currency.to_string())
        .register_get("disputed", |i: &mut ItemData| i.disputed)
        .register_get("blocked", |i: &mut ItemData| i.blocked);
    e.register_type_with_name::<PromiseData>("Promise")
        .register_get("amount", |p: &mut PromiseData| p.amount)
        .register_get("currency", |p: &mut PromiseData| p.currency.clone())
        .register_get("date", |p: &mut PromiseData| p.date.clone())
        .register_get("status", |p: &mut PromiseData| p.status.clone())
        .register_get("judged_on", |p: &mut PromiseData| p.judged_on.clone())
        .register_get("paid_on", |p: &mut PromiseData| p.paid_on.clone());
    e.register_type_with_name::<PaymentData>("Payment")
        .register_get("amount", |p: &mut PaymentData| p.amount)
        .register_get("currency", |p: &mut PaymentData| p.currency.clone())
        .register_get("date", |p: &mut PaymentData| p.date.clone());
    e.register_type_with_name::<CaseView>("Case")
        .register_get("document_no", |c: &mut CaseView| c.document_no.clone())
        .register_get("nad", |c: &mut CaseView| c.nad.to_string())
        .register_get("nad_passed", |c: &mut CaseView| c.nad_passed)
        .register_get("days_overdue", |c: &mut CaseView| c.days_overdue)
        .register_get("open_amount", |c: &mut CaseView| c.open_amount)
        .register_get("open_amount_base", |c: &mut CaseView| c.open_amount_base)
        .register_get("currency", |c: &mut CaseView| c.currency.to_string())
        .register_get("proposed", |c: &mut CaseView| {
            c.proposed.as_str().to_string()
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn script(src: &str) -> (Engine, Script) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.rhai"), src).unwrap();
        let e = build_engine();
        let s = compile(&e, dir.path(), "s.rhai").unwrap_or_else(|e| panic!("{e}"));
        (e, s)
    }

    fn customer(overdue: Decimal) -> CustomerView {
        CustomerView(Arc::new(CustomerData {
            code: "C1".into(),
            name: "Acme".into(),
            as_of: "2026-11-23".into(),
            facts: Facts {
                overdue_amount: overdue,
                ..Facts::default()
            },
            credit_limit: None,
            items: vec![ItemData {
                document_no: "INV-1".into(),
                due_date: "2026-10-01".parse().unwrap(),
                days_overdue: 53,
                original_amount: dec!(100.10),
                open_amount: dec!(0.10),
                open_amount_base: dec!(0.10),
                currency: arrears_core::money::Currency::parse("EUR").unwrap(),
                disputed: false,
                blocked: false,
            }],
            promises: vec![],
            payments: vec![],
        }))
    }

    #[test]
    fn decimals_reach_scripts_exactly() {
        let (e, s) = script("fn score(c, s) { s + c.items[0].open_amount + 0.20 }");
        // 0.1 + 0.2 is exactly 0.3 here, unlike with binary floats.
        assert_eq!(
            s.score(&e, &customer(dec!(0)), dec!(0)).unwrap(),
            Some(dec!(0.30))
        );
    }

    #[test]
    fn hooks_may_return_unit_to_keep_the_yaml_result() {
        let (e, s) =
            script(r#"fn segment(c) { if c.overdue_amount > 1000 { "big" } else { () } }"#);
        assert_eq!(
            s.segment(&e, &customer(dec!(5000))).unwrap(),
            Some("big".into())
        );
        assert_eq!(s.segment(&e, &customer(dec!(5))).unwrap(), None);
    }

    #[test]
    fn runaway_scripts_are_stopped_and_reported() {
        let (e, s) = script("fn score(c, s) { loop { s += 1; } }");
        let err = s.score(&e, &customer(dec!(1)), dec!(0)).unwrap_err();
        assert!(err.limit_hit, "{err}");
        let (e, s) = script("fn deep(n) { deep(n + 1) } fn score(c, s) { deep(0) }");
        assert!(
            s.score(&e, &customer(dec!(1)), dec!(0))
                .unwrap_err()
                .limit_hit
        );
        let (e, s) = script(r#"fn segment(c) { let x = "a"; loop { x += x; } }"#);
        assert!(s.segment(&e, &customer(dec!(1))).unwrap_err().limit_hit);
    }

    #[test]
    fn wrong_return_types_and_compile_errors_are_reported_with_positions() {
        let (e, s) = script("fn priority(kase, c) { 42 }");
        let case = CaseView {
            document_no: "X".into(),
            nad: "2026-01-01".parse().unwrap(),
            nad_passed: true,
            days_overdue: 3,
            open_amount: dec!(1),
            open_amount_base: dec!(1),
            currency: arrears_core::money::Currency::parse("EUR").unwrap(),
            proposed: arrears_core::domain::Priority::Low,
        };
        assert!(s
            .priority(&e, &case, &customer(dec!(1)))
            .unwrap_err()
            .message
            .contains("must return"));

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("bad.rhai"),
            "fn score(c, s) {\n  let x = ;\n}\n",
        )
        .unwrap();
        let e = compile(&build_engine(), dir.path(), "bad.rhai")
            .err()
            .unwrap();
        assert_eq!(e.pos.map(|p| p.0), Some(2), "{e}");
        std::fs::write(dir.path().join("arity.rhai"), "\n\nfn score(c) { 1 }\n").unwrap();
        let e = compile(&build_engine(), dir.path(), "arity.rhai")
            .err()
            .unwrap();
        assert_eq!(e.pos, Some((3, 1)), "{e}");
        std::fs::write(dir.path().join("undefined.rhai"), "fn score(c, s) { y }\n").unwrap();
        assert!(
            compile(&build_engine(), dir.path(), "undefined.rhai").is_err(),
            "strict variables"
        );
    }

    #[test]
    fn an_expensive_loop_is_stopped_by_its_time_budget_with_file_and_line() {
        // Few operations per iteration, each on a 16 KB string: the operation limit
        // alone lets this run for seconds.
        let (e, s) = script(
            "fn score(c, s) {\n  let t = \"\"; t.pad(16000, 'x');\n  let n = 0;\n  loop { n += t.to_upper().index_of(\"y\"); }\n}\n",
        );
        let started = Instant::now();
        let err = s.score(&e, &customer(dec!(1)), dec!(0)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10), "{err}");
        assert!(err.limit_hit, "{err}");
        let text = err.to_string();
        // Rhai does not say where a stopped script was; the hook's line is reported.
        assert!(text.starts_with("s.rhai:1: score(): "), "{text}");
        assert!(text.contains("time budget of 50 ms"), "{text}");
    }

    #[test]
    fn a_script_over_budget_in_several_calls_in_a_row_is_paused() {
        let (e, mut s) =
            script("fn segment(c) { let t = \"\"; t.pad(16000, 'x'); loop { t.to_upper(); } }");
        s.budget = Duration::from_millis(5);
        for _ in 0..MAX_OVERRUNS_IN_A_ROW {
            let err = s.segment(&e, &customer(dec!(1))).unwrap_err();
            assert!(err.message.contains("time budget of 5 ms"), "{err}");
        }
        let started = Instant::now();
        let err = s.segment(&e, &customer(dec!(1))).unwrap_err();
        assert!(err.message.starts_with("not called"), "{err}");
        assert!(err.limit_hit);
        assert!(started.elapsed() < Duration::from_millis(5), "{err}");
    }

    #[test]
    fn a_hook_filling_huge_arrays_and_maps_for_every_customer_costs_the_run_little() {
        // Each call runs until a limit stops it; without the pause every customer pays
        // that in full (the issue saw 9-22 s for 300 customers).
        for src in [
            "fn score(c, s) {\n  let a = [];\n  loop { a.push(s); }\n}",
            "fn score(c, s) {\n  let m = #{}; let n = 0;\n  loop { m[`k${n}`] = [n, s]; n += 1; }\n}",
        ] {
            let (e, s) = script(src);
            let started = Instant::now();
            for _ in 0..100 {
                let err = s.score(&e, &customer(dec!(1)), dec!(0)).unwrap_err();
                assert!(err.limit_hit, "{err}");
                assert!(err.to_string().starts_with("s.rhai:1: score(): "), "{err}");
            }
            assert!(started.elapsed() < Duration::from_secs(10), "{src}");
        }
        let (e, s) = script("fn score(c, s) { let a = []; a.pad(20000, s); a.len() }");
        let err = s.score(&e, &customer(dec!(1)), dec!(0)).unwrap_err();
        assert!(err.message.contains("Size of array"), "{err}");
    }

    #[test]
    fn import_is_refused_when_the_rules_are_loaded() {
        let dir = tempfile::tempdir().unwrap();
        for (name, src) in [
            (
                "top.rhai",
                "import \"../../etc/x\" as x;\nfn score(c, s) { s }\n",
            ),
            (
                "inner.rhai",
                "fn score(c, s) {\n  import \"../../etc/x\" as x;\n  s\n}\n",
            ),
        ] {
            std::fs::write(dir.path().join(name), src).unwrap();
            let e = compile(&build_engine(), dir.path(), name).err().unwrap();
            assert!(e.message.contains("import"), "{e}");
            assert!(e.pos.is_some(), "{e}");
        }
    }
}
