//! The approval rules as pure functions: statuses, money, input limits, the stage plan and
//! every transition a request can make (submit, decide, cancel, expire). No I/O here, so
//! every rule is unit-tested directly. Who may decide is not here: see `access::requests`.
//!
//! Over 500 lines because a third of it is those unit tests, beside the rules they pin.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::error::AppError;

pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// How deeply a payload (and a policy's payload schema) may nest objects and arrays. The
/// JSON reader refuses past 128, so a deeper value could be written and never read back.
pub const MAX_JSON_DEPTH: usize = 32;
pub const MAX_COMMENT_CHARS: usize = 10_000;
/// 10^15: the largest amount accepted.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(2_764_472_320, 232_830, 0, false, 0);

#[derive(Clone, Copy, Debug, PartialEq, Eq, async_graphql::Enum)]
#[graphql(name = "RequestStatus")]
pub enum Status {
    Pending,
    Approved,
    Rejected,
    Cancelled,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Approved => "APPROVED",
            Self::Rejected => "REJECTED",
            Self::Cancelled => "CANCELLED",
            Self::Expired => "EXPIRED",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Approved,
            Self::Rejected,
            Self::Cancelled,
            Self::Expired,
        ]
        .into_iter()
        .find(|s| s.as_str() == value)
    }

    pub fn is_terminal(self) -> bool {
        self != Self::Pending
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, async_graphql::Enum)]
pub enum Verdict {
    Approve,
    Reject,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "APPROVE",
            Self::Reject => "REJECT",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "APPROVE" => Some(Self::Approve),
            "REJECT" => Some(Self::Reject),
            _ => None,
        }
    }
}

/// A validated amount with its currency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Money {
    pub amount: Decimal,
    pub currency: String,
}

impl Money {
    /// Parses a decimal string (`"1250.00"`) in an ISO 4217 currency: greater than zero,
    /// at most 10^15, and no more fraction digits than the currency has.
    pub fn parse(amount: &str, currency: &str) -> Result<Self, AppError> {
        let money = Self::parse_at_least_zero(amount, currency)?;
        if money.amount == Decimal::ZERO {
            return Err(AppError::bad_input(
                "amount",
                "amount must be greater than zero",
            ));
        }
        Ok(money)
    }

    /// As [`Money::parse`], but zero is allowed: a stage threshold of zero applies to
    /// every amount in its currency.
    pub fn parse_at_least_zero(amount: &str, currency: &str) -> Result<Self, AppError> {
        let code = currency.trim();
        let iso = iso_currency::Currency::from_code(code)
            .filter(|_| code.len() == 3 && code.chars().all(|c| c.is_ascii_uppercase()))
            .ok_or_else(|| {
                AppError::bad_input("currency", "currency must be an ISO 4217 code such as EUR")
            })?;
        let Some(minor_units) = iso.exponent() else {
            return Err(AppError::bad_input(
                "currency",
                format!("{code} is not a currency requests can be made in"),
            ));
        };
        let amount = parse_decimal(amount).ok_or_else(|| {
            AppError::bad_input(
                "amount",
                "amount must be a decimal string such as \"1250.00\"",
            )
        })?;
        if amount < Decimal::ZERO {
            return Err(AppError::bad_input("amount", "amount must not be negative"));
        }
        if amount > MAX_AMOUNT {
            return Err(AppError::bad_input(
                "amount",
                "amount must be at most 10^15",
            ));
        }
        if amount.normalize().scale() > u32::from(minor_units) {
            return Err(AppError::bad_input(
                "amount",
                format!("{code} amounts have at most {minor_units} fraction digits"),
            ));
        }
        // Stored with exactly the currency's fraction digits: "250" and "250.00" are one amount.
        let mut amount = amount.normalize();
        amount.rescale(u32::from(minor_units));
        Ok(Self {
            amount,
            currency: code.to_owned(),
        })
    }
}

/// A stage's amount thresholds, one per currency. A threshold is only ever compared with
/// an amount in its own currency; a currency with none gets the stage (fail closed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Thresholds(BTreeMap<String, Decimal>);

impl Thresholds {
    /// From what an admin entered: valid currencies, each at most once, amounts ≥ 0 with
    /// no more fraction digits than the currency has.
    pub fn parse<'a>(
        entered: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, AppError> {
        let mut thresholds = BTreeMap::new();
        for (amount, currency) in entered {
            let money = Money::parse_at_least_zero(amount, currency)
                .map_err(|err| AppError::bad_input("stages.minAmounts", err.client_message()))?;
            if thresholds
                .insert(money.currency.clone(), money.amount)
                .is_some()
            {
                return Err(AppError::bad_input(
                    "stages.minAmounts",
                    format!("{} has more than one threshold", money.currency),
                ));
            }
        }
        Ok(Self(thresholds))
    }

    /// The threshold for amounts in `currency`, if the stage names one.
    pub fn for_currency(&self, currency: &str) -> Option<Decimal> {
        self.0.get(currency).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, Decimal)> {
        self.0
            .iter()
            .map(|(currency, min)| (currency.as_str(), *min))
    }

    /// As stored: `{"EUR": "1000.00"}`, or nothing when there are none.
    pub fn to_stored(&self) -> Option<serde_json::Value> {
        (!self.0.is_empty()).then(|| {
            self.0
                .iter()
                .map(|(currency, min)| (currency.clone(), min.to_string().into()))
                .collect::<serde_json::Map<_, _>>()
                .into()
        })
    }

    pub fn from_stored(stored: Option<&serde_json::Value>) -> Result<Self, AppError> {
        let Some(stored) = stored else {
            return Ok(Self::default());
        };
        let object = stored.as_object().ok_or_else(|| {
            AppError::Internal(anyhow::anyhow!(
                "stored thresholds are not an object: {stored}"
            ))
        })?;
        let mut thresholds = BTreeMap::new();
        for (currency, min) in object {
            let min = min
                .as_str()
                .map(stored_decimal)
                .transpose()?
                .ok_or_else(|| {
                    AppError::Internal(anyhow::anyhow!(
                        "stored threshold {currency} is not a string"
                    ))
                })?;
            thresholds.insert(currency.clone(), min);
        }
        Ok(Self(thresholds))
    }
}

/// A plain decimal: digits, at most one point, an optional leading minus. No exponents,
/// no spaces inside, nothing a float parser would round.
pub fn parse_decimal(value: &str) -> Option<Decimal> {
    let value = value.trim();
    let digits = value.strip_prefix('-').unwrap_or(value);
    let valid = !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && digits.matches('.').count() <= 1
        && digits.chars().any(|c| c.is_ascii_digit())
        && digits.len() <= 40;
    if !valid {
        return None;
    }
    Decimal::from_str_exact(value).ok()
}

/// Checks a title: 1 to 200 characters, not blank.
pub fn validate_title(title: &str) -> Result<String, AppError> {
    let title = title.trim();
    if title.is_empty() || title.chars().count() > MAX_TITLE_CHARS {
        return Err(AppError::bad_input(
            "title",
            format!("title must be 1 to {MAX_TITLE_CHARS} characters"),
        ));
    }
    Ok(title.to_owned())
}

pub fn validate_description(description: &str) -> Result<String, AppError> {
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(AppError::bad_input(
            "description",
            format!("description must be at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    Ok(description.to_owned())
}

pub fn validate_payload(payload: &serde_json::Value) -> Result<(), AppError> {
    validate_json("payload", payload)
}

/// A JSON value we store and read back: at most [`MAX_PAYLOAD_BYTES`] as text, nested at
/// most [`MAX_JSON_DEPTH`] deep.
pub fn validate_json(field: &str, value: &serde_json::Value) -> Result<(), AppError> {
    if json_depth(value) > MAX_JSON_DEPTH {
        return Err(AppError::bad_input(
            field,
            format!("{field} may nest objects and arrays at most {MAX_JSON_DEPTH} deep"),
        ));
    }
    if value.to_string().len() > MAX_PAYLOAD_BYTES {
        return Err(AppError::bad_input(
            field,
            format!("{field} must be at most 64 KiB of JSON"),
        ));
    }
    Ok(())
}

/// Objects and arrays inside one another: a scalar is 0, `{}` and `[1]` are 1.
fn json_depth(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    // Level by level, not by recursion: the value is as deep as its sender made it.
    let mut level: Vec<&Value> = vec![value];
    let mut depth = 0;
    loop {
        let next: Vec<&Value> = level
            .iter()
            .flat_map(|v| -> Box<dyn Iterator<Item = &Value>> {
                match v {
                    Value::Array(items) => Box::new(items.iter()),
                    Value::Object(map) => Box::new(map.values()),
                    _ => Box::new(std::iter::empty()),
                }
            })
            .collect();
        if level.iter().any(|v| v.is_array() || v.is_object()) {
            depth += 1;
        }
        if next.is_empty() {
            return depth;
        }
        level = next;
    }
}

/// A comment on a decision or a reason for a cancellation.
pub fn validate_comment(
    field: &str,
    comment: Option<&str>,
    required: bool,
) -> Result<String, AppError> {
    let comment = comment.unwrap_or_default().trim();
    if required && comment.is_empty() {
        return Err(AppError::bad_input(
            field,
            format!("{field} must not be empty"),
        ));
    }
    if comment.chars().count() > MAX_COMMENT_CHARS {
        return Err(AppError::bad_input(
            field,
            format!("{field} must be at most {MAX_COMMENT_CHARS} characters"),
        ));
    }
    Ok(comment.to_owned())
}

/// What the stage plan needs to know of a stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageRule {
    pub position: i32,
    pub required_approvals: i32,
    /// The stage applies only when the amount is at least this: the stage's threshold in
    /// the request's currency (see [`Thresholds::for_currency`]), so never another's.
    pub min_amount: Option<Decimal>,
}

impl StageRule {
    pub fn applies_to(&self, amount: Decimal) -> bool {
        self.min_amount.is_none_or(|min| amount >= min)
    }
}

/// The first stage at or after `from` that applies to `amount`; `None` when none is left.
pub fn next_applicable_stage(stages: &[StageRule], amount: Decimal, from: i32) -> Option<i32> {
    let mut candidates: Vec<&StageRule> = stages.iter().filter(|s| s.position >= from).collect();
    candidates.sort_by_key(|s| s.position);
    candidates
        .into_iter()
        .find(|s| s.applies_to(amount))
        .map(|s| s.position)
}

/// Where a request goes after an approval at its current stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterApproval {
    /// The stage still needs more approvals.
    StageOpen { approvals: i32, required: i32 },
    /// The stage completed and another applies.
    NextStage(i32),
    /// The last applicable stage completed.
    Approved,
}

/// `approvals_after` counts this approval too.
pub fn after_approval(
    stages: &[StageRule],
    amount: Decimal,
    current: i32,
    approvals_after: i32,
) -> AfterApproval {
    let required = stages
        .iter()
        .find(|s| s.position == current)
        .map_or(1, |s| s.required_approvals);
    if approvals_after < required {
        return AfterApproval::StageOpen {
            approvals: approvals_after,
            required,
        };
    }
    match next_applicable_stage(stages, amount, current + 1) {
        Some(next) => AfterApproval::NextStage(next),
        None => AfterApproval::Approved,
    }
}

/// A request's move to its next state, named as the audit log (`action`) and the outbox
/// (`kind`) record it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub status: Status,
    pub stage: Option<i32>,
    pub action: &'static str,
    pub kind: &'static str,
}

/// Where a stage of one request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, async_graphql::Enum)]
pub enum StageState {
    /// Not reached yet.
    Waiting,
    /// Being decided now.
    Active,
    Approved,
    Rejected,
    /// Does not apply to this request's amount.
    Skipped,
    /// The request ended before this stage was completed.
    Closed,
}

/// The verdicts given at one stage of a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StageTally {
    pub approvals: i32,
    pub rejections: i32,
}

impl StageTally {
    /// The verdicts (stored names) of the decisions taken at one stage.
    pub fn of<'a>(verdicts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut tally = Self::default();
        for verdict in verdicts {
            if verdict == Verdict::Approve.as_str() {
                tally.approvals = tally.approvals.saturating_add(1);
            } else if verdict == Verdict::Reject.as_str() {
                tally.rejections = tally.rejections.saturating_add(1);
            }
        }
        tally
    }

    fn decided(self) -> bool {
        self.approvals > 0 || self.rejections > 0
    }
}

/// The state of stage `position` (needing `required` approvals, applying to the request's
/// amount or not) of a request in `status` at stage `current`, given its tally. What
/// happened decides first; the threshold only says what will happen. Stages the request
/// went past without a decision were skipped whatever thresholds say now: a policy's
/// stored thresholds may have been read differently when it was submitted.
pub fn stage_state(
    status: Status,
    current: i32,
    position: i32,
    required: i32,
    applies: bool,
    tally: StageTally,
) -> StageState {
    let went_past = position < current || status == Status::Approved;
    if tally.rejections > 0 {
        StageState::Rejected
    } else if tally.approvals >= required {
        StageState::Approved
    } else if (went_past && !tally.decided()) || !applies {
        StageState::Skipped
    } else if status == Status::Pending && position == current {
        StageState::Active
    } else if status == Status::Pending && position > current {
        StageState::Waiting
    } else {
        StageState::Closed
    }
}

/// A new request: pending at the first stage that applies to its amount, or approved at
/// once when none does.
pub fn submission(stages: &[StageRule], amount: Decimal) -> Transition {
    let first = next_applicable_stage(stages, amount, 1);
    Transition {
        status: if first.is_some() {
            Status::Pending
        } else {
            Status::Approved
        },
        stage: first,
        action: "request.submitted",
        kind: "SUBMITTED",
    }
}

/// A command may act only on a pending request before its deadline, at the version the
/// caller saw (when they say which).
pub fn check_actionable(
    status: Status,
    expires_at: DateTime<Utc>,
    version: i32,
    expected_version: Option<i32>,
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    // A late decision says what happened, and when, so an open page can show it.
    let expired = || {
        AppError::InvalidTransition(format!(
            "this request expired at {}",
            expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ))
    };
    if status == Status::Expired {
        return Err(expired());
    }
    if status.is_terminal() {
        return Err(AppError::InvalidTransition(format!(
            "the request is already {}",
            status.as_str()
        )));
    }
    if expires_at <= now {
        return Err(expired());
    }
    if let Some(expected) = expected_version {
        if expected != version {
            return Err(AppError::Conflict(format!(
                "the request is at version {version}, not {expected}; read it again"
            )));
        }
    }
    Ok(())
}

/// A verdict on stage `current`, which had `approvals_before` approvals.
pub fn decision(
    verdict: Verdict,
    stages: &[StageRule],
    amount: Decimal,
    current: i32,
    approvals_before: i32,
) -> Transition {
    let at = |status, stage, action, kind| Transition {
        status,
        stage,
        action,
        kind,
    };
    match verdict {
        Verdict::Reject => at(
            Status::Rejected,
            Some(current),
            "request.rejected",
            "REJECTED",
        ),
        Verdict::Approve => {
            let approvals_after = approvals_before.saturating_add(1);
            match after_approval(stages, amount, current, approvals_after) {
                AfterApproval::StageOpen { .. } => at(
                    Status::Pending,
                    Some(current),
                    "request.approval_recorded",
                    "APPROVAL_RECORDED",
                ),
                AfterApproval::NextStage(next) => at(
                    Status::Pending,
                    Some(next),
                    "request.stage_approved",
                    "STAGE_APPROVED",
                ),
                AfterApproval::Approved => at(
                    Status::Approved,
                    Some(current),
                    "request.approved",
                    "APPROVED",
                ),
            }
        }
    }
}

/// A cancellation keeps the stage it happened at.
pub fn cancellation(stage: Option<i32>) -> Transition {
    Transition {
        status: Status::Cancelled,
        stage,
        action: "request.cancelled",
        kind: "CANCELLED",
    }
}

/// Expiry, when it is due: a pending request whose deadline has passed at `now`.
pub fn expiry(
    status: Status,
    expires_at: DateTime<Utc>,
    stage: Option<i32>,
    now: DateTime<Utc>,
) -> Option<Transition> {
    (status == Status::Pending && expires_at <= now).then_some(Transition {
        status: Status::Expired,
        stage,
        action: "request.expired",
        kind: "EXPIRED",
    })
}

/// Parses a stored canonical decimal string. Stored values were validated on the way in.
pub fn stored_decimal(value: &str) -> Result<Decimal, AppError> {
    Decimal::from_str(value)
        .map_err(|err| AppError::Internal(anyhow::anyhow!("stored decimal {value:?}: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(err: AppError) -> (&'static str, Option<String>) {
        let field = match &err {
            AppError::BadUserInput { field, .. } => field.clone(),
            _ => None,
        };
        (err.code(), field)
    }

    #[test]
    fn amounts_are_exact_positive_and_bounded() {
        let money = Money::parse("250", "EUR").unwrap();
        assert_eq!(money.amount.to_string(), "250.00");
        assert_eq!(
            Money::parse("1250.5", "USD").unwrap().amount.to_string(),
            "1250.50"
        );
        assert_eq!(
            Money::parse("1000", "JPY").unwrap().amount.to_string(),
            "1000"
        );
        assert_eq!(
            Money::parse("1.250", "KWD").unwrap().amount.to_string(),
            "1.250"
        );
        for bad in [
            "-1", "0", "0.00", "abc", "1e400", "1e3", "", " ", "1.2.3", "NaN", "inf",
        ] {
            assert_eq!(
                code(Money::parse(bad, "EUR").unwrap_err()),
                ("BAD_USER_INPUT", Some("amount".into())),
                "{bad:?}"
            );
        }
        assert!(Money::parse("1000000000000000", "EUR").is_ok());
        assert!(Money::parse("1000000000000000.01", "EUR").is_err());
        assert!(
            Money::parse("1.001", "EUR").is_err(),
            "EUR has two fraction digits"
        );
        assert!(Money::parse("1.5", "JPY").is_err(), "JPY has none");
    }

    #[test]
    fn currencies_are_iso_4217() {
        for bad in ["eur", "EURO", "XXX1", "ABC", ""] {
            assert_eq!(
                code(Money::parse("1", bad).unwrap_err()),
                ("BAD_USER_INPUT", Some("currency".into())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn titles_are_one_to_two_hundred_characters() {
        assert!(validate_title("Refund order 42").is_ok());
        assert!(validate_title("   ").is_err());
        assert!(validate_title(&"x".repeat(200)).is_ok());
        assert!(validate_title(&"x".repeat(201)).is_err());
        assert!(
            validate_title(&"é".repeat(200)).is_ok(),
            "characters, not bytes"
        );
    }

    fn refund_stages() -> Vec<StageRule> {
        vec![
            StageRule {
                position: 1,
                required_approvals: 1,
                min_amount: None,
            },
            StageRule {
                position: 2,
                required_approvals: 1,
                min_amount: Some(Decimal::new(100_000, 2)),
            },
        ]
    }

    #[test]
    fn a_small_refund_skips_the_lead_stage() {
        let stages = refund_stages();
        let small = Decimal::new(25_000, 2);
        assert_eq!(next_applicable_stage(&stages, small, 1), Some(1));
        assert_eq!(
            after_approval(&stages, small, 1, 1),
            AfterApproval::Approved
        );
    }

    #[test]
    fn a_large_refund_needs_the_lead_stage() {
        let stages = refund_stages();
        let large = Decimal::new(500_000, 2);
        assert_eq!(
            after_approval(&stages, large, 1, 1),
            AfterApproval::NextStage(2)
        );
        assert_eq!(
            after_approval(&stages, large, 2, 1),
            AfterApproval::Approved
        );
        // Exactly the threshold applies.
        assert_eq!(
            after_approval(&stages, Decimal::new(100_000, 2), 1, 1),
            AfterApproval::NextStage(2)
        );
    }

    #[test]
    fn a_two_approval_stage_stays_open_after_one() {
        let stages = vec![StageRule {
            position: 1,
            required_approvals: 2,
            min_amount: None,
        }];
        assert_eq!(
            after_approval(&stages, Decimal::ONE, 1, 1),
            AfterApproval::StageOpen {
                approvals: 1,
                required: 2
            }
        );
        assert_eq!(
            after_approval(&stages, Decimal::ONE, 1, 2),
            AfterApproval::Approved
        );
    }

    #[test]
    fn a_submission_starts_at_the_first_stage_that_applies() {
        let stages = refund_stages();
        let plan = submission(&stages, Decimal::new(25_000, 2));
        assert_eq!((plan.status, plan.stage), (Status::Pending, Some(1)));
        let only_large = vec![StageRule {
            position: 1,
            required_approvals: 1,
            min_amount: Some(Decimal::new(100_000, 2)),
        }];
        let plan = submission(&only_large, Decimal::ONE);
        assert_eq!((plan.status, plan.stage), (Status::Approved, None));
    }

    #[test]
    fn decisions_move_the_request_on() {
        let stages = refund_stages();
        let large = Decimal::new(500_000, 2);
        let first = decision(Verdict::Approve, &stages, large, 1, 0);
        assert_eq!(
            (first.status, first.stage, first.kind),
            (Status::Pending, Some(2), "STAGE_APPROVED")
        );
        let last = decision(Verdict::Approve, &stages, large, 2, 0);
        assert_eq!(
            (last.status, last.action),
            (Status::Approved, "request.approved")
        );
        let no = decision(Verdict::Reject, &stages, large, 2, 0);
        assert_eq!((no.status, no.stage), (Status::Rejected, Some(2)));
        let two = vec![StageRule {
            position: 1,
            required_approvals: 2,
            min_amount: None,
        }];
        assert_eq!(
            decision(Verdict::Approve, &two, large, 1, 0).kind,
            "APPROVAL_RECORDED"
        );
        assert_eq!(
            decision(Verdict::Approve, &two, large, 1, 1).status,
            Status::Approved
        );
    }

    #[test]
    fn only_an_open_request_at_the_seen_version_can_be_acted_on() {
        let now = Utc::now();
        let later = now + chrono::Duration::hours(1);
        assert!(check_actionable(Status::Pending, later, 3, Some(3), now).is_ok());
        assert!(check_actionable(Status::Pending, later, 3, None, now).is_ok());
        let codes = [
            check_actionable(Status::Approved, later, 3, None, now),
            check_actionable(Status::Pending, now, 3, None, now),
            check_actionable(Status::Pending, later, 3, Some(2), now),
        ]
        .map(|r| r.unwrap_err().code());
        assert_eq!(
            codes,
            ["INVALID_TRANSITION", "INVALID_TRANSITION", "CONFLICT"]
        );
    }

    #[test]
    fn expiry_is_due_only_for_pending_requests_past_their_deadline() {
        let now = Utc::now();
        assert_eq!(
            expiry(Status::Pending, now, Some(1), now).map(|t| t.status),
            Some(Status::Expired)
        );
        assert_eq!(
            expiry(
                Status::Pending,
                now + chrono::Duration::seconds(1),
                Some(1),
                now
            ),
            None
        );
        assert_eq!(expiry(Status::Approved, now, Some(1), now), None);
        assert_eq!(cancellation(Some(2)).stage, Some(2));
    }

    #[test]
    fn pending_is_the_status_access_rules_test_for() {
        assert_eq!(Status::Pending.as_str(), crate::access::requests::PENDING);
    }

    #[test]
    fn max_amount_is_ten_to_the_fifteenth() {
        assert_eq!(MAX_AMOUNT.to_string(), "1000000000000000");
    }

    #[test]
    fn json_depth_counts_containers_inside_one_another() {
        assert_eq!(json_depth(&serde_json::json!("x")), 0);
        assert_eq!(json_depth(&serde_json::json!({})), 1);
        assert_eq!(
            json_depth(&serde_json::json!({"a": [1, {"b": []}], "c": 2})),
            4
        );
        let mut deep = serde_json::json!(1);
        for _ in 0..MAX_JSON_DEPTH + 1 {
            deep = serde_json::json!([deep]);
        }
        assert!(validate_payload(&deep).is_err());
    }

    #[test]
    fn stage_states_follow_what_happened_before_thresholds() {
        let none = StageTally::default();
        let one = StageTally::of(["APPROVE"]);
        let no = StageTally::of(["APPROVE", "REJECT"]);
        assert_eq!(
            no,
            StageTally {
                approvals: 1,
                rejections: 1
            }
        );
        let pending = Status::Pending;
        assert_eq!(
            stage_state(pending, 1, 1, 1, true, none),
            StageState::Active
        );
        assert_eq!(
            stage_state(pending, 1, 2, 1, true, none),
            StageState::Waiting
        );
        assert_eq!(
            stage_state(pending, 1, 2, 1, false, none),
            StageState::Skipped
        );
        assert_eq!(
            stage_state(pending, 2, 1, 1, true, one),
            StageState::Approved
        );
        assert_eq!(
            stage_state(pending, 3, 2, 1, true, none),
            StageState::Skipped,
            "went past undecided"
        );
        assert_eq!(
            stage_state(Status::Rejected, 1, 1, 2, true, no),
            StageState::Rejected
        );
        assert_eq!(
            stage_state(Status::Expired, 1, 1, 2, true, one),
            StageState::Closed
        );
        assert_eq!(
            stage_state(Status::Cancelled, 1, 2, 1, true, none),
            StageState::Closed
        );
        assert_eq!(
            stage_state(Status::Approved, 1, 2, 1, false, none),
            StageState::Skipped
        );
    }
}
