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
    /// Well-formed input that a rule refuses (422): a rule between fields
    /// (a body with method GET), or with what is stored (a payout above the
    /// offer's maximum, an invalidation larger than the payout it reverses).
    /// `field` names the field to change.
    #[error("{message}")]
    Rule { field: String, message: String },
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

    /// Well-formed input a rule refuses: `rule_violated` (422).
    pub fn rule(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Rule {
            field: field.into(),
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
            Error::Rule { .. } => "rule_violated",
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

impl Error {
    /// The whole story for a log line: the public message, then every cause
    /// (for an AWS call: what we were doing, the service's error code and
    /// message, and the transport's own chain).
    pub fn detail(&self) -> String {
        match self {
            Error::Unavailable(cause) | Error::Internal(cause) => format!("{self}: {cause:#}"),
            other => other.to_string(),
        }
    }

    /// The AWS error code behind this error (`AccessDeniedException`,
    /// `ThrottlingException`, …), when an AWS call failed with one.
    pub fn aws_code(&self) -> Option<&str> {
        match self {
            Error::Unavailable(cause) | Error::Internal(cause) => cause
                .chain()
                .find_map(|c| c.downcast_ref::<AwsFailure>())
                .and_then(|f| f.code.as_deref()),
            _ => None,
        }
    }
}

/// A failed AWS call, as logged: what we were doing, the service's error code
/// and message (when it answered), and the full cause chain.
#[derive(Debug)]
pub struct AwsFailure {
    /// What we were doing (`writing an item`).
    pub context: &'static str,
    /// The service's error code (`AccessDeniedException`), when it answered.
    pub code: Option<String>,
    /// The service's message, or the transport's cause chain.
    pub message: String,
}

impl std::fmt::Display for AwsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{}: {code}: {}", self.context, self.message),
            None => write!(f, "{}: {}", self.context, self.message),
        }
    }
}

impl std::error::Error for AwsFailure {}

/// Error codes that no retry can cure: our own configuration is wrong (an IAM
/// grant, a table or queue name, a key policy). They answer 500, raise the
/// 5xx alarm and log their code; workers still let the message come back, so
/// nothing is lost once the configuration is fixed.
const CONFIGURATION_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "MissingAuthenticationTokenException",
    "IncompleteSignature",
    "InvalidSignatureException",
    "ResourceNotFoundException",
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "ValidationException",
    "KMSAccessDeniedException",
    "KMSDisabledException",
];

/// The metric counting AWS calls refused for a configuration reason (no
/// dimension, so one alarm watches it; the log line has the code).
pub const CONFIGURATION_ERRORS_METRIC: &str = "ConfigurationErrors";

/// Classifies a failed AWS SDK call: a configuration error (see
/// [`CONFIGURATION_CODES`]) is `Internal`; anything else (throttling, a
/// timeout, a dropped connection, a 5xx) is `Unavailable`. Either way the
/// cause keeps the AWS error code and the whole chain, so an AccessDenied
/// never hides behind "service temporarily unavailable" in the logs.
pub fn unavailable<E, R>(
    context: &'static str,
) -> impl FnOnce(aws_sdk_dynamodb::error::SdkError<E, R>) -> Error
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
    move |e| {
        let code = e.code().map(str::to_string);
        let message = match (&e, e.message()) {
            (SdkError::ServiceError(_), Some(m)) => m.to_string(),
            _ => DisplayErrorContext(&e).to_string(),
        };
        let failure = AwsFailure {
            context,
            code,
            message,
        };
        let configuration = failure
            .code
            .as_deref()
            .is_some_and(|c| CONFIGURATION_CODES.contains(&c));
        if configuration {
            metrics::counter!(CONFIGURATION_ERRORS_METRIC).increment(1);
            Error::Internal(failure.into())
        } else {
            Error::Unavailable(failure.into())
        }
    }
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
    fn aws_failures_keep_their_code_and_configuration_errors_are_internal() {
        use aws_sdk_dynamodb::error::{ErrorMetadata, SdkError};
        use aws_sdk_dynamodb::operation::put_item::PutItemError;
        let denied = PutItemError::generic(
            ErrorMetadata::builder()
                .code("AccessDeniedException")
                .message("User: arn:aws:sts::1:assumed-role/api is not authorized to perform: dynamodb:PutItem")
                .build(),
        );
        let e = unavailable("writing an item")(SdkError::service_error(denied, ()));
        assert!(matches!(e, Error::Internal(_)), "{e:?}");
        assert_eq!(e.aws_code(), Some("AccessDeniedException"));
        let detail = e.detail();
        assert!(detail.contains("writing an item: AccessDeniedException: User: arn:aws:sts::1:assumed-role/api is not authorized"), "{detail}");
        assert_eq!(
            e.to_string(),
            "internal error",
            "the cause never reaches the caller"
        );

        let throttled = PutItemError::generic(
            ErrorMetadata::builder()
                .code("ThrottlingException")
                .message("slow down")
                .build(),
        );
        let e = unavailable("writing an item")(SdkError::service_error(throttled, ()));
        assert!(matches!(e, Error::Unavailable(_)));
        assert_eq!(e.aws_code(), Some("ThrottlingException"));

        let timeout: SdkError<PutItemError, ()> =
            SdkError::timeout_error("operation timed out after 1s");
        let e = unavailable("writing an item")(timeout);
        assert!(matches!(e, Error::Unavailable(_)));
        assert_eq!(e.aws_code(), None);
        assert!(
            e.detail().contains("operation timed out after 1s"),
            "{}",
            e.detail()
        );
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let e = Error::Internal(anyhow::anyhow!("table secret-table missing"));
        assert_eq!(e.to_string(), "internal error");
    }
}
