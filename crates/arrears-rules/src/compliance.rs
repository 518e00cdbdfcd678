//! Compliance guard: may Arrears contact this debtor now, on this channel?
//!
//! Every contact — an e-mail, an SMS, a portal message, a letter, or a call task
//! handed to a collector — is checked first. The answer is [`Decision::Allow`],
//! [`Decision::Defer`] until a given instant, or [`Decision::Refuse`], and the two
//! last always carry a reason meant to be recorded with the contact attempt.
//!
//! # The policy file (`rules/compliance.yaml`)
//!
//! ```yaml
//! version: 1
//! jurisdictions:
//!   - name: de
//!     countries: [DE, AT]          # ISO 3166-1 alpha-2
//!     timezone: Europe/Berlin      # IANA name; used when the customer has none
//!     hours:                       # local time of the customer
//!       mon-fri: "08:00-20:00"
//!       sat: ["09:00-12:00", "13:00-14:00"]   # or "09:00-12:00, 13:00-14:00"
//!     hours_apply_to: [call, sms]  # the default
//!     holidays: [2026-12-25, 2026-12-26]
//!     limits:
//!       call: { max: 3, window_days: 7 }
//!       sms:  { max: 3, window_days: 7 }
//!       all:  { max: 6, window_days: 7 }  # every channel together
//!     contact_on_disputed: false   # the default
//!   - name: rest
//!     default: true                # any country no other jurisdiction lists
//!     timezone: UTC
//!     hours: { mon-fri: "09:00-18:00" }
//! ```
//!
//! | key | meaning | default |
//! | --- | --- | --- |
//! | `version` | schema version; only `1` exists | required |
//! | `name` | names the jurisdiction in reasons and errors; unique | required |
//! | `countries` | ISO 3166-1 alpha-2 codes; a country may be in one jurisdiction only | required unless `default` |
//! | `default` | this jurisdiction covers every country no other one lists; at most one | `false` |
//! | `timezone` | IANA name, or a list of them (see below) | required |
//! | `hours` | weekday (`mon`…`sun`) or weekday range (`mon-fri`, `fri-mon`) → one or more `HH:MM-HH:MM` ranges; end `24:00` = midnight | none |
//! | `hours_apply_to` | channels (`email`, `sms`, `letter`, `portal`, `call`) bound to `hours` and `holidays` | `[call, sms]` |
//! | `holidays` | `YYYY-MM-DD` dates without time-bound contact | none |
//! | `limits` | per channel, or `all`: at most `max` contacts in any `window_days` × 24 h | none |
//! | `contact_on_disputed` | whether a contact about disputed items only is allowed | `false` |
//!
//! Hours are read in the **customer's** local time: the customer's own time zone
//! when it is known, otherwise the jurisdiction's `timezone`. A range starts at its
//! first minute and ends just before its end (`08:00-20:00` allows 19:59, not 20:00).
//! A weekday that no key covers allows no time-bound contact at all, and so does a
//! holiday. Ranges may not overlap and may not cross midnight (write `22:00-24:00`
//! on one day and `00:00-02:00` on the next). Channels not in `hours_apply_to` may be
//! sent at any time, holidays included. A channel in `hours_apply_to` of a
//! jurisdiction with no `hours` is never allowed.
//!
//! `timezone` may also be a list, for countries that span several zones: a customer
//! whose own zone is unknown is then contacted only when the hours allow it in
//! **every** listed zone (the first one is named in reasons). A customer whose zone
//! is known is judged in that zone alone.
//!
//! On clock changes: a range that starts at a local time skipped by a spring-forward
//! opens at the first instant after the gap (02:30 on a day that jumps from 02:00 to
//! 03:00 opens at 03:00); a start that occurs twice on a fall-back day opens at the
//! first occurrence.
//!
//! # What is checked, in order
//!
//! 1. The customer is marked do-not-contact → refuse.
//! 2. The customer opted out of this channel → refuse (the caller tries its next channel).
//! 3. The contact is only about disputed items and `contact_on_disputed` is false →
//!    refuse. (When only some items are disputed the caller leaves them out instead.)
//! 4. A `limits` entry of the channel, or `all`, is reached → defer until enough past
//!    contacts have left the window to free one slot. A contact counts while it lies in
//!    (now − window, now]; only contacts actually made are passed in.
//! 5. The channel is in `hours_apply_to` and the moment (now, or the end of the limit
//!    wait) is outside the hours or on a holiday → defer to the next allowed start.
//!
//! A time-bound contact for which no allowed moment exists within 14 days of that
//! moment is refused, so a policy with no hours for a channel (or a long run of
//! holidays) is visible in the reasons instead of deferring forever. A customer time
//! zone that is not an IANA name refuses time-bound contacts (the customer's local
//! time is unknown); an empty one counts as absent.
//!
//! # Errors
//!
//! [`Policy::from_yaml`] reports every problem it finds, not just the first: a
//! misspelt key or a YAML error as `file:line:column: message` (one at a time, as
//! the YAML parser stops there), and each bad value as `file: path: message`, where
//! the path names the jurisdiction and the field, e.g.
//! `jurisdictions[de].hours.mon-fri`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone,
    Timelike, Utc, Weekday,
};
use chrono_tz::Tz;
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use thiserror::Error;

/// How far ahead an allowed moment is looked for before a contact is refused.
pub const SEARCH_HORIZON_DAYS: i64 = 14;

/// The only policy schema this build reads.
pub const POLICY_VERSION: u32 = 1;

/// Longest accepted `window_days`: beyond a year a limit is surely a typo.
const MAX_WINDOW_DAYS: u32 = 366;

/// A way of reaching a debtor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Sms,
    Letter,
    Portal,
    /// A call task for a collector.
    Call,
}

impl Channel {
    pub const ALL: [Channel; 5] = [
        Channel::Email,
        Channel::Sms,
        Channel::Letter,
        Channel::Portal,
        Channel::Call,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Letter => "letter",
            Channel::Portal => "portal",
            Channel::Call => "call",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown channel `{0}` (expected one of email, sms, letter, portal, call)")]
pub struct UnknownChannel(pub String);

impl FromStr for Channel {
    type Err = UnknownChannel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Channel::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownChannel(s.to_owned()))
    }
}

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ComplianceError {
    #[error("{file}: cannot read: {message}")]
    Read { file: String, message: String },
    /// YAML syntax, a misspelt key or a value of the wrong type, where the parser stopped.
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// A parser error that came without a position.
    #[error("{file}: {message}")]
    Structure { file: String, message: String },
    /// A value that parsed but is not valid, e.g. `jurisdictions[de].hours.sat`.
    #[error("{file}: {path}: {message}")]
    Field {
        file: String,
        path: String,
        message: String,
    },
}

/// A contact the caller is about to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRequest {
    pub channel: Channel,
    /// ISO 3166-1 alpha-2 code of the customer's country, in any case.
    pub country: String,
    /// IANA name of the customer's own time zone, when known.
    pub time_zone: Option<String>,
    pub do_not_contact: bool,
    pub opted_out: Vec<Channel>,
    /// Every item the contact is about is disputed.
    pub only_disputed_items: bool,
}

impl ContactRequest {
    /// A contact with no flags set and no customer time zone.
    pub fn new(channel: Channel, country: impl Into<String>) -> Self {
        ContactRequest {
            channel,
            country: country.into(),
            time_zone: None,
            do_not_contact: false,
            opted_out: Vec::new(),
            only_disputed_items: false,
        }
    }
}

/// A contact that was actually made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PastContact {
    pub channel: Channel,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Defer {
        until: DateTime<Utc>,
        reason: String,
    },
    Refuse {
        reason: String,
    },
}

impl Decision {
    pub fn reason(&self) -> Option<&str> {
        match self {
            Decision::Allow => None,
            Decision::Defer { reason, .. } | Decision::Refuse { reason } => Some(reason),
        }
    }
}

/// A validated compliance policy.
#[derive(Debug, Clone)]
pub struct Policy {
    jurisdictions: Vec<Jurisdiction>,
    by_country: BTreeMap<String, usize>,
    default: Option<usize>,
}

/// The rules of one jurisdiction, as validated from the policy file.
#[derive(Debug, Clone)]
pub struct Jurisdiction {
    name: String,
    countries: Vec<String>,
    is_default: bool,
    /// Never empty; the first one is the jurisdiction's main zone.
    timezones: Vec<Tz>,
    /// Indexed by days from Monday; sorted and non-overlapping.
    week: [Vec<Span>; 7],
    hours_apply_to: BTreeSet<Channel>,
    holidays: BTreeSet<NaiveDate>,
    limits: BTreeMap<Channel, Limit>,
    all_limit: Option<Limit>,
    contact_on_disputed: bool,
}

/// `[start, end)` in minutes from local midnight; `end` may be 1440.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Span {
    start: u32,
    end: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Limit {
    max: u32,
    window_days: u32,
}

impl Policy {
    /// Reads and validates a policy file; errors name `path` as given.
    pub fn load(path: &Path) -> Result<Policy, Vec<ComplianceError>> {
        let file = path.display().to_string();
        use crate::guard::SourceError;
        match crate::guard::read_yaml(path) {
            Ok(text) => Policy::from_yaml(&text, &file),
            Err(SourceError::Read(e)) => Err(vec![ComplianceError::Read {
                file,
                message: e.to_string(),
            }]),
            Err(e) => Err(vec![match e.pos() {
                Some((line, column)) => ComplianceError::Syntax {
                    file,
                    line,
                    column,
                    message: e.to_string(),
                },
                None => ComplianceError::Structure {
                    file,
                    message: e.to_string(),
                },
            }]),
        }
    }

    /// Parses and validates a policy; `file` is only used to name it in errors.
    pub fn from_yaml(text: &str, file: &str) -> Result<Policy, Vec<ComplianceError>> {
        let raw = match serde_yaml::from_str::<Option<RawPolicy>>(text) {
            Ok(Some(raw)) => raw,
            Ok(None) => {
                return Err(vec![ComplianceError::Structure {
                    file: file.to_owned(),
                    message: "the file is empty; expected `version: 1` and `jurisdictions`".into(),
                }])
            }
            Err(e) => return Err(vec![syntax_error(file, &e)]),
        };
        let mut errs = Errors {
            file,
            list: Vec::new(),
        };
        let policy = compile(raw, &mut errs);
        if errs.list.is_empty() {
            Ok(policy)
        } else {
            Err(errs.list)
        }
    }

    /// The jurisdiction whose rules apply to a customer in `country`.
    pub fn jurisdiction_for(&self, country: &str) -> Option<&Jurisdiction> {
        let code = country.trim().to_ascii_uppercase();
        self.by_country
            .get(&code)
            .copied()
            .or(self.default)
            .map(|i| &self.jurisdictions[i])
    }

    pub fn jurisdictions(&self) -> &[Jurisdiction] {
        &self.jurisdictions
    }

    /// Decides whether `contact` may be made at `now`, given the contacts made so
    /// far with this customer (`history`, in any order).
    pub fn check(
        &self,
        contact: &ContactRequest,
        history: &[PastContact],
        now: DateTime<Utc>,
    ) -> Decision {
        let channel = contact.channel;
        if contact.do_not_contact {
            return refuse("customer is marked do-not-contact".into());
        }
        if contact.opted_out.contains(&channel) {
            return refuse(format!("customer opted out of {channel} contact"));
        }
        let Some(j) = self.jurisdiction_for(&contact.country) else {
            return refuse(format!(
                "no jurisdiction covers country `{}` and the policy has no default one",
                contact.country.trim()
            ));
        };
        if contact.only_disputed_items && !j.contact_on_disputed {
            return refuse(format!(
                "every item concerned is disputed and jurisdiction {} does not allow contact \
                 on disputed items (contact_on_disputed: false)",
                j.name
            ));
        }

        let wait = j.limit_wait(channel, history, now);
        let from = wait.as_ref().map_or(now, |w| w.0);
        if !j.hours_apply_to.contains(&channel) {
            return match wait {
                Some((until, reason)) => Decision::Defer { until, reason },
                None => Decision::Allow,
            };
        }

        let customer_zone = contact.time_zone.as_deref().map(str::trim);
        let zones: Vec<Tz> = match customer_zone {
            Some(name) if !name.is_empty() => match name.parse::<Tz>() {
                Ok(tz) => vec![tz],
                Err(_) => {
                    return refuse(format!(
                        "customer time zone `{name}` is not an IANA time zone name, so the \
                         customer's local time is unknown and {channel} contact cannot be \
                         timed"
                    ))
                }
            },
            _ => j.timezones.clone(),
        };
        if j.week.iter().all(Vec::is_empty) {
            return refuse(format!(
                "jurisdiction {} has no contact hours, and its hours apply to {channel}",
                j.name
            ));
        }
        let horizon_end = from + TimeDelta::days(SEARCH_HORIZON_DAYS);
        let Some(at) = j.next_allowed(&zones, from, horizon_end) else {
            return refuse(format!(
                "no allowed time for {channel} contact in jurisdiction {} ({}) within {} days \
                 after {}; check its hours and holidays",
                j.name,
                zone_names(&zones),
                SEARCH_HORIZON_DAYS,
                utc_text(from)
            ));
        };
        let hours_reason = (at != from).then(|| j.why_not_allowed(&zones, from, at));
        match (wait, hours_reason) {
            (None, None) => Decision::Allow,
            (Some((_, limit)), None) => Decision::Defer {
                until: at,
                reason: limit,
            },
            (None, Some(hours)) => Decision::Defer {
                until: at,
                reason: hours,
            },
            (Some((_, limit)), Some(hours)) => Decision::Defer {
                until: at,
                reason: format!("{limit}; then {hours}"),
            },
        }
    }
}

impl Jurisdiction {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn countries(&self) -> &[String] {
        &self.countries
    }

    pub fn is_default(&self) -> bool {
        self.is_default
    }

    /// IANA name of the jurisdiction's main zone (the first of `timezone`).
    pub fn timezone_name(&self) -> &'static str {
        self.timezones[0].name()
    }

    /// When a limit is reached: the instant one slot frees, and why.
    fn limit_wait(
        &self,
        channel: Channel,
        history: &[PastContact],
        now: DateTime<Utc>,
    ) -> Option<(DateTime<Utc>, String)> {
        let checks = [
            (
                self.limits.get(&channel),
                Some(channel),
                format!("{channel} contacts"),
            ),
            (
                self.all_limit.as_ref(),
                None,
                "contacts over all channels".to_owned(),
            ),
        ];
        let mut until: Option<DateTime<Utc>> = None;
        let mut reasons = Vec::new();
        for (limit, only, what) in checks {
            let Some(limit) = limit else { continue };
            let window = TimeDelta::days(limit.window_days.into());
            let mut counted: Vec<DateTime<Utc>> = history
                .iter()
                .filter(|c| only.is_none_or(|ch| c.channel == ch))
                .map(|c| c.at)
                .filter(|&at| at > now - window && at <= now)
                .collect();
            let max = limit.max as usize;
            if counted.len() < max {
                continue;
            }
            counted.sort_unstable();
            // A slot frees when the count drops below max, i.e. once the
            // (count - max + 1) oldest have left; with exactly max counted that is
            // the oldest one. Each leaves at its instant + window, as the window's
            // old end is open.
            let frees = counted[counted.len() - max] + window;
            until = Some(until.map_or(frees, |u| u.max(frees)));
            reasons.push(format!(
                "limit reached: {} {what} in the last {} (jurisdiction {} allows {}); \
                 a slot frees at {}",
                counted.len(),
                days_text(limit.window_days),
                self.name,
                limit.max,
                utc_text(frees)
            ));
        }
        until.map(|u| (u, reasons.join("; ")))
    }

    fn allowed_in(&self, tz: Tz, t: DateTime<Utc>) -> bool {
        let local = t.with_timezone(&tz);
        if self.holidays.contains(&local.date_naive()) {
            return false;
        }
        let secs = local.num_seconds_from_midnight();
        self.week[day_index(local.weekday())]
            .iter()
            .any(|s| s.start * 60 <= secs && secs < s.end * 60)
    }

    /// The first instant at or after `from`, and not after `horizon_end`, that the
    /// hours allow in every zone of `zones`.
    fn next_allowed(
        &self,
        zones: &[Tz],
        from: DateTime<Utc>,
        horizon_end: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        // Each zone's answer is its earliest allowed instant from `t`, so `t` never
        // passes the earliest instant all zones allow; a pass in which no zone moves
        // `t` has found it. Every move lands on a range start before the horizon,
        // which bounds the passes; the cap is only a guard against a hang.
        const MAX_PASSES: usize = 10_000;
        let mut t = from;
        for _ in 0..MAX_PASSES {
            let mut moved = false;
            for &tz in zones {
                let next = self.next_allowed_in(tz, t, horizon_end)?;
                if next > t {
                    t = next;
                    moved = true;
                }
            }
            if !moved {
                return Some(t);
            }
        }
        None
    }

    fn next_allowed_in(
        &self,
        tz: Tz,
        from: DateTime<Utc>,
        horizon_end: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let first_day = from.with_timezone(&tz).date_naive();
        // The horizon's local date is at most one day past first_day + horizon,
        // whatever the offsets do in between.
        let days = usize::try_from(SEARCH_HORIZON_DAYS + 2).unwrap_or(16);
        for day in first_day.iter_days().take(days) {
            for span in &self.week[day_index(day.weekday())] {
                let start = resolve_local(tz, day.and_time(span.start_time()));
                let candidate = start.max(from);
                if candidate > horizon_end {
                    return None;
                }
                // A range that lies wholly inside a spring-forward gap resolves to a
                // start outside itself, one that already ended gives `from`, and a
                // holiday allows nothing: only a candidate the hours really allow
                // will do.
                if self.allowed_in(tz, candidate) {
                    return Some(candidate);
                }
            }
        }
        None
    }

    fn why_not_allowed(&self, zones: &[Tz], at: DateTime<Utc>, next: DateTime<Utc>) -> String {
        let tz = zones
            .iter()
            .copied()
            .find(|&tz| !self.allowed_in(tz, at))
            .unwrap_or(zones[0]);
        let local = at.with_timezone(&tz);
        let next_local = next.with_timezone(&tz).format("%Y-%m-%d %H:%M %a");
        let mut text = if self.holidays.contains(&local.date_naive()) {
            format!(
                "public holiday {} in jurisdiction {} ({tz}: {}; next {next_local})",
                local.date_naive(),
                self.name,
                local.format("%a %H:%M")
            )
        } else {
            format!(
                "outside contact hours of jurisdiction {} in {tz} ({}; next {next_local})",
                self.name,
                local.format("%a %H:%M")
            )
        };
        if zones.len() > 1 {
            text.push_str(&format!(
                " (customer time zone unknown, so every zone of jurisdiction {} must allow it: {})",
                self.name,
                zone_names(zones)
            ));
        }
        text
    }
}

impl Span {
    fn start_time(self) -> NaiveTime {
        NaiveTime::from_hms_opt(self.start / 60, self.start % 60, 0).unwrap_or(NaiveTime::MIN)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

/// The UTC instant of a local wall-clock time, for times a clock change skipped or
/// repeated too.
fn resolve_local(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(earlier, _) => earlier.with_timezone(&Utc),
        LocalResult::None => end_of_gap(tz, local),
    }
}

/// The first instant whose local time is at or past `local`, which lies in a gap:
/// that is the instant the clock jumped.
fn end_of_gap(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    // UTC offsets stay within ±14 h, so 36 h either side brackets the jump; local
    // time only moves forward across a gap, which makes bisection sound. Whole
    // seconds keep the answer exact, as transitions fall on whole seconds.
    let mut lo = local.and_utc() - TimeDelta::hours(36);
    let mut hi = local.and_utc() + TimeDelta::hours(36);
    while (hi - lo).num_seconds() > 1 {
        let mid = lo + TimeDelta::seconds((hi - lo).num_seconds() / 2);
        if mid.with_timezone(&tz).naive_local() >= local {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

fn day_index(d: Weekday) -> usize {
    d.num_days_from_monday() as usize
}

fn refuse(reason: String) -> Decision {
    Decision::Refuse { reason }
}

fn utc_text(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn days_text(n: u32) -> String {
    if n == 1 {
        "1 day".into()
    } else {
        format!("{n} days")
    }
}

fn zone_names(zones: &[Tz]) -> String {
    zones
        .iter()
        .map(|z| z.name())
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------
// Loading and validation

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    version: Option<u32>,
    #[serde(default)]
    jurisdictions: Vec<RawJurisdiction>,
}

// Channel names, weekdays, times, zones and dates stay strings here: as serde types
// the first bad one would stop the parse, and every error should be reported at once.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJurisdiction {
    name: String,
    #[serde(default)]
    default: bool,
    #[serde(default)]
    countries: Vec<String>,
    timezone: StringOrList,
    #[serde(default)]
    hours: BTreeMap<String, StringOrList>,
    hours_apply_to: Option<Vec<String>>,
    #[serde(default)]
    holidays: Vec<String>,
    #[serde(default)]
    limits: BTreeMap<String, RawLimit>,
    #[serde(default)]
    contact_on_disputed: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    max: u32,
    window_days: u32,
}

/// A value written either as one string or as a list of strings.
struct StringOrList(Vec<String>);

impl<'de> Deserialize<'de> for StringOrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<String>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(vec![v.to_owned()])
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(out)
            }
        }
        d.deserialize_any(V).map(StringOrList)
    }
}

struct Errors<'a> {
    file: &'a str,
    list: Vec<ComplianceError>,
}

impl Errors<'_> {
    fn field(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.list.push(ComplianceError::Field {
            file: self.file.to_owned(),
            path: path.into(),
            message: message.into(),
        });
    }
}

fn syntax_error(file: &str, e: &serde_yaml::Error) -> ComplianceError {
    let text = e.to_string();
    // serde_yaml appends "at line X column Y"; the position goes up front instead,
    // as in every other rules error.
    let message = text.split(" at line ").next().unwrap_or(&text).to_owned();
    match e.location() {
        Some(l) => ComplianceError::Syntax {
            file: file.to_owned(),
            line: l.line(),
            column: l.column(),
            message,
        },
        None => ComplianceError::Structure {
            file: file.to_owned(),
            message,
        },
    }
}

fn compile(raw: RawPolicy, errs: &mut Errors<'_>) -> Policy {
    match raw.version {
        None => errs.field(
            "version",
            format!("missing; write `version: {POLICY_VERSION}`"),
        ),
        Some(POLICY_VERSION) => {}
        Some(v) => errs.field(
            "version",
            format!("unsupported version {v} (this build reads version {POLICY_VERSION})"),
        ),
    }
    if raw.jurisdictions.is_empty() {
        errs.field(
            "jurisdictions",
            "no jurisdictions: every contact would be refused",
        );
    }

    let mut policy = Policy {
        jurisdictions: Vec::new(),
        by_country: BTreeMap::new(),
        default: None,
    };
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut country_owner: BTreeMap<String, String> = BTreeMap::new();
    for (i, rj) in raw.jurisdictions.into_iter().enumerate() {
        let at = if rj.name.trim().is_empty() {
            format!("jurisdictions[#{i}]")
        } else {
            format!("jurisdictions[{}]", rj.name.trim())
        };
        if rj.name.trim().is_empty() {
            errs.field(format!("{at}.name"), "must not be empty");
        } else if let Some(first) = names.get(rj.name.trim()) {
            errs.field(
                format!("{at}.name"),
                format!("`{}` is already the name of {first}", rj.name.trim()),
            );
        } else {
            names.insert(rj.name.trim().to_owned(), format!("jurisdictions[#{i}]"));
        }

        if rj.default {
            match policy.default {
                Some(d) => errs.field(
                    format!("{at}.default"),
                    format!(
                        "jurisdictions[{}] is already the default; only one jurisdiction may be",
                        policy.jurisdictions[d].name
                    ),
                ),
                None => policy.default = Some(i),
            }
        }

        let idx = policy.jurisdictions.len();
        let j = compile_jurisdiction(rj, &at, errs);
        for code in &j.countries {
            match country_owner.get(code) {
                Some(owner) => errs.field(
                    format!("{at}.countries"),
                    format!("{code} is already listed in {owner}"),
                ),
                None => {
                    country_owner.insert(code.clone(), at.clone());
                    policy.by_country.insert(code.clone(), idx);
                }
            }
        }
        policy.jurisdictions.push(j);
    }
    policy
}

fn compile_jurisdiction(rj: RawJurisdiction, at: &str, errs: &mut Errors<'_>) -> Jurisdiction {
    let mut countries = Vec::new();
    for c in &rj.countries {
        let code = c.trim().to_ascii_uppercase();
        if !is_iso_country(&code) {
            let hint = match code.as_str() {
                "UK" => " (the United Kingdom is GB)",
                "EL" => " (Greece is GR)",
                _ => "",
            };
            errs.field(
                format!("{at}.countries"),
                format!("`{c}` is not an ISO 3166-1 alpha-2 country code{hint}"),
            );
        } else if countries.contains(&code) {
            errs.field(format!("{at}.countries"), format!("{code} is listed twice"));
        } else {
            countries.push(code);
        }
    }
    if rj.countries.is_empty() && !rj.default {
        errs.field(
            format!("{at}.countries"),
            "a jurisdiction that is not the default must list at least one country",
        );
    }

    let mut timezones = Vec::new();
    if rj.timezone.0.is_empty() {
        errs.field(format!("{at}.timezone"), "must name at least one time zone");
    }
    for name in &rj.timezone.0 {
        match name.trim().parse::<Tz>() {
            Ok(tz) if timezones.contains(&tz) => {
                errs.field(format!("{at}.timezone"), format!("{name} is listed twice"))
            }
            Ok(tz) => timezones.push(tz),
            Err(_) => errs.field(
                format!("{at}.timezone"),
                format!("unknown time zone `{name}` (expected an IANA name such as Europe/Berlin)"),
            ),
        }
    }
    if timezones.is_empty() {
        // Keeps the rest checkable; the policy is rejected for the error above anyway.
        timezones.push(Tz::UTC);
    }

    let week = compile_hours(&rj.hours, at, errs);

    let hours_apply_to = match &rj.hours_apply_to {
        None => BTreeSet::from([Channel::Call, Channel::Sms]),
        Some(list) => {
            let mut set = BTreeSet::new();
            for name in list {
                match name.trim().parse::<Channel>() {
                    Ok(ch) if !set.insert(ch) => errs.field(
                        format!("{at}.hours_apply_to"),
                        format!("{ch} is listed twice"),
                    ),
                    Ok(_) => {}
                    Err(e) => errs.field(format!("{at}.hours_apply_to"), e.to_string()),
                }
            }
            set
        }
    };

    let mut holidays = BTreeSet::new();
    for (k, text) in rj.holidays.iter().enumerate() {
        match NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
            Ok(d) => {
                holidays.insert(d);
            }
            Err(_) => errs.field(
                format!("{at}.holidays[{k}]"),
                format!("`{text}` is not a date (YYYY-MM-DD)"),
            ),
        }
    }

    let mut limits = BTreeMap::new();
    let mut all_limit = None;
    for (key, rl) in &rj.limits {
        let path = format!("{at}.limits.{key}");
        let mut ok = true;
        if rl.max == 0 {
            errs.field(
                format!("{path}.max"),
                "must be at least 1; to never use a channel, leave it out of the caller's channels",
            );
            ok = false;
        }
        if rl.window_days == 0 || rl.window_days > MAX_WINDOW_DAYS {
            errs.field(
                format!("{path}.window_days"),
                format!("must be from 1 to {MAX_WINDOW_DAYS}"),
            );
            ok = false;
        }
        let limit = Limit {
            max: rl.max,
            window_days: rl.window_days,
        };
        if key.trim() == "all" {
            if ok {
                all_limit = Some(limit);
            }
            continue;
        }
        match key.trim().parse::<Channel>() {
            Ok(ch) if ok => {
                limits.insert(ch, limit);
            }
            Ok(_) => {}
            Err(_) => errs.field(
                path,
                format!(
                    "unknown channel `{key}` (expected one of email, sms, letter, portal, call, \
                     or all)"
                ),
            ),
        }
    }

    Jurisdiction {
        name: rj.name.trim().to_owned(),
        countries,
        is_default: rj.default,
        timezones,
        week,
        hours_apply_to,
        holidays,
        limits,
        all_limit,
        contact_on_disputed: rj.contact_on_disputed,
    }
}

fn compile_hours(
    hours: &BTreeMap<String, StringOrList>,
    at: &str,
    errs: &mut Errors<'_>,
) -> [Vec<Span>; 7] {
    // Each span remembers the key it came from, so an overlap can name both keys.
    let mut week: [Vec<(Span, &str)>; 7] = Default::default();
    for (key, value) in hours {
        let path = format!("{at}.hours.{key}");
        let days = match parse_day_key(key) {
            Ok(days) => days,
            Err(msg) => {
                errs.field(path, msg);
                continue;
            }
        };
        let pieces: Vec<&str> = value
            .0
            .iter()
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .collect();
        if pieces.iter().all(|p| p.is_empty()) {
            errs.field(
                &path,
                "no time range; leave the day out to allow no contact on it",
            );
        }
        for piece in pieces.into_iter().filter(|p| !p.is_empty()) {
            match parse_span(piece) {
                Ok(span) => {
                    for d in &days {
                        week[day_index(*d)].push((span, key.as_str()));
                    }
                }
                Err(msg) => errs.field(&path, msg),
            }
        }
    }

    // One message per pair of clashing ranges, listing the days, rather than one
    // per day for a `mon-fri` key.
    let mut clashes: BTreeMap<(&str, Span, &str, Span), Vec<Weekday>> = BTreeMap::new();
    let mut out: [Vec<Span>; 7] = Default::default();
    for (i, spans) in week.iter_mut().enumerate() {
        spans.sort();
        // Compared with the range reaching furthest so far, not just the previous
        // one: 08:00-12:00 also overlaps 11:30-13:00 after a 10:00-11:00 between them.
        let mut furthest: Option<(Span, &str)> = None;
        for &(b, kb) in spans.iter() {
            if let Some((a, ka)) = furthest {
                if a.end > b.start {
                    clashes
                        .entry((ka, a, kb, b))
                        .or_default()
                        .push(weekday_from_index(i));
                }
            }
            if furthest.is_none_or(|(a, _)| b.end > a.end) {
                furthest = Some((b, kb));
            }
        }
        out[i] = spans.iter().map(|(s, _)| *s).collect();
    }
    for ((ka, a, kb, b), days) in clashes {
        let days: Vec<String> = days.iter().map(|d| weekday_name(*d).to_owned()).collect();
        let from = if ka == kb {
            String::new()
        } else {
            format!(" (from `{ka}` and `{kb}`)")
        };
        errs.field(
            format!("{at}.hours.{kb}"),
            format!("ranges {a} and {b} overlap on {}{from}", days.join(", ")),
        );
    }
    out
}

const WEEKDAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Mon),
    ("tue", Weekday::Tue),
    ("wed", Weekday::Wed),
    ("thu", Weekday::Thu),
    ("fri", Weekday::Fri),
    ("sat", Weekday::Sat),
    ("sun", Weekday::Sun),
];

fn weekday_from_index(i: usize) -> Weekday {
    WEEKDAYS[i % 7].1
}

fn weekday_name(d: Weekday) -> &'static str {
    WEEKDAYS[day_index(d)].0
}

/// `mon`, or a range such as `mon-fri`; `fri-mon` wraps over the weekend.
fn parse_day_key(key: &str) -> Result<Vec<Weekday>, String> {
    let day = |s: &str| {
        let s = s.trim().to_ascii_lowercase();
        WEEKDAYS
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, d)| *d)
            .ok_or_else(|| {
                format!(
                    "unknown weekday `{}` (use mon, tue, wed, thu, fri, sat, sun, or a range \
                     such as mon-fri)",
                    s
                )
            })
    };
    let (first, last) = match key.split_once('-') {
        Some((a, b)) => (day(a)?, day(b)?),
        None => (day(key)?, day(key)?),
    };
    let mut days = vec![first];
    let mut d = first;
    while d != last {
        d = d.succ();
        days.push(d);
    }
    Ok(days)
}

fn parse_span(text: &str) -> Result<Span, String> {
    let Some((a, b)) = text.split_once('-') else {
        return Err(format!(
            "`{text}` is not a time range (write HH:MM-HH:MM, e.g. 08:00-20:00)"
        ));
    };
    let clock = |s: &str| {
        parse_clock(s.trim()).ok_or_else(|| {
            format!(
                "`{}` is not a time of day (HH:MM from 00:00 to 24:00)",
                s.trim()
            )
        })
    };
    let (start, end) = (clock(a)?, clock(b)?);
    if start == end {
        return Err(format!("range `{text}` is empty"));
    }
    if start > end {
        return Err(format!(
            "range `{text}` ends before it starts; a range cannot cross midnight, so split it \
             over two days"
        ));
    }
    Ok(Span { start, end })
}

/// Minutes from midnight; `24:00` is accepted (as an end).
fn parse_clock(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || h.len() > 2 || !digits(m) || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 60 + m)
}

/// Officially assigned ISO 3166-1 alpha-2 codes (iso-codes 2024), plus XK (Kosovo),
/// which is user-assigned but used by the EU and by banks.
const ISO_COUNTRIES: &str = "\
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE \
BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD \
CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM \
DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF \
GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU \
ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN \
KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME \
MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA \
NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM \
PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI \
SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK \
TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI \
VN VU WF WS YE YT ZA ZM ZW XK";

fn is_iso_country(code: &str) -> bool {
    code.len() == 2 && ISO_COUNTRIES.split(' ').any(|c| c == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
version: 1
jurisdictions:
  - name: de
    countries: [DE, AT]
    timezone: Europe/Berlin
    hours:
      mon-fri: "08:00-20:00"
      sat: "09:00-14:00"
    holidays: [2026-12-24, 2026-12-25]
    limits:
      call: { max: 7, window_days: 7 }
      sms: { max: 3, window_days: 7 }
      all: { max: 10, window_days: 7 }
  - name: us
    countries: [US]
    timezone: America/New_York
    hours:
      mon-sun: "08:00-21:00"
    limits:
      call: { max: 7, window_days: 7 }
  - name: ch
    countries: [CH]
    timezone: Europe/Zurich
    hours:
      mon-fri: "08:00-12:00, 14:00-18:00"
    hours_apply_to: [call, sms, email]
    contact_on_disputed: true
  - name: is
    countries: [IS]
    timezone: Atlantic/Reykjavik
  - name: rest
    default: true
    timezone: Asia/Tokyo
    hours:
      mon-fri: "09:00-18:00"
"#;

    fn policy() -> Policy {
        Policy::from_yaml(POLICY, "test.yaml").unwrap_or_else(|e| panic!("{e:#?}"))
    }

    fn load(yaml: &str) -> Policy {
        Policy::from_yaml(yaml, "test.yaml").unwrap_or_else(|e| panic!("{e:#?}"))
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn req(channel: Channel, country: &str) -> ContactRequest {
        ContactRequest::new(channel, country)
    }

    fn calls(instants: &[&str]) -> Vec<PastContact> {
        instants
            .iter()
            .map(|s| PastContact {
                channel: Channel::Call,
                at: at(s),
            })
            .collect()
    }

    fn defer(until: &str, reason: &str) -> Decision {
        Decision::Defer {
            until: at(until),
            reason: reason.into(),
        }
    }

    fn refused_because(d: &Decision, needle: &str) -> bool {
        matches!(d, Decision::Refuse { reason } if reason.contains(needle))
    }

    // Mon 2026-11-23 10:00Z is 11:00 in Berlin (CET, UTC+1).
    const MONDAY_MORNING: &str = "2026-11-23T10:00:00Z";

    #[test]
    fn a_call_inside_hours_is_allowed() {
        let d = policy().check(&req(Channel::Call, "DE"), &[], at(MONDAY_MORNING));
        assert_eq!(d, Decision::Allow);
    }

    #[test]
    fn do_not_contact_refuses_before_anything_else() {
        let mut r = req(Channel::Call, "DE");
        r.do_not_contact = true;
        r.opted_out = vec![Channel::Call];
        r.only_disputed_items = true;
        let d = policy().check(&r, &[], at(MONDAY_MORNING));
        assert_eq!(
            d,
            Decision::Refuse {
                reason: "customer is marked do-not-contact".into()
            }
        );
    }

    #[test]
    fn an_opted_out_channel_is_refused_and_the_others_stay_open() {
        let p = policy();
        let mut r = req(Channel::Sms, "DE");
        r.opted_out = vec![Channel::Sms];
        r.only_disputed_items = true;
        // Opt-out is checked before the dispute rule, so the caller learns to try
        // another channel.
        assert_eq!(
            p.check(&r, &[], at(MONDAY_MORNING)),
            Decision::Refuse {
                reason: "customer opted out of sms contact".into()
            }
        );
        r.channel = Channel::Call;
        r.only_disputed_items = false;
        assert_eq!(p.check(&r, &[], at(MONDAY_MORNING)), Decision::Allow);
    }

    #[test]
    fn disputed_items_are_refused_unless_the_jurisdiction_allows_it() {
        let p = policy();
        let mut r = req(Channel::Call, "DE");
        r.only_disputed_items = true;
        let d = p.check(&r, &[], at(MONDAY_MORNING));
        assert!(refused_because(&d, "disputed"), "{d:?}");
        assert!(refused_because(&d, "jurisdiction de"), "{d:?}");
        // ch sets contact_on_disputed: true; 10:00Z is 11:00 in Zurich.
        r.country = "CH".into();
        assert_eq!(p.check(&r, &[], at(MONDAY_MORNING)), Decision::Allow);
    }

    #[test]
    fn a_saturday_night_call_in_berlin_waits_for_monday_0800() {
        // Sat 2026-11-21 20:30Z = 21:30 CET, after Saturday's 09:00-14:00; Sunday has
        // no hours; Mon 2026-11-23 08:00 CET = 07:00Z.
        let d = policy().check(&req(Channel::Call, "DE"), &[], at("2026-11-21T20:30:00Z"));
        assert_eq!(
            d,
            defer(
                "2026-11-23T07:00:00Z",
                "outside contact hours of jurisdiction de in Europe/Berlin \
                 (Sat 21:30; next 2026-11-23 08:00 Mon)"
            )
        );
    }

    #[test]
    fn email_goes_out_any_time_while_sms_waits_for_hours() {
        let p = policy();
        let now = at("2026-11-21T20:30:00Z");
        assert_eq!(
            p.check(&req(Channel::Email, "DE"), &[], now),
            Decision::Allow
        );
        assert_eq!(
            p.check(&req(Channel::Letter, "AT"), &[], now),
            Decision::Allow
        );
        let d = p.check(&req(Channel::Sms, "AT"), &[], now);
        assert!(
            matches!(d, Decision::Defer { until, .. } if until == at("2026-11-23T07:00:00Z")),
            "{d:?}"
        );
    }

    #[test]
    fn hours_apply_to_the_channels_listed_and_a_day_may_have_several_ranges() {
        let p = policy();
        // ch: 08:00-12:00 and 14:00-18:00, e-mail time-bound. Mon 11:30Z = 12:30 CET
        // (Zurich) is the lunch gap: next 14:00 CET = 13:00Z.
        let d = p.check(&req(Channel::Email, "CH"), &[], at("2026-11-23T11:30:00Z"));
        assert_eq!(
            d,
            defer(
                "2026-11-23T13:00:00Z",
                "outside contact hours of jurisdiction ch in Europe/Zurich \
                 (Mon 12:30; next 2026-11-23 14:00 Mon)"
            )
        );
        // 06:00Z = 07:00 CET, before the first range: 08:00 CET = 07:00Z.
        let d = p.check(&req(Channel::Call, "CH"), &[], at("2026-11-23T06:00:00Z"));
        assert!(
            matches!(d, Decision::Defer { until, .. } if until == at("2026-11-23T07:00:00Z")),
            "{d:?}"
        );
        // Letters are not in ch's hours_apply_to.
        let d = p.check(&req(Channel::Letter, "CH"), &[], at("2026-11-23T11:30:00Z"));
        assert_eq!(d, Decision::Allow);
        // The ranges are half-open: 11:00Z = 12:00 CET is already outside.
        let d = p.check(&req(Channel::Call, "CH"), &[], at("2026-11-23T11:00:00Z"));
        assert!(matches!(d, Decision::Defer { .. }), "{d:?}");
        let d = p.check(&req(Channel::Call, "CH"), &[], at("2026-11-23T10:59:59Z"));
        assert_eq!(d, Decision::Allow);
    }

    #[test]
    fn a_holiday_defers_time_bound_contact_to_the_next_open_day() {
        let p = policy();
        // Thu 2026-12-24 10:00Z = 11:00 CET, a holiday; Fri 12-25 too; Sat 12-26
        // opens 09:00 CET = 08:00Z.
        let d = p.check(&req(Channel::Call, "DE"), &[], at("2026-12-24T10:00:00Z"));
        assert_eq!(
            d,
            defer(
                "2026-12-26T08:00:00Z",
                "public holiday 2026-12-24 in jurisdiction de \
                 (Europe/Berlin: Thu 11:00; next 2026-12-26 09:00 Sat)"
            )
        );
        let d = p.check(&req(Channel::Email, "DE"), &[], at("2026-12-24T10:00:00Z"));
        assert_eq!(d, Decision::Allow);
    }

    #[test]
    fn the_eighth_call_in_seven_days_waits_for_the_oldest_to_leave_the_window() {
        // Seven calls at 09:00 EST (14:00Z), Tue 11-17 to Mon 11-23; now Mon 11-23
        // 20:00Z (15:00 EST). The oldest leaves at 11-17 14:00Z + 7 d = Tue 11-24
        // 14:00Z = 09:00 EST, inside 08:00-21:00, so no further move.
        let history = calls(&[
            "2026-11-17T14:00:00Z",
            "2026-11-18T14:00:00Z",
            "2026-11-19T14:00:00Z",
            "2026-11-20T14:00:00Z",
            "2026-11-21T14:00:00Z",
            "2026-11-22T14:00:00Z",
            "2026-11-23T14:00:00Z",
        ]);
        let p = policy();
        let now = at("2026-11-23T20:00:00Z");
        assert_eq!(
            p.check(&req(Channel::Call, "US"), &history, now),
            defer(
                "2026-11-24T14:00:00Z",
                "limit reached: 7 call contacts in the last 7 days (jurisdiction us allows 7); \
                 a slot frees at 2026-11-24 14:00 UTC"
            )
        );
        // The limit is per channel: an SMS is not held back by calls.
        assert_eq!(
            p.check(&req(Channel::Sms, "US"), &history, now),
            Decision::Allow
        );
        // Six calls are under the limit.
        assert_eq!(
            p.check(&req(Channel::Call, "US"), &history[1..], now),
            Decision::Allow
        );
    }

    #[test]
    fn a_slot_that_frees_outside_hours_is_moved_into_hours() {
        // Oldest call Fri 2026-10-23 06:30Z = 08:30 CEST. Daylight saving ends on
        // 10-25, so it leaves the window at 10-30 06:30Z = Fri 07:30 CET, before
        // 08:00: the call moves to Fri 08:00 CET = 07:00Z.
        let history = calls(&[
            "2026-10-23T06:30:00Z",
            "2026-10-26T09:00:00Z",
            "2026-10-26T10:00:00Z",
            "2026-10-27T09:00:00Z",
            "2026-10-27T10:00:00Z",
            "2026-10-28T09:00:00Z",
            "2026-10-29T09:00:00Z",
        ]);
        let d = policy().check(
            &req(Channel::Call, "DE"),
            &history,
            at("2026-10-29T12:00:00Z"),
        );
        assert_eq!(
            d,
            defer(
                "2026-10-30T07:00:00Z",
                "limit reached: 7 call contacts in the last 7 days (jurisdiction de allows 7); \
                 a slot frees at 2026-10-30 06:30 UTC; then outside contact hours of \
                 jurisdiction de in Europe/Berlin (Fri 07:30; next 2026-10-30 08:00 Fri)"
            )
        );
    }

    #[test]
    fn a_slot_that_frees_on_a_holiday_moves_past_the_holidays() {
        // Oldest call Thu 12-17 10:00Z leaves at Thu 12-24 10:00Z, a holiday, as is
        // Fri 12-25: Sat 12-26 09:00 CET = 08:00Z.
        let history = calls(&[
            "2026-12-17T10:00:00Z",
            "2026-12-18T10:00:00Z",
            "2026-12-19T10:00:00Z",
            "2026-12-21T10:00:00Z",
            "2026-12-22T10:00:00Z",
            "2026-12-23T10:00:00Z",
            "2026-12-23T11:00:00Z",
        ]);
        let d = policy().check(
            &req(Channel::Call, "DE"),
            &history,
            at("2026-12-23T15:00:00Z"),
        );
        assert_eq!(
            d,
            defer(
                "2026-12-26T08:00:00Z",
                "limit reached: 7 call contacts in the last 7 days (jurisdiction de allows 7); \
                 a slot frees at 2026-12-24 10:00 UTC; then public holiday 2026-12-24 in \
                 jurisdiction de (Europe/Berlin: Thu 11:00; next 2026-12-26 09:00 Sat)"
            )
        );
    }

    #[test]
    fn over_the_limit_history_waits_until_enough_contacts_have_left() {
        // Nine calls counted, max 7: three must leave, the third oldest (11-17
        // 16:00Z) at 11-24 16:00Z = 11:00 EST.
        let history = calls(&[
            "2026-11-23T14:00:00Z",
            "2026-11-17T16:00:00Z",
            "2026-11-17T14:00:00Z",
            "2026-11-18T14:00:00Z",
            "2026-11-17T15:00:00Z",
            "2026-11-19T14:00:00Z",
            "2026-11-20T14:00:00Z",
            "2026-11-21T14:00:00Z",
            "2026-11-22T14:00:00Z",
        ]);
        let d = policy().check(
            &req(Channel::Call, "US"),
            &history,
            at("2026-11-23T20:00:00Z"),
        );
        assert_eq!(
            d,
            defer(
                "2026-11-24T16:00:00Z",
                "limit reached: 9 call contacts in the last 7 days (jurisdiction us allows 7); \
                 a slot frees at 2026-11-24 16:00 UTC"
            )
        );
    }

    #[test]
    fn the_window_excludes_its_old_end_and_includes_now() {
        let p = policy();
        let now = at("2026-11-23T20:00:00Z");
        // The first call is exactly now - 7 d, so it no longer counts: 6 of 7.
        let mut history = calls(&[
            "2026-11-16T20:00:00Z",
            "2026-11-17T14:00:00Z",
            "2026-11-18T14:00:00Z",
            "2026-11-19T14:00:00Z",
            "2026-11-20T14:00:00Z",
            "2026-11-21T14:00:00Z",
            "2026-11-22T14:00:00Z",
        ]);
        assert_eq!(
            p.check(&req(Channel::Call, "US"), &history, now),
            Decision::Allow
        );
        // A call made at `now` counts: 7, and the oldest counted (11-17 14:00Z)
        // frees a slot at 11-24 14:00Z.
        history.extend(calls(&["2026-11-23T20:00:00Z"]));
        let d = p.check(&req(Channel::Call, "US"), &history, now);
        assert!(
            matches!(d, Decision::Defer { until, .. } if until == at("2026-11-24T14:00:00Z")),
            "{d:?}"
        );
        // A contact after `now` is not one that was made: not counted.
        let mut later = history[..6].to_vec();
        later.extend(calls(&["2026-11-23T20:00:01Z"]));
        assert_eq!(
            p.check(&req(Channel::Call, "US"), &later, now),
            Decision::Allow
        );
    }

    #[test]
    fn the_all_channels_limit_counts_every_channel() {
        let p = policy();
        // Ten e-mails from 2026-11-20 00:00Z, hourly; de allows 10 contacts in 7 days.
        let history: Vec<PastContact> = (0..10)
            .map(|h| PastContact {
                channel: Channel::Email,
                at: at("2026-11-20T00:00:00Z") + TimeDelta::hours(h),
            })
            .collect();
        let now = at(MONDAY_MORNING);
        let reason = "limit reached: 10 contacts over all channels in the last 7 days \
                      (jurisdiction de allows 10); a slot frees at 2026-11-27 00:00 UTC";
        // A letter has no hours, so it waits exactly until the oldest e-mail leaves.
        assert_eq!(
            p.check(&req(Channel::Letter, "DE"), &history, now),
            defer("2026-11-27T00:00:00Z", reason)
        );
        // A call has no call limit hit, but the all-channels one: 11-27 00:00Z is
        // Fri 01:00 CET, so 08:00 CET = 07:00Z.
        let d = p.check(&req(Channel::Call, "DE"), &history, now);
        assert!(
            matches!(&d, Decision::Defer { until, reason: r }
                if *until == at("2026-11-27T07:00:00Z") && r.starts_with(reason)),
            "{d:?}"
        );
        assert_eq!(
            p.check(&req(Channel::Letter, "DE"), &history[1..], now),
            Decision::Allow
        );
    }

    const NIGHT: &str = r#"
version: 1
jurisdictions:
  - name: night
    countries: [DE]
    timezone: Europe/Berlin
    hours:
      sun: "02:30-06:00"
"#;

    #[test]
    fn a_range_starting_in_the_spring_forward_gap_opens_when_the_clock_jumps() {
        let p = load(NIGHT);
        let r = req(Channel::Call, "DE");
        // Sun 2026-03-29 jumps from 02:00 CET to 03:00 CEST (01:00Z); 02:30 does not
        // exist, so the range opens at 03:00 CEST = 01:00Z. Sat 12:00Z = 13:00 CET.
        assert_eq!(
            p.check(&r, &[], at("2026-03-28T12:00:00Z")),
            defer(
                "2026-03-29T01:00:00Z",
                "outside contact hours of jurisdiction night in Europe/Berlin \
                 (Sat 13:00; next 2026-03-29 03:00 Sun)"
            )
        );
        // One second before the jump it is 01:59:59 CET.
        let d = p.check(&r, &[], at("2026-03-29T00:59:59Z"));
        assert!(
            matches!(d, Decision::Defer { until, .. } if until == at("2026-03-29T01:00:00Z")),
            "{d:?}"
        );
        assert_eq!(
            p.check(&r, &[], at("2026-03-29T01:00:00Z")),
            Decision::Allow
        );
    }

    #[test]
    fn a_range_wholly_inside_the_gap_does_not_happen_that_day() {
        let p = load(&NIGHT.replace("02:30-06:00", "02:10-02:50"));
        // On 03-29 the range never occurs; next Sunday 04-05 02:10 CEST = 00:10Z.
        let d = p.check(&req(Channel::Call, "DE"), &[], at("2026-03-28T12:00:00Z"));
        assert!(
            matches!(d, Decision::Defer { until, .. } if until == at("2026-04-05T00:10:00Z")),
            "{d:?}"
        );
    }

    #[test]
    fn an_ambiguous_start_on_the_fall_back_day_takes_the_earlier_instant() {
        // Sun 2026-10-25 02:30 happens twice (CEST, then CET): the first is 00:30Z.
        // Sat 12:00Z = 14:00 CEST.
        let d = load(NIGHT).check(&req(Channel::Call, "DE"), &[], at("2026-10-24T12:00:00Z"));
        assert!(
            matches!(d, Decision::Defer { until, .. } if until == at("2026-10-25T00:30:00Z")),
            "{d:?}"
        );
    }

    #[test]
    fn every_zone_gives_an_instant_that_is_then_allowed() {
        // Midnight and 02:30 starts hit the zones that change clocks at midnight or
        // at 02:00; Pacific/Apia skipped all of 2011-12-30. Whatever the zone, the
        // guard must not panic, and the instant it defers to must pass the guard.
        let p = load(&NIGHT.replace(
            "sun: \"02:30-06:00\"",
            "sun: \"00:00-00:30, 02:30-03:30\"\n      fri: \"00:00-01:00, 23:30-24:00\"",
        ));
        let mut starts: Vec<DateTime<Utc>> = (0..53)
            .map(|w| at("2026-01-01T05:00:00Z") + TimeDelta::days(7 * w))
            .collect();
        starts.extend((0..8).map(|h| at("2011-12-28T00:00:00Z") + TimeDelta::hours(9 * h)));
        for tz in chrono_tz::TZ_VARIANTS {
            let mut r = req(Channel::Call, "DE");
            r.time_zone = Some(tz.name().into());
            for &now in &starts {
                match p.check(&r, &[], now) {
                    Decision::Allow => {}
                    Decision::Defer { until, reason } => {
                        assert!(
                            until > now && until <= now + TimeDelta::days(14),
                            "{tz} {now}"
                        );
                        assert_eq!(p.check(&r, &[], until), Decision::Allow, "{tz} {reason}");
                    }
                    Decision::Refuse { reason } => panic!("{tz} {now}: {reason}"),
                }
            }
        }
    }

    #[test]
    fn the_customer_time_zone_overrides_the_jurisdiction_zone() {
        let p = policy();
        let now = at("2026-11-23T12:00:00Z");
        let mut r = req(Channel::Call, "DE");
        // 12:00Z is 13:00 in Berlin ...
        assert_eq!(p.check(&r, &[], now), Decision::Allow);
        // ... but 07:00 EST in New York: 08:00 EST = 13:00Z.
        r.time_zone = Some("America/New_York".into());
        assert_eq!(
            p.check(&r, &[], now),
            defer(
                "2026-11-23T13:00:00Z",
                "outside contact hours of jurisdiction de in America/New_York \
                 (Mon 07:00; next 2026-11-23 08:00 Mon)"
            )
        );
        // An empty zone counts as none.
        r.time_zone = Some(" ".into());
        assert_eq!(p.check(&r, &[], now), Decision::Allow);
        // A zone that is not an IANA name leaves the local time unknown.
        r.time_zone = Some("Mars/Olympus_Mons".into());
        let d = p.check(&r, &[], now);
        assert!(refused_because(&d, "`Mars/Olympus_Mons`"), "{d:?}");
        r.channel = Channel::Email;
        assert_eq!(p.check(&r, &[], now), Decision::Allow);
    }

    #[test]
    fn an_unlisted_country_falls_to_the_default_jurisdiction() {
        let p = policy();
        assert_eq!(
            p.jurisdiction_for("jp").map(Jurisdiction::name),
            Some("rest")
        );
        assert_eq!(p.jurisdiction_for("at").map(Jurisdiction::name), Some("de"));
        // Mon 10:00Z = 19:00 JST, after 09:00-18:00: Tue 09:00 JST = Tue 00:00Z.
        let want = defer(
            "2026-11-24T00:00:00Z",
            "outside contact hours of jurisdiction rest in Asia/Tokyo \
             (Mon 19:00; next 2026-11-24 09:00 Tue)",
        );
        for code in ["JP", "jp"] {
            assert_eq!(
                p.check(&req(Channel::Call, code), &[], at(MONDAY_MORNING)),
                want
            );
        }
    }

    #[test]
    fn without_a_default_an_unlisted_country_is_refused() {
        let p = load(NIGHT);
        let d = p.check(&req(Channel::Email, "JP"), &[], at(MONDAY_MORNING));
        assert!(
            refused_because(&d, "no jurisdiction covers country `JP`"),
            "{d:?}"
        );
    }

    #[test]
    fn a_time_bound_channel_without_hours_is_refused() {
        let p = policy();
        let d = p.check(&req(Channel::Call, "IS"), &[], at(MONDAY_MORNING));
        assert_eq!(
            d,
            Decision::Refuse {
                reason: "jurisdiction is has no contact hours, and its hours apply to call".into()
            }
        );
        let d = p.check(&req(Channel::Email, "IS"), &[], at(MONDAY_MORNING));
        assert_eq!(d, Decision::Allow);
    }

    fn closed_until(last_holiday: u32) -> Policy {
        let days: Vec<String> = (1..=last_holiday)
            .map(|d| format!("2026-12-{d:02}"))
            .collect();
        load(&format!(
            "version: 1\njurisdictions:\n  - name: closed\n    countries: [DE]\n    \
             timezone: Europe/Berlin\n    hours: {{ mon-fri: \"08:00-20:00\" }}\n    \
             holidays: [{}]\n",
            days.join(", ")
        ))
    }

    #[test]
    fn an_allowed_moment_exactly_14_days_ahead_is_still_found() {
        // Tue 12-01 07:00Z = 08:00 CET; holidays through Mon 12-14; Tue 12-15 08:00
        // CET = 07:00Z is exactly 14 days later.
        let d = closed_until(14).check(&req(Channel::Call, "DE"), &[], at("2026-12-01T07:00:00Z"));
        assert!(
            matches!(d, Decision::Defer { until, .. } if until == at("2026-12-15T07:00:00Z")),
            "{d:?}"
        );
    }

    #[test]
    fn no_allowed_moment_within_14_days_is_refused() {
        let d = closed_until(15).check(&req(Channel::Call, "DE"), &[], at("2026-12-01T07:00:00Z"));
        assert_eq!(
            d,
            Decision::Refuse {
                reason: "no allowed time for call contact in jurisdiction closed (Europe/Berlin) \
                         within 14 days after 2026-12-01 07:00 UTC; check its hours and holidays"
                    .into()
            }
        );
    }

    #[test]
    fn an_unknown_customer_zone_must_suit_every_zone_of_the_jurisdiction() {
        let p = load(
            r#"
version: 1
jurisdictions:
  - name: wide
    countries: [US]
    timezone: [America/New_York, Pacific/Honolulu]
    hours: { mon-sun: "08:00-21:00" }
"#,
        );
        let mut r = req(Channel::Call, "US");
        // 14:00Z: 09:00 EST but 04:00 HST; Honolulu opens 08:00 HST = 18:00Z.
        assert_eq!(
            p.check(&r, &[], at("2026-11-23T14:00:00Z")),
            defer(
                "2026-11-23T18:00:00Z",
                "outside contact hours of jurisdiction wide in Pacific/Honolulu \
                 (Mon 04:00; next 2026-11-23 08:00 Mon) (customer time zone unknown, so every \
                 zone of jurisdiction wide must allow it: America/New_York, Pacific/Honolulu)"
            )
        );
        // Tue 02:30Z: 21:30 EST (closed) and 16:30 HST. New York opens 13:00Z, when
        // Honolulu is at 03:00; Honolulu opens 18:00Z, 13:00 EST.
        let d = p.check(&r, &[], at("2026-11-24T02:30:00Z"));
        assert!(
            matches!(d, Decision::Defer { until, .. } if until == at("2026-11-24T18:00:00Z")),
            "{d:?}"
        );
        r.time_zone = Some("America/New_York".into());
        assert_eq!(
            p.check(&r, &[], at("2026-11-23T14:00:00Z")),
            Decision::Allow
        );
    }

    fn errors(yaml: &str) -> Vec<ComplianceError> {
        match Policy::from_yaml(yaml, "compliance.yaml") {
            Ok(_) => panic!("policy should not load"),
            Err(e) => e,
        }
    }

    fn field_errors(errs: &[ComplianceError]) -> Vec<(String, String)> {
        errs.iter()
            .map(|e| match e {
                ComplianceError::Field { path, message, .. } => (path.clone(), message.clone()),
                other => panic!("not a field error: {other}"),
            })
            .collect()
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let errs = errors(
            r#"
version: 2
jurisdictions:
  - name: a
    default: true
    countries: [DE, UK]
    timezone: Europe/Berln
    hours:
      mon-fri: "08:00-25:00"
      sat: "14:00-09:00"
      sun: "08:00-12:00, 11:00-13:00"
      funday: "08:00-09:00"
    hours_apply_to: [call, fax]
    holidays: [2026-02-30]
    limits:
      pigeon: { max: 1, window_days: 1 }
      call: { max: 0, window_days: 7 }
      sms: { max: 1, window_days: 400 }
  - name: b
    default: true
    countries: [de]
    timezone: America/New_York
  - name: c
    timezone: UTC
  - name: b
    countries: [FR]
    timezone: Europe/Paris
"#,
        );
        let want: &[(&str, &str)] = &[
            ("version", "unsupported version 2 (this build reads version 1)"),
            (
                "jurisdictions[a].countries",
                "`UK` is not an ISO 3166-1 alpha-2 country code (the United Kingdom is GB)",
            ),
            (
                "jurisdictions[a].timezone",
                "unknown time zone `Europe/Berln` (expected an IANA name such as Europe/Berlin)",
            ),
            (
                "jurisdictions[a].hours.funday",
                "unknown weekday `funday` (use mon, tue, wed, thu, fri, sat, sun, or a range \
                 such as mon-fri)",
            ),
            (
                "jurisdictions[a].hours.mon-fri",
                "`25:00` is not a time of day (HH:MM from 00:00 to 24:00)",
            ),
            (
                "jurisdictions[a].hours.sat",
                "range `14:00-09:00` ends before it starts; a range cannot cross midnight, so \
                 split it over two days",
            ),
            (
                "jurisdictions[a].hours.sun",
                "ranges 08:00-12:00 and 11:00-13:00 overlap on sun",
            ),
            (
                "jurisdictions[a].hours_apply_to",
                "unknown channel `fax` (expected one of email, sms, letter, portal, call)",
            ),
            (
                "jurisdictions[a].holidays[0]",
                "`2026-02-30` is not a date (YYYY-MM-DD)",
            ),
            (
                "jurisdictions[a].limits.call.max",
                "must be at least 1; to never use a channel, leave it out of the caller's channels",
            ),
            (
                "jurisdictions[a].limits.pigeon",
                "unknown channel `pigeon` (expected one of email, sms, letter, portal, call, or all)",
            ),
            (
                "jurisdictions[a].limits.sms.window_days",
                "must be from 1 to 366",
            ),
            (
                "jurisdictions[b].default",
                "jurisdictions[a] is already the default; only one jurisdiction may be",
            ),
            (
                "jurisdictions[b].countries",
                "DE is already listed in jurisdictions[a]",
            ),
            (
                "jurisdictions[c].countries",
                "a jurisdiction that is not the default must list at least one country",
            ),
            (
                "jurisdictions[b].name",
                "`b` is already the name of jurisdictions[#1]",
            ),
        ];
        let mut got = field_errors(&errs);
        let mut want: Vec<(String, String)> = want
            .iter()
            .map(|(p, m)| (p.to_string(), m.to_string()))
            .collect();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        // The rendered form names the file, the jurisdiction and the field.
        assert!(errs.iter().any(|e| e.to_string()
            == "compliance.yaml: jurisdictions[a].timezone: unknown time zone `Europe/Berln` \
                (expected an IANA name such as Europe/Berlin)"));
    }

    #[test]
    fn overlaps_across_keys_name_both_keys_and_list_the_days_once() {
        let errs = errors(
            r#"
version: 1
jurisdictions:
  - name: x
    countries: [FR]
    timezone: Europe/Paris
    hours:
      mon-fri: ["08:00-12:00", "10:00-11:00"]
      mon: "11:30-13:00"
      fri-mon: "20:00-24:00"
      sat: "00:00-08:00"
"#,
        );
        // 11:30-13:00 is checked against 08:00-12:00, not only the 10:00-11:00 sorted
        // between them. fri-mon wraps over the weekend; on sat its 20:00-24:00 and
        // 00:00-08:00 do not meet.
        assert_eq!(
            field_errors(&errs),
            vec![
                (
                    "jurisdictions[x].hours.mon".to_string(),
                    "ranges 08:00-12:00 and 11:30-13:00 overlap on mon (from `mon-fri` and `mon`)"
                        .to_string()
                ),
                (
                    "jurisdictions[x].hours.mon-fri".to_string(),
                    "ranges 08:00-12:00 and 10:00-11:00 overlap on mon, tue, wed, thu, fri"
                        .to_string()
                ),
            ]
        );
    }

    #[test]
    fn weekday_ranges_wrap_and_adjacent_ranges_join() {
        let p = load(
            r#"
version: 1
jurisdictions:
  - name: x
    countries: [FR]
    timezone: UTC
    hours:
      fri-mon: ["10:00-12:00", "12:00-24:00"]
      tue: "00:00-01:00"
"#,
        );
        let r = req(Channel::Call, "FR");
        // fri-mon wraps over the weekend, so Monday 2026-11-23 is covered up to
        // midnight, and Tuesday's 00:00-01:00 carries on from there.
        assert_eq!(
            p.check(&r, &[], at("2026-11-23T23:59:00Z")),
            Decision::Allow
        );
        assert_eq!(
            p.check(&r, &[], at("2026-11-24T00:30:00Z")),
            Decision::Allow
        );
        // Tue 01:00 closes; Wednesday and Thursday have no hours: Fri 11-27 10:00.
        let d = p.check(&r, &[], at("2026-11-24T01:00:00Z"));
        assert!(
            matches!(d, Decision::Defer { until, .. } if until == at("2026-11-27T10:00:00Z")),
            "{d:?}"
        );
    }

    #[test]
    fn a_misspelt_key_is_reported_with_its_position() {
        let errs = errors(
            "version: 1\njurisdictions:\n  - name: de\n    countries: [DE]\n    \
             timezone: Europe/Berlin\n    hourz:\n      mon: \"08:00-20:00\"\n",
        );
        assert_eq!(errs.len(), 1);
        match &errs[0] {
            ComplianceError::Syntax {
                file,
                line,
                message,
                ..
            } => {
                assert_eq!(file, "compliance.yaml");
                assert_eq!(*line, 6);
                assert!(message.contains("unknown field `hourz`"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let errs = errors("version: 1\njurisdictions: [\n");
        assert!(
            matches!(&errs[..], [ComplianceError::Syntax { line: 3, .. }]),
            "{errs:?}"
        );
        let errs = errors(
            "version: 1\njurisdictions:\n  - name: de\n    countries: [DE]\n    \
             timezone: Europe/Berlin\n    hours:\n      mon: 8\n",
        );
        assert!(
            matches!(&errs[..], [ComplianceError::Syntax { line: 7, message, .. }]
                if message.contains("a string or a list of strings")),
            "{errs:?}"
        );
    }

    #[test]
    fn a_missing_version_or_an_empty_file_is_an_error() {
        let errs = errors("jurisdictions:\n  - name: x\n    default: true\n    timezone: UTC\n");
        assert_eq!(
            field_errors(&errs),
            vec![(
                "version".to_string(),
                "missing; write `version: 1`".to_string()
            )]
        );
        let errs = errors("# nothing yet\n");
        assert!(
            matches!(&errs[..], [ComplianceError::Structure { message, .. }] if message.contains("empty")),
            "{errs:?}"
        );
    }

    #[test]
    fn the_shipped_policy_loads_and_refuses_disputed_contact_everywhere() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../rules/compliance.yaml");
        let p = Policy::load(Path::new(path)).unwrap_or_else(|errs| {
            panic!(
                "{}",
                errs.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        let names: Vec<&str> = p.jurisdictions().iter().map(Jurisdiction::name).collect();
        for want in ["de", "us", "br", "ch"] {
            assert!(names.contains(&want), "{names:?}");
        }
        assert!(p.jurisdictions().iter().any(Jurisdiction::is_default));
        for country in ["DE", "AT", "US", "BR", "CH", "JP"] {
            let mut r = req(Channel::Letter, country);
            r.only_disputed_items = true;
            let d = p.check(&r, &[], at(MONDAY_MORNING));
            assert!(refused_because(&d, "disputed"), "{country}: {d:?}");
        }
        // Regulation F: the eighth call in seven days waits.
        let history = calls(&[
            "2026-11-17T18:00:00Z",
            "2026-11-18T18:00:00Z",
            "2026-11-19T18:00:00Z",
            "2026-11-20T18:00:00Z",
            "2026-11-21T18:00:00Z",
            "2026-11-22T18:00:00Z",
        ]);
        let mut r = req(Channel::Call, "US");
        r.time_zone = Some("America/Chicago".into());
        let now = at("2026-11-23T19:00:00Z");
        assert_eq!(p.check(&r, &history, now), Decision::Allow);
        let mut history = history;
        history.extend(calls(&["2026-11-23T18:00:00Z"]));
        let d = p.check(&r, &history, now);
        assert!(
            matches!(&d, Decision::Defer { reason, .. } if reason.starts_with("limit reached: 7 call")),
            "{d:?}"
        );
    }

    #[test]
    fn channel_names_round_trip() {
        for ch in Channel::ALL {
            assert_eq!(ch.as_str().parse::<Channel>(), Ok(ch));
        }
        assert_eq!("fax".parse::<Channel>(), Err(UnknownChannel("fax".into())));
    }
}
