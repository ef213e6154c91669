//! The state both lambdas share: configuration and AWS clients, built once per
//! cold start and lent to every invocation, and the catalog: offers, partners
//! and endpoints read through a per-process cache that every write made here
//! invalidates (the store's configuration writes are reachable only through
//! these methods, so a forgotten invalidation does not compile).

use std::sync::Arc;

use crate::admin_keys::AdminKeys;
use crate::cache::TtlCache;
use crate::config::Config;
use crate::domain::{Endpoint, Offer, Partner};
use crate::ids::{EndpointId, OfferId, PartnerId};
use crate::metrics::RequestCounter;
use crate::queue::Queue;
use crate::sealing::Sealer;
use crate::sender::Sender;
use crate::store::Store;

/// Clients and caches of one process.
pub struct App {
    pub config: Config,
    pub store: Store,
    pub queue: Queue,
    /// AWS requests sent by this process, by operation.
    pub requests: RequestCounter,
    offers: TtlCache<Option<Offer>>,
    partners: TtlCache<Option<Partner>>,
    /// A partner's endpoints, by partner id.
    endpoints: TtlCache<Vec<Endpoint>>,
    /// The postback HTTP client (deliveries and the test route).
    pub sender: Sender,
    /// The admin key(s), from Secrets Manager or the environment.
    pub admin_keys: AdminKeys,
}

impl App {
    /// Reads the environment and builds the clients.
    pub async fn from_env() -> anyhow::Result<Arc<Self>> {
        let config = Config::from_env()?;
        Self::new(config).await
    }

    /// As [`App::from_env`] for the workers (deliver, events, reconcile),
    /// which never check an admin key: no Secrets Manager client is built,
    /// and none of its code is linked into their binaries.
    pub async fn worker_from_env() -> anyhow::Result<Arc<Self>> {
        let config = Config::from_env()?;
        let (sdk, dynamo, sqs, requests) = clients(&config, None, None).await;
        Self::assemble(config, &sdk, dynamo, sqs, requests, AdminKeys::none())
    }

    /// Builds the clients for `config` from the standard AWS SDK environment.
    pub async fn new(config: Config) -> anyhow::Result<Arc<Self>> {
        Self::with_endpoints(config, None, None).await
    }

    /// Same as [`App::new`], with the DynamoDB and SQS endpoints overridden
    /// (tests put a fault-injecting proxy there).
    pub async fn with_endpoints(
        config: Config,
        dynamodb_url: Option<&str>,
        sqs_url: Option<&str>,
    ) -> anyhow::Result<Arc<Self>> {
        let (sdk, dynamo, sqs, requests) = clients(&config, dynamodb_url, sqs_url).await;
        let secrets = match &config.admin_keys {
            crate::config::AdminKeySource::SecretsManager { .. } => {
                Some(aws_sdk_secretsmanager::Client::new(&sdk))
            }
            crate::config::AdminKeySource::Static(_) | crate::config::AdminKeySource::None => None,
        };
        let admin_keys = AdminKeys::load(config.admin_keys.clone(), secrets).await?;
        Self::assemble(config, &sdk, dynamo, sqs, requests, admin_keys)
    }

    fn assemble(
        config: Config,
        sdk: &aws_config::SdkConfig,
        dynamo: aws_sdk_dynamodb::Client,
        sqs: aws_sdk_sqs::Client,
        requests: RequestCounter,
        admin_keys: AdminKeys,
    ) -> anyhow::Result<Arc<Self>> {
        let ttl = config.config_cache_ttl;
        let sender =
            Sender::new(config.allow_private_targets)?.sending_nowhere(config.send_nowhere);
        Ok(Arc::new(App {
            store: Store::new(dynamo, config.table_name.clone())
                .with_retention_days(config.retention_days)
                .with_compact_items(config.compact_items)
                .with_sealer(Sealer::new(
                    config
                        .secrets_key_id
                        .clone()
                        .map(|key| (aws_sdk_kms::Client::new(sdk), key)),
                )),
            queue: Queue::new(sqs),
            config,
            requests,
            offers: TtlCache::new(ttl),
            partners: TtlCache::new(ttl),
            endpoints: TtlCache::new(ttl),
            sender,
            admin_keys,
        }))
    }

    /// The offer, from the cache or the store.
    pub async fn offer(&self, id: &OfferId) -> crate::Result<Arc<Option<Offer>>> {
        if let Some(hit) = self.offers.get(id) {
            return Ok(hit);
        }
        let offer = self.store.get_offer(id).await?;
        Ok(self.offers.put(id, offer))
    }

    /// The partner, from the cache or the store.
    pub async fn partner(&self, id: &PartnerId) -> crate::Result<Arc<Option<Partner>>> {
        if let Some(hit) = self.partners.get(id) {
            return Ok(hit);
        }
        let partner = self.store.get_partner(id).await?;
        Ok(self.partners.put(id, partner))
    }

    /// Stores a new offer.
    pub async fn create_offer(&self, offer: &Offer) -> crate::Result<()> {
        let r = self.store.create_offer(offer).await;
        self.offers.invalidate(&offer.id);
        r
    }

    /// Replaces an offer.
    pub async fn replace_offer(&self, offer: &Offer) -> crate::Result<()> {
        let r = self.store.replace_offer(offer).await;
        self.offers.invalidate(&offer.id);
        r
    }

    /// Deletes an offer; false if there was none.
    pub async fn delete_offer(&self, id: &OfferId) -> crate::Result<bool> {
        let r = self.store.delete_offer(id).await;
        self.offers.invalidate(id);
        r
    }

    /// Stores a new partner.
    pub async fn create_partner(&self, partner: &Partner) -> crate::Result<()> {
        let r = self.store.create_partner(partner).await;
        self.partners.invalidate(&partner.id);
        r
    }

    /// Replaces a partner's key hashes if they are still `expected`; false
    /// if they changed meanwhile. Other warm processes see the change within
    /// `CONFIG_CACHE_SECONDS`.
    pub async fn replace_partner_keys(
        &self,
        id: &PartnerId,
        expected: &[String],
        keys: &[String],
    ) -> crate::Result<bool> {
        let r = self.store.replace_partner_keys(id, expected, keys).await;
        self.partners.invalidate(id);
        r
    }

    /// Stores a new endpoint.
    pub async fn create_endpoint(&self, endpoint: &Endpoint) -> crate::Result<()> {
        let r = self.store.create_endpoint(endpoint).await;
        self.endpoints.invalidate(&endpoint.partner_id);
        r
    }

    /// Replaces an endpoint if it still stands at `read_version` (see
    /// [`crate::store::Store::replace_endpoint`]).
    pub async fn replace_endpoint(
        &self,
        endpoint: &Endpoint,
        read_version: u64,
        release_parked: bool,
        now: chrono::DateTime<chrono::Utc>,
    ) -> crate::Result<()> {
        let r = self
            .store
            .replace_endpoint(endpoint, read_version, release_parked, now)
            .await;
        self.endpoints.invalidate(&endpoint.partner_id);
        r
    }

    /// Pauses `endpoint` (as read, at its version) with `reason`; false if it
    /// changed or was deleted meanwhile (nothing is reverted).
    pub async fn pause_endpoint(
        &self,
        endpoint: &Endpoint,
        reason: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> crate::Result<bool> {
        let r = self
            .store
            .pause_endpoint(
                &endpoint.partner_id,
                &endpoint.id,
                endpoint.version,
                reason,
                now,
            )
            .await;
        self.endpoints.invalidate(&endpoint.partner_id);
        r
    }

    /// Deletes an endpoint; false if there was none.
    pub async fn delete_endpoint(
        &self,
        partner_id: &PartnerId,
        id: &EndpointId,
        now: chrono::DateTime<chrono::Utc>,
    ) -> crate::Result<bool> {
        let r = self.store.delete_endpoint(partner_id, id, now).await;
        self.endpoints.invalidate(partner_id);
        r
    }

    /// The partner's endpoints, from the cache or the store, secrets sealed
    /// (fan-out reads only their filters).
    pub async fn partner_endpoints(
        &self,
        partner_id: &PartnerId,
    ) -> crate::Result<Arc<Vec<Endpoint>>> {
        if let Some(hit) = self.endpoints.get(partner_id) {
            return Ok(hit);
        }
        let endpoints = self.store.list_endpoints(partner_id).await?;
        Ok(self.endpoints.put(partner_id, endpoints))
    }
}

/// The SDK configuration and the DynamoDB and SQS clients of `config`, with
/// their endpoints overridden when given (tests' fault-injecting proxies).
async fn clients(
    config: &Config,
    dynamodb_url: Option<&str>,
    sqs_url: Option<&str>,
) -> (
    aws_config::SdkConfig,
    aws_sdk_dynamodb::Client,
    aws_sdk_sqs::Client,
    RequestCounter,
) {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(2).min(config.aws_attempt_timeout))
        .operation_attempt_timeout(config.aws_attempt_timeout)
        .operation_timeout(config.aws_operation_timeout)
        .build();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await;
    let requests = if config.meter_capacity {
        RequestCounter::metering()
    } else {
        RequestCounter::default()
    };
    let mut dynamo_conf =
        aws_sdk_dynamodb::config::Builder::from(&sdk).interceptor(requests.clone());
    if let Some(url) = dynamodb_url {
        dynamo_conf = dynamo_conf.endpoint_url(url);
    }
    let mut sqs_conf = aws_sdk_sqs::config::Builder::from(&sdk).interceptor(requests.clone());
    if let Some(url) = sqs_url {
        sqs_conf = sqs_conf.endpoint_url(url);
    }
    let dynamo = aws_sdk_dynamodb::Client::from_conf(dynamo_conf.build());
    let sqs = aws_sdk_sqs::Client::from_conf(sqs_conf.build());
    (sdk, dynamo, sqs, requests)
}
