//! `POST /partners/{pid}/endpoints/{eid}/recover`: resend everything an
//! endpoint missed since a time, in the background, at a bounded rate; and
//! `GET …/recover/{rid}`: its progress. The work is `shared::recovery`'s.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde_json::{json, Value};
use std::sync::Arc;

use shared::auth::Caller;
use shared::ids::{EndpointId, RecoveryId};
use shared::recovery::{RecoverInput, Started};
use shared::{App, Error};

use crate::auth::PartnerScope;
use crate::body::RawBody;
use crate::error::ApiResult;
use crate::path::Param;

/// `POST …/recover` → 202 with the recovery (or 200 with the count of a dry run).
pub async fn start(
    State(app): State<Arc<App>>,
    PartnerScope {
        partner_id: pid,
        caller,
    }: PartnerScope,
    Param(eid): Param<EndpointId>,
    body: RawBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let now = Utc::now();
    let input = RecoverInput::parse(&body.object()?.0, now)?;
    if app.store.get_endpoint_sealed(&pid, &eid).await?.is_none() {
        return Err(Error::not_found("endpoint", &eid).into());
    }
    let by = match caller {
        Caller::Admin => "admin",
        Caller::Partner(_) => "partner",
    };
    match shared::recovery::start(&app, &pid, &eid, &input, by, now).await? {
        Started::Counted {
            to_resend,
            complete,
        } => Ok((
            StatusCode::OK,
            Json(
                json!({"dry_run": true, "to_resend": to_resend, "to_resend_complete": complete,
                        "since": input.since, "until": input.until, "statuses": input.statuses,
                        "rate_per_second": input.rate_per_second}),
            ),
        )),
        Started::Running(r) => Ok((StatusCode::ACCEPTED, Json(r.view()))),
    }
}

/// `GET …/recover/{rid}` → the recovery's progress.
pub async fn read(
    State(app): State<Arc<App>>,
    PartnerScope {
        partner_id: pid, ..
    }: PartnerScope,
    Param(eid): Param<EndpointId>,
    Param(rid): Param<RecoveryId>,
) -> ApiResult<Json<Value>> {
    let r = app
        .store
        .get_recovery(&pid, &rid)
        .await?
        .filter(|r| r.endpoint_id == eid)
        .ok_or_else(|| Error::not_found("recovery", &rid))?;
    Ok(Json(r.view()))
}
