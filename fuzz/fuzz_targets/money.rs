//! Money as requests carry it: an amount and a currency (split at the first `|`). What is
//! accepted is above zero, within the maximum, in the currency's places, and reads back
//! as itself.

#![no_main]

use countersign::approvals::model::{MAX_AMOUNT, Money};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (amount, currency) = text.split_once('|').unwrap_or((&text, "EUR"));
    if let Ok(money) = Money::parse(amount, currency) {
        assert!(money.amount > rust_decimal::Decimal::ZERO, "{amount}");
        assert!(money.amount <= MAX_AMOUNT, "{amount}");
        let again = Money::parse(&money.amount.to_string(), &money.currency)
            .expect("an accepted amount reads back");
        assert_eq!(again.amount, money.amount);
    }
});
