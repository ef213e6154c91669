//! Creates the table and queues that `template.yaml` declares, on whatever
//! endpoint the SDK environment points at (the local stand-ins). The template
//! is the only definition: attributes, keys, GSIs, TTL, visibility timeouts,
//! retention and redrive policies are read from it, and the lambdas'
//! environment variables (`TABLE_NAME: !Ref Table`, ...) are resolved to the
//! names and URLs created, so the local runner is configured exactly like the
//! functions in AWS.

use anyhow::{anyhow, bail, Context};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_yaml::Value;
use std::collections::{BTreeMap, HashMap};

/// Names and addresses of what was created, by logical id, and the resolved
/// environment of the functions.
#[derive(Debug, Clone, Default)]
pub struct Provisioned {
    /// Logical id → physical table name.
    pub tables: BTreeMap<String, String>,
    /// Logical id → queue URL.
    pub queue_urls: BTreeMap<String, String>,
    /// Logical id → queue ARN.
    pub queue_arns: BTreeMap<String, String>,
    /// Logical id → KMS key id.
    pub kms_keys: BTreeMap<String, String>,
    /// The functions' environment variables whose values reference these resources.
    pub env: BTreeMap<String, String>,
}

fn tag_name(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => Some((
            t.tag.to_string().trim_start_matches('!').to_string(),
            &t.value,
        )),
        Value::Mapping(m) if m.len() == 1 => {
            let (k, inner) = m.iter().next()?;
            let k = k.as_str()?;
            match k {
                "Ref" => Some(("Ref".into(), inner)),
                _ if k.starts_with("Fn::") => {
                    Some((k.trim_start_matches("Fn::").to_string(), inner))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// A template parameter's value locally: its `Default`.
fn parameter(template: &Value, name: &str) -> anyhow::Result<Value> {
    template
        .get("Parameters")
        .and_then(|p| p.get(name))
        .and_then(|p| p.get("Default"))
        .cloned()
        .ok_or_else(|| anyhow!("parameter {name} has no Default to provision with"))
}

/// Whether the template's condition `name` holds with the parameters'
/// defaults (`!Equals`, `!Not`, `!And`, `!Or` over `!Ref` of parameters).
fn condition(template: &Value, name: &str) -> anyhow::Result<bool> {
    let c = template
        .get("Conditions")
        .and_then(|c| c.get(name))
        .ok_or_else(|| anyhow!("condition {name} is not in the template"))?;
    truth(template, c)
}

fn truth(template: &Value, v: &Value) -> anyhow::Result<bool> {
    let Some((tag, inner)) = tag_name(v) else {
        bail!("a condition must be an intrinsic function: {v:?}");
    };
    let args = || {
        inner
            .as_sequence()
            .ok_or_else(|| anyhow!("!{tag} takes a list"))
    };
    Ok(match tag.as_str() {
        "Equals" => {
            let a = args()?;
            anyhow::ensure!(a.len() == 2, "!Equals takes two values");
            let value = |v: &Value| -> anyhow::Result<Value> {
                match tag_name(v) {
                    Some((t, name)) if t == "Ref" => parameter(template, str_of(name, "!Ref")?),
                    Some((t, _)) => bail!("!{t} is not supported in a condition locally"),
                    None => Ok(v.clone()),
                }
            };
            value(&a[0])? == value(&a[1])?
        }
        "Not" => !truth(template, args()?.first().unwrap_or(&Value::Null))?,
        "And" => args()?.iter().try_fold(true, |all, c| {
            Ok::<_, anyhow::Error>(all && truth(template, c)?)
        })?,
        "Or" => args()?.iter().try_fold(false, |any, c| {
            Ok::<_, anyhow::Error>(any || truth(template, c)?)
        })?,
        "Condition" => condition(template, str_of(inner, "Condition")?)?,
        other => bail!("!{other} is not supported in a condition locally"),
    })
}

/// `v` with every `!If [condition, a, b]` decided by the parameters'
/// defaults, and `!Ref AWS::NoValue` removed: what CloudFormation would
/// create from a resource's properties. `None`: no value.
fn decide(template: &Value, v: &Value) -> anyhow::Result<Option<Value>> {
    if let Some((tag, inner)) = tag_name(v) {
        match tag.as_str() {
            "If" => {
                let a = inner
                    .as_sequence()
                    .filter(|a| a.len() == 3)
                    .ok_or_else(|| anyhow!("!If takes a condition and two values"))?;
                let pick = if condition(template, str_of(&a[0], "!If's condition")?)? {
                    &a[1]
                } else {
                    &a[2]
                };
                return decide(template, pick);
            }
            "Ref" if inner.as_str() == Some("AWS::NoValue") => return Ok(None),
            _ => return Ok(Some(v.clone())),
        }
    }
    Ok(Some(match v {
        Value::Mapping(m) => {
            let mut out = serde_yaml::Mapping::new();
            for (k, inner) in m {
                if let Some(x) = decide(template, inner)? {
                    out.insert(k.clone(), x);
                }
            }
            Value::Mapping(out)
        }
        Value::Sequence(items) => Value::Sequence(
            items
                .iter()
                .map(|i| decide(template, i))
                .collect::<anyhow::Result<Vec<_>>>()?
                .into_iter()
                .flatten()
                .collect(),
        ),
        other => other.clone(),
    }))
}

fn str_of<'a>(v: &'a Value, what: &str) -> anyhow::Result<&'a str> {
    v.as_str().ok_or_else(|| anyhow!("{what} must be a string"))
}

fn int_of(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

impl Provisioned {
    /// Resolves `!Ref X` and `!GetAtt X.Arn|QueueUrl|QueueName` against what was created.
    fn resolve(&self, v: &Value) -> Option<String> {
        // Tags first: serde_yaml's `as_str` also sees through `!GetAtt X.Arn`.
        let Some((tag, inner)) = tag_name(v) else {
            return v.as_str().map(str::to_string);
        };
        match tag.as_str() {
            "Ref" => {
                let id = inner.as_str()?;
                self.tables
                    .get(id)
                    .or_else(|| self.queue_urls.get(id))
                    .or_else(|| self.kms_keys.get(id))
                    .cloned()
            }
            "GetAtt" => {
                let (id, attr) = match inner {
                    Value::String(s) => s
                        .split_once('.')
                        .map(|(a, b)| (a.to_string(), b.to_string()))?,
                    Value::Sequence(parts) if parts.len() == 2 => (
                        parts[0].as_str()?.to_string(),
                        parts[1].as_str()?.to_string(),
                    ),
                    _ => return None,
                };
                match attr.as_str() {
                    "Arn" => self.queue_arns.get(&id).cloned(),
                    "QueueUrl" => self.queue_urls.get(&id).cloned(),
                    "QueueName" => self
                        .queue_urls
                        .get(&id)
                        .and_then(|u| u.rsplit('/').next().map(str::to_string)),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

/// Sets template parameters as `sam deploy --parameter-overrides` would:
/// locally, a parameter's value is its `Default`.
fn set_parameters(template: &mut Value, parameters: &[(&str, &str)]) -> anyhow::Result<()> {
    for (name, value) in parameters {
        let p = template
            .get_mut("Parameters")
            .and_then(|p| p.get_mut(*name))
            .and_then(Value::as_mapping_mut)
            .ok_or_else(|| anyhow!("template.yaml has no parameter {name}"))?;
        p.insert("Default".into(), Value::String(value.to_string()));
    }
    Ok(())
}

/// Creates (if missing) every `AWS::DynamoDB::Table` and `AWS::SQS::Queue` of
/// the template, named `<prefix>-<LogicalId>`.
pub async fn provision(
    template_yaml: &str,
    prefix: &str,
    dynamo: &aws_sdk_dynamodb::Client,
    sqs: &aws_sdk_sqs::Client,
    kms: &aws_sdk_kms::Client,
) -> anyhow::Result<Provisioned> {
    provision_with(template_yaml, &[], prefix, dynamo, sqs, kms).await
}

/// [`provision`], with template parameters set (`name`, `value`) instead
/// of their defaults.
pub async fn provision_with(
    template_yaml: &str,
    parameters: &[(&str, &str)],
    prefix: &str,
    dynamo: &aws_sdk_dynamodb::Client,
    sqs: &aws_sdk_sqs::Client,
    kms: &aws_sdk_kms::Client,
) -> anyhow::Result<Provisioned> {
    let mut template: Value =
        serde_yaml::from_str(template_yaml).context("parsing template.yaml")?;
    set_parameters(&mut template, parameters)?;
    let resources = template
        .get("Resources")
        .and_then(Value::as_mapping)
        .ok_or_else(|| anyhow!("template.yaml has no Resources"))?;
    let mut out = Provisioned::default();

    let mut queues: Vec<(String, &Value)> = Vec::new();
    for (id, res) in resources {
        let id = str_of(id, "a logical id")?.to_string();
        let props = res.get("Properties").cloned().unwrap_or(Value::Null);
        match res.get("Type").and_then(Value::as_str) {
            Some("AWS::DynamoDB::Table") => {
                let name = format!("{prefix}-{id}");
                let props = decide(&template, &props)?.unwrap_or(Value::Null);
                let created = create_table(dynamo, &name, &props)
                    .await
                    .with_context(|| format!("creating table {id}"))?;
                if created {
                    // It holds no transaction in an item of its own.
                    shared::store::layout::mark_new_table(dynamo, &name)
                        .await
                        .with_context(|| format!("marking table {id} new"))?;
                }
                out.tables.insert(id, name);
            }
            Some("AWS::SQS::Queue") => queues.push((id, res)),
            Some("AWS::KMS::Key") => {
                let key = kms
                    .create_key()
                    .description(format!("{prefix}-{id}"))
                    .send()
                    .await
                    .with_context(|| format!("creating KMS key {id}"))?;
                let key_id = key
                    .key_metadata()
                    .map(|m| m.key_id().to_string())
                    .ok_or_else(|| anyhow!("KMS created key {id} without an id"))?;
                out.kms_keys.insert(id, key_id);
            }
            _ => {}
        }
    }
    // Dead-letter queues first, so that the redrive policies can name their ARNs.
    queues.sort_by_key(|(_, res)| {
        res.get("Properties")
            .and_then(|p| p.get("RedrivePolicy"))
            .is_some()
    });
    for (id, res) in queues {
        let props = res.get("Properties").cloned().unwrap_or(Value::Null);
        let name = format!("{prefix}-{id}");
        let mut attrs: HashMap<QueueAttributeName, String> = HashMap::new();
        for (key, attr) in [
            ("VisibilityTimeout", QueueAttributeName::VisibilityTimeout),
            (
                "MessageRetentionPeriod",
                QueueAttributeName::MessageRetentionPeriod,
            ),
            ("DelaySeconds", QueueAttributeName::DelaySeconds),
            (
                "ReceiveMessageWaitTimeSeconds",
                QueueAttributeName::ReceiveMessageWaitTimeSeconds,
            ),
        ] {
            if let Some(v) = props.get(key).and_then(int_of) {
                attrs.insert(attr, v.to_string());
            }
        }
        if let Some(redrive) = props.get("RedrivePolicy") {
            let target = redrive
                .get("deadLetterTargetArn")
                .and_then(|v| out.resolve(v))
                .ok_or_else(|| anyhow!("queue {id}: deadLetterTargetArn does not resolve"))?;
            let max = redrive
                .get("maxReceiveCount")
                .and_then(int_of)
                .ok_or_else(|| anyhow!("queue {id}: maxReceiveCount missing"))?;
            attrs.insert(
                QueueAttributeName::RedrivePolicy,
                serde_json::json!({"deadLetterTargetArn": target, "maxReceiveCount": max})
                    .to_string(),
            );
        }
        let url = sqs
            .create_queue()
            .queue_name(&name)
            .set_attributes(Some(attrs))
            .send()
            .await
            .with_context(|| format!("creating queue {id}"))?
            .queue_url
            .ok_or_else(|| anyhow!("queue {id}: no URL returned"))?;
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .with_context(|| format!("reading queue {id}'s ARN"))?
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .ok_or_else(|| anyhow!("queue {id}: no ARN"))?;
        out.queue_urls.insert(id.clone(), url);
        out.queue_arns.insert(id, arn);
    }

    // The functions' environment: Globals first, then each function's own.
    let mut env_maps: Vec<&Value> = Vec::new();
    if let Some(v) = template
        .get("Globals")
        .and_then(|g| g.get("Function"))
        .and_then(|f| f.get("Environment"))
    {
        env_maps.push(v);
    }
    for (_, res) in resources {
        if res.get("Type").and_then(Value::as_str) == Some("AWS::Serverless::Function") {
            if let Some(v) = res.get("Properties").and_then(|p| p.get("Environment")) {
                env_maps.push(v);
            }
        }
    }
    for env in env_maps {
        if let Some(vars) = env.get("Variables").and_then(Value::as_mapping) {
            for (k, v) in vars {
                if let (Some(k), Some(v)) = (k.as_str(), out.resolve(v)) {
                    if tag_name(vars.get(k).unwrap_or(&Value::Null)).is_some() {
                        out.env.insert(k.to_string(), v);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Creates the table `name` as `props` describe it: false if it existed.
async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
    props: &Value,
) -> anyhow::Result<bool> {
    let key_schema = |v: &Value| -> anyhow::Result<Vec<KeySchemaElement>> {
        v.as_sequence()
            .ok_or_else(|| anyhow!("KeySchema must be a list"))?
            .iter()
            .map(|k| {
                Ok(KeySchemaElement::builder()
                    .attribute_name(str_of(
                        k.get("AttributeName").unwrap_or(&Value::Null),
                        "AttributeName",
                    )?)
                    .key_type(KeyType::from(str_of(
                        k.get("KeyType").unwrap_or(&Value::Null),
                        "KeyType",
                    )?))
                    .build()?)
            })
            .collect()
    };
    let mut req = client.create_table().table_name(name);
    for a in props
        .get("AttributeDefinitions")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(str_of(
                    a.get("AttributeName").unwrap_or(&Value::Null),
                    "AttributeName",
                )?)
                .attribute_type(ScalarAttributeType::from(str_of(
                    a.get("AttributeType").unwrap_or(&Value::Null),
                    "AttributeType",
                )?))
                .build()?,
        );
    }
    req = req.set_key_schema(Some(key_schema(
        props.get("KeySchema").unwrap_or(&Value::Null),
    )?));
    match props.get("BillingMode").and_then(Value::as_str) {
        Some("PAY_PER_REQUEST") | None => req = req.billing_mode(BillingMode::PayPerRequest),
        Some(other) => bail!("BillingMode {other} is not supported locally"),
    }
    for g in props
        .get("GlobalSecondaryIndexes")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        let projection = g.get("Projection").unwrap_or(&Value::Null);
        let mut p = Projection::builder().projection_type(ProjectionType::from(
            projection
                .get("ProjectionType")
                .and_then(Value::as_str)
                .unwrap_or("ALL"),
        ));
        for attr in projection
            .get("NonKeyAttributes")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            p = p.non_key_attributes(str_of(attr, "NonKeyAttributes")?);
        }
        req = req.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(str_of(
                    g.get("IndexName").unwrap_or(&Value::Null),
                    "IndexName",
                )?)
                .set_key_schema(Some(key_schema(
                    g.get("KeySchema").unwrap_or(&Value::Null),
                )?))
                .projection(p.build())
                .build()?,
        );
    }
    match req.send().await {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) =>
        {
            return Ok(false)
        }
        Err(e) => return Err(e.into()),
    }
    if let Some(ttl) = props.get("TimeToLiveSpecification") {
        if ttl.get("Enabled").and_then(Value::as_bool).unwrap_or(false) {
            client
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .attribute_name(str_of(
                            ttl.get("AttributeName").unwrap_or(&Value::Null),
                            "AttributeName",
                        )?)
                        .enabled(true)
                        .build()?,
                )
                .send()
                .await?;
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cost meter sizes index entries by `shared::metrics::INDEXES`:
    /// it must describe the indexes the template creates.
    #[test]
    fn the_meters_index_shapes_are_the_templates() {
        let text = include_str!("../../template.yaml");
        let doc: Value = serde_yaml::from_str(text).unwrap();
        let table = decide(&doc, &doc["Resources"]["Table"]["Properties"])
            .unwrap()
            .unwrap();
        let gsis = table["GlobalSecondaryIndexes"].as_sequence().unwrap();
        assert_eq!(gsis.len(), shared::metrics::INDEXES.len());
        for shape in shared::metrics::INDEXES {
            let g = gsis
                .iter()
                .find(|g| g["IndexName"].as_str() == Some(shape.name))
                .unwrap_or_else(|| panic!("{} is not in the template", shape.name));
            let keys: Vec<&str> = g["KeySchema"]
                .as_sequence()
                .unwrap()
                .iter()
                .filter_map(|k| k["AttributeName"].as_str())
                .collect();
            assert_eq!(keys, shape.keys, "{}", shape.name);
            let projection = &g["Projection"];
            match shape.include {
                None => assert_eq!(projection["ProjectionType"].as_str(), Some("ALL")),
                Some(extra) => {
                    assert_eq!(projection["ProjectionType"].as_str(), Some("INCLUDE"));
                    let listed: Vec<&str> = projection["NonKeyAttributes"]
                        .as_sequence()
                        .unwrap()
                        .iter()
                        .filter_map(Value::as_str)
                        .collect();
                    assert_eq!(listed, extra, "{}", shape.name);
                }
            }
        }
    }

    /// The template's conditions decide what is provisioned locally, with
    /// each parameter's default: the history index projects keys and its
    /// filtered attributes unless `HistoryIndexProjection` says `all`.
    #[test]
    fn a_projection_chosen_by_a_parameter_follows_its_value() {
        let text = include_str!("../../template.yaml");
        let projection = |text: &str| {
            let doc: Value = serde_yaml::from_str(text).unwrap();
            let table = decide(&doc, &doc["Resources"]["Table"]["Properties"])
                .unwrap()
                .unwrap();
            let gsi1 = table["GlobalSecondaryIndexes"][0].clone();
            assert_eq!(gsi1["IndexName"].as_str(), Some("GSI1"));
            gsi1["Projection"].clone()
        };
        let narrow = projection(text);
        assert_eq!(narrow["ProjectionType"].as_str(), Some("INCLUDE"));
        assert!(narrow["NonKeyAttributes"].as_sequence().is_some());
        let mut doc: Value = serde_yaml::from_str(text).unwrap();
        set_parameters(&mut doc, &[("HistoryIndexProjection", "all")]).unwrap();
        let all = projection(&serde_yaml::to_string(&doc).unwrap());
        assert_eq!(all["ProjectionType"].as_str(), Some("ALL"));
        assert!(all.get("NonKeyAttributes").is_none(), "{all:?}");
    }
}
