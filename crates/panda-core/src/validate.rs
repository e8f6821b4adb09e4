/// The largest payload a triggered execution may carry, in bytes of JSON.
///
/// It reaches the job as the `PANDA_PAYLOAD` environment variable, and Linux refuses a single
/// environment string over 128 KiB, so the limit leaves room below that.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// The longest idempotency key accepted on enqueue.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;

const MAX_NAME_LEN: usize = 63;

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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
