//! Money: US dollar amounts as integer nano-dollars ([`Nanos`]), with exact decimal conversions and the LiteLLM JSON shape.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Nano-dollars per dollar.
const NANOS_PER_USD: i64 = 1_000_000_000;
/// Decimal places of one nano-dollar.
const NANO_SCALE: u32 = 9;

/// An amount of US dollars in integer nano-dollars (1e-9 USD).
///
/// All arithmetic is integer and saturating; sums never go through `f64`. On the wire (serde) an amount is a
/// JSON number in USD, as in LiteLLM's API (`"spend": 0.000015`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nanos(pub i64);

impl Nanos {
    pub const ZERO: Nanos = Nanos(0);
    pub const MAX: Nanos = Nanos(i64::MAX);
    pub const MIN: Nanos = Nanos(i64::MIN);

    /// A USD amount rounded half-to-even to the nano-dollar; saturates at [`Nanos::MIN`]/[`Nanos::MAX`].
    pub fn from_usd_decimal(usd: Decimal) -> Nanos {
        Self::checked_from_usd_decimal(usd).unwrap_or(if usd.is_sign_negative() {
            Nanos::MIN
        } else {
            Nanos::MAX
        })
    }

    /// Like [`Nanos::from_usd_decimal`] but `None` when the rounded amount does not fit an `i64` of nanos.
    pub fn checked_from_usd_decimal(usd: Decimal) -> Option<Nanos> {
        let rounded = usd.round_dp_with_strategy(NANO_SCALE, RoundingStrategy::MidpointNearestEven);
        // After rounding the scale is at most 9, so mantissa * 10^(9 - scale) is the amount in nanos.
        let factor = 10i128.checked_pow(NANO_SCALE.checked_sub(rounded.scale())?)?;
        let nanos = rounded.mantissa().checked_mul(factor)?;
        i64::try_from(nanos).ok().map(Nanos)
    }

    /// The exact amount in USD as a decimal (scale 9; use `normalize()` to drop trailing zeros).
    pub fn to_decimal(self) -> Decimal {
        Decimal::new(self.0, NANO_SCALE)
    }

    /// The amount in USD as the nearest `f64`. For JSON display only; never sum these.
    pub fn to_usd_f64(self) -> f64 {
        const EXACT: i64 = 1 << 53;
        if (-EXACT..=EXACT).contains(&self.0) {
            // Both operands are exact, so the IEEE quotient is the f64 nearest the true amount.
            self.0 as f64 / NANOS_PER_USD as f64
        } else {
            self.to_decimal().to_string().parse().unwrap_or(f64::NAN)
        }
    }

    /// Parse an API input such as `max_budget: 10.5`. Goes through the shortest decimal representation of
    /// the `f64`, so `0.1` is exactly 100 000 000 nanos. `None` for NaN, infinities and amounts that do not
    /// fit an `i64` of nanos. Sub-nano amounts round half-to-even.
    pub fn from_usd_f64(usd: f64) -> Option<Nanos> {
        if !usd.is_finite() || usd.abs() > 1e11 {
            return None;
        }
        if usd.abs() < 1e-10 {
            // Rounds to zero nanos; also keeps the decimal text below Decimal's 28 fractional digits.
            return Some(Nanos::ZERO);
        }
        // `Display` for f64 prints the shortest string that round-trips, without an exponent.
        let text = usd.to_string();
        Self::checked_from_usd_decimal(Decimal::from_str(&text).ok()?)
    }

    /// Parse a USD amount written as a decimal string (`"0.1"`, `"12"`, `"1.5e-7"`).
    pub fn from_usd_str(text: &str) -> Option<Nanos> {
        let text = text.trim();
        let d = if text.contains(['e', 'E']) {
            Decimal::from_scientific(text).ok()?
        } else {
            Decimal::from_str(text).ok()?
        };
        Self::checked_from_usd_decimal(d)
    }

    pub const fn saturating_add(self, other: Nanos) -> Nanos {
        Nanos(self.0.saturating_add(other.0))
    }

    pub const fn saturating_sub(self, other: Nanos) -> Nanos {
        Nanos(self.0.saturating_sub(other.0))
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl Add for Nanos {
    type Output = Nanos;
    fn add(self, rhs: Nanos) -> Nanos {
        self.saturating_add(rhs)
    }
}

impl Sub for Nanos {
    type Output = Nanos;
    fn sub(self, rhs: Nanos) -> Nanos {
        self.saturating_sub(rhs)
    }
}

impl AddAssign for Nanos {
    fn add_assign(&mut self, rhs: Nanos) {
        *self = self.saturating_add(rhs);
    }
}

impl SubAssign for Nanos {
    fn sub_assign(&mut self, rhs: Nanos) {
        *self = self.saturating_sub(rhs);
    }
}

impl Sum for Nanos {
    fn sum<I: Iterator<Item = Nanos>>(iter: I) -> Nanos {
        iter.fold(Nanos::ZERO, Nanos::saturating_add)
    }
}

impl<'a> Sum<&'a Nanos> for Nanos {
    fn sum<I: Iterator<Item = &'a Nanos>>(iter: I) -> Nanos {
        iter.copied().sum()
    }
}

/// A plain decimal USD string without trailing zeros: `0.000015`, `12`, `0.1`.
impl fmt::Display for Nanos {
    /// Plain decimal USD without trailing zeros, from the integers (no `Decimal` on the hot path).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.unsigned_abs();
        let sign = if self.0 < 0 { "-" } else { "" };
        let (whole, frac) = (n / 1_000_000_000, n % 1_000_000_000);
        if frac == 0 {
            return write!(f, "{sign}{whole}");
        }
        let mut digits = 9;
        let mut frac = frac;
        while frac % 10 == 0 {
            frac /= 10;
            digits -= 1;
        }
        write!(f, "{sign}{whole}.{frac:0digits$}")
    }
}

impl Serialize for Nanos {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.to_usd_f64())
    }
}

impl<'de> Deserialize<'de> for Nanos {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Nanos, D::Error> {
        deserializer.deserialize_any(NanosVisitor)
    }
}

struct NanosVisitor;

impl NanosVisitor {
    fn out_of_range<E: de::Error>() -> E {
        E::custom("USD amount out of range")
    }
}

impl Visitor<'_> for NanosVisitor {
    type Value = Nanos;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a USD amount as a number or a numeric string")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Nanos, E> {
        Nanos::from_usd_f64(v).ok_or_else(Self::out_of_range)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Nanos, E> {
        v.checked_mul(NANOS_PER_USD)
            .map(Nanos)
            .ok_or_else(Self::out_of_range)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Nanos, E> {
        i64::try_from(v)
            .ok()
            .and_then(|v| v.checked_mul(NANOS_PER_USD))
            .map(Nanos)
            .ok_or_else(Self::out_of_range)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Nanos, E> {
        Nanos::from_usd_str(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn decimal_round_trip_and_half_even() {
        assert_eq!(Nanos::from_usd_decimal(dec("0.000015")), Nanos(15_000));
        assert_eq!(Nanos::from_usd_decimal(dec("12")), Nanos(12_000_000_000));
        assert_eq!(Nanos::from_usd_decimal(dec("0.0000000015")), Nanos(2));
        assert_eq!(Nanos::from_usd_decimal(dec("0.0000000025")), Nanos(2));
        assert_eq!(Nanos::from_usd_decimal(dec("0.00000000250001")), Nanos(3));
        assert_eq!(Nanos::from_usd_decimal(dec("-0.0000000025")), Nanos(-2));
        assert_eq!(Nanos(15_000).to_decimal().normalize(), dec("0.000015"));
        assert_eq!(
            Nanos::from_usd_decimal(Nanos(i64::MIN).to_decimal()),
            Nanos(i64::MIN)
        );
    }

    #[test]
    fn decimal_saturates() {
        assert_eq!(Nanos::from_usd_decimal(dec("1e15")), Nanos::MAX);
        assert_eq!(Nanos::from_usd_decimal(dec("-1e15")), Nanos::MIN);
        assert_eq!(Nanos::from_usd_decimal(Decimal::MAX), Nanos::MAX);
        assert_eq!(Nanos::checked_from_usd_decimal(dec("1e15")), None);
    }

    #[test]
    fn from_f64_uses_shortest_decimal() {
        assert_eq!(Nanos::from_usd_f64(0.1), Some(Nanos(100_000_000)));
        assert_eq!(Nanos::from_usd_f64(10.5), Some(Nanos(10_500_000_000)));
        assert_eq!(Nanos::from_usd_f64(0.3), Some(Nanos(300_000_000)));
        assert_eq!(Nanos::from_usd_f64(1.5e-7), Some(Nanos(150)));
        assert_eq!(Nanos::from_usd_f64(-2.0), Some(Nanos(-2_000_000_000)));
        assert_eq!(Nanos::from_usd_f64(0.0), Some(Nanos::ZERO));
        assert_eq!(Nanos::from_usd_f64(1e-300), Some(Nanos::ZERO));
        assert_eq!(
            Nanos::from_usd_f64(9e9),
            Some(Nanos(9_000_000_000_000_000_000))
        );
        assert_eq!(Nanos::from_usd_f64(9.3e9), None);
        assert_eq!(Nanos::from_usd_f64(1e300), None);
        assert_eq!(Nanos::from_usd_f64(f64::NAN), None);
        assert_eq!(Nanos::from_usd_f64(f64::INFINITY), None);
        assert_eq!(Nanos::from_usd_f64(f64::NEG_INFINITY), None);
    }

    #[test]
    fn to_f64() {
        assert_eq!(Nanos(15_000).to_usd_f64(), 0.000015);
        assert_eq!(Nanos(100_000_000).to_usd_f64(), 0.1);
        assert_eq!(Nanos(12_000_000_000).to_usd_f64(), 12.0);
        assert_eq!(
            Nanos(i64::MAX).to_usd_f64(),
            "9223372036.854775807".parse::<f64>().unwrap()
        );
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Nanos(1) + Nanos(2), Nanos(3));
        assert_eq!(Nanos(1) - Nanos(2), Nanos(-1));
        assert_eq!(Nanos::MAX + Nanos(1), Nanos::MAX);
        assert_eq!(Nanos::MIN - Nanos(1), Nanos::MIN);
        let mut n = Nanos(5);
        n += Nanos::MAX;
        assert_eq!(n, Nanos::MAX);
        n -= Nanos(1);
        assert_eq!(n, Nanos(i64::MAX - 1));
        let v = [Nanos(1), Nanos(2), Nanos(3)];
        assert_eq!(v.iter().sum::<Nanos>(), Nanos(6));
        assert_eq!(
            [Nanos::MAX, Nanos(1)].into_iter().sum::<Nanos>(),
            Nanos::MAX
        );
    }

    #[test]
    fn display_plain_decimal() {
        assert_eq!(Nanos(15_000).to_string(), "0.000015");
        assert_eq!(Nanos(12_000_000_000).to_string(), "12");
        assert_eq!(Nanos(100_000_000).to_string(), "0.1");
        assert_eq!(Nanos(0).to_string(), "0");
        assert_eq!(Nanos(1).to_string(), "0.000000001");
        assert_eq!(Nanos(-1_500_000_000).to_string(), "-1.5");
    }

    #[test]
    fn serde_usd_numbers() {
        assert_eq!(serde_json::to_string(&Nanos(15_000)).unwrap(), "0.000015");
        assert_eq!(
            serde_json::to_string(&Nanos(10_500_000_000)).unwrap(),
            "10.5"
        );
        let v: serde_json::Value = serde_json::to_value(Nanos(15_000)).unwrap();
        assert_eq!(v.as_f64(), Some(0.000015));

        let n: Nanos = serde_json::from_str("10.5").unwrap();
        assert_eq!(n, Nanos(10_500_000_000));
        let n: Nanos = serde_json::from_str("0.1").unwrap();
        assert_eq!(n, Nanos(100_000_000));
        let n: Nanos = serde_json::from_str("12").unwrap();
        assert_eq!(n, Nanos(12_000_000_000));
        let n: Nanos = serde_json::from_str("-3").unwrap();
        assert_eq!(n, Nanos(-3_000_000_000));
        let n: Nanos = serde_json::from_str("\"0.000015\"").unwrap();
        assert_eq!(n, Nanos(15_000));
        let n: Nanos = serde_json::from_str("\" 1.5e-7 \"").unwrap();
        assert_eq!(n, Nanos(150));
        assert!(serde_json::from_str::<Nanos>("\"ten\"").is_err());
        assert!(serde_json::from_str::<Nanos>("null").is_err());
        assert!(serde_json::from_str::<Nanos>("true").is_err());
        assert!(serde_json::from_str::<Nanos>("1e300").is_err());
        assert!(serde_json::from_str::<Nanos>("18446744073709551615").is_err());

        // Round trip through the wire form.
        for n in [
            Nanos(0),
            Nanos(1),
            Nanos(15_000),
            Nanos(123_456_789_012),
            Nanos(-42),
        ] {
            let s = serde_json::to_string(&n).unwrap();
            assert_eq!(serde_json::from_str::<Nanos>(&s).unwrap(), n, "{s}");
        }
    }
}
