//! Rhai scripts that may override segmentation, scoring, case priority and the
//! escalation step. Each file is compiled once at load; every call runs under the
//! engine limits below, so a runaway script is stopped and reported, never hangs.
//!
//! Scripts see read-only views (`Customer`, `Item`, `Promise`, `Payment`, `Case`);
//! amounts are `Decimal` (the engine is built with `decimal` + `no_float`, so a
//! literal such as `1000.50` in a script is an exact decimal too).

use std::path::Path;
use std::sync::Arc;

use rhai::{CallFnOptions, Dynamic, Engine, Scope, AST};
use rust_decimal::Decimal;

use super::RuleError;
use crate::engine::facts::Facts;

/// Hard limits for every script call; generous for real policies, fatal for loops.
pub const MAX_OPERATIONS: u64 = 200_000;
pub const MAX_CALL_LEVELS: usize = 32;
pub const MAX_EXPR_DEPTH: usize = 64;
pub const MAX_STRING_SIZE: usize = 16 * 1024;
pub const MAX_ARRAY_SIZE: usize = 10_000;
pub const MAX_MAP_SIZE: usize = 1_000;

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
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}: {hook}(): {message}")]
pub struct ScriptError {
    pub file: String,
    pub hook: &'static str,
    pub message: String,
    /// True when a safety limit (operations, depth, sizes) stopped the script.
    pub limit_hit: bool,
}

pub fn build_engine() -> Engine {
    let mut e = Engine::new();
    e.set_max_operations(MAX_OPERATIONS)
        .set_max_call_levels(MAX_CALL_LEVELS)
        .set_max_expr_depths(MAX_EXPR_DEPTH, MAX_EXPR_DEPTH)
        .set_max_string_size(MAX_STRING_SIZE)
        .set_max_array_size(MAX_ARRAY_SIZE)
        .set_max_map_size(MAX_MAP_SIZE)
        .set_strict_variables(true);
    // Scripts must not write to the daemon's stdout; route `print`/`debug` to tracing.
    e.on_print(|s| tracing::info!(target: "arrears::script", "{s}"));
    e.on_debug(|s, src, pos| tracing::debug!(target: "arrears::script", ?src, %pos, "{s}"));
    register_views(&mut e);
    e
}

pub struct Script {
    pub file: String,
    pub ast: AST,
    pub hooks: Vec<Hook>,
}

/// Compiles one script file; the error carries file, line and column.
pub fn compile(engine: &Engine, rules_dir: &Path, rel: &str) -> Result<Script, RuleError> {
    let path = rules_dir.join(rel);
    let err = |pos, message: String| RuleError {
        file: path.clone(),
        pos,
        message,
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| err(None, format!("cannot read script: {e}")))?;
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
    Ok(Script {
        file: rel.to_string(),
        ast,
        hooks,
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
        let mut scope = Scope::new();
        let opts = CallFnOptions::new().eval_ast(false).rewind_scope(true);
        engine
            .call_fn_with_options::<Dynamic>(opts, &mut scope, &self.ast, hook.name(), args)
            .map_err(|e| self.error(hook, &e))
    }

    fn error(&self, hook: Hook, e: &rhai::EvalAltResult) -> ScriptError {
        use rhai::EvalAltResult as E;
        let limit_hit = matches!(
            e,
            E::ErrorTooManyOperations(..)
                | E::ErrorStackOverflow(..)
                | E::ErrorDataTooLarge(..)
                | E::ErrorTooManyModules(..)
        );
        ScriptError {
            file: self.file.clone(),
            hook: hook.name(),
            message: e.to_string(),
            limit_hit,
        }
    }

    fn bad_return(&self, hook: Hook, want: &str, got: &Dynamic) -> ScriptError {
        ScriptError {
            file: self.file.clone(),
            hook: hook.name(),
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

#[derive(Debug, Clone)]
pub struct ItemData {
    pub document_no: String,
    pub due_date: String,
    pub days_overdue: i64,
    pub original_amount: Decimal,
    pub open_amount: Decimal,
    /// `open_amount` converted to the base currency with the rule set's rates.
    pub open_amount_base: Decimal,
    pub currency: String,
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
    pub currency: crate::money::Currency,
    /// Priority the ByDesign rule gave, before the script.
    pub proposed: crate::domain::Priority,
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
        .register_get("due_date", |i: &mut ItemData| i.due_date.clone())
        .register_get("days_overdue", |i: &mut ItemData| i.days_overdue)
        .register_get("original_amount", |i: &mut ItemData| i.original_amount)
        .register_get("open_amount", |i: &mut ItemData| i.open_amount)
        .register_get("open_amount_base", |i: &mut ItemData| i.open_amount_base)
        .register_get("currency", |i: &mut ItemData| i.currency.clone())
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
                due_date: "2026-10-01".into(),
                days_overdue: 53,
                original_amount: dec!(100.10),
                open_amount: dec!(0.10),
                open_amount_base: dec!(0.10),
                currency: "EUR".into(),
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
            currency: crate::money::Currency::parse("EUR").unwrap(),
            proposed: crate::domain::Priority::Low,
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
}
