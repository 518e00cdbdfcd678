//! Money: an exact decimal amount tied to an ISO 4217 currency.
//!
//! Amounts of different currencies are never added implicitly; `Money::checked_add`
//! refuses a mismatch and conversion goes through an explicit [`Rates`] table.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MoneyError {
    #[error("unknown currency code `{0}` (expected an ISO 4217 code such as EUR)")]
    UnknownCurrency(String),
    #[error("`{0}` is not a decimal amount")]
    BadAmount(String),
    #[error("cannot combine {0} with {1} without an explicit rate")]
    CurrencyMismatch(Currency, Currency),
    #[error("no exchange rate from {from} to {to}")]
    NoRate { from: Currency, to: Currency },
    #[error("amount {0} is out of range (at most {MAX_AMOUNT} in absolute value)")]
    OutOfRange(Decimal),
    #[error("amount {amount} has more decimals than {currency} has ({digits})")]
    TooPrecise {
        amount: Decimal,
        currency: Currency,
        digits: u32,
    },
    #[error("arithmetic overflow in {0}")]
    Overflow(&'static str),
}

/// The largest amount (in absolute value) Arrears accepts at any entry point: 10^15 − 1
/// units of any currency. Far above any real receivable, and far enough below
/// `Decimal::MAX` (≈ 7.9·10^28) that a customer's sums, rates and interest over even
/// millions of items cannot overflow.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(0xA4C6_7FFF, 0x0003_8D7E, 0, false, 0);

/// Checks an amount from outside (a file, a connector, the API) against the bound.
pub fn check_bound(amount: Decimal) -> Result<Decimal, MoneyError> {
    if amount.abs() > MAX_AMOUNT {
        return Err(MoneyError::OutOfRange(amount));
    }
    Ok(amount)
}

/// Checks an amount from outside against the bound and the currency's minor units:
/// `10.001 EUR` and `100.50 JPY` are refused; trailing zeros (`10.000 EUR`) are fine.
pub fn check_amount(amount: Decimal, currency: Currency) -> Result<Decimal, MoneyError> {
    check_bound(amount)?;
    let digits = currency.minor_digits();
    if amount.normalize().scale() > digits {
        return Err(MoneyError::TooPrecise {
            amount,
            currency,
            digits,
        });
    }
    Ok(amount)
}

/// A validated ISO 4217 code, stored as three ASCII capitals so it is `Copy` and cheap to hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        let code = code.trim();
        if iso_currency::Currency::from_code(code).is_none() {
            return Err(MoneyError::UnknownCurrency(code.to_string()));
        }
        let b = code.as_bytes();
        Ok(Currency([b[0], b[1], b[2]]))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII capitals ever get in through `parse`.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// Minor-unit digits (2 for EUR, 0 for JPY, 3 for KWD); amounts are rounded to this.
    pub fn minor_digits(&self) -> u32 {
        iso_currency::Currency::from_code(self.as_str())
            .and_then(|c| c.exponent())
            .map(u32::from)
            .unwrap_or(2)
    }
}

/// The one rounding of money: to `digits` decimals, half away from zero, written with
/// exactly that many decimals (`5` → `5.00`), so one amount always prints one way.
pub fn round_to(x: Decimal, digits: u32) -> Decimal {
    let mut r =
        x.round_dp_with_strategy(digits, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    r.rescale(digits);
    r
}

/// Toward zero, to `digits` decimals: for caps, so a capped figure never exceeds its
/// cap.
pub fn truncate_to(x: Decimal, digits: u32) -> Decimal {
    let mut r = x.round_dp_with_strategy(digits, rust_decimal::RoundingStrategy::ToZero);
    r.rescale(digits);
    r
}

/// [`round_to`] the minor units of the currency `code` (0 for JPY, 3 for KWD).
pub fn round_minor(x: Decimal, code: &str) -> Decimal {
    round_to(x, minor_digits_of(code))
}

/// Minor-unit digits of a stored currency code; 2 for a code that does not parse
/// (stored codes were validated on the way in).
pub fn minor_digits_of(code: &str) -> u32 {
    Currency::parse(code).map_or(2, |c| c.minor_digits())
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::parse(s)
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Currency::parse(&s)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_string()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Money {
    pub amount: Decimal,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount: Decimal, currency: Currency) -> Self {
        Money { amount, currency }
    }

    pub fn zero(currency: Currency) -> Self {
        Money::new(Decimal::ZERO, currency)
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        let sum = self
            .amount
            .checked_add(other.amount)
            .ok_or(MoneyError::Overflow("a sum of amounts"))?;
        Ok(Money::new(sum, self.currency))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

/// Parses a user-supplied amount exactly; rejects floats' exponent forms and garbage.
pub fn parse_amount(s: &str) -> Result<Decimal, MoneyError> {
    let t = s.trim();
    Decimal::from_str_exact(t).map_err(|_| MoneyError::BadAmount(t.to_string()))
}

/// Explicit conversion rates into one base currency, as configured in the rules.
#[derive(Clone, Debug)]
pub struct Rates {
    pub base: Currency,
    /// units of `base` per one unit of the keyed currency
    pub to_base: BTreeMap<Currency, Decimal>,
}

impl Rates {
    pub fn to_base(&self, m: Money) -> Result<Decimal, MoneyError> {
        if m.currency == self.base {
            return Ok(m.amount);
        }
        self.to_base
            .get(&m.currency)
            .ok_or(MoneyError::NoRate {
                from: m.currency,
                to: self.base,
            })
            .and_then(|r| {
                m.amount
                    .checked_mul(*r)
                    .ok_or(MoneyError::Overflow("a currency conversion"))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn money_rounds_once_to_the_currency_minor_units_half_away_from_zero() {
        assert_eq!(round_minor(dec!(1234.5), "JPY").to_string(), "1235");
        assert_eq!(round_minor(dec!(-1234.5), "JPY").to_string(), "-1235");
        assert_eq!(round_minor(dec!(1.2345), "KWD").to_string(), "1.235");
        assert_eq!(round_minor(dec!(1.5), "KWD").to_string(), "1.500");
        assert_eq!(round_minor(dec!(2.005), "EUR").to_string(), "2.01");
        assert_eq!(round_minor(dec!(7), "XXX?").to_string(), "7.00");
        assert_eq!(truncate_to(dec!(9.999), 2).to_string(), "9.99");
        assert_eq!(truncate_to(dec!(-9.999), 0).to_string(), "-9");
    }

    #[test]
    fn currency_codes_are_validated() {
        assert_eq!(Currency::parse("EUR").unwrap().as_str(), "EUR");
        assert_eq!(
            Currency::parse("EURO"),
            Err(MoneyError::UnknownCurrency("EURO".into()))
        );
        assert!(Currency::parse("XYZ").is_err());
        assert_eq!(Currency::parse("JPY").unwrap().minor_digits(), 0);
        assert_eq!(Currency::parse("KWD").unwrap().minor_digits(), 3);
    }

    #[test]
    fn amounts_parse_exactly_and_reject_garbage() {
        assert_eq!(parse_amount(" 12.30 ").unwrap(), dec!(12.30));
        assert!(parse_amount("12,30").is_err());
        assert!(parse_amount("1e3").is_err());
        assert!(parse_amount("").is_err());
    }

    #[test]
    fn the_bound_and_the_minor_units_are_checked() {
        let eur = Currency::parse("EUR").unwrap();
        let jpy = Currency::parse("JPY").unwrap();
        let kwd = Currency::parse("KWD").unwrap();
        assert_eq!(MAX_AMOUNT, dec!(999_999_999_999_999));
        assert!(check_amount(dec!(999999999999999), eur).is_ok());
        assert!(check_amount(dec!(-999999999999999), eur).is_ok());
        assert_eq!(
            check_amount(dec!(1000000000000000), eur),
            Err(MoneyError::OutOfRange(dec!(1000000000000000)))
        );
        let poison = parse_amount("50000000000000000000000000000").unwrap();
        assert!(check_amount(poison, eur).is_err());
        assert!(check_amount(dec!(10.001), eur).is_err());
        assert!(check_amount(dec!(10.000), eur).is_ok());
        assert!(check_amount(dec!(100.50), jpy).is_err());
        assert!(check_amount(dec!(100.0), jpy).is_ok());
        assert!(check_amount(dec!(1.234), kwd).is_ok());
        assert!(check_amount(dec!(1.2345), kwd).is_err());
    }

    #[test]
    fn sums_and_conversions_overflow_into_errors_not_panics() {
        let eur = Currency::parse("EUR").unwrap();
        let big = Money::new(Decimal::MAX, eur);
        assert_eq!(
            big.checked_add(big),
            Err(MoneyError::Overflow("a sum of amounts"))
        );
        let usd = Currency::parse("USD").unwrap();
        let rates = Rates {
            base: eur,
            to_base: [(usd, dec!(2))].into_iter().collect(),
        };
        assert!(rates.to_base(Money::new(Decimal::MAX, usd)).is_err());
    }

    #[test]
    fn mixing_currencies_needs_a_rate() {
        let eur = Currency::parse("EUR").unwrap();
        let usd = Currency::parse("USD").unwrap();
        let a = Money::new(dec!(1), eur);
        assert!(a.checked_add(Money::new(dec!(1), usd)).is_err());
        let rates = Rates {
            base: eur,
            to_base: [(usd, dec!(0.9))].into_iter().collect(),
        };
        assert_eq!(rates.to_base(Money::new(dec!(10), usd)).unwrap(), dec!(9.0));
        let gbp = Currency::parse("GBP").unwrap();
        assert!(rates.to_base(Money::new(dec!(1), gbp)).is_err());
    }
}
