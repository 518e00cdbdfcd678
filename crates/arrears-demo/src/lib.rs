//! Synthetic portfolios for demos, tests and benchmarks.
//!
//! Items, customers and payments go through [`Store::ingest`], so the demo data is exactly
//! what a connector would deliver; the collector-side records a live system accumulates
//! (promises to pay, disputes, customer holds) are written directly afterwards. Everything
//! is drawn from one seeded generator in a fixed order, so a seed names a portfolio.

use chrono::{Datelike, NaiveDate, TimeDelta};
use indicatif::ProgressBar;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde::Serialize;

use arrears_core::domain::{Batch, CustomerInfo, Hold, ItemInput, PaymentInput, PromiseStatus};
use arrears_core::money::Currency;
use arrears_store::{PastDispute, PastHold, PastPromise, PastRecords, Store, StoreError};

/// The `source` of every generated item and payment.
pub const SOURCE: &str = "demo";

/// Items per ingest transaction: big enough to amortise the commit, small enough that
/// memory stays flat however large the portfolio.
const CHUNK_ITEMS: usize = 50_000;
/// How far back the oldest open invoices reach.
const HISTORY_DAYS: f64 = 240.0;
const TERMS: [i64; 4] = [14, 30, 45, 60];
/// Net 30 dominates real books; the rest are negotiated exceptions.
const TERMS_WEIGHTS: [u32; 4] = [15, 55, 15, 15];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoOptions {
    pub customers: usize,
    /// Item rows in total; about 3% of them come out fully paid (cleared).
    pub items: usize,
    pub seed: u64,
    /// The day the portfolio is "taken": every date is relative to it.
    pub as_of: NaiveDate,
    /// Days of paid history before `as_of`: invoices each customer paid (or not)
    /// as that customer pays, so the cash forecast has behaviour to learn from and
    /// a past to be tested on. 0: none.
    pub history_days: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DemoStats {
    pub customers: u64,
    /// Item rows written, cleared ones included.
    pub items: u64,
    /// Items written fully paid, hence cleared.
    pub items_cleared: u64,
    /// Items carrying a dunning hold (lifted or still active).
    pub item_holds: u64,
    pub payments: u64,
    pub promises: u64,
    pub disputes: u64,
    pub disputed_items: u64,
    /// Holds on whole customers.
    pub holds: u64,
}

#[derive(Clone, Copy)]
enum Lang {
    De,
    En,
    Sv,
}

struct Company {
    code: &'static str,
    /// Country tag in document numbers.
    tag: &'static str,
    currency: &'static str,
    country: &'static str,
    /// Relative share of customers.
    share: u32,
    /// Invoice size relative to EUR, so SEK invoices look like SEK invoices.
    scale: f64,
    tld: &'static str,
    phone_prefix: &'static str,
    areas: &'static [&'static str],
    lang: Lang,
    legal_forms: &'static [&'static str],
    languages: &'static [&'static str],
    timezones: &'static [&'static str],
}

const COMPANIES: [Company; 5] = [
    Company {
        code: "ACME_DE",
        tag: "DE",
        currency: "EUR",
        country: "DE",
        share: 45,
        scale: 1.0,
        tld: "de",
        phone_prefix: "+49",
        areas: &["30", "40", "69", "89", "221", "711", "911"],
        lang: Lang::De,
        legal_forms: &["GmbH", "GmbH", "GmbH", "GmbH & Co. KG", "AG", "e.K."],
        languages: &["de"],
        timezones: &["Europe/Berlin"],
    },
    Company {
        code: "ACME_UK",
        tag: "UK",
        currency: "GBP",
        country: "GB",
        share: 18,
        scale: 0.85,
        tld: "co.uk",
        phone_prefix: "+44",
        areas: &["20", "121", "131", "161", "113", "117"],
        lang: Lang::En,
        legal_forms: &["Ltd", "Ltd", "Ltd", "PLC", "LLP"],
        languages: &["en"],
        timezones: &["Europe/London"],
    },
    Company {
        code: "ACME_US",
        tag: "US",
        currency: "USD",
        country: "US",
        share: 20,
        scale: 1.1,
        tld: "com",
        phone_prefix: "+1",
        areas: &["212", "312", "415", "512", "617", "713"],
        lang: Lang::En,
        legal_forms: &["Inc.", "Inc.", "LLC", "LLC", "Corp."],
        languages: &["en"],
        timezones: &[
            "America/New_York",
            "America/Chicago",
            "America/Denver",
            "America/Los_Angeles",
        ],
    },
    Company {
        code: "ACME_CH",
        tag: "CH",
        currency: "CHF",
        country: "CH",
        share: 9,
        scale: 1.0,
        tld: "ch",
        phone_prefix: "+41",
        areas: &["44", "31", "61", "22", "21"],
        lang: Lang::De,
        legal_forms: &["AG", "AG", "GmbH", "SA", "Sàrl"],
        languages: &["de", "de", "de", "fr", "fr", "it"],
        timezones: &["Europe/Zurich"],
    },
    Company {
        code: "ACME_SE",
        tag: "SE",
        currency: "SEK",
        country: "SE",
        share: 8,
        scale: 11.0,
        tld: "se",
        phone_prefix: "+46",
        areas: &["8", "31", "40", "18"],
        lang: Lang::Sv,
        legal_forms: &["AB"],
        languages: &["sv"],
        timezones: &["Europe/Stockholm"],
    },
];

struct Words {
    stems: &'static [&'static str],
    trades: &'static [&'static str],
    surnames: &'static [&'static str],
    mailboxes: &'static [&'static str],
}

const DE_WORDS: Words = Words {
    stems: &[
        "Alpen",
        "Nordstern",
        "Rhein",
        "Bergland",
        "Sonnenhof",
        "Hansa",
        "Elbtal",
        "Schwarzwald",
        "Isar",
        "Main",
        "Weser",
        "Spree",
        "Bodensee",
        "Taunus",
        "Harz",
        "Eifel",
    ],
    trades: &[
        "Logistik",
        "Maschinenbau",
        "Elektrotechnik",
        "Bau",
        "Handel",
        "Technik",
        "Lebensmittel",
        "Druck",
        "Metallbau",
        "Medizintechnik",
        "Holzbau",
        "Antriebstechnik",
    ],
    surnames: &[
        "Müller",
        "Schmidt",
        "Schneider",
        "Fischer",
        "Weber",
        "Meyer",
        "Wagner",
        "Becker",
        "Hoffmann",
        "Schäfer",
        "Koch",
        "Richter",
        "Wolf",
        "Krüger",
        "Brandt",
        "Vogel",
    ],
    mailboxes: &["buchhaltung", "rechnungen", "finanzen", "info"],
};

const EN_WORDS: Words = Words {
    stems: &[
        "Atlas",
        "Summit",
        "Harbor",
        "Pioneer",
        "Granite",
        "Redwood",
        "Keystone",
        "Silverline",
        "Northstar",
        "Oakridge",
        "Crescent",
        "Beacon",
        "Meridian",
        "Evergreen",
        "Falcon",
        "Blue River",
    ],
    trades: &[
        "Logistics",
        "Engineering",
        "Foods",
        "Supplies",
        "Electronics",
        "Construction",
        "Textiles",
        "Packaging",
        "Healthcare",
        "Software",
        "Wholesale",
        "Motors",
    ],
    surnames: &[
        "Smith", "Johnson", "Walker", "Harris", "Clarke", "Turner", "Bennett", "Hughes", "Carter",
        "Brooks", "Foster", "Morgan", "Reed", "Parker", "Ellis", "Porter",
    ],
    mailboxes: &["accounts", "ap", "invoices", "finance"],
};

const SV_WORDS: Words = Words {
    stems: &[
        "Norrsken", "Fjäll", "Skog", "Havs", "Älv", "Berg", "Sjö", "Ljus", "Vind", "Stjärn",
    ],
    trades: &[
        "Bygg",
        "Logistik",
        "Teknik",
        "Handel",
        "Industri",
        "Transport",
        "Elektro",
        "Trä",
    ],
    surnames: &[
        "Andersson",
        "Johansson",
        "Karlsson",
        "Nilsson",
        "Eriksson",
        "Larsson",
        "Lindqvist",
        "Berg",
        "Åberg",
        "Holm",
    ],
    mailboxes: &["ekonomi", "faktura", "info"],
};

const ITEM_HOLD_REASONS: &[&str] = &[
    "awaiting credit note",
    "price query with sales",
    "invoice copy requested",
    "goods returned, awaiting inspection",
    "delivery incomplete",
];

const CUSTOMER_HOLD_REASONS: &[&str] = &[
    "insolvency proceedings",
    "payment plan agreed",
    "key account: management agreement",
    "merger in progress",
    "contract renegotiation",
];

const DISPUTE_REASONS: &[&str] = &[
    "price difference",
    "goods damaged",
    "quantity short",
    "not ordered",
    "service not rendered",
    "duplicate invoice",
    "wrong VAT",
];

const DISPUTE_RESOLUTIONS: &[&str] = &[
    "credit note issued",
    "rejected: invoice correct",
    "partial credit note issued",
    "customer withdrew",
];

/// Generates a portfolio into `store`, which must not hold an earlier demo portfolio:
/// a second one would silently merge with the first and no longer match its seed.
pub fn generate(
    store: &mut Store,
    opts: &DemoOptions,
    progress: Option<&ProgressBar>,
) -> Result<DemoStats, StoreError> {
    if opts.customers == 0 && opts.items > 0 {
        return Err(StoreError::Invalid(
            "a demo portfolio with items needs at least one customer".into(),
        ));
    }
    let existing = store.has_items_from(SOURCE)?;
    if existing {
        return Err(StoreError::Invalid(
            "the database already holds a demo portfolio; generate into a fresh database".into(),
        ));
    }

    let mut g = Generator::new(opts)?;
    let counts = g.items_per_customer(opts.customers, opts.items);
    let mut holds_left = opts.customers.div_ceil(200);
    for (i, &n) in counts.iter().enumerate() {
        // Selection sampling: exactly `holds_left` of the remaining customers, in one pass.
        let hold = holds_left > 0 && g.rng.random_range(0..opts.customers - i) < holds_left;
        if hold {
            holds_left -= 1;
        }
        g.customer(i, n, hold);
        if g.batch.items.len() >= CHUNK_ITEMS {
            g.flush(store, progress)?;
        }
    }
    g.flush(store, progress)?;
    g.write_records(store)?;
    Ok(g.stats)
}

struct NewPromise {
    customer: String,
    company: usize,
    amount: Decimal,
    promised_on: NaiveDate,
    created_on: NaiveDate,
    status: PromiseStatus,
    judged_on: Option<NaiveDate>,
}

struct NewDispute {
    customer: String,
    company: usize,
    reason: &'static str,
    opened_on: NaiveDate,
    resolved: Option<(NaiveDate, &'static str)>,
    items: Vec<String>,
}

struct NewHold {
    customer: String,
    company: usize,
    reason: &'static str,
    until: Option<NaiveDate>,
    created_on: NaiveDate,
}

struct Generator {
    rng: StdRng,
    as_of: NaiveDate,
    history_days: u32,
    /// With a paid history: the current customer's delay after the due date
    /// (days) and the share of invoices it never pays.
    pays: Option<(f64, f64)>,
    currencies: Vec<Currency>,
    shares: [u32; COMPANIES.len()],
    doc_seq: [u64; COMPANIES.len()],
    batch: Batch,
    promises: Vec<NewPromise>,
    disputes: Vec<NewDispute>,
    holds: Vec<NewHold>,
    stats: DemoStats,
}

fn add_days(d: NaiveDate, n: i64) -> NaiveDate {
    d.checked_add_signed(TimeDelta::days(n)).unwrap_or(d)
}

fn cents(amount: i64) -> Decimal {
    Decimal::new(amount, 2)
}

/// Email domains need ASCII; company names keep their umlauts.
fn slug(words: &str) -> String {
    let mut s = String::with_capacity(words.len() + 4);
    for ch in words.chars().flat_map(char::to_lowercase) {
        match ch {
            'ä' | 'æ' => s.push_str("ae"),
            'ö' | 'ø' => s.push_str("oe"),
            'ü' => s.push_str("ue"),
            'ß' => s.push_str("ss"),
            'å' | 'à' | 'á' => s.push('a'),
            'é' | 'è' => s.push('e'),
            c if c.is_ascii_alphanumeric() => s.push(c),
            _ => {
                if !s.is_empty() && !s.ends_with('-') {
                    s.push('-');
                }
            }
        }
    }
    while s.ends_with('-') {
        s.pop();
    }
    s
}

impl Generator {
    fn new(opts: &DemoOptions) -> Result<Generator, StoreError> {
        let currencies = COMPANIES
            .iter()
            .map(|c| Currency::parse(c.currency).map_err(|e| StoreError::Invalid(e.to_string())))
            .collect::<Result<_, _>>()?;
        Ok(Generator {
            rng: StdRng::seed_from_u64(opts.seed),
            as_of: opts.as_of,
            history_days: opts.history_days,
            pays: None,
            currencies,
            shares: COMPANIES.map(|c| c.share),
            doc_seq: [0; COMPANIES.len()],
            batch: Batch::default(),
            promises: Vec::new(),
            disputes: Vec::new(),
            holds: Vec::new(),
            stats: DemoStats::default(),
        })
    }

    fn unit(&mut self) -> f64 {
        self.rng.random::<f64>()
    }

    fn normal(&mut self) -> f64 {
        // Box-Muller; 1 - u keeps the logarithm away from zero.
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.rng.random_range(0..xs.len())]
    }

    fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let mut r = self.rng.random_range(0..total);
        for (i, &w) in weights.iter().enumerate() {
            if r < w {
                return i;
            }
            r -= w;
        }
        weights.len() - 1
    }

    fn days_between(&mut self, from: NaiveDate, to: NaiveDate) -> NaiveDate {
        let span = (to - from).num_days().max(0);
        add_days(from, self.rng.random_range(0..=span))
    }

    /// Heavy-tailed item counts that add up to exactly `items`: Pareto weights, at least
    /// one item per customer when there are enough, integer arithmetic so no float
    /// rounding can make the total drift.
    fn items_per_customer(&mut self, customers: usize, items: usize) -> Vec<usize> {
        if customers == 0 {
            return Vec::new();
        }
        let weights: Vec<u64> = (0..customers)
            .map(|_| {
                // Shifting the Pareto towards zero leaves a third of the customers with
                // one or two items; the cap keeps one customer from swallowing a small book.
                let w = (1.0 - self.unit()).powf(-1.0 / 1.2).min(400.0) - 0.9;
                (w * 1000.0) as u64
            })
            .collect();
        let base = usize::from(items >= customers);
        let rest = (items - base * customers) as u128;
        let total: u128 = weights.iter().map(|&w| u128::from(w)).sum();
        let mut counts: Vec<usize> = weights
            .iter()
            .map(|&w| base + (rest * u128::from(w) / total) as usize)
            .collect();
        let left = items - counts.iter().sum::<usize>();
        let start = self.rng.random_range(0..customers);
        for k in 0..left {
            counts[(start + k) % customers] += 1;
        }
        counts
    }

    fn company_name(&mut self, co: &Company) -> (String, String) {
        let words = match co.lang {
            Lang::De => &DE_WORDS,
            Lang::En => &EN_WORDS,
            Lang::Sv => &SV_WORDS,
        };
        let form = self.pick(co.legal_forms);
        let core = match self.rng.random_range(0..10) {
            0..=4 => format!("{} {}", self.pick(words.stems), self.pick(words.trades)),
            5..=8 => format!("{} {}", self.pick(words.surnames), self.pick(words.trades)),
            _ => format!(
                "{} & {}",
                self.pick(words.surnames),
                self.pick(words.surnames)
            ),
        };
        let mailbox = self.pick(words.mailboxes);
        let email = format!("{mailbox}@{}.{}", slug(&core), co.tld);
        (format!("{core} {form}"), email)
    }

    fn customer(&mut self, index: usize, items: usize, hold: bool) {
        let shares = self.shares;
        let ci = self.weighted(&shares);
        let co = &COMPANIES[ci];
        let currency = self.currencies[ci];
        let code = format!("C{:06}", index + 1);
        let (name, email) = self.company_name(co);
        let email = self.rng.random_bool(0.85).then_some(email);
        let phone = self.rng.random_bool(0.9).then(|| {
            let area = self.pick(co.areas);
            let number = self.rng.random_range(1_000_000..10_000_000);
            format!("{} {area} {number}", co.phone_prefix)
        });
        // Bigger limits are rarer; the scale makes a SEK limit a SEK-sized number.
        let credit_limit = self.rng.random_bool(0.8).then(|| {
            let steps = [
                5_000, 10_000, 20_000, 25_000, 50_000, 100_000, 250_000, 500_000,
            ];
            let i = self.weighted(&[20, 25, 15, 15, 12, 8, 4, 1]);
            let scale = if co.scale > 5.0 { 10 } else { 1 };
            (Decimal::from(steps[i] * scale), currency)
        });
        let language = Some(self.pick(co.languages).to_string());
        let timezone = Some(self.pick(co.timezones).to_string());
        self.batch.customers.push(CustomerInfo {
            company: co.code.to_string(),
            code: code.clone(),
            name,
            country: co.country.to_string(),
            email,
            phone,
            language,
            timezone,
            credit_limit,
            street: None,
            postal_code: None,
            city: None,
            dunning: None,
        });
        self.stats.customers += 1;

        let terms = TERMS[self.weighted(&TERMS_WEIGHTS)];
        // Some customers simply buy bigger; keeps a customer's invoices alike in size.
        let size = co.scale * (0.4 * self.normal()).exp();
        let first = self.batch.items.len();
        let mut open_total = 0;
        if self.history_days > 0 {
            let delay = (8.0 + 12.0 * self.normal()).max(-5.0);
            let unpaid = match self.weighted(&[70, 25, 5]) {
                0 => 0.0,
                1 => self.rng.random_range(0.01..0.1),
                _ => self.rng.random_range(0.2..0.5),
            };
            self.pays = Some((delay, unpaid));
        }
        for _ in 0..items {
            open_total += self.item(ci, currency, &code, terms, size);
        }
        if self.history_days > 0 {
            self.paid_history(ci, currency, &code, terms, size, items);
        }
        self.customer_disputes(ci, &code, first);
        if open_total > 0 && self.rng.random_bool(0.05) {
            self.customer_promises(ci, &code, open_total);
        }
        if hold {
            let created_on = add_days(self.as_of, -self.rng.random_range(10..=120));
            let until = match self.rng.random_range(0..10) {
                0..=3 => None,
                4..=6 => Some(add_days(self.as_of, -self.rng.random_range(1..=9))),
                _ => Some(add_days(self.as_of, self.rng.random_range(1..=90))),
            };
            let reason = self.pick(CUSTOMER_HOLD_REASONS);
            self.holds.push(NewHold {
                customer: code,
                company: ci,
                reason,
                until,
                created_on,
            });
        }
    }

    /// The customer's past invoices over `history_days`, about twice as many as
    /// its open items, paid as this customer pays: a delay of its own after the due
    /// date (some pay early, a few very late) and a share it never pays. An invoice
    /// whose payment day is still ahead is open.
    fn paid_history(
        &mut self,
        ci: usize,
        currency: Currency,
        customer: &str,
        terms: i64,
        size: f64,
        items: usize,
    ) {
        let co = &COMPANIES[ci];
        let (delay, unpaid) = self.pays.unwrap_or((0.0, 0.0));
        let days = i64::from(self.history_days);
        for _ in 0..(2 * items).max(2) {
            self.doc_seq[ci] += 1;
            let seq = self.doc_seq[ci];
            let document_date = add_days(self.as_of, -self.rng.random_range(1..=days));
            let due_date = add_days(document_date, terms);
            let amount = self.amount_cents(size);
            let external_id = format!("{}-H{seq:07}", co.code);
            let document_no = format!("INV-{}-{}-H{seq:06}", co.tag, document_date.year());
            let paid_on = add_days(due_date, (delay + 5.0 * self.normal()).round() as i64);
            let paid = paid_on <= self.as_of && !self.rng.random_bool(unpaid);
            if paid {
                self.batch.payments.push(PaymentInput {
                    source: SOURCE.to_string(),
                    external_id: format!("PAY-{external_id}"),
                    company: co.code.to_string(),
                    customer: customer.to_string(),
                    amount: cents(amount),
                    currency,
                    value_date: paid_on.max(document_date),
                    reference: document_no.clone(),
                    item_ref: Some(external_id.clone()),
                });
                self.stats.payments += 1;
                self.stats.items_cleared += 1;
            }
            self.batch.items.push(ItemInput {
                source: SOURCE.to_string(),
                external_id,
                company: co.code.to_string(),
                customer: customer.to_string(),
                document_no,
                document_date,
                due_date,
                original_amount: cents(amount),
                open_amount: if paid { Decimal::ZERO } else { cents(amount) },
                currency,
                hold: None,
                original_document: None,
            });
            self.stats.items += 1;
        }
    }

    fn amount_cents(&mut self, size: f64) -> i64 {
        let units = if self.rng.random_bool(0.004) {
            // The occasional project or framework invoice: 50k-500k, log-uniform.
            10f64.powf(self.rng.random_range(50_000f64.log10()..500_000f64.log10()))
        } else {
            (600f64.ln() + 1.1 * self.normal())
                .exp()
                .clamp(20.0, 40_000.0)
                * size
        };
        ((units * 100.0).round() as i64).max(100)
    }

    /// Appends one item (and its payment, if any); returns its open amount in cents.
    fn item(
        &mut self,
        ci: usize,
        currency: Currency,
        customer: &str,
        terms: i64,
        size: f64,
    ) -> i64 {
        let co = &COMPANIES[ci];
        self.doc_seq[ci] += 1;
        let seq = self.doc_seq[ci];
        // Older invoices have mostly been paid, so open items crowd towards the present.
        let age = (HISTORY_DAYS * self.unit().powf(1.4)) as i64;
        let document_date = add_days(self.as_of, -age);
        let terms = if self.rng.random_bool(0.1) {
            self.pick(&TERMS)
        } else {
            terms
        };
        let due_date = add_days(document_date, terms);
        let amount = self.amount_cents(size);
        let external_id = format!("{}-{seq:07}", co.code);
        let document_no = format!("INV-{}-{}-{seq:06}", co.tag, document_date.year());

        // Partial payments only land on overdue items, about three quarters of the book,
        // so 26% of those makes about 20% overall. With a paid history the book
        // follows the customer's habits instead: paid in full on its day, or not.
        let roll = self.unit();
        let paid = if let Some((delay, unpaid)) = self.pays {
            let on = add_days(due_date, (delay + 5.0 * self.normal()).round() as i64);
            (on <= self.as_of && !self.rng.random_bool(unpaid))
                .then(|| (amount, on.max(document_date)))
        } else if roll < 0.03 {
            Some((amount, self.days_between(document_date, self.as_of)))
        } else if roll < 0.29 && due_date <= self.as_of {
            let share = self.rng.random_range(0.1..0.9);
            let part = ((amount as f64 * share).round() as i64).clamp(1, amount - 1);
            Some((part, self.days_between(due_date, self.as_of)))
        } else {
            None
        };
        let open = amount - paid.map_or(0, |p| p.0);
        if let Some((part, value_date)) = paid {
            self.batch.payments.push(PaymentInput {
                source: SOURCE.to_string(),
                external_id: format!("PAY-{external_id}"),
                company: co.code.to_string(),
                customer: customer.to_string(),
                amount: cents(part),
                currency,
                value_date,
                reference: document_no.clone(),
                item_ref: Some(external_id.clone()),
            });
            self.stats.payments += 1;
        }
        if open == 0 {
            self.stats.items_cleared += 1;
        }
        let hold = (open > 0 && self.rng.random_bool(0.03)).then(|| {
            let reason = self.pick(ITEM_HOLD_REASONS).to_string();
            // Some holds have already lifted by themselves; some never lift.
            let until = match self.rng.random_range(0..20) {
                0..=4 => None,
                5..=11 => Some(add_days(self.as_of, -self.rng.random_range(1..=60))),
                _ => Some(add_days(self.as_of, self.rng.random_range(1..=90))),
            };
            Hold { reason, until }
        });
        self.stats.item_holds += u64::from(hold.is_some());
        self.batch.items.push(ItemInput {
            source: SOURCE.to_string(),
            external_id,
            company: co.code.to_string(),
            customer: customer.to_string(),
            document_no,
            document_date,
            due_date,
            original_amount: cents(amount),
            open_amount: cents(open),
            currency,
            hold,
            original_document: None,
        });
        self.stats.items += 1;
        open
    }

    /// Disputes over the customer's open items from `first` on; a third of them also
    /// cover the next open invoice or two, as a complaint about one delivery often does.
    fn customer_disputes(&mut self, ci: usize, customer: &str, first: usize) {
        let open: Vec<usize> = (first..self.batch.items.len())
            .filter(|&i| !self.batch.items[i].open_amount.is_zero())
            .collect();
        let mut k = 0;
        while k < open.len() {
            if !self.rng.random_bool(0.015) {
                k += 1;
                continue;
            }
            let extra = match self.rng.random_range(0..10) {
                0..=6 => 0,
                7..=8 => 1,
                _ => 2,
            };
            let group = &open[k..(k + 1 + extra).min(open.len())];
            k += group.len();
            let items: Vec<String> = group
                .iter()
                .map(|&i| self.batch.items[i].external_id.clone())
                .collect();
            let latest = group
                .iter()
                .map(|&i| self.batch.items[i].document_date)
                .max()
                .unwrap_or(self.as_of);
            let opened_on = self.days_between(latest, self.as_of);
            let reason = self.pick(DISPUTE_REASONS);
            let resolved = (opened_on < self.as_of && self.rng.random_bool(0.25)).then(|| {
                let on = self.days_between(add_days(opened_on, 1), self.as_of);
                (on, self.pick(DISPUTE_RESOLUTIONS))
            });
            self.stats.disputes += 1;
            self.stats.disputed_items += items.len() as u64;
            self.disputes.push(NewDispute {
                customer: customer.to_string(),
                company: ci,
                reason,
                opened_on,
                resolved,
                items,
            });
        }
    }

    /// One promise, sometimes preceded by an older one: past due dates are judged the
    /// way the promise run would have judged them, future ones are still open.
    fn customer_promises(&mut self, ci: usize, customer: &str, open: i64) {
        let n = if self.rng.random_bool(0.3) { 2 } else { 1 };
        for _ in 0..n {
            let created_on = add_days(self.as_of, -self.rng.random_range(0..=90));
            let promised_on = add_days(created_on, self.rng.random_range(3..=30));
            let share = self.rng.random_range(0.2..=1.0);
            let amount = ((open as f64 * share).round() as i64).clamp(1, open);
            let (status, judged_on) = if promised_on < self.as_of {
                let status = match self.weighted(&[45, 20, 35]) {
                    0 => PromiseStatus::Kept,
                    1 => PromiseStatus::PartiallyKept,
                    _ => PromiseStatus::Broken,
                };
                let judged = add_days(promised_on, self.rng.random_range(1..=5)).min(self.as_of);
                (status, Some(judged))
            } else {
                (PromiseStatus::Open, None)
            };
            self.promises.push(NewPromise {
                customer: customer.to_string(),
                company: ci,
                amount: cents(amount),
                promised_on,
                created_on,
                status,
                judged_on,
            });
        }
    }

    fn flush(
        &mut self,
        store: &mut Store,
        progress: Option<&ProgressBar>,
    ) -> Result<(), StoreError> {
        if self.batch.customers.is_empty() && self.batch.items.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        store.ingest(&batch)?;
        if let Some(pb) = progress {
            pb.inc(batch.items.len() as u64);
        }
        // Hand the allocations back so the next chunk does not regrow them.
        let Batch {
            mut customers,
            mut items,
            mut payments,
            ..
        } = batch;
        customers.clear();
        items.clear();
        payments.clear();
        self.batch = Batch {
            customers,
            items,
            payments,
            snapshot_sources: Vec::new(),
            as_of: None,
        };
        Ok(())
    }

    fn write_records(&mut self, store: &mut Store) -> Result<(), StoreError> {
        let records = PastRecords {
            source: SOURCE,
            promises: self
                .promises
                .iter()
                .map(|p| PastPromise {
                    company: COMPANIES[p.company].code,
                    customer: &p.customer,
                    amount: p.amount,
                    currency: COMPANIES[p.company].currency,
                    promised_on: p.promised_on,
                    created_on: p.created_on,
                    status: p.status,
                    judged_on: p.judged_on,
                })
                .collect(),
            disputes: self
                .disputes
                .iter()
                .map(|d| PastDispute {
                    company: COMPANIES[d.company].code,
                    customer: &d.customer,
                    reason: d.reason,
                    opened_on: d.opened_on,
                    resolved: d.resolved,
                    items: &d.items,
                })
                .collect(),
            holds: self
                .holds
                .iter()
                .map(|h| PastHold {
                    company: COMPANIES[h.company].code,
                    customer: &h.customer,
                    reason: h.reason,
                    until: h.until,
                    created_on: h.created_on,
                })
                .collect(),
        };
        store.write_past_records(&records)?;
        self.stats.promises = self.promises.len() as u64;
        self.stats.holds = self.holds.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_of() -> NaiveDate {
        "2026-11-23".parse().unwrap()
    }

    fn opts(customers: usize, items: usize, seed: u64) -> DemoOptions {
        DemoOptions {
            customers,
            items,
            seed,
            as_of: as_of(),
            history_days: 0,
        }
    }

    fn fresh(dir: &tempfile::TempDir, name: &str) -> Store {
        Store::open(&dir.path().join(name)).unwrap()
    }

    fn count(s: &Store, sql: &str) -> i64 {
        s.test_connection()
            .query_row(sql, [], |r| r.get(0))
            .unwrap()
    }

    fn rows(s: &Store, sql: &str) -> Vec<String> {
        let mut st = s.test_connection().prepare(sql).unwrap();
        let n = st.column_count();
        st.query_map([], |r| {
            (0..n)
                .map(|i| {
                    r.get::<_, arrears_store::rusqlite::types::Value>(i)
                        .map(|v| format!("{v:?}"))
                })
                .collect::<arrears_store::rusqlite::Result<Vec<_>>>()
                .map(|v| v.join("|"))
        })
        .unwrap()
        .collect::<arrears_store::rusqlite::Result<_>>()
        .unwrap()
    }

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn portfolio_matches_the_options_and_looks_like_a_real_book() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = fresh(&dir, "a.db");
        let pb = ProgressBar::hidden();
        let st = generate(&mut s, &opts(400, 4000, 3), Some(&pb)).unwrap();
        assert_eq!(pb.position(), 4000, "progress counts every item written");
        assert_eq!((st.customers, st.items), (400, 4000));
        assert_eq!(count(&s, "SELECT COUNT(*) FROM customers"), 400);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM items"), 4000);
        assert_eq!(
            count(&s, "SELECT COUNT(*) FROM payments"),
            st.payments as i64
        );
        assert_eq!(
            count(&s, "SELECT COUNT(*) FROM promises"),
            st.promises as i64
        );
        assert_eq!(
            count(&s, "SELECT COUNT(*) FROM disputes"),
            st.disputes as i64
        );
        assert_eq!(
            count(&s, "SELECT COUNT(*) FROM dispute_items"),
            st.disputed_items as i64
        );
        assert_eq!(count(&s, "SELECT COUNT(*) FROM holds"), st.holds as i64);
        assert_eq!(
            count(&s, "SELECT COUNT(*) FROM items WHERE status = 'cleared'"),
            st.items_cleared as i64
        );
        assert_eq!(
            count(
                &s,
                "SELECT COUNT(*) FROM items WHERE hold_reason IS NOT NULL"
            ),
            st.item_holds as i64
        );

        assert_eq!(
            count(&s, "SELECT COUNT(DISTINCT company) FROM customers"),
            5
        );
        assert_eq!(count(&s, "SELECT COUNT(DISTINCT currency) FROM items"), 5);
        let biggest: String = s
            .test_connection()
            .query_row(
                "SELECT company FROM customers GROUP BY company ORDER BY COUNT(*) DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(biggest, "ACME_DE");
        assert_eq!(
            count(&s, "SELECT COUNT(*) FROM customers c WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.customer_id = c.id)"),
            0,
            "with more items than customers everyone owes something"
        );
        assert!(count(&s, "SELECT COUNT(*) FROM customers WHERE email IS NULL") > 0);
        assert!(count(&s, "SELECT COUNT(*) FROM customers WHERE email IS NOT NULL") > 300);
        assert!(
            count(
                &s,
                "SELECT COUNT(*) FROM customers WHERE credit_limit IS NOT NULL"
            ) > 250
        );

        // Heavy tail: the busiest customer has many times the typical count.
        let per_customer: Vec<i64> = rows(
            &s,
            "SELECT COUNT(*) FROM items GROUP BY customer_id ORDER BY 1",
        )
        .iter()
        .map(|r| {
            r.trim_start_matches("Integer(")
                .trim_end_matches(')')
                .parse()
                .unwrap()
        })
        .collect();
        let median = per_customer[per_customer.len() / 2];
        assert!(
            *per_customer.last().unwrap() >= 8 * median,
            "{per_customer:?}"
        );

        let lo = add_days(as_of(), -240).to_string();
        let mut partial = 0;
        let mut not_due = 0;
        let mut big = 0;
        let mut st_items = s
            .test_connection()
            .prepare(
                "SELECT document_date, due_date, original_amount, open_amount, status FROM items",
            )
            .unwrap();
        let mut rs = st_items.query([]).unwrap();
        while let Some(r) = rs.next().unwrap() {
            let (doc, due): (String, String) = (r.get(0).unwrap(), r.get(1).unwrap());
            let amount = dec(&r.get::<_, String>(2).unwrap());
            let open = dec(&r.get::<_, String>(3).unwrap());
            assert!(
                due >= doc && doc >= lo && doc <= as_of().to_string(),
                "{doc} {due}"
            );
            assert!(amount > Decimal::ZERO && amount.scale() <= 2, "{amount}");
            assert!(open >= Decimal::ZERO && open <= amount);
            assert_eq!(open.is_zero(), r.get::<_, String>(4).unwrap() == "cleared");
            partial += i32::from(open > Decimal::ZERO && open < amount);
            not_due += i32::from(due > as_of().to_string());
            big += i32::from(amount >= dec("50000"));
        }
        assert!(
            (600..1000).contains(&partial),
            "about 20% partially paid: {partial}"
        );
        assert!((40..200).contains(&st.items_cleared), "{st:?}");
        assert!(not_due > 100 && not_due < 2000, "{not_due}");
        assert!(big > 0, "a few large invoices");

        // Every payment is allocated, dated between due date and as-of for partial ones.
        assert_eq!(
            count(&s, "SELECT COUNT(*) FROM payments WHERE item_id IS NULL"),
            0
        );
        assert_eq!(
            count(
                &s,
                "SELECT COUNT(*) FROM payments p JOIN items i ON i.id = p.item_id
                 WHERE i.status = 'open' AND (p.value_date < i.due_date OR p.value_date > '2026-11-23')"
            ),
            0
        );

        assert!(
            st.promises > 0 && st.disputes > 0 && st.holds > 0 && st.item_holds > 0,
            "{st:?}"
        );
        assert_eq!(
            count(&s, "SELECT COUNT(*) FROM promises WHERE status = 'open' AND promised_on < '2026-11-23'"),
            0,
            "past promises are judged"
        );
        assert_eq!(
            count(
                &s,
                "SELECT COUNT(*) FROM promises WHERE status <> 'open' AND judged_on IS NULL"
            ),
            0
        );
        assert_eq!(
            count(&s, "SELECT COUNT(*) FROM dispute_items di JOIN items i ON i.id = di.item_id WHERE i.status <> 'open'"),
            0,
            "only open items are disputed"
        );
        assert!(
            count(
                &s,
                "SELECT COUNT(*) FROM items WHERE hold_until < '2026-11-23'"
            ) > 0
        );
        assert!(
            count(
                &s,
                "SELECT COUNT(*) FROM items WHERE hold_until > '2026-11-23'"
            ) > 0
        );
    }

    #[test]
    fn a_seed_names_a_portfolio() {
        let dir = tempfile::tempdir().unwrap();
        let dump = |name: &str, seed: u64| {
            let mut s = fresh(&dir, name);
            generate(&mut s, &opts(80, 700, seed), None).unwrap();
            let items = rows(
                &s,
                "SELECT i.*, c.company, c.code, c.name, c.email FROM items i
                 JOIN customers c ON c.id = i.customer_id ORDER BY i.id",
            );
            let rest = [
                "SELECT * FROM payments ORDER BY id",
                "SELECT * FROM promises ORDER BY id",
                "SELECT * FROM disputes ORDER BY id",
                "SELECT * FROM dispute_items ORDER BY dispute_id, item_id",
                "SELECT * FROM holds ORDER BY id",
            ]
            .map(|q| rows(&s, q));
            (items, rest)
        };
        let a = dump("a.db", 11);
        let b = dump("b.db", 11);
        let c = dump("c.db", 12);
        assert_eq!(a.0.len(), 700);
        assert_eq!(a, b);
        assert_ne!(a.0, c.0);
    }

    #[test]
    fn small_and_degenerate_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = fresh(&dir, "a.db");
        let st = generate(&mut s, &opts(10, 3, 1), None).unwrap();
        assert_eq!((st.customers, st.items), (10, 3));
        assert_eq!(count(&s, "SELECT COUNT(*) FROM customers"), 10);

        let mut s = fresh(&dir, "b.db");
        assert_eq!(
            generate(&mut s, &opts(0, 0, 1), None).unwrap(),
            DemoStats::default()
        );
        assert!(generate(&mut s, &opts(0, 5, 1), None).is_err());
    }

    #[test]
    fn a_second_portfolio_in_the_same_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = fresh(&dir, "a.db");
        generate(&mut s, &opts(5, 30, 1), None).unwrap();
        let err = generate(&mut s, &opts(5, 30, 2), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("fresh database"), "{err}");
        assert_eq!(count(&s, "SELECT COUNT(*) FROM items"), 30);
    }

    #[test]
    fn item_counts_add_up_exactly_and_are_skewed() {
        let mut g = Generator::new(&opts(0, 0, 5)).unwrap();
        for (customers, items) in [(1, 1), (3, 2), (7, 1000), (1000, 1000), (1000, 12_345)] {
            let c = g.items_per_customer(customers, items);
            assert_eq!(c.len(), customers);
            assert_eq!(c.iter().sum::<usize>(), items);
            if items >= customers {
                assert!(c.iter().all(|&n| n >= 1));
            }
        }
    }

    #[test]
    fn email_domains_are_ascii() {
        assert_eq!(slug("Müller & Söhne"), "mueller-soehne");
        assert_eq!(slug("Åberg Bygg"), "aberg-bygg");
        assert_eq!(slug("Blue River Logistics"), "blue-river-logistics");
    }

    #[test]
    #[ignore = "timing only: cargo test --release --lib demo -- --ignored --nocapture"]
    fn full_size_timing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = fresh(&dir, "big.db");
        let t = std::time::Instant::now();
        let st = generate(&mut s, &opts(100_000, 1_000_000, 1), None).unwrap();
        println!("{st:?} in {:.1}s", t.elapsed().as_secs_f64());
    }
}
