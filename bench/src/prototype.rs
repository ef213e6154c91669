//! `postback-bench --prototype-outbox` (`make bench-prototype`): meters the
//! writes of a data model that is not built, "the transaction's item as its
//! own outbox" (ARCHITECTURE.md, "not here (yet)"), so that the choice to
//! build it rests on units DynamoDB reported rather than on a formula.
//!
//! One real conversion goes through the service as it is (one endpoint,
//! delivered first try), and its stored items are the content. Then, for
//! `N` conversions under fresh keys, in two layouts (the event kept whole
//! inside the transaction's item, and without what the transaction keeps
//! for good or remembers of each change, so that it can still be rebuilt),
//! the same client (metering on) writes what that model would write, in
//! its order:
//!
//! 1. the ingest: one conditional `PutItem` of the transaction's item, which
//!    now also holds its event and the delivery it owes, and carries the
//!    open-work (GSI2) key, instead of a three-item transaction;
//! 2. the claim: one conditional `UpdateItem` that creates the delivery's
//!    item (pending, leased), not yet in the history;
//! 3. the record: the delivery's item as it ends, with its history (GSI1) key;
//! 4. the clearing: the transaction no longer owes it, and leaves the
//!    open-work index.
//!
//! Every one of them is a single-item write, which DynamoDB Local meters as
//! AWS does (only transactions it reports wrongly). Reads are not changed by
//! the model (the click, the transaction, the endpoint) and are not measured
//! here. Nothing here is asserted: it is a measurement.

use crate::cost::stored_size;
use aws_sdk_dynamodb::types::AttributeValue;
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
    for (layout, compact) in [
        ("the event kept whole inside the transaction's item", false),
        (
            "the event inside the transaction's item without what the transaction keeps for good \
             (partner, transaction, offer, click, currency) or remembers of each change in `seen` \
             (event name, status, payout, time, id); its attributes, advertiser, source, \
             recording time, deliveries and sequence kept",
            true,
        ),
    ] {
        report.push_str(&measure(&t, layout, compact, &event, &txn, &delivered).await?);
    }
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

/// Writes `N` conversions in the outbox layout; the section of the report.
async fn measure(
    t: &TestApp,
    layout: &str,
    compact: bool,
    event: &Attrs,
    txn: &Attrs,
    delivered: &Attrs,
) -> anyhow::Result<String> {
    let client = t.app.store.client().clone();
    let table = t.app.store.table().to_string();
    let steps = ["ingest", "claim", "record", "clearing"];
    let mut units: Vec<HashMap<String, f64>> = vec![HashMap::new(); steps.len()];
    let mut sizes = (0usize, 0usize, 0usize);
    for n in 0..N {
        let txn_pk = format!("TXN#PROTO#{compact}#{n}");
        let delivery_id = format!("dlv_proto{}{n:020}", u8::from(compact));
        let delivery_pk = format!("DELIVERY#{delivery_id}");
        let created_at = text(delivered, "created_at");

        // 1. The transaction's item with its event and what it owes.
        let mut owned = txn.clone();
        owned.insert("pk".into(), s(&txn_pk));
        let mut ev = event.clone();
        ev.remove("pk");
        ev.remove("sk");
        if compact {
            // What the transaction keeps for good, when it is the same; and
            // what its `seen` entry of this event holds (event name, status,
            // payout, time, id), which later changes do not overwrite.
            const STABLE: [&str; 5] = [
                "partner_id",
                "transaction_id",
                "offer_id",
                "click_id",
                "currency",
            ];
            const SEEN: [&str; 5] = ["event", "status", "payout", "occurred_at", "id"];
            ev.retain(|k, v| {
                !(SEEN.contains(&k.as_str())
                    || (STABLE.contains(&k.as_str()) && txn.get(k) == Some(v)))
            });
        }
        owned.insert(
            "events".into(),
            AttributeValue::M(HashMap::from([(text(event, "id"), AttributeValue::M(ev))])),
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
        owned.insert("gsi2pk".into(), s(&format!("DUE#{}", n % 32)));
        owned.insert("gsi2sk".into(), s(&format!("{created_at}#{txn_pk}")));
        let m0 = t.app.requests.metered();
        client
            .put_item()
            .table_name(&table)
            .set_item(Some(owned.clone()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await?;

        // 2. The claim creates the delivery's item, pending and leased.
        let m1 = t.app.requests.metered();
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

        // 3. The record: the delivery as it ends, now in the history.
        let m2 = t.app.requests.metered();
        let mut record = delivered.clone();
        record.insert("pk".into(), s(&delivery_pk));
        record.insert("id".into(), s(&delivery_id));
        record.insert("txn".into(), s(&txn_pk));
        client
            .put_item()
            .table_name(&table)
            .set_item(Some(record.clone()))
            .send()
            .await?;

        // 4. The transaction owes nothing more: out of the open-work index.
        let m3 = t.app.requests.metered();
        client
            .update_item()
            .table_name(&table)
            .key("pk", s(&txn_pk))
            .key("sk", s("TXN"))
            .update_expression("REMOVE owed.#d, gsi2pk, gsi2sk")
            .condition_expression("attribute_exists(owed.#d)")
            .expression_attribute_names("#d", &delivery_id)
            .send()
            .await?;
        let m4 = t.app.requests.metered();

        for (i, (a, b)) in [(&m0, &m1), (&m1, &m2), (&m2, &m3), (&m3, &m4)]
            .into_iter()
            .enumerate()
        {
            for (k, v) in written(a, b) {
                *units[i].entry(k).or_default() += v;
            }
        }
        let mut after_txn = owned.clone();
        after_txn.remove("owed");
        after_txn.remove("gsi2pk");
        after_txn.remove("gsi2sk");
        sizes.0 += item_size(&owned);
        sizes.1 += stored_size(&after_txn);
        sizes.2 += stored_size(&record);
    }

    // The section.
    let per = |v: f64| v / N as f64;
    let mut total: HashMap<String, f64> = HashMap::new();
    let mut rows = String::new();
    for (step, u) in steps.iter().zip(&units) {
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
    let all = get("table") + get(shared::store::GSI1) + get(shared::store::GSI2);
    rows.push_str(&format!(
        "| **per conversion** | **{}** | **{}** | **{}** |\n",
        get("table"),
        get(shared::store::GSI1),
        get(shared::store::GSI2)
    ));
    Ok(format!(
        "\n## {layout}\n\n\
         | write | table | GSI1 | GSI2 |\n| --- | --- | --- | --- |\n{rows}\n\
         **{all} write units per conversion.** Sizes: the transaction's item with its event \
         and what it owes, {} B when written; stored after the clearing, with overhead and \
         index entries: {} B; the delivery stored: {} B; **{} B stored per conversion**.\n",
        sizes.0 / N,
        sizes.1 / N,
        sizes.2 / N,
        (sizes.1 + sizes.2) / N,
    ))
}
