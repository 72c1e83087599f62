//! Compliance: export screening of organisations (restricted countries of the headquarters and
//! the ultimate parent, and an importable denied-party list), verification, and their routes.
//! Screening runs at registration, where a refusal is answered 403 and written to the audit
//! log, and before each job, through the hold rules in [`crate::accounting`].

use crate::AppState;
use crate::accounting::AccountingPolicy;
use crate::auth::Caller;
use crate::convert;
use crate::error::{ApiError, Body};
use crate::extract::Id;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use haneul_api::*;
use haneul_store as st;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Why screening refused an organisation: the rule that fired and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `restricted-country`, `restricted-parent-country` or `denied-party`.
    pub rule: &'static str,
    pub reason: String,
}

pub fn is_country_code(c: &str) -> bool {
    c.len() == 2 && c.chars().all(|c| c.is_ascii_uppercase())
}

/// Screens an organisation: its headquarters, its ultimate parent's country (given, or that of
/// its registered parent organisation and that one's own parent country) and its name against
/// the denied-party list.
pub fn screen(
    name: &str,
    country: &str,
    parent_country: Option<&str>,
    parent: Option<&st::OrgRecord>,
    denied: &[st::DeniedParty],
    policy: &AccountingPolicy,
) -> Result<(), Refusal> {
    if policy.is_restricted(country) {
        return Err(Refusal {
            rule: "restricted-country",
            reason: format!(
                "headquarters country {country} is on the restricted-country list \
                 (rule restricted-country)"
            ),
        });
    }
    let parents = [
        parent_country,
        parent.map(|p| p.country.as_str()),
        parent.and_then(|p| p.parent_country.as_deref()),
    ];
    if let Some(c) = parents
        .into_iter()
        .flatten()
        .find(|c| policy.is_restricted(c))
    {
        return Err(Refusal {
            rule: "restricted-parent-country",
            reason: format!(
                "ultimate parent country {c} is on the restricted-country list \
                 (rule restricted-parent-country)"
            ),
        });
    }
    let key = st::party_key(name);
    if let Some(d) = denied.iter().find(|d| st::party_key(&d.name) == key) {
        return Err(Refusal {
            rule: "denied-party",
            reason: format!(
                "`{name}` matches `{}` ({}) on the denied-party list from {} (rule denied-party)",
                d.name, d.country, d.source
            ),
        });
    }
    Ok(())
}

/// Screens a registration and, when refused, writes the refusal to the audit log before
/// answering 403, so that every refusal is on record.
pub async fn screen_registration(
    s: &AppState,
    actor: &st::Actor,
    b: &OrgCreate,
    parent: Option<&st::OrgRecord>,
) -> Result<(), ApiError> {
    let denied = s.store.list_denied_parties().await?;
    let Err(refusal) = screen(
        &b.name,
        &b.country,
        b.parent_country.as_deref(),
        parent,
        &denied,
        &s.accounting,
    ) else {
        return Ok(());
    };
    let detail = serde_json::json!({
        "name": b.name,
        "country": b.country,
        "parent": b.parent,
        "parent_country": b.parent_country,
        "rule": refusal.rule,
        "reason": refusal.reason,
    })
    .to_string();
    s.store
        .record_decision(
            actor,
            "org.refuse",
            &format!("org-name/{}", b.name),
            &detail,
            s.clock.now_ms(),
        )
        .await?;
    Err(ApiError::forbidden(format!(
        "organisation `{}` refused by export screening: {}",
        b.name, refusal.reason
    )))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(verify_org))
        .routes(routes!(import_denied, list_denied))
}

/// Set an organisation's verification (centre admin). Its projects run jobs only while it is
/// `verified`.
#[utoipa::path(post, path = "/v1/orgs/{id}/verify", tag = "tenants", request_body = OrgVerify,
    params(("id" = i64, Path, description = "organisation id", minimum = 1)),
    responses((status = 200, body = Org), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn verify_org(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(b): Body<OrgVerify>,
) -> Result<Json<Org>, ApiError> {
    caller.admin()?;
    let status = st::Verification::parse(&b.status)
        .ok_or_else(|| ApiError::bad("status", "use verified, pending or suspended"))?;
    let o = s
        .store
        .set_org_verification(&st::Actor::user(&caller.0), id, status, s.clock.now_ms())
        .await?;
    s.signals.wake.notify_one();
    Ok(Json(convert::org(o)))
}

/// Import a denied-party list from CSV (centre admin): a header row naming `name`, `country`
/// and optionally `source` columns, in any order. Rows replace earlier ones of the same name.
#[utoipa::path(post, path = "/v1/denied-parties", tag = "tenants", request_body = DeniedPartyImport,
    responses((status = 201, body = DeniedPartyImported), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn import_denied(
    State(s): State<AppState>,
    caller: Caller,
    Body(b): Body<DeniedPartyImport>,
) -> Result<(StatusCode, Json<DeniedPartyImported>), ApiError> {
    caller.admin()?;
    let parties = parse_denied_csv(&b.csv, b.source.as_deref().unwrap_or("imported list"))?;
    let n = s
        .store
        .import_denied_parties(&st::Actor::user(&caller.0), parties, s.clock.now_ms())
        .await?;
    s.signals.wake.notify_one();
    Ok((
        StatusCode::CREATED,
        Json(DeniedPartyImported { imported: n }),
    ))
}

pub fn parse_denied_csv(text: &str, source: &str) -> Result<Vec<st::DeniedParty>, ApiError> {
    let mut r = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = r
        .headers()
        .map_err(|e| ApiError::bad("csv", format!("cannot read the header row: {e}")))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let name_col =
        col("name").ok_or_else(|| ApiError::bad("csv", "the header row has no `name` column"))?;
    let country_col = col("country")
        .ok_or_else(|| ApiError::bad("csv", "the header row has no `country` column"))?;
    let source_col = col("source");
    let mut out = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|e| ApiError::bad("csv", format!("line {line}: {e}")))?;
        let name = rec.get(name_col).unwrap_or("").to_string();
        if st::party_key(&name).is_empty() {
            return Err(ApiError::bad(
                "csv",
                format!("line {line}: `name` is empty"),
            ));
        }
        let country = rec.get(country_col).unwrap_or("").to_ascii_uppercase();
        if !country.is_empty() && !is_country_code(&country) {
            return Err(ApiError::bad(
                "csv",
                format!("line {line}: country `{country}` is not an ISO 3166-1 alpha-2 code"),
            ));
        }
        let source = source_col
            .and_then(|c| rec.get(c))
            .filter(|s| !s.is_empty())
            .unwrap_or(source)
            .to_string();
        out.push(st::DeniedParty {
            name,
            country,
            source,
        });
    }
    if out.is_empty() {
        return Err(ApiError::bad("csv", "no rows after the header"));
    }
    Ok(out)
}

/// The denied-party list (centre admins and auditors).
#[utoipa::path(get, path = "/v1/denied-parties", tag = "tenants",
    responses((status = 200, body = Vec<DeniedParty>), (status = "4XX", body = ErrorBody)),
    security(("token" = [])))]
async fn list_denied(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<DeniedParty>>, ApiError> {
    caller.person()?;
    if !caller.can_audit() {
        return Err(ApiError::forbidden(
            "only centre admins and auditors read the denied-party list",
        ));
    }
    Ok(Json(
        s.store
            .list_denied_parties()
            .await?
            .into_iter()
            .map(|d| DeniedParty {
                name: d.name,
                country: d.country,
                source: d.source,
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(country: &str, parent_country: Option<&str>) -> st::OrgRecord {
        st::OrgRecord {
            id: 1,
            name: "parent".into(),
            class: "enterprise".into(),
            country: country.into(),
            parent: None,
            parent_country: parent_country.map(str::to_string),
            verification: st::Verification::Verified,
            created_at: 0,
        }
    }

    #[test]
    fn screening_rules() {
        let p = AccountingPolicy::default();
        assert!(screen("a", "KR", None, None, &[], &p).is_ok());
        assert_eq!(
            screen("a", "CN", None, None, &[], &p).unwrap_err().rule,
            "restricted-country"
        );
        assert_eq!(
            screen("a", "KR", Some("RU"), None, &[], &p)
                .unwrap_err()
                .rule,
            "restricted-parent-country"
        );
        // Owned through a registered parent whose own owner is in a restricted country.
        let parent = org("SG", Some("MO"));
        let r = screen("a", "KR", None, Some(&parent), &[], &p).unwrap_err();
        assert_eq!(r.rule, "restricted-parent-country");
        assert!(r.reason.contains("MO"), "{}", r.reason);
        let denied =
            parse_denied_csv("country,name\nXX,\"Evil Labs, Ltd.\"\n", "test list").unwrap();
        assert_eq!(denied[0].source, "test list");
        let r = screen("evil labs ltd", "KR", None, None, &denied, &p).unwrap_err();
        assert_eq!(r.rule, "denied-party");
        assert!(parse_denied_csv("name\nx\n", "t").is_err());
        assert!(parse_denied_csv("name,country\n,KR\n", "t").is_err());
    }
}
