/// The largest payload a triggered execution may carry, in bytes of JSON.
///
/// It reaches the job as the `PANDA_PAYLOAD` environment variable, and Linux refuses a single
/// environment string over 128 KiB, so the limit leaves room below that.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// The longest idempotency key accepted on enqueue.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;

const MAX_NAME_LEN: usize = 63;

/// The highest priority a job or an enqueue may give; [`MIN_PRIORITY`] is the lowest.
pub const MAX_PRIORITY: i32 = 1000;
/// The lowest priority a job or an enqueue may give.
pub const MIN_PRIORITY: i32 = -1000;

/// Checks a priority against [`MIN_PRIORITY`] and [`MAX_PRIORITY`].
pub fn validate_priority(priority: i32) -> Result<(), ValidationError> {
    if (MIN_PRIORITY..=MAX_PRIORITY).contains(&priority) {
        return Ok(());
    }
    Err(ValidationError::Field {
        field: "priority",
        message: format!("{priority} is out of range; use {MIN_PRIORITY} to {MAX_PRIORITY}"),
    })
}

/// Refuses a duration over `max`, naming the bound; `field` names it in the error.
pub fn validate_at_most(
    field: &'static str,
    value: std::time::Duration,
    max: std::time::Duration,
) -> Result<(), ValidationError> {
    if value <= max {
        return Ok(());
    }
    Err(ValidationError::Field {
        field,
        message: format!(
            "{} is over the maximum of {}",
            crate::human::exact(value),
            crate::human::exact(max)
        ),
    })
}

/// [`validate_name`]'s rule as a regular expression, as the OpenAPI document states it.
pub const NAME_PATTERN: &str = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";

/// An environment variable name as [`crate::JobSpec::validate`] and an enqueue accept it: not
/// empty, without `=` or NUL.
pub const ENV_NAME_PATTERN: &str = "^[^=\\u0000]+$";

/// Input that Panda refuses, with a message that says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// A job or queue name that breaks the naming rule.
    #[error(
        "invalid {what} name {name:?}: {problem}; use 1 to 63 lower-case letters, digits and '-', starting and ending with a letter or digit"
    )]
    Name {
        /// What was being named (`job`, `queue`).
        what: &'static str,
        /// The name as given.
        name: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A schedule that cannot be used: its expression or its time zone.
    #[error("invalid schedule: {0}")]
    Schedule(#[from] crate::cron::CronError),
    /// A payload larger than [`MAX_PAYLOAD_BYTES`].
    #[error(
        "payload is {size} bytes, over the limit of {limit} bytes; pass a reference (an id or a URL) instead of the data"
    )]
    PayloadTooLarge {
        /// The payload's size in bytes of JSON.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Any other field that is out of range.
    #[error("invalid {field}: {message}")]
    Field {
        /// The field's name as the user knows it (`max_attempts`, `idempotency_key`).
        field: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
    /// A chain (`after`) that cannot be: an unknown or unfit upstream, a job followed twice or
    /// by itself, a cycle.
    #[error("invalid after: {message}")]
    Chain {
        /// What is wrong, naming the jobs.
        message: String,
        /// What to do about it.
        hint: String,
    },
}

impl ValidationError {
    /// What to do about it, when the error has more to say than its message.
    pub fn hint(&self) -> Option<&str> {
        match self {
            Self::Chain { hint, .. } => Some(hint),
            _ => None,
        }
    }
}

/// Checks a DNS-label-style name (`[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?`); `what` names it in the error.
pub fn validate_name(what: &'static str, name: &str) -> Result<(), ValidationError> {
    let fail = |problem| {
        Err(ValidationError::Name {
            what,
            name: name.to_owned(),
            problem,
        })
    };
    if name.is_empty() {
        return fail("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return fail("it is longer than 63 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return fail("it contains a character other than a-z, 0-9 and '-'");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return fail("it starts or ends with '-'");
    }
    Ok(())
}

/// Checks a queue name; queues follow the same rule as job names.
pub fn validate_queue_name(name: &str) -> Result<(), ValidationError> {
    validate_name("queue", name)
}

/// Checks that a payload fits in [`MAX_PAYLOAD_BYTES`] once serialized.
pub fn validate_payload(payload: &serde_json::Value) -> Result<(), ValidationError> {
    let size = serde_json::to_vec(payload)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_PAYLOAD_BYTES {
        return Err(ValidationError::PayloadTooLarge {
            size,
            limit: MAX_PAYLOAD_BYTES,
        });
    }
    reject_nul_in_json("payload", payload)
}

/// Refuses text holding a NUL character (U+0000): no process can receive it in its argv or
/// environment, and PostgreSQL cannot store it, so it is refused the same way on every backend.
pub fn reject_nul(field: &'static str, text: &str) -> Result<(), ValidationError> {
    if text.contains('\0') {
        return Err(ValidationError::Field {
            field,
            message: "contains a NUL character (\\u0000); remove it".into(),
        });
    }
    Ok(())
}

/// [`reject_nul`] for every string and object key in a JSON value.
pub fn reject_nul_in_json(
    field: &'static str,
    value: &serde_json::Value,
) -> Result<(), ValidationError> {
    match value {
        serde_json::Value::String(s) => reject_nul(field, s),
        serde_json::Value::Array(items) => items
            .iter()
            .try_for_each(|item| reject_nul_in_json(field, item)),
        serde_json::Value::Object(map) => map.iter().try_for_each(|(key, item)| {
            reject_nul(field, key)?;
            reject_nul_in_json(field, item)
        }),
        _ => Ok(()),
    }
}

/// A field (or variant) the input named that its type does not have, read from serde's
/// message for it (`unknown field `max_runing`, expected one of `name`, …`), with the closest
/// name the type does have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownField {
    /// `field` or `variant`.
    pub kind: &'static str,
    /// The name as given.
    pub name: String,
    /// The names the type has, in its order.
    pub expected: Vec<String>,
    /// The closest of them, when one is close enough to be a typo.
    pub closest: Option<String>,
}

impl UnknownField {
    /// Reads serde's "unknown field" or "unknown variant" message (from JSON, TOML or any
    /// format); `None` for any other message.
    pub fn from_serde_message(message: &str) -> Option<Self> {
        let (kind, start) = ["field", "variant"].into_iter().find_map(|kind| {
            let marker = format!("unknown {kind} `");
            message.find(&marker).map(|at| (kind, at + marker.len()))
        })?;
        let rest = &message[start..];
        let (name, rest) = rest.split_once('`')?;
        // The names serde lists come quoted in backticks: `a`, `b` or `c`.
        let expected: Vec<String> = rest
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        let closest = expected
            .iter()
            .map(|candidate| (strsim::damerau_levenshtein(name, candidate), candidate))
            .filter(|(distance, candidate)| *distance <= 2.max(candidate.len() / 4))
            .min()
            .map(|(_, candidate)| candidate.clone());
        Some(Self {
            kind,
            name: name.to_owned(),
            expected,
            closest,
        })
    }

    /// What to do about it: the closest name, or else the names there are.
    pub fn hint(&self) -> String {
        match (&self.closest, self.expected.is_empty()) {
            (Some(closest), _) => format!("did you mean `{closest}`?"),
            (None, true) => format!("this takes no {}s", self.kind),
            (None, false) => format!(
                "the {}s are {}",
                self.kind,
                self.expected
                    .iter()
                    .map(|name| format!("`{name}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

impl std::fmt::Display for UnknownField {
    /// `unknown field `max_runing`; did you mean `max_running`?`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown {} `{}`; {}", self.kind, self.name, self.hint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_field_is_named_with_the_closest_known_one() {
        let message = "retry: unknown field `max_runing`, expected one of `name`, `max_running`, \
                       `keep` at line 1 column 20";
        let unknown = UnknownField::from_serde_message(message).expect("an unknown field");
        assert_eq!(unknown.name, "max_runing");
        assert_eq!(unknown.expected, ["name", "max_running", "keep"]);
        assert_eq!(
            unknown.to_string(),
            "unknown field `max_runing`; did you mean `max_running`?"
        );
        let far = UnknownField::from_serde_message("unknown field `colour`, expected `a` or `b`")
            .expect("an unknown field");
        assert_eq!(
            far.to_string(),
            "unknown field `colour`; the fields are `a`, `b`"
        );
        let variant = UnknownField::from_serde_message(
            "unknown variant `alow`, expected one of `forbid`, \
                                              `allow`, `replace`",
        )
        .expect("an unknown variant");
        assert_eq!(
            variant.to_string(),
            "unknown variant `alow`; did you mean `allow`?"
        );
        assert_eq!(
            UnknownField::from_serde_message("missing field `name`"),
            None
        );
    }

    #[test]
    fn nul_characters_are_refused_anywhere_in_a_payload() {
        for payload in [
            serde_json::json!("a\u{0}b"),
            serde_json::json!({"k": ["ok", "bad\u{0}"]}),
            serde_json::json!({"k\u{0}": 1}),
        ] {
            assert!(
                matches!(
                    validate_payload(&payload),
                    Err(ValidationError::Field {
                        field: "payload",
                        ..
                    })
                ),
                "{payload}"
            );
        }
        assert_eq!(
            validate_payload(&serde_json::json!({"k": ["ok", 1]})),
            Ok(())
        );
    }

    #[test]
    fn names_follow_the_dns_label_rule() {
        let cases: &[(&str, bool)] = &[
            ("generate-reports", true),
            ("a", true),
            ("0", true),
            ("a1-b2", true),
            (&"a".repeat(63), true),
            (&"a".repeat(64), false),
            ("", false),
            ("-a", false),
            ("a-", false),
            ("Reports", false),
            ("a/b", false),
            ("a_b", false),
            ("a.b", false),
            ("ä", false),
            ("a b", false),
        ];
        for (name, ok) in cases {
            assert_eq!(validate_name("job", name).is_ok(), *ok, "{name:?}");
        }
    }

    #[test]
    fn name_errors_say_what_is_wrong_and_the_rule() {
        let err = validate_name("job", "a/b").expect_err("slash is refused");
        let msg = err.to_string();
        assert!(msg.contains("\"a/b\""), "{msg}");
        assert!(msg.contains("other than a-z"), "{msg}");
        assert!(msg.contains("1 to 63"), "{msg}");
    }

    #[test]
    fn payloads_over_the_limit_are_refused() {
        let fits = serde_json::Value::String("x".repeat(MAX_PAYLOAD_BYTES - 2));
        assert_eq!(validate_payload(&fits), Ok(()));
        let over = serde_json::Value::String("x".repeat(MAX_PAYLOAD_BYTES - 1));
        assert_eq!(
            validate_payload(&over),
            Err(ValidationError::PayloadTooLarge {
                size: MAX_PAYLOAD_BYTES + 1,
                limit: MAX_PAYLOAD_BYTES
            })
        );
    }
}
