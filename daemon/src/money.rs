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
        Ok(Money::new(self.amount + other.amount, self.currency))
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
            .map(|r| m.amount * r)
            .ok_or(MoneyError::NoRate {
                from: m.currency,
                to: self.base,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

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
