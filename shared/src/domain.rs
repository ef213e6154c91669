//! Domain types: what is stored and what the API shows. Validation of input
//! lives with the parsers (`ingest`, the API's request types); these types only
//! hold values that already passed it.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::ids::{
    ClickId, DeliveryId, EndpointId, EventId, LeadId, OfferId, PartnerId, TransactionId,
};
use crate::schedule::RetrySchedule;
use crate::template::Template;

/// Status of a conversion or payout, as the contract spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Approved,
    Rejected,
}

impl Status {
    /// Parses `pending`, `approved` or `rejected` (case-insensitive).
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.to_ascii_lowercase().as_str() {
            "pending" => Some(Status::Pending),
            // The affiliate platform's word for an approved conversion.
            "approved" | "done" => Some(Status::Approved),
            "rejected" => Some(Status::Rejected),
            _ => None,
        }
    }
    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Rejected => "rejected",
        }
    }
}

/// An advertiser's offer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Offer {
    pub id: OfferId,
    pub name: String,
    pub advertiser: String,
    pub landing_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_payout: Option<Decimal>,
    pub currency: String,
    /// SHA-256 of the advertiser's security token; the token itself is not kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_token_sha256: Option<String>,
    pub attribution_window_days: u32,
    /// How postbacks without a `transaction_id` are told apart.
    #[serde(default)]
    pub repeat_conversions: RepeatPolicy,
    /// Whether endpoints' goal conditions apply (the affiliate platform's
    /// "Enabled Goals"): switched off, goal filters are ignored but kept, and
    /// switched on again they apply as before.
    #[serde(default = "yes")]
    pub goals_enabled: bool,
    /// The offer's own attributes (`is_loyaltyboost`), under the click's and
    /// the postback's in every event of the offer.
    #[serde(default, with = "ordered_json")]
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// The largest payout one of its conversions may carry (default
    /// [`crate::money::DEFAULT_MAX_PAYOUT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_payout: Option<Decimal>,
    /// With `every_postback`: how long an identical postback counts as the
    /// advertiser retrying, not as a second conversion.
    #[serde(default = "default_retry_window")]
    pub retry_window_seconds: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// How an offer tells one conversion from the next when the advertiser's
/// postback carries no `transaction_id` (with one, the transaction id is
/// always the conversion's identity).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepeatPolicy {
    /// Every postback is a conversion (recurring purchases on one click),
    /// except an identical one within the offer's retry window.
    #[default]
    EveryPostback,
    /// One conversion per click and event name (`signup`, then `purchase`).
    PerEvent,
    /// One conversion per click, whatever the event.
    PerClick,
}

impl RepeatPolicy {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RepeatPolicy::EveryPostback => "every_postback",
            RepeatPolicy::PerEvent => "per_event",
            RepeatPolicy::PerClick => "per_click",
        }
    }
    /// Parses the API's spelling.
    pub fn parse(raw: &str) -> Option<Self> {
        [
            RepeatPolicy::EveryPostback,
            RepeatPolicy::PerEvent,
            RepeatPolicy::PerClick,
        ]
        .into_iter()
        .find(|p| p.as_str() == raw)
    }
}

/// Default retry window of an offer: an hour of advertiser retries.
pub const DEFAULT_RETRY_WINDOW_SECONDS: u32 = 3_600;

fn yes() -> bool {
    true
}

fn default_retry_window() -> u32 {
    DEFAULT_RETRY_WINDOW_SECONDS
}

/// A partner (publisher, affiliate). API keys are stored as SHA-256 hashes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Partner {
    pub id: PartnerId,
    pub name: String,
    pub api_key_sha256: Vec<String>,
    pub created_at: DateTime<Utc>,
}

/// A click: what a partner's traffic carried when it reached the offer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Click {
    pub click_id: ClickId,
    pub offer_id: OfferId,
    pub partner_id: PartnerId,
    #[serde(default, with = "ordered_json")]
    pub attributes: BTreeMap<String, serde_json::Value>,
    pub created_at: DateTime<Utc>,
    /// End of the offer's attribution window; later postbacks answer 410.
    pub expires_at: DateTime<Utc>,
}

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// An advertiser's S2S postback.
    Postback,
    /// Our own pipelines, by `POST /events` or the events queue.
    Internal,
}

/// The immutable record of a conversion, payout, invalidation or status change.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub id: EventId,
    pub source: Source,
    /// Free name: `conversion`, `purchase`, `payout`, `reward.created`, `invalidation`, ...
    pub event: String,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<TransactionId>,
    pub partner_id: PartnerId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub click_id: Option<ClickId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_id: Option<LeadId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer_id: Option<OfferId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertiser: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
    pub payout: Decimal,
    pub currency: String,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    /// Set on invalidations: when the original payout was reversed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime<Utc>>,
    /// Offer, then click attributes (sub ids), then the event's own on top.
    #[serde(default, with = "ordered_json")]
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// The deliveries this event fanned out to, one per matching endpoint.
    #[serde(default)]
    pub delivery_ids: Vec<DeliveryId>,
    /// The deliveries this event owes and its write did not store, as
    /// planned: their queue messages went out first, and each is
    /// created by its first claim, a lease on this item (`delivery.rs`,
    /// "created by its claim"). Never shown: the event's deliveries are.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub owed: BTreeMap<DeliveryId, Owed>,
    /// Its place among its transaction's changes: 1 for the first event, 2
    /// for the first change, ... (1 for a conversion without a transaction).
    /// Partners see it as `{sequence}`, to check order themselves. 0: an
    /// event recorded before sequences existed.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub sequence: u32,
    /// Older than its transaction's state when it arrived: kept in the
    /// history, but it fired nothing and moved nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub superseded: bool,
}

/// A delivery an event owes: what its first claim creates it from, besides
/// the event. What the request that wrote the event decided, so a message
/// of a decision it lost (a race decided again) cannot plan it otherwise.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Owed {
    pub endpoint_id: EndpointId,
    /// When its first attempt is due, if later than the event's recording
    /// (an endpoint whose schedule starts with a wait).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<DateTime<Utc>>,
    /// The delivery of the transaction's earlier change to the same
    /// endpoint, and that change's event, as `Delivery::after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<DeliveryId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_event: Option<EventId>,
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

impl Event {
    /// Whether this event reverses an earlier payout.
    pub fn is_invalidation(&self) -> bool {
        self.event == INVALIDATION
    }
}

/// The event name that reverses an earlier payout.
pub const INVALIDATION: &str = "invalidation";

/// How a postback is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Method {
    #[serde(rename = "GET")]
    Get,
    #[serde(rename = "POST_FORM")]
    PostForm,
    #[serde(rename = "POST_JSON")]
    PostJson,
}

/// HTTP basic credentials of an endpoint; the password is write-only.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct BasicAuth {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    /// A ready-made credential (the affiliate platform's "token") sent as
    /// `Authorization: Basic <token>` instead of username and password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("username", &self.username)
            .field("password", &"***")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Default time allowed for one attempt.
pub const DEFAULT_TIMEOUT_MS: u32 = 10_000;

/// A partner's postback subscription.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct Endpoint {
    pub id: EndpointId,
    pub partner_id: PartnerId,
    pub name: String,
    /// Parsed once when saved: see [`Template`].
    pub url: Template,
    pub method: Method,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Template>,
    #[serde(default)]
    pub headers: BTreeMap<String, Template>,
    /// Header names whose values are secrets (an `X-Api-Key`): write-only,
    /// never shown, masked in the test route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Event names this endpoint receives; `*` for all.
    pub events: Vec<String>,
    /// Statuses it receives; empty for all.
    #[serde(default)]
    pub statuses: Vec<Status>,
    /// Offer ids it receives; empty for all.
    #[serde(default)]
    pub offers: Vec<OfferId>,
    /// Goals it receives; empty for all.
    #[serde(default)]
    pub goals: Vec<String>,
    /// Whether invalidations are sent (off by default: they are opt-in).
    #[serde(default)]
    pub invalidations: bool,
    /// The partner's words for event and status names in `{event}` and
    /// `{status}`: `{"invalidation": "invalidated", "approved": "Done"}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rename: BTreeMap<String, String>,
    /// Leave out of a GET query, a form or a JSON body every field whose
    /// value rendered empty (optional client tags, `deletedAt` only on invalidations).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub omit_empty: bool,
    pub retry_schedule: RetrySchedule,
    pub timeout_ms: u32,
    pub active: bool,
    /// Optimistic concurrency: every write is conditional on the version it
    /// read, so a stale copy (a worker pausing on 410) never reverts a change.
    #[serde(default)]
    pub version: u64,
    /// Why the endpoint was paused automatically (e.g. it answered 410 Gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_reason: Option<String>,
    /// When it was last paused; re-activation queues what waited since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<DateTime<Utc>>,
    /// How it receives the changes of one transaction.
    #[serde(default)]
    pub ordering: Ordering,
    /// Until when its deliveries go to the slow lane: set (by any worker,
    /// in the table, so every instance sees it) when an attempt went
    /// unanswered for [`crate::delivery::SLOW_AFTER`]; stored as epoch ms.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "chrono::serde::ts_milliseconds_option"
    )]
    pub slow_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Whether `names` holds the header name `name`. Header names are
/// case-insensitive, here as in HTTP: this is the one place that says so
/// (secret headers, stored values kept, masking and sealing all ask it).
pub fn names_header(names: &[String], name: &str) -> bool {
    names.iter().any(|h| same_header(h, name))
}

/// Whether two header names are the same name.
pub fn same_header(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

impl Endpoint {
    /// Whether `name` is one of its secret headers: write-only, sealed at
    /// rest, never shown.
    pub fn is_secret_header(&self, name: &str) -> bool {
        names_header(&self.secret_headers, name)
    }

    /// The stored value of its header `name`, in whatever case either spells it.
    pub fn header(&self, name: &str) -> Option<&Template> {
        self.headers
            .iter()
            .find(|(k, _)| same_header(k, name))
            .map(|(_, v)| v)
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("id", &self.id)
            .field("partner_id", &self.partner_id)
            .field("url", &self.url)
            .field("method", &self.method)
            .field("basic_auth", &self.basic_auth)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Whether this endpoint subscribes to `event` (its filters match; goal
    /// conditions only when `goals_apply`, the offer's "Enabled Goals").
    /// Paused endpoints still match: their deliveries wait until they are re-activated.
    pub fn matches(&self, event: &Event, goals_apply: bool) -> bool {
        if event.is_invalidation() {
            if !self.invalidations {
                return false;
            }
        } else if !self
            .events
            .iter()
            .any(|e| e == "*" || e.eq_ignore_ascii_case(&event.event))
        {
            return false;
        }
        if !self.statuses.is_empty() && !self.statuses.contains(&event.status) {
            return false;
        }
        if !self.offers.is_empty()
            && !event
                .offer_id
                .as_ref()
                .is_some_and(|o| self.offers.contains(o))
        {
            return false;
        }
        if goals_apply
            && !self.goals.is_empty()
            && !event.goal.as_ref().is_some_and(|g| self.goals.contains(g))
        {
            return false;
        }
        true
    }
}

/// How an endpoint receives the changes of one transaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ordering {
    /// Every change, one after the other: a later change waits until the
    /// earlier change's delivery to this endpoint has ended (delivered or
    /// failed). The default: a partner that books money sees every step.
    #[default]
    InOrder,
    /// Only the latest: an earlier change not yet delivered is cancelled
    /// (`superseded`) when a later one is ready to go.
    LatestOnly,
}

impl Ordering {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Ordering::InOrder => "in_order",
            Ordering::LatestOnly => "latest_only",
        }
    }
    /// Parses the API's spelling.
    pub fn parse(raw: &str) -> Option<Self> {
        [Ordering::InOrder, Ordering::LatestOnly]
            .into_iter()
            .find(|o| o.as_str() == raw)
    }
}

/// The latest known state of one of our pipelines' transactions, so that a
/// status change or an invalidation can refer to it by `transaction_id` alone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Transaction {
    pub transaction_id: TransactionId,
    /// Its partner; `None` only on a placeholder (an invalidation that came
    /// without one, before its payout). Placeholders stored by earlier
    /// versions hold `""`, read as `None`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::empty_as_none"
    )]
    pub partner_id: Option<PartnerId>,
    pub event: String,
    pub status: Status,
    pub payout: Decimal,
    pub currency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub click_id: Option<ClickId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_id: Option<LeadId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer_id: Option<OfferId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
    #[serde(default, with = "ordered_json")]
    pub attributes: BTreeMap<String, serde_json::Value>,
    pub last_event_id: EventId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalidated_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// The offer an advertiser's transaction belongs to: advertisers choose
    /// their own ids, so theirs are told apart by offer. `None` for our
    /// pipelines' transactions, whose ids are ours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<OfferId>,
    /// How many changes followed the first event (each status change, each invalidation).
    #[serde(default)]
    pub changes: u32,
    /// Optimistic concurrency: each change is written on the version it read.
    #[serde(default)]
    pub version: u64,
    /// The latest changes, newest last (at most `MAX_SEEN_CHANGES`): what a
    /// repeat is recognised by.
    #[serde(default)]
    pub seen: Vec<SeenChange>,
    /// When the current state happened (its `occurred_at`, or its arrival):
    /// a change older than this is late and moves nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_at: Option<DateTime<Utc>>,
    /// The latest delivery of this transaction to each endpoint (endpoint id
    /// → delivery id): the next change's delivery to that endpoint goes after it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub last_delivery: BTreeMap<EndpointId, DeliveryId>,
    /// An invalidation that arrived before the payout it reverses, as the
    /// event object it came as (JSON): applied right after the payout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_invalidation: Option<String>,
    /// Only holds a waiting invalidation: no event of the transaction yet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub placeholder: bool,
    /// Where it is stored (the store sets it on read; a new transaction's
    /// is [`crate::store::Store::home_of_new`]): in the item of its first
    /// event, this id, one item for both; `None` in its own item (a
    /// transaction begun before events held theirs, or with
    /// `COMPACT_ITEMS=false`). Not stored: the key says it.
    #[serde(skip)]
    pub first_event: Option<EventId>,
}

/// Most changes a transaction remembers to recognise repeats.
pub const MAX_SEEN_CHANGES: usize = 20;

/// One change of a transaction, as remembered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SeenChange {
    pub event: String,
    pub status: Status,
    pub occurred_at: DateTime<Utc>,
    pub payout: Decimal,
    pub event_id: EventId,
}

impl Transaction {
    /// The store key of a transaction: ours by id, an advertiser's by offer
    /// and id. Each id is escaped ([`key_part`]), so ours never holds a `#`
    /// and an advertiser's always starts with `OFFER#`: no id from outside
    /// can name a transaction of the other namespace or another offer.
    /// Both parts are typed ids: an offer id never holds `#` or `%`, and a
    /// transaction id is escaped.
    pub fn key_of(scope: Option<&OfferId>, transaction_id: &TransactionId) -> String {
        match scope {
            None => key_part(transaction_id),
            Some(offer) => format!("OFFER#{offer}#{}", key_part(transaction_id)),
        }
    }

    /// The id of a transaction's first event when that event's item holds
    /// the transaction ([`Transaction::first_event`]): the transaction's key
    /// alone, so that every first change of a transaction lands on the same
    /// item, and the one conditional write that creates it decides which
    /// stands (the others decide again, as changes of it).
    pub fn first_event_id(key: &str) -> EventId {
        EventId::derive(&["first", key])
    }

    /// This transaction's store key.
    pub fn key(&self) -> String {
        Self::key_of(self.scope.as_ref(), &self.transaction_id)
    }

    /// When its current state happened (older records: their last change).
    pub fn state_time(&self) -> DateTime<Utc> {
        self.state_at
            .or_else(|| self.seen.last().map(|s| s.occurred_at))
            .unwrap_or(self.updated_at)
    }

    /// The place of its current state among its changes (1 for the first event).
    pub fn sequence(&self) -> u32 {
        self.changes + 1
    }
}

/// One id as a part of a store key: the key separator `#` and the escape
/// character `%` are percent-escaped, so a part never spans two. Ids without
/// either (every id we make) are unchanged.
pub fn key_part(id: &str) -> String {
    if id.contains(['#', '%']) {
        id.replace('%', "%25").replace('#', "%23")
    } else {
        id.to_string()
    }
}

/// Attributes are stored as one JSON text, not as a DynamoDB map: a map
/// forgets the order of nested keys (a partner's `{payload}` must arrive as
/// it came) and refuses nesting beyond 32 levels. Items written as maps by
/// earlier versions are still read.
mod ordered_json {
    use serde::de::Error as _;
    use serde::ser::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_json::Value;
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(v: &BTreeMap<String, Value>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&serde_json::to_string(v).map_err(S::Error::custom)?)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Value>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Text(String),
            Map(BTreeMap<String, Value>),
        }
        match Stored::deserialize(d)? {
            Stored::Text(t) => serde_json::from_str(&t).map_err(D::Error::custom),
            Stored::Map(m) => Ok(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_keys_of_the_two_namespaces_never_meet() {
        // A pipeline id spelled like an advertiser's key stays ours.
        use crate::ids::t;
        let spelled = Transaction::key_of(None, &t("OFFER#off1#T1"));
        assert_ne!(spelled, Transaction::key_of(Some(&t("off1")), &t("T1")));
        assert!(!spelled.contains('#'));
        // A transaction id holding the separator stays one part (an offer
        // id cannot hold it: its type refuses `#`).
        assert!(crate::ids::OfferId::parse("a#b").is_err());
        assert_ne!(
            Transaction::key_of(Some(&t("a")), &t("b#c")),
            Transaction::key_of(Some(&t("a")), &t("b")),
        );
        assert_eq!(
            Transaction::key_of(Some(&t("a")), &t("b#c")),
            "OFFER#a#b%23c"
        );
        // Ids we make are unchanged.
        assert_eq!(Transaction::key_of(None, &t("T-1")), "T-1");
        assert_eq!(key_part("50%#"), "50%25%23");
    }
}
