//! Escalation (dunning) decisions: one step per customer per day, at the highest level
//! its dunnable items have reached. Disputed, held and zero items are never dunned.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::engine::case::{add_days, days_between};
use crate::rules::{Ladder, LadderMode};

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
}

/// Dunning state carried from run to run per customer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DunState {
    pub level: usize,
    pub on: Option<NaiveDate>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// 1-based level in the ladder.
    pub level: usize,
    pub resend: bool,
    pub amount: Decimal,
    /// (item id, level that item reached)
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
    let levelled: Vec<(i64, usize, Decimal)> = items
        .iter()
        .filter(|i| !i.excluded && !i.paused && i.amount > Decimal::ZERO)
        .map(|i| {
            (
                i.item_id,
                ladder.level_for_age(days_between(i.due_date, as_of)),
                i.amount,
            )
        })
        .filter(|(_, l, _)| *l > 0)
        .collect();
    let reached = levelled.iter().map(|x| x.1).max().unwrap_or(0);
    let none = |state: DunState, why: String| Outcome {
        decision: None,
        state,
        reached,
        why_not: Some(why),
    };

    // Reminders before the due date make no sense once something is past due: climbing
    // then starts at the first overdue level.
    let first_overdue = ladder
        .levels
        .iter()
        .position(|l| l.overdue_days > 0)
        .map_or(1, |i| i + 1);
    let floor = if reached >= first_overdue {
        first_overdue
    } else {
        1
    };
    let mut target = if reached <= prev.level {
        reached
    } else {
        match ladder.mode {
            LadderMode::JumpToAge => reached,
            LadderMode::OneLevelPerRun => (prev.level + 1).max(floor).min(reached),
        }
    };
    if let Some(t) = script(target) {
        target = t.min(ladder.levels.len());
    }
    let paused = items
        .iter()
        .any(|i| i.paused && !i.excluded && i.amount > Decimal::ZERO);
    if paused && target <= prev.level {
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
    let amount: Decimal = levelled.iter().map(|x| x.2).sum();
    if amount < level.min_amount {
        return none(
            prev,
            format!(
                "dunnable total {amount} below level `{}` minimum {}",
                level.name, level.min_amount
            ),
        );
    }
    let items = levelled.iter().map(|x| (x.0, x.1)).collect();
    if target > prev.level {
        let reason = match (ladder.mode, target == reached) {
            (LadderMode::OneLevelPerRun, false) => format!(
                "oldest item implies level {reached}; one level per run from {}",
                prev.level
            ),
            _ => format!(
                "oldest dunnable item reached level {target} `{}`",
                level.name
            ),
        };
        let state = DunState {
            level: target,
            on: Some(as_of),
        };
        return Outcome {
            decision: Some(Decision {
                level: target,
                resend: false,
                amount,
                items,
                reason,
            }),
            state,
            reached,
            why_not: None,
        };
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
    match resend {
        Ok(reason) => Outcome {
            decision: Some(Decision {
                level: target,
                resend: true,
                amount,
                items,
                reason,
            }),
            state: DunState {
                level: target,
                on: Some(as_of),
            },
            reached,
            why_not: None,
        },
        Err(why) => none(prev, why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Channel, Level};
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
        };
        Ladder {
            name: "t".into(),
            mode,
            tolerance_days: 2,
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
        let items = [item(1, "2026-09-01", dec!(100))];
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
        let items = [item(1, "2026-10-20", dec!(100))]; // 34 days: level 3 `second`
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
        let items = [item(1, "2026-11-05", dec!(100))];
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
}
