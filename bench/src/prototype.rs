//! `postback-bench --prototype-outbox` (`make bench-prototype`): meters the
//! writes of data models and levers that are not built, so that the choice
//! to build one rests on units DynamoDB reported rather than on a formula.
//!
//! One real conversion goes through the service as it is (one endpoint,
//! delivered first try), and its stored items are the content. Then, for
//! `N` conversions under fresh keys each, the same client (metering on)
//! writes what each model would write, in its order:
//!
//! * **the transaction's item as its own outbox** (ARCHITECTURE.md, "not
//!   here (yet)"), the event kept whole inside it or compact (without what
//!   the transaction keeps for good or remembers of each change, so that it
//!   can still be rebuilt): the ingest is one conditional `PutItem` of the
//!   transaction's item, which also holds its event and the delivery it
//!   owes, with the open-work (GSI2) key; the claim creates the delivery's
//!   item; the record writes it as it ends, into the history (GSI1); the
//!   clearing drops what the transaction owes, and its open-work key;
//! * **the model as built**, its ingest written four ways: one transaction
//!   with the open-work key (the service's writes before the queue first,
//!   which read as that round's `cost-` file: a check of this meter), three
//!   conditional `PutItem`s in a safe order, one transaction without the
//!   open-work key (the queue message sent first is then what nobody may
//!   lose: the service as built now), and both levers together;
//! * **the outbox with its queue message first**: no open-work key; the
//!   claim is a lease on what the transaction's item owes.
//!
//! Transactions are counted by AWS's rules (the service's meter); every
//! other write is metered by DynamoDB as AWS does. Reads are not changed by
//! these models (the click, the transaction, the endpoint) and are not
//! measured here. Nothing here is asserted: it is a measurement.

use crate::cost::stored_size;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use integration_tests::TestApp;
use shared::metrics::{item_size, Metered};
use std::collections::HashMap;
use std::time::Duration;

type Attrs = HashMap<String, AttributeValue>;

/// Conversions written in the prototype's layout.
const N: usize = 20;

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn text(item: &Attrs, name: &str) -> String {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

/// Write units by `table`/index between two readings of the meter.
fn written(before: &Metered, after: &Metered) -> Vec<(String, f64)> {
    after
        .write_units
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v - before.write_units.get(k).copied().unwrap_or(0.0),
            )
        })
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

/// The real items of one conversion: its event, transaction and delivery.
async fn real_items(t: &TestApp) -> anyhow::Result<(Attrs, Attrs, Attrs)> {
    let items = crate::cost::scan_all(t).await?;
    let find = |sk: &str| {
        items
            .iter()
            .find(|i| text(i, "sk") == sk)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no {sk} item"))
    };
    Ok((find("EVENT")?, find("TXN")?, find("DELIVERY")?))
}

pub async fn outbox(out_dir: &std::path::Path) -> anyhow::Result<()> {
    let t = crate::cost::metered_app().await;
    let (ok, click) = crate::cost::one_endpoint(&t).await;
    let (status, _) = t
        .postback(&[
            ("click_id", click.as_str()),
            ("event", "sale"),
            ("payout", "12.50"),
            ("transaction_id", "C0"),
        ])
        .await;
    anyhow::ensure!(status == 200, "the real conversion was refused");
    t.pump_until("DeliveryQueue", Duration::from_secs(30), || async {
        ok.count() >= 1
    })
    .await;
    t.pump_for("DeliveryQueue", Duration::from_millis(500))
        .await;
    let (event, txn, delivered) = real_items(&t).await?;
    anyhow::ensure!(text(&delivered, "status") == "delivered", "not delivered");

    let mut report = format!(
        "# Prototype: the transaction's item as its own outbox, metered\n\n\
         {}, local stand-ins, `make bench-prototype` (`postback-bench --prototype-outbox`). \
         Not the service: the writes of a data model that is not built (ARCHITECTURE.md, \
         \"not here (yet)\"), with the content of one real conversion (one endpoint, \
         delivered first try) written under {N} fresh keys per layout, each write metered by \
         DynamoDB (`ReturnConsumedCapacity: INDEXES`; single-item writes only). The service \
         as built: the `cost-` file of the same day.\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
    );
    let real = Real {
        event,
        txn,
        delivered,
    };
    const WHOLE: &str = "the event kept whole inside the transaction's item";
    const COMPACT: &str = "the event inside the transaction's item without what the \
        transaction keeps for good (partner, transaction, offer, click, currency) or remembers \
        of each change in `seen` (event name, status, payout, time, id); its attributes, \
        advertiser, source, recording time, deliveries and sequence kept";
    report.push_str(&outbox_model(&t, WHOLE, false, false, &real).await?);
    report.push_str(&outbox_model(&t, COMPACT, true, false, &real).await?);
    report.push_str(
        "\n# The model as built, and its ingest written four ways\n\n\
         The same content under the keys of the model as built (event, delivery, transaction: \
         three items), with the claim and the record the service makes. The first section is \
         the service's writes before the queue first (11 units in the `cost-` files before \
         it), the third the service's since (9): they check the meter of this file against \
         the service's.\n",
    );
    for (title, ingest) in [
        (
            "before the queue first: one transaction, the delivery in the open-work index",
            Ingest::Transaction,
        ),
        (
            "conditional puts in a safe order instead of the transaction: delivery (in the \
             open-work index), event, transaction, three `PutItem`s",
            Ingest::SafeOrder,
        ),
        (
            "the queue message first: one transaction, the delivery not in the open-work index \
             (as built since the queue first)",
            Ingest::QueueFirst,
        ),
        (
            "both: the queue message first, then three conditional `PutItem`s (delivery, event, \
             transaction), the delivery not in the open-work index",
            Ingest::SafeOrderQueueFirst,
        ),
    ] {
        report.push_str(&as_built(&t, title, ingest, &real).await?);
    }
    report.push_str(
        "\n# The outbox model with its queue message first\n\n\
         The transaction's item holds its event (compact, as above) and what it owes, with no \
         open-work key: the queue message, sent before the ingest, is what nobody may lose. \
         The claim is a lease on what the transaction owes (in its item), the record writes \
         the delivery's item for the first time, and the clearing drops what is owed.\n",
    );
    report.push_str(
        &outbox_model(
            &t,
            "the outbox model, queue message first",
            true,
            true,
            &real,
        )
        .await?,
    );
    report.push_str(
        "\nLeft out of this model's count: reads (unchanged), a conversion without a \
         transaction id (it would need an item of its own), and later changes of a \
         transaction (its item grows with each event).\n",
    );
    print!("{report}");
    let file = out_dir.join(format!(
        "prototype-outbox-{}.md",
        chrono::Utc::now().format("%Y-%m-%dT%H%M")
    ));
    std::fs::write(&file, report)?;
    println!("wrote {}", file.display());
    Ok(())
}

/// Write units by step, summed over the `N` conversions of one model.
struct Steps {
    names: &'static [&'static str],
    units: Vec<HashMap<String, f64>>,
    last: Metered,
}

impl Steps {
    fn new(t: &TestApp, names: &'static [&'static str]) -> Self {
        Self {
            names,
            units: vec![HashMap::new(); names.len()],
            last: t.app.requests.metered(),
        }
    }

    /// Adds what was written since the last reading to step `i`.
    fn after(&mut self, t: &TestApp, i: usize) {
        let now = t.app.requests.metered();
        for (k, v) in written(&self.last, &now) {
            *self.units[i].entry(k).or_default() += v;
        }
        self.last = now;
    }

    /// The table of units per conversion, and their sum.
    fn table(&self) -> (String, f64) {
        let per = |v: f64| v / N as f64;
        let mut total: HashMap<String, f64> = HashMap::new();
        let mut rows = String::from("| write | table | GSI1 | GSI2 |\n| --- | --- | --- | --- |\n");
        for (step, u) in self.names.iter().zip(&self.units) {
            for (k, v) in u {
                *total.entry(k.clone()).or_default() += v;
            }
            let get = |k: &str| per(u.get(k).copied().unwrap_or(0.0));
            rows.push_str(&format!(
                "| {step} | {} | {} | {} |\n",
                get("table"),
                get(shared::store::GSI1),
                get(shared::store::GSI2)
            ));
        }
        let get = |k: &str| per(total.get(k).copied().unwrap_or(0.0));
        rows.push_str(&format!(
            "| **per conversion** | **{}** | **{}** | **{}** |\n",
            get("table"),
            get(shared::store::GSI1),
            get(shared::store::GSI2)
        ));
        (
            rows,
            get("table") + get(shared::store::GSI1) + get(shared::store::GSI2),
        )
    }
}

/// The event as the transaction's item would hold it: whole, or without
/// what the transaction keeps for good (when it is the same) and what its
/// `seen` entry of this event holds (event name, status, payout, time, id),
/// which later changes do not overwrite.
fn event_inside(event: &Attrs, txn: &Attrs, compact: bool) -> Attrs {
    let mut ev = event.clone();
    ev.remove("pk");
    ev.remove("sk");
    if compact {
        const STABLE: [&str; 5] = [
            "partner_id",
            "transaction_id",
            "offer_id",
            "click_id",
            "currency",
        ];
        const SEEN: [&str; 5] = ["event", "status", "payout", "occurred_at", "id"];
        ev.retain(|k, v| {
            !(SEEN.contains(&k.as_str()) || (STABLE.contains(&k.as_str()) && txn.get(k) == Some(v)))
        });
    }
    ev
}

/// The delivery as it ends (delivered at its first try, in the history),
/// under a fresh id.
fn ended(delivered: &Attrs, delivery_id: &str) -> Attrs {
    let mut item = delivered.clone();
    item.insert("pk".into(), s(&format!("DELIVERY#{delivery_id}")));
    item.insert("id".into(), s(delivery_id));
    if let Some(AttributeValue::S(sk)) = delivered.get("gsi1sk") {
        let time = sk.split('#').next().unwrap_or_default();
        item.insert("gsi1sk".into(), s(&format!("{time}#{delivery_id}")));
    }
    item
}

/// The delivery as the model as built writes it with its event: pending,
/// no attempt, not yet in the history, with its open-work key or without.
fn pending(delivered: &Attrs, delivery_id: &str, open_work: Option<usize>) -> Attrs {
    let mut item = ended(delivered, delivery_id);
    item.remove("gsi1pk");
    item.insert("status".into(), s("pending"));
    item.insert("attempts".into(), AttributeValue::L(vec![]));
    item.insert("due_ms".into(), AttributeValue::N("0".into()));
    item.insert("updated_at".into(), delivered["created_at"].clone());
    if let Some(n) = open_work {
        item.insert("gsi2pk".into(), s(&format!("DUE#{}", n % 32)));
        item.insert(
            "gsi2sk".into(),
            s(&format!("{}#{delivery_id}", text(delivered, "created_at"))),
        );
    }
    item
}

/// The claim of the model as built: a lease on the delivery's item.
async fn claim_delivery_item(t: &TestApp, delivery_id: &str) -> anyhow::Result<()> {
    t.app
        .store
        .client()
        .update_item()
        .table_name(t.app.store.table())
        .key("pk", s(&format!("DELIVERY#{delivery_id}")))
        .key("sk", s("DELIVERY"))
        .update_expression("SET lease_ms = :lease, claim_ms = :now")
        .condition_expression("attribute_exists(pk) AND #status = :pending")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":pending", s("pending"))
        .expression_attribute_values(":lease", AttributeValue::N("1795413600000".into()))
        .expression_attribute_values(":now", AttributeValue::N("1795413570000".into()))
        .send()
        .await?;
    Ok(())
}

async fn put(t: &TestApp, item: &Attrs, condition: Option<&str>) -> anyhow::Result<()> {
    t.app
        .store
        .client()
        .put_item()
        .table_name(t.app.store.table())
        .set_item(Some(item.clone()))
        .set_condition_expression(condition.map(str::to_string))
        .send()
        .await?;
    Ok(())
}

fn put_in_transaction(table: &str, item: &Attrs) -> anyhow::Result<TransactWriteItem> {
    Ok(TransactWriteItem::builder()
        .put(
            Put::builder()
                .table_name(table)
                .set_item(Some(item.clone()))
                .condition_expression("attribute_not_exists(pk)")
                .build()?,
        )
        .build())
}

/// How the model as built writes its event, its delivery and the
/// transaction's new state.
#[derive(Clone, Copy, PartialEq)]
enum Ingest {
    /// One `TransactWriteItems`, the delivery in the open-work index (as built).
    Transaction,
    /// Three conditional `PutItem`s (delivery, event, transaction), no
    /// transaction: the lever "conditional puts in a safe order".
    SafeOrder,
    /// One `TransactWriteItems`, the delivery not in the open-work index:
    /// its queue message, sent first, is what nobody may lose (as built
    /// since the queue first).
    QueueFirst,
    /// Both levers: three conditional `PutItem`s, the delivery not in the
    /// open-work index.
    SafeOrderQueueFirst,
}

/// Writes `N` conversions the way the model as built does, with its ingest
/// written as `ingest` says; the section of the report.
async fn as_built(t: &TestApp, title: &str, ingest: Ingest, real: &Real) -> anyhow::Result<String> {
    const STEPS: &[&str] = &["ingest", "claim", "record"];
    let table = t.app.store.table().to_string();
    let mut steps = Steps::new(t, STEPS);
    let mut stored = 0usize;
    for n in 0..N {
        let tag = match ingest {
            Ingest::Transaction => "t",
            Ingest::SafeOrder => "s",
            Ingest::QueueFirst => "q",
            Ingest::SafeOrderQueueFirst => "sq",
        };
        let delivery_id = format!("dlv_built{tag}{n:020}");
        let mut event = real.event.clone();
        event.insert("pk".into(), s(&format!("EVENT#evt_built{tag}{n}")));
        let mut txn = real.txn.clone();
        txn.insert("pk".into(), s(&format!("TXN#BUILT#{tag}#{n}")));
        let open_work = matches!(ingest, Ingest::Transaction | Ingest::SafeOrder).then_some(n);
        let delivery = pending(&real.delivered, &delivery_id, open_work);
        match ingest {
            Ingest::SafeOrder | Ingest::SafeOrderQueueFirst => {
                for item in [&delivery, &event, &txn] {
                    put(t, item, Some("attribute_not_exists(pk)")).await?;
                }
            }
            Ingest::Transaction | Ingest::QueueFirst => {
                t.app
                    .store
                    .client()
                    .transact_write_items()
                    .set_transact_items(Some(vec![
                        put_in_transaction(&table, &event)?,
                        put_in_transaction(&table, &delivery)?,
                        put_in_transaction(&table, &txn)?,
                    ]))
                    .send()
                    .await?;
            }
        }
        steps.after(t, 0);
        claim_delivery_item(t, &delivery_id).await?;
        steps.after(t, 1);
        let record = ended(&real.delivered, &delivery_id);
        put(t, &record, None).await?;
        steps.after(t, 2);
        stored += stored_size(&event) + stored_size(&txn) + stored_size(&record);
    }
    let (rows, all) = steps.table();
    Ok(format!(
        "\n## {title}\n\n{rows}\n**{all} write units per conversion.** **{} B stored per \
         conversion** (event, transaction and delivery, with overhead and index entries).\n",
        stored / N
    ))
}

/// The items of one real conversion: the content every model writes.
struct Real {
    event: Attrs,
    txn: Attrs,
    delivered: Attrs,
}

/// Writes `N` conversions in the outbox layout; the section of the report.
///
/// `queue_first`: the delivery's queue message is sent before the ingest,
/// so the transaction's item carries no open-work key; the claim is a lease
/// on what the transaction owes (its item), the record writes the
/// delivery's item for the first time, and the clearing only drops what is
/// owed.
async fn outbox_model(
    t: &TestApp,
    title: &str,
    compact: bool,
    queue_first: bool,
    real: &Real,
) -> anyhow::Result<String> {
    const STEPS: &[&str] = &["ingest", "claim", "record", "clearing"];
    let client = t.app.store.client().clone();
    let table = t.app.store.table().to_string();
    let (event, txn, delivered) = (&real.event, &real.txn, &real.delivered);
    let mut steps = Steps::new(t, STEPS);
    let mut sizes = (0usize, 0usize, 0usize);
    for n in 0..N {
        let tag = u8::from(compact) + 2 * u8::from(queue_first);
        let txn_pk = format!("TXN#PROTO#{tag}#{n}");
        let delivery_id = format!("dlv_proto{tag}{n:020}");
        let delivery_pk = format!("DELIVERY#{delivery_id}");
        let created_at = text(delivered, "created_at");

        // 1. The transaction's item with its event and what it owes.
        let mut owned = txn.clone();
        owned.insert("pk".into(), s(&txn_pk));
        owned.insert(
            "events".into(),
            AttributeValue::M(HashMap::from([(
                text(event, "id"),
                AttributeValue::M(event_inside(event, txn, compact)),
            )])),
        );
        owned.insert(
            "owed".into(),
            AttributeValue::M(HashMap::from([(
                delivery_id.clone(),
                AttributeValue::M(HashMap::from([
                    ("endpoint_id".to_string(), delivered["endpoint_id"].clone()),
                    ("created_at".to_string(), s(&created_at)),
                ])),
            )])),
        );
        if !queue_first {
            owned.insert("gsi2pk".into(), s(&format!("DUE#{}", n % 32)));
            owned.insert("gsi2sk".into(), s(&format!("{created_at}#{txn_pk}")));
        }
        put(t, &owned, Some("attribute_not_exists(pk)")).await?;
        steps.after(t, 0);

        // 2. The claim.
        if queue_first {
            // A lease on what the transaction owes.
            client
                .update_item()
                .table_name(&table)
                .key("pk", s(&txn_pk))
                .key("sk", s("TXN"))
                .update_expression("SET owed.#d.lease_ms = :lease")
                .condition_expression(
                    "attribute_exists(owed.#d) AND attribute_not_exists(owed.#d.lease_ms)",
                )
                .expression_attribute_names("#d", &delivery_id)
                .expression_attribute_values(":lease", AttributeValue::N("1795413600000".into()))
                .send()
                .await?;
        } else {
            // It creates the delivery's item, pending and leased.
            let mut pending: Vec<(&str, AttributeValue)> = vec![
                ("id", s(&delivery_id)),
                ("status", s("pending")),
                ("attempts", AttributeValue::L(vec![])),
                ("lease_ms", AttributeValue::N("1795413600000".into())),
                ("claim_ms", AttributeValue::N("1795413570000".into())),
                ("txn", s(&txn_pk)),
            ];
            for name in [
                "partner_id",
                "endpoint_id",
                "event_id",
                "created_at",
                "updated_at",
                "event_at",
                "gsi1sk",
            ] {
                if let Some(v) = delivered.get(name) {
                    pending.push((name, v.clone()));
                }
            }
            let mut claim = client
                .update_item()
                .table_name(&table)
                .key("pk", s(&delivery_pk))
                .key("sk", s("DELIVERY"))
                .condition_expression("attribute_not_exists(pk)");
            let mut sets = Vec::new();
            for (i, (name, value)) in pending.into_iter().enumerate() {
                sets.push(format!("#a{i} = :v{i}"));
                claim = claim
                    .expression_attribute_names(format!("#a{i}"), name)
                    .expression_attribute_values(format!(":v{i}"), value);
            }
            claim
                .update_expression(format!("SET {}", sets.join(", ")))
                .send()
                .await?;
        }
        steps.after(t, 1);

        // 3. The record: the delivery as it ends, now in the history.
        let mut record = ended(delivered, &delivery_id);
        record.insert("txn".into(), s(&txn_pk));
        put(t, &record, None).await?;
        steps.after(t, 2);

        // 4. The transaction owes nothing more (and leaves the open-work index).
        let clearing = client
            .update_item()
            .table_name(&table)
            .key("pk", s(&txn_pk))
            .key("sk", s("TXN"))
            .condition_expression("attribute_exists(owed.#d)")
            .expression_attribute_names("#d", &delivery_id);
        if queue_first {
            clearing.update_expression("REMOVE owed.#d")
        } else {
            clearing.update_expression("REMOVE owed.#d, gsi2pk, gsi2sk")
        }
        .send()
        .await?;
        steps.after(t, 3);

        let mut after_txn = owned.clone();
        after_txn.remove("owed");
        after_txn.remove("gsi2pk");
        after_txn.remove("gsi2sk");
        sizes.0 += item_size(&owned);
        sizes.1 += stored_size(&after_txn);
        sizes.2 += stored_size(&record);
    }
    let (rows, all) = steps.table();
    Ok(format!(
        "\n## {title}\n\n{rows}\n\
         **{all} write units per conversion.** Sizes: the transaction's item with its event \
         and what it owes, {} B when written; stored after the clearing, with overhead and \
         index entries: {} B; the delivery stored: {} B; **{} B stored per conversion**.\n",
        sizes.0 / N,
        sizes.1 / N,
        sizes.2 / N,
        (sizes.1 + sizes.2) / N,
    ))
}
