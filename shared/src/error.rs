//! One error type for the domain, with the contract's stable codes. The API
//! crate alone maps it to an HTTP status and the `{"error":{"code","message"}}`
//! body; the workers ask only whose fault it is (retry, or dead-letter).

/// Everything that can go wrong while handling a request or a message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field is missing or malformed (400). `field` names it.
    #[error("{message}")]
    Invalid {
        field: String,
        code: &'static str,
        message: String,
    },
    /// The body is not parseable as the declared content type (400).
    #[error("{0}")]
    MalformedBody(String),
    /// No or unknown credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Credentials that are known but not good enough (403).
    #[error("{0}")]
    Forbidden(String),
    /// Not found, or not visible to this caller (404). `code` is e.g. `click_not_found`.
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// The click is past its attribution window (410).
    #[error("{0}")]
    Gone(String),
    /// A conflicting state, e.g. creating what already exists (409).
    #[error("{0}")]
    Conflict(String),
    /// The request body is larger than allowed (413).
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// A store or queue could not be reached: nothing was promised, retry (503).
    #[error("service temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// A bug or an unexpected state (500). The cause is logged, not returned.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// Result with the domain error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A malformed field: `invalid_field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            code: "invalid_field",
            message: message.into(),
        }
    }

    /// A required field that is absent: `missing_field`.
    pub fn missing(field: &str) -> Self {
        Error::Invalid {
            field: field.to_string(),
            code: "missing_field",
            message: format!("`{field}` is required"),
        }
    }

    /// A resource that does not exist or that the caller may not see.
    pub fn not_found(what: &'static str, id: &str) -> Self {
        let code = match what {
            "click" => "click_not_found",
            "offer" => "offer_not_found",
            "partner" => "partner_not_found",
            "endpoint" => "endpoint_not_found",
            "event" => "event_not_found",
            "delivery" => "delivery_not_found",
            "transaction" => "transaction_not_found",
            _ => "not_found",
        };
        Error::NotFound {
            code,
            message: format!("{what} `{id}` was not found"),
        }
    }

    /// The stable snake_case code of the public contract.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Invalid { code, .. } => code,
            Error::MalformedBody(_) => "malformed_body",
            Error::Unauthorized(_) => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound { code, .. } => code,
            Error::Conflict(_) => "conflict",
            Error::Gone(_) => "click_expired",
            Error::PayloadTooLarge(_) => "payload_too_large",
            Error::Unavailable(_) => "unavailable",
            Error::Internal(_) => "internal",
        }
    }

    /// Whether the input is at fault (bad, unknown, unauthorised, too
    /// large, in conflict): sending it again unchanged cannot succeed. The
    /// rest (a store or queue unreachable, a bug) is ours, and a retry may help.
    pub fn is_caller_fault(&self) -> bool {
        !matches!(self, Error::Unavailable(_) | Error::Internal(_))
    }
}

/// Wraps an I/O failure of a store or queue call as `Unavailable`.
pub fn unavailable<E>(context: &'static str) -> impl FnOnce(E) -> Error
where
    E: Into<anyhow::Error>,
{
    move |e| Error::Unavailable(e.into().context(context))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_the_contracts_codes_and_say_whose_fault_they_are() {
        assert_eq!(Error::missing("click_id").code(), "missing_field");
        assert_eq!(Error::not_found("click", "x").code(), "click_not_found");
        assert!(Error::Gone("x".into()).is_caller_fault());
        assert!(Error::PayloadTooLarge(65536).is_caller_fault());
        assert!(!Error::Unavailable(anyhow::anyhow!("down")).is_caller_fault());
        assert!(!Error::Internal(anyhow::anyhow!("bug")).is_caller_fault());
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let e = Error::Internal(anyhow::anyhow!("table secret-table missing"));
        assert_eq!(e.to_string(), "internal error");
    }
}
