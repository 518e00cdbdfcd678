//! Escalation (dunning) decisions: at most one step per customer per day, a grouped
//! message at the highest level its dunnable items have reached. Disputed, held and
//! zero items are never dunned.
//!
//! Each item carries its own level (the level it was last reminded at): a step is
//! due when some item climbs (one level per run, or straight to the level its age
//! implies), or when the highest level is due for a resend. The message names every
//! dunnable item that reached a level, each at its own level; the highest of them
//! picks the channel and template. So an invoice that falls due after its customer
//! reached the top of the ladder is still reminded, from the first level.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::case::{add_days, days_between};
use arrears_rules::{Ladder, LadderMode};

/// The item facts escalation needs.
#[derive(Debug, Clone)]
pub struct DunItem {
    pub item_id: i64,
    pub due_date: NaiveDate,
    /// Open amount in the base currency.
    pub amount: Decimal,
    /// Disputed or under an active hold: excluded.
    pub excluded: bool,
    /// Under a promise to pay not judged yet: not dunned, but the level reached is
    /// kept for when the promise is broken.
    pub paused: bool,
    /// The level this item was last reminded at (0: never).
    pub level: usize,
}

/// Dunning state carried from run to run per customer: the highest level of its
/// last step and the day of that step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DunState {
    pub level: usize,
    pub on: Option<NaiveDate>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// 1-based level in the ladder: the highest of the items', driving channel and
    /// template.
    pub level: usize,
    pub resend: bool,
    pub amount: Decimal,
    /// (item id, the level this step reminds that item at); the run stores it as the
    /// item's level.
    pub items: Vec<(i64, usize)>,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub decision: Option<Decision>,
    pub state: DunState,
    /// Level the ages alone imply (before mode and scripts).
    pub reached: usize,
    /// Why no step was taken, when none was.
    pub why_not: Option<String>,
}

/// Decides the customer's escalation step on `as_of`. `script` may replace the target
/// level (it receives the level the ladder would pick). `broken` is the day the
/// customer's latest broken promise was judged: a promise broken since the last step
/// voids the wait, so the next step (up, or a resend of the level reached) is due now.
pub fn decide(
    ladder: &Ladder,
    as_of: NaiveDate,
    items: &[DunItem],
    prev: DunState,
    broken: Option<NaiveDate>,
    script: impl FnOnce(usize) -> Option<usize>,
) -> Outcome {
    // Reminders before the due date make no sense once something is past due: climbing
    // then starts at the first overdue level.
    let first_overdue = ladder
        .levels
        .iter()
        .position(|l| l.overdue_days > 0)
        .map_or(1, |i| i + 1);
    // (item, level its age implies, its level before, level after this run, amount)
    let levelled: Vec<(i64, usize, usize, usize, Decimal)> = items
        .iter()
        .filter(|i| !i.excluded && !i.paused && i.amount > Decimal::ZERO)
        .filter_map(|i| {
            let age = ladder.level_for_age(days_between(i.due_date, as_of));
            if age == 0 {
                return None;
            }
            let next = if age <= i.level {
                i.level.min(ladder.levels.len())
            } else {
                match ladder.mode {
                    LadderMode::JumpToAge => age,
                    LadderMode::OneLevelPerRun => {
                        let floor = if age >= first_overdue {
                            first_overdue
                        } else {
                            1
                        };
                        (i.level + 1).max(floor).min(age)
                    }
                }
            };
            Some((i.item_id, age, i.level, next, i.amount))
        })
        .collect();
    let reached = levelled.iter().map(|x| x.1).max().unwrap_or(0);
    let climbing = levelled.iter().filter(|x| x.3 > x.2).count();
    let none = |state: DunState, why: String| Outcome {
        decision: None,
        state,
        reached,
        why_not: Some(why),
    };

    let proposed = levelled.iter().map(|x| x.3).max().unwrap_or(0);
    let mut target = proposed;
    let mut scripted = false;
    if let Some(t) = script(target) {
        target = t.min(ladder.levels.len());
        scripted = target != proposed;
    }
    // A script may hold the whole customer back: no item goes above its level.
    let item_level = |next: usize| next.min(target.max(1));
    let paused = items
        .iter()
        .any(|i| i.paused && !i.excluded && i.amount > Decimal::ZERO);
    // The customer's highest level rises: due now (as a single-invoice ladder would).
    // An invoice moving up below it waits for the step interval, so a customer whose
    // invoices fall due on many days is not written to every day.
    let rises = target > prev.level && (climbing > 0 || scripted);
    let next_allowed = prev.on.map(|on| add_days(on, ladder.step_interval_days));
    let up = rises || (climbing > 0 && next_allowed.is_none_or(|n| as_of >= n));
    if paused && !up {
        return none(prev, "waiting for a promise to pay".into());
    }
    if target == 0 {
        // Nothing dunnable is overdue any more: the ladder starts again from the bottom.
        return none(
            DunState {
                level: 0,
                on: prev.on,
            },
            "no dunnable item has reached a level".into(),
        );
    }
    if prev.on == Some(as_of) {
        return none(prev, format!("already escalated on {as_of}"));
    }
    let level = &ladder.levels[target - 1];
    let amount: Decimal = levelled.iter().map(|x| x.4).sum();
    if amount < level.min_amount {
        return none(
            prev,
            format!(
                "dunnable total {amount} below level `{}` minimum {}",
                level.name, level.min_amount
            ),
        );
    }
    let listed: Vec<(i64, usize)> = levelled.iter().map(|x| (x.0, item_level(x.3))).collect();
    let state = DunState {
        level: target,
        on: Some(as_of),
    };
    if up {
        let reason = if !rises {
            format!(
                "{climbing} item(s) reached a new level; sent at the highest, `{}`",
                level.name
            )
        } else {
            match (ladder.mode, target == reached) {
                (LadderMode::OneLevelPerRun, false) if !scripted => format!(
                    "oldest item implies level {reached}; one level per run from {}",
                    levelled.iter().map(|x| x.2).max().unwrap_or(0)
                ),
                _ => format!(
                    "oldest dunnable item reached level {target} `{}`",
                    level.name
                ),
            }
        };
        return Outcome {
            decision: Some(Decision {
                level: target,
                resend: false,
                amount,
                items: listed,
                reason,
            }),
            state,
            reached,
            why_not: None,
        };
    }
    let broken_since = broken.filter(|b| prev.on.is_none_or(|on| *b > on));
    let resend = match (broken_since, level.resend_after_days, prev.on) {
        (Some(b), _, _) => Ok(format!(
            "promise to pay broken (judged {b}) after `{}`: followed up now",
            level.name
        )),
        (None, Some(n), Some(last)) if as_of >= add_days(last, n) => Ok(format!(
            "still unpaid {n} days after the last `{}`",
            level.name
        )),
        (None, Some(n), Some(last)) => Err(format!(
            "level `{}` sent on {last}; resend after {n} days",
            level.name
        )),
        _ => Err(format!(
            "level `{}` already sent; it is not resent",
            level.name
        )),
    };
    // Items that moved up below the highest level wait for the interval, unless the
    // level reached goes out again anyway and takes them along.
    if let Some(n) =
        next_allowed.filter(|_| climbing > 0 && target >= prev.level && resend.is_err())
    {
        return none(
            prev,
            format!(
                "{climbing} item(s) reached a new level; next step on {n} ({} days after the last)",
                ladder.step_interval_days
            ),
        );
    }
    if target < prev.level {
        return none(
            DunState {
                level: target,
                on: prev.on,
            },
            format!(
                "items at level {} were paid or excluded; now at {target}",
                prev.level
            ),
        );
    }
    match resend {
        Ok(reason) => Outcome {
            decision: Some(Decision {
                level: target,
                resend: true,
                amount,
                items: listed,
                reason,
            }),
            state,
            reached,
            why_not: None,
        },
        Err(why) => none(prev, why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrears_rules::{Channel, Level};
    use rust_decimal_macros::dec;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn ladder(mode: LadderMode) -> Ladder {
        let lv = |name: &str, days: i64, resend: Option<i64>, min: Decimal| Level {
            name: name.into(),
            overdue_days: days,
            channel: Channel::Email,
            template: name.into(),
            min_amount: min,
            resend_after_days: resend,
            copy_manager: false,
            event: String::new(),
            fee: Decimal::ZERO,
            fallback: vec![],
            activity: None,
            propose_write_off: None,
        };
        Ladder {
            name: "t".into(),
            mode,
            tolerance_days: 2,
            step_interval_days: 14,
            levels: vec![
                lv("pre_due", -5, None, dec!(0)),
                lv("first", 7, None, dec!(0)),
                lv("second", 21, Some(14), dec!(50)),
                lv("final", 45, Some(7), dec!(0)),
            ],
        }
    }

    fn item(id: i64, due: &str, amount: Decimal) -> DunItem {
        DunItem {
            item_id: id,
            due_date: d(due),
            amount,
            excluded: false,
            paused: false,
            level: 0,
        }
    }

    /// An item already reminded at `level`.
    fn at(level: usize, mut it: DunItem) -> DunItem {
        it.level = level;
        it
    }

    /// What the run stores after a step: each listed item at its new level.
    fn remember(items: &mut [DunItem], o: &Outcome) {
        for (id, level) in o.decision.iter().flat_map(|d| &d.items) {
            if let Some(i) = items.iter_mut().find(|i| i.item_id == *id) {
                i.level = *level;
            }
        }
    }

    #[test]
    fn levels_follow_age_with_tolerance_and_pre_due() {
        let l = ladder(LadderMode::JumpToAge);
        assert_eq!(l.level_for_age(-6), 0);
        assert_eq!(l.level_for_age(-5), 1, "reminder before the due date");
        assert_eq!(l.level_for_age(8), 1, "7 days + 2 tolerance not reached");
        assert_eq!(l.level_for_age(9), 2);
        assert_eq!(l.level_for_age(47), 4);
    }

    #[test]
    fn one_reminder_per_customer_at_the_highest_level() {
        let l = ladder(LadderMode::JumpToAge);
        let items = [
            item(1, "2026-11-01", dec!(10)),
            item(2, "2026-09-01", dec!(100)),
            item(3, "2026-11-26", dec!(5)),
        ];
        let o = decide(
            &l,
            d("2026-11-23"),
            &items,
            DunState::default(),
            None,
            |_| None,
        );
        let dec_ = o.decision.unwrap();
        assert_eq!(dec_.level, 4);
        assert_eq!(
            dec_.items,
            vec![(1, 2), (2, 4), (3, 1)],
            "all reached items listed, each with its own level"
        );
        assert_eq!(dec_.amount, dec!(115));
    }

    #[test]
    fn one_level_per_run_climbs_step_by_step_and_never_twice_a_day() {
        let l = ladder(LadderMode::OneLevelPerRun);
        let mut items = [item(1, "2026-09-01", dec!(100))];
        let mut st = DunState::default();
        let mut levels = vec![];
        for day in [
            "2026-11-20",
            "2026-11-20",
            "2026-11-21",
            "2026-11-22",
            "2026-11-23",
            "2026-11-24",
        ] {
            let o = decide(&l, d(day), &items, st, None, |_| None);
            levels.push(o.decision.as_ref().map(|x| x.level));
            remember(&mut items, &o);
            st = o.state;
        }
        assert_eq!(
            levels,
            vec![Some(2), None, Some(3), Some(4), None, None],
            "starts at the first overdue level, not pre-due"
        );
        let fresh = [item(1, "2026-11-25", dec!(100))];
        let o = decide(
            &l,
            d("2026-11-23"),
            &fresh,
            DunState::default(),
            None,
            |_| None,
        );
        assert_eq!(
            o.decision.unwrap().level,
            1,
            "pre-due reminder while nothing is late"
        );
    }

    #[test]
    fn resend_after_n_days_while_unpaid_and_min_amount() {
        let l = ladder(LadderMode::JumpToAge);
        let items = [at(3, item(1, "2026-10-20", dec!(100)))]; // 34 days: level 3 `second`
        let st = DunState {
            level: 3,
            on: Some(d("2026-11-10")),
        };
        assert!(
            decide(&l, d("2026-11-23"), &items, st, None, |_| None)
                .decision
                .is_none(),
            "13 days < 14"
        );
        let o = decide(&l, d("2026-11-24"), &items, st, None, |_| None);
        assert!(o.decision.as_ref().unwrap().resend);
        let small = [item(1, "2026-10-20", dec!(49.99))];
        let o = decide(
            &l,
            d("2026-11-23"),
            &small,
            DunState::default(),
            None,
            |_| None,
        );
        assert!(o.decision.is_none() && o.why_not.unwrap().contains("below"));
    }

    #[test]
    fn disputed_or_held_items_are_never_dunned_and_paid_up_resets() {
        let l = ladder(LadderMode::JumpToAge);
        let mut it = item(1, "2026-09-01", dec!(100));
        it.excluded = true;
        let o = decide(
            &l,
            d("2026-11-23"),
            &[it],
            DunState {
                level: 4,
                on: Some(d("2026-11-01")),
            },
            None,
            |_| None,
        );
        assert!(o.decision.is_none());
        assert_eq!(o.state.level, 0);
        let o = decide(
            &l,
            d("2026-11-23"),
            &[item(1, "2026-09-01", dec!(0))],
            DunState::default(),
            None,
            |_| None,
        );
        assert!(o.decision.is_none());
    }

    #[test]
    fn a_script_may_pick_the_level() {
        let l = ladder(LadderMode::OneLevelPerRun);
        let items = [item(1, "2026-09-01", dec!(100))];
        let o = decide(
            &l,
            d("2026-11-23"),
            &items,
            DunState::default(),
            None,
            |proposed| {
                assert_eq!(proposed, 2);
                Some(9)
            },
        );
        assert_eq!(o.decision.unwrap().level, 4, "clamped to the ladder");
    }

    #[test]
    fn a_broken_promise_makes_the_next_step_due_at_once() {
        let l = ladder(LadderMode::OneLevelPerRun);
        // 18 days overdue: level 2 `first` (7 + 2 days), which is never resent.
        let items = [at(2, item(1, "2026-11-05", dec!(100)))];
        let st = DunState {
            level: 2,
            on: Some(d("2026-11-15")),
        };
        let o = decide(&l, d("2026-11-23"), &items, st, None, |_| None);
        assert!(o.decision.is_none(), "{:?}", o.why_not);
        // A promise broken before that step does not count again...
        let o = decide(
            &l,
            d("2026-11-23"),
            &items,
            st,
            Some(d("2026-11-14")),
            |_| None,
        );
        assert!(o.decision.is_none());
        // ...one broken since does: the level is sent again now.
        let o = decide(
            &l,
            d("2026-11-23"),
            &items,
            st,
            Some(d("2026-11-20")),
            |_| None,
        );
        let step = o.decision.unwrap();
        assert_eq!((step.level, step.resend), (2, true));
        assert!(
            step.reason.contains("promise to pay broken"),
            "{}",
            step.reason
        );
        assert_eq!(o.state.on, Some(d("2026-11-23")));
        // And never twice the same day.
        let o = decide(
            &l,
            d("2026-11-23"),
            &items,
            o.state,
            Some(d("2026-11-20")),
            |_| None,
        );
        assert!(o.decision.is_none());
    }

    /// Tryton gives a line that falls due later its own dunning from the first level;
    /// so do we, in both modes, even when the customer sits at a top level that is
    /// never resent.
    #[test]
    fn an_item_falling_due_after_the_top_level_is_reminded_at_its_own_level() {
        for mode in [LadderMode::JumpToAge, LadderMode::OneLevelPerRun] {
            let mut l = ladder(mode);
            l.levels[3].resend_after_days = None;
            let a = at(4, item(1, "2026-09-01", dec!(100)));
            let st = DunState {
                level: 4,
                on: Some(d("2026-11-01")),
            };
            // Before B is overdue enough for a level, nothing is sent again.
            let o = decide(
                &l,
                d("2026-11-05"),
                std::slice::from_ref(&a),
                st,
                None,
                |_| None,
            );
            assert!(o.decision.is_none(), "{mode:?}: {:?}", o.why_not);
            let mut items = vec![a, item(2, "2026-11-10", dec!(40))]; // 13 days on 11-23
            let o = decide(&l, d("2026-11-23"), &items, st, None, |_| None);
            let step = o
                .decision
                .clone()
                .unwrap_or_else(|| panic!("{mode:?}: {:?}", o.why_not));
            assert_eq!(
                step.level, 4,
                "{mode:?}: the highest item drives the message"
            );
            assert_eq!(
                step.items,
                vec![(1, 4), (2, 2)],
                "{mode:?}: each at its own level"
            );
            assert!(!step.resend);
            assert_eq!(step.amount, dec!(140));
            remember(&mut items, &o);
            // The next day nothing new: B stays at its level until its age moves on.
            let o = decide(&l, d("2026-11-24"), &items, o.state, None, |_| None);
            assert!(o.decision.is_none(), "{mode:?}");
            // B reaches `second` on 12-03, but the last step was on 11-23: it goes out
            // with the next step, 14 days after that one.
            let o = decide(&l, d("2026-12-04"), &items, o.state, None, |_| None);
            assert!(
                o.why_not
                    .as_deref()
                    .is_some_and(|w| w.contains("next step on 2026-12-07")),
                "{mode:?}: {:?}",
                o.why_not
            );
            let o = decide(&l, d("2026-12-07"), &items, o.state, None, |_| None);
            let step = o.decision.unwrap();
            assert_eq!(step.items, vec![(1, 4), (2, 3)], "{mode:?}");
        }
    }

    /// Invoices falling due on consecutive days: the customer is written to when its
    /// highest level rises, and otherwise at most once per step interval.
    #[test]
    fn invoices_falling_due_day_after_day_do_not_bring_a_letter_a_day() {
        let l = ladder(LadderMode::JumpToAge);
        let mut items: Vec<DunItem> = (0..20)
            .map(|k| item(k, &format!("2026-10-{:02}", k + 1), dec!(100)))
            .collect();
        let mut st = DunState::default();
        let mut sent = vec![];
        for day in 1..=30 {
            let as_of = d("2026-10-31") + chrono::Days::new(day);
            let o = decide(&l, as_of, &items, st, None, |_| None);
            if let Some(step) = &o.decision {
                sent.push((as_of.to_string(), step.level));
            }
            remember(&mut items, &o);
            st = o.state;
        }
        let want: Vec<(String, usize)> = [
            ("2026-11-01", 3), // the first step: the oldest is at `second`
            ("2026-11-15", 3), // the others moved up meanwhile: 14 days later
            ("2026-11-17", 4), // the oldest reaches `final`: at once
            ("2026-11-24", 4), // `final` is resent after 7 days, with the rest
        ]
        .iter()
        .map(|(d, l)| (d.to_string(), *l))
        .collect();
        assert_eq!(sent, want, "not a letter a day");
        assert!(
            items.iter().all(|i| i.level >= 3),
            "every invoice reached `second`"
        );
    }

    #[test]
    fn a_paid_top_item_leaves_the_rest_at_their_own_levels() {
        let l = ladder(LadderMode::JumpToAge);
        // A (level 4) paid; B was reminded at 2 with it and has not moved on.
        let items = [at(2, item(2, "2026-11-10", dec!(40)))];
        let st = DunState {
            level: 4,
            on: Some(d("2026-11-20")),
        };
        let o = decide(&l, d("2026-11-23"), &items, st, None, |_| None);
        assert!(o.decision.is_none());
        assert_eq!(o.state.level, 2, "the customer is now as high as its items");
    }
}
