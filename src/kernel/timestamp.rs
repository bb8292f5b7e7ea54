//! The API's `DateTime` scalar.
//!
//! Ours rather than the one async-graphql ships for chrono because that one accepts any
//! string while the operation is validated and fails only during execution, where an
//! error without a code can no longer be told from a fault of ours. This one rejects a
//! malformed instant at validation (BAD_USER_INPUT), so every codeless error raised during
//! execution really is INTERNAL (see `error::ensure_code`). Same wire format as before.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use chrono::{DateTime, Utc};

/// A UTC instant; RFC 3339 on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub DateTime<Utc>);

impl From<DateTime<Utc>> for Timestamp {
    fn from(instant: DateTime<Utc>) -> Self {
        Self(instant)
    }
}

/// The years an instant may fall in, in UTC: the range every database we run on holds the
/// same way (PostgreSQL refuses some instants chrono reads), and four digits on the wire.
const YEARS: std::ops::RangeInclusive<i32> = 1..=9999;

fn parse(value: &Value) -> Option<DateTime<Utc>> {
    use chrono::Datelike;
    match value {
        Value::String(text) => text
            .parse::<DateTime<Utc>>()
            .ok()
            .filter(|instant| YEARS.contains(&instant.year())),
        _ => None,
    }
}

/// An instant in RFC 3339, in UTC on output, e.g. `2026-11-23T09:12:00.250+00:00`.
#[Scalar(name = "DateTime")]
impl ScalarType for Timestamp {
    fn parse(value: Value) -> InputValueResult<Self> {
        parse(&value).map(Self).ok_or_else(|| {
            InputValueError::custom(
                "expected an RFC 3339 date-time between the years 0001 and 9999 (UTC)",
            )
        })
    }

    fn is_valid(value: &Value) -> bool {
        parse(value).is_some()
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_it_writes_and_refuses_the_rest() {
        let now = Timestamp(Utc::now());
        assert_eq!(
            <Timestamp as ScalarType>::parse(now.to_value()).ok(),
            Some(now)
        );
        assert!(<Timestamp as ScalarType>::is_valid(&Value::from(
            "2026-11-23T09:12:00Z"
        )));
        assert!(!<Timestamp as ScalarType>::is_valid(&Value::from("nope")));
        assert!(!<Timestamp as ScalarType>::is_valid(&Value::from(12)));
        assert!(!<Timestamp as ScalarType>::is_valid(&Value::from(
            "9999-12-31T23:59:59-05:00"
        )));
        assert!(!<Timestamp as ScalarType>::is_valid(&Value::from(
            "0001-01-01T00:00:00+01:00"
        )));
    }
}
