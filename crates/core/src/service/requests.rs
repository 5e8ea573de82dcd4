//! Permission requests: developers apply for `additional_feature` and `general_request`
//! permissions, reviewers decide. Each submission or action writes the request's new state, its
//! history entry, the grant an approval creates, the audit event and the notifications in one
//! transaction, then patches the snapshot so the next decision sees the grant.

use serde::{Deserialize, Serialize};

use super::lifecycle::{Holding, RENEW_WITHIN_DAYS};
use super::{Access, Actor, Services, prose_text, required_text};
use crate::audit::NewAuditEvent;
use crate::catalog::{ObtainedBy, Permission, ReviewDecisionKind};
use crate::error::{ServiceError, ServiceResult};
use crate::model::{AppId, AppRecord, GrantSource, same_rule};
use crate::notify::NewMessage;
use crate::ports::{NewGrant, Requirements};
use crate::time::Timestamp;
use crate::workflow::{
    EvidenceInfo, NewEvidence, NewRequest, PermissionRequest, RequestAction, RequestEvent, RequestFilter, RequestState,
    Transition,
};

/// The largest evidence file accepted (Kakao: one file of at most 20 MB).
pub const MAX_EVIDENCE_BYTES: usize = 20 * 1024 * 1024;

/// An uploaded evidence file.
#[derive(Debug, Clone)]
pub struct Upload {
    pub file_name: String,
    pub bytes: Vec<u8>,
}

/// `POST /v1/apps/{id}/permission-requests`, from multipart fields or JSON (without a file).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Apply {
    pub permission: String,
    pub service_url: String,
    pub reason: String,
    #[serde(default)]
    pub usage_scenario: Option<String>,
    #[serde(default)]
    pub requested_limit: Option<u64>,
    #[serde(default)]
    pub requested_rule: Option<String>,
    #[serde(skip)]
    pub evidence: Option<Upload>,
}

/// `POST /v1/permission-requests/{id}/actions`
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActOnRequest {
    /// Parsed in [`Services::act_on_request`], so that a bad value's error names the field.
    pub action: String,
    #[serde(default)]
    pub reason_code: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    #[serde(default)]
    pub granted_limit: Option<u64>,
}

/// `GET /v1/permission-requests?state=&app_id=&before=&limit=`
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListRequests {
    #[serde(default)]
    pub state: Option<RequestState>,
    #[serde(default)]
    pub app_id: Option<AppId>,
    /// Only requests older than this one (by id): the page after the one that named it as
    /// `next_before`.
    #[serde(default)]
    pub before: Option<i64>,
    /// At most this many (1 to [`MAX_PAGE`]; [`MAX_PAGE`] when not given).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// The most requests one page lists.
pub const MAX_PAGE: usize = 1000;

/// A page of requests, newest first, and where the next one starts (the `before` to ask with),
/// if there are more.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RequestPage {
    pub requests: Vec<PermissionRequest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}

/// The media type of an evidence file, judged by its content: JPEG, PNG or PDF.
pub fn evidence_type(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else {
        None
    }
}

fn evidence(upload: Upload) -> ServiceResult<NewEvidence> {
    if upload.bytes.is_empty() {
        return Err(ServiceError::Invalid("`file`: the evidence file is empty".into()));
    }
    if upload.bytes.len() > MAX_EVIDENCE_BYTES {
        return Err(ServiceError::Invalid(format!(
            "`file`: the evidence file is {} bytes; at most 20 MB ({MAX_EVIDENCE_BYTES} bytes) is accepted",
            upload.bytes.len()
        )));
    }
    let content_type = evidence_type(&upload.bytes).ok_or_else(|| {
        ServiceError::Invalid(format!(
            "`file`: `{}` is not a JPG, PNG or PDF file (judged by its content, not its name)",
            upload.file_name
        ))
    })?;
    let file_name: String =
        upload.file_name.chars().filter(|c| !c.is_control() && !matches!(c, '/' | '\\')).take(200).collect();
    Ok(NewEvidence {
        file_name: if file_name.trim().is_empty() { "evidence".into() } else { file_name },
        content_type: content_type.into(),
        sha256: crate::secret::hash_bytes(&upload.bytes),
        bytes: upload.bytes,
    })
}

/// An `http(s)://host/...` URL without spaces.
fn service_url(text: &str) -> ServiceResult<String> {
    let url = required_text("service_url", text, 2000)?;
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    let host_ok = rest.is_some_and(|r| r.split(['/', '?', '#']).next().is_some_and(|h| !h.is_empty()));
    if !host_ok || url.contains(char::is_whitespace) {
        return Err(ServiceError::Invalid(format!(
            "`service_url`: `{url}` is not an http(s) URL of the service's web page or app download page"
        )));
    }
    Ok(url)
}

impl Services {
    /// Whether the actor may apply for the app's permissions (owner or editor); checked before an
    /// upload is read, so that a stranger cannot make the server read 20 MB.
    pub fn may_apply(&self, actor: &Actor, app: AppId) -> ServiceResult<()> {
        self.app_for(actor, app, Access::Edit).map(|_| ())
    }

    pub fn apply(&self, actor: &Actor, app: AppId, input: Apply) -> ServiceResult<PermissionRequest> {
        let record = self.app_for(actor, app, Access::Edit)?;
        let permission = self.snapshot.read().catalog().permission(&input.permission).cloned().ok_or_else(|| {
            ServiceError::Invalid(format!("`permission`: the catalog has no permission `{}`", input.permission))
        })?;
        if permission.id == super::settings::CHANNEL_PERMISSION {
            return Err(ServiceError::Invalid(format!(
                "`{}` is granted by connecting a channel of the same business: POST /v1/apps/{app}/channels {{\"channel_id\": ...}}",
                permission.id
            )));
        }
        match permission.obtained_by {
            ObtainedBy::AdditionalFeature | ObtainedBy::GeneralRequest => {}
            other => {
                return Err(ServiceError::Invalid(format!(
                    "`{}` is obtained by `{}`, not by application; {}",
                    permission.id,
                    other.as_str(),
                    match other {
                        ObtainedBy::AppType => "it comes with the app's type",
                        _ => "an operator grants it",
                    }
                )));
            }
        }
        let (requested_limit, requested_rule) = self.requested_quota(&permission, &input)?;
        let url = service_url(&input.service_url)?;
        let reason = prose_text("reason", &input.reason, 4000)?;
        let usage_scenario = match input.usage_scenario.as_deref().map(str::trim) {
            None | Some("") => String::new(),
            Some(text) => prose_text("usage_scenario", text, 4000)?,
        };
        let evidence = match input.evidence {
            Some(upload) => Some(evidence(upload)?),
            None if permission.obtained_by == ObtainedBy::AdditionalFeature && !permission.immediate => {
                return Err(ServiceError::Invalid(format!(
                    "`file`: `{}` needs one evidence file (a JPG, PNG or PDF screenshot of the feature, at most 20 MB) sent as multipart/form-data",
                    permission.id
                )));
            }
            None => None,
        };
        if let Some(original) = record.app.original {
            return Err(ServiceError::Conflict(format!(
                "app {app} is a test app: it holds what its original app {original} holds; apply there"
            )));
        }
        self.check_prerequisites(&record, &permission)?;
        if permission.retired {
            return Err(ServiceError::Conflict(format!(
                "`{}` is retired: existing grants keep working, new requests are refused",
                permission.id
            )));
        }
        if record.eligibility.is_none() {
            return Err(ServiceError::Conflict(format!(
                "app {app} has not agreed to the eligibility terms: an owner or editor agrees once with POST /v1/apps/{app}/eligibility"
            )));
        }
        let now = self.clock.now();
        let what = holding_name(&permission, requested_rule.as_deref());
        let renewal = match self.holding(&record, &permission.id, requested_rule.as_deref(), now) {
            Holding::No => None,
            Holding::Forever => {
                return Err(ServiceError::Conflict(format!("app {app} already holds {what}")));
            }
            Holding::Until(end) if end.0 - now.0 > RENEW_WITHIN_DAYS * 86_400 => {
                return Err(ServiceError::Conflict(format!(
                    "app {app} holds {what} until {}; it can be renewed from {RENEW_WITHIN_DAYS} days before then",
                    end.to_rfc3339()
                )));
            }
            Holding::Until(end) => Some(end),
        };
        let open =
            self.store.requests(&RequestFilter { app_id: Some(app), limit: 1000, ..RequestFilter::default() })?;
        if let Some(r) = open.iter().find(|r| {
            r.permission == permission.id
                && r.state.is_open()
                && same_rule(r.requested_rule.as_deref(), requested_rule.as_deref())
        }) {
            return Err(ServiceError::Conflict(format!(
                "app {app} already has an open request for {what} (#{}, {}); withdraw it or wait for its decision",
                r.id, r.state
            )));
        }

        let immediate = permission.immediate;
        let to = if immediate { RequestState::Approved } else { RequestState::Submitted };
        let auto = match (&permission.auto_approve, immediate) {
            (Some(rule), false) => self.auto_approval(&record, rule, now)?,
            _ => None,
        };
        let new = NewRequest {
            app_id: app,
            permission: permission.id.clone(),
            service_url: url,
            reason,
            usage_scenario,
            requested_limit,
            requested_rule: requested_rule.clone(),
            applicant: actor.account.id,
            event: RequestEvent {
                at: now,
                actor: Some(actor.account.id),
                action: "submit".into(),
                from: None,
                to,
                reason_code: None,
                reason: None,
                comment: if immediate {
                    "granted at once: this permission needs no review".into()
                } else {
                    String::new()
                },
            },
        };
        let grant = immediate.then(|| NewGrant {
            app_id: app,
            permission: permission.id.clone(),
            key_id: None,
            source: GrantSource::Review,
            granted_by: Some(actor.account.id),
            expires_at: Self::default_expiry(&permission, renewal.unwrap_or(now).max(now)),
            params: quota_params(requested_limit, requested_rule.as_deref()),
            reason: "request {request_id}: granted at once".into(),
        });
        let summary = serde_json::json!({
            "permission": new.permission, "state": to, "service_url": new.service_url,
            "requested_limit": requested_limit, "evidence": evidence.as_ref().map(|e| (&e.file_name, &e.content_type, e.bytes.len(), &e.sha256)),
            "renewal_of_grant_until": renewal,
        });
        let audit =
            NewAuditEvent::new(now, Some(actor.account.id), "request.submit", "permission_request:{request_id}".into())
                .app(app)
                .after(summary);
        let messages = self.messages_for(&record, (&permission.id, &permission.name), "{request_id}", &new.event)?;
        let requires = requirements(&permission, now);
        let grant = grant.as_ref().map(|g| (g, &requires));
        let request = self.store.create_request(&new, evidence.as_ref(), grant, &messages, &audit)?;
        if immediate {
            self.settle(app);
        }
        let Some(met) = auto else { return Ok(request) };
        // Approved by the catalog's rule in a second transaction: should it fail, the request
        // (saved, and answered as such) waits for a reviewer like any other.
        match self.auto_approve(&record, &permission, &request, &met) {
            Ok(Some(approved)) => Ok(approved),
            Ok(None) => Ok(request),
            Err(e) => {
                tracing::warn!(request = request.id, "auto-approval failed ({e}); the request waits for a reviewer");
                Ok(request)
            }
        }
    }

    /// Approves a request that met its permission's auto-approval rule, as permgate (no
    /// account), saying which conditions held: its review starts, then it is approved, as the
    /// state machine has every request go (two transitions, each audited and told). Returns the
    /// request as it then is: approved, or under review when the approval could not be made (a
    /// prerequisite went since the check; a reviewer decides), or `None` when the request
    /// changed before its review started.
    fn auto_approve(
        &self,
        record: &AppRecord,
        permission: &Permission,
        request: &PermissionRequest,
        met: &str,
    ) -> ServiceResult<Option<PermissionRequest>> {
        let now = self.clock.now();
        let id = request.id;
        let app = record.app.id;
        let named = (permission.id.as_str(), permission.name.as_str());
        let step = |action: RequestAction, from: RequestState, to: RequestState, comment: String| {
            let event = RequestEvent {
                at: now,
                actor: None,
                action: action.as_str().into(),
                from: Some(from),
                to,
                reason_code: None,
                reason: None,
                comment,
            };
            Transition { request_id: id, from, event }
        };
        let review = step(
            RequestAction::StartReview,
            RequestState::Submitted,
            RequestState::InReview,
            format!("the catalog's auto-approval rule for `{}` holds: {met}", permission.id),
        );
        let audit = NewAuditEvent::new(now, None, "request.start_review", format!("permission_request:{id}"))
            .app(app)
            .before(serde_json::json!({"state": RequestState::Submitted}))
            .after(serde_json::json!({"state": RequestState::InReview, "rule": permission.auto_approve, "met": met}));
        let messages = self.messages_for(record, named, &id.to_string(), &review.event)?;
        let Some(in_review) = self.store.transition_request(&review, None, &messages, &audit)? else {
            return Ok(None);
        };

        let from = self.holding(record, &permission.id, request.requested_rule.as_deref(), now);
        let start = match from {
            Holding::Until(end) => end.max(now),
            _ => now,
        };
        let grant = NewGrant {
            app_id: app,
            permission: permission.id.clone(),
            key_id: None,
            source: GrantSource::Review,
            granted_by: None,
            expires_at: Self::default_expiry(permission, start),
            params: quota_params(request.requested_limit, request.requested_rule.as_deref()),
            reason: format!("request {id} auto-approved: {met}"),
        };
        let approve = step(
            RequestAction::Approve,
            RequestState::InReview,
            RequestState::Approved,
            format!("auto-approved by the catalog's rule for `{}`: {met}", permission.id),
        );
        let audit = NewAuditEvent::new(now, None, "request.auto_approve", format!("permission_request:{id}"))
            .app(app)
            .before(serde_json::json!({"state": RequestState::InReview}))
            .after(serde_json::json!({
                "state": RequestState::Approved, "rule": permission.auto_approve, "met": met,
                "grant": {"expires_at": grant.expires_at, "params": grant.params},
            }));
        let messages = self.messages_for(record, named, &id.to_string(), &approve.event)?;
        let requires = requirements(permission, now);
        match self.store.transition_request(&approve, Some((&grant, &requires)), &messages, &audit) {
            Ok(Some(approved)) => {
                self.settle(app);
                Ok(Some(approved))
            }
            // A prerequisite went since the check: under review, a reviewer decides.
            Ok(None) | Err(crate::ports::StoreError::Conflict(_)) => Ok(Some(in_review)),
            Err(e) => Err(e.into()),
        }
    }

    /// The limit (and rule) a quota request asks for; none for other permissions.
    fn requested_quota(&self, permission: &Permission, input: &Apply) -> ServiceResult<(Option<u64>, Option<String>)> {
        if !permission.grants_quota {
            if input.requested_limit.is_some() || input.requested_rule.is_some() {
                return Err(ServiceError::Invalid(format!(
                    "`requested_limit`: `{}` does not raise a quota",
                    permission.id
                )));
            }
            return Ok((None, None));
        }
        let limit = input.requested_limit.filter(|l| *l > 0).ok_or_else(|| {
            ServiceError::Invalid(format!(
                "`requested_limit`: `{}` raises a quota; name the limit you need as a positive integer",
                permission.id
            ))
        })?;
        let rule = self.raised_rule(permission, input.requested_rule.as_deref(), "requested_rule")?;
        Ok((Some(limit), Some(rule)))
    }

    /// The catalog's prerequisites of `permission`, checked on the app as it is now: a missing
    /// Biz status or permission is -5, a missing setting -3, each naming what to do.
    fn check_prerequisites(&self, record: &AppRecord, permission: &Permission) -> ServiceResult<()> {
        let app = record.app.id;
        let pre = &permission.prerequisites;
        if pre.biz_app && !self.holds_now(record, "biz_app") {
            return Err(ServiceError::Forbidden(format!(
                "`{}` needs a Biz app: register business information first (PUT /v1/apps/{app}/business)",
                permission.id
            )));
        }
        if let Some(p) = pre.permissions.iter().find(|p| !self.holds_now(record, p)) {
            return Err(ServiceError::Forbidden(format!(
                "`{}` needs the `{p}` permission first (apply at /v1/apps/{app}/permission-requests)",
                permission.id
            )));
        }
        if pre.channel_connected && record.channels.is_empty() {
            return Err(ServiceError::NotConfigured(format!(
                "`{}` needs a Kakao Talk Channel connected to app {app}; connect one first (POST /v1/apps/{app}/channels)",
                permission.id
            )));
        }
        let missing: Vec<&str> = pre
            .consent_items
            .iter()
            .filter(|c| !record.consent_items.iter().any(|s| &s.scope == *c))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(ServiceError::NotConfigured(format!(
                "`{}` needs the consent item{} {} set on app {app} first (PUT /v1/apps/{app}/consent-items/{})",
                permission.id,
                if missing.len() > 1 { "s" } else { "" },
                missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "),
                missing[0]
            )));
        }
        Ok(())
    }

    pub fn act_on_request(&self, actor: &Actor, id: i64, input: ActOnRequest) -> ServiceResult<PermissionRequest> {
        let request = self
            .store
            .request(id)?
            .ok_or_else(|| ServiceError::NotFound(format!("permission request {id} does not exist")))?;
        let app = request.app_id;
        let action: RequestAction =
            input.action.parse().map_err(|e| ServiceError::Invalid(format!("`action`: {e}")))?;
        // The role first, then the input, then the state.
        let record = if action.by_reviewer() {
            if !actor.is_staff() {
                return Err(ServiceError::Forbidden(format!("only a reviewer or an admin may {action} a request")));
            }
            let record = self.app_for(actor, app, Access::Read)?;
            if record.member_role(actor.account.id).is_some() {
                return Err(ServiceError::Forbidden(format!(
                    "you are a member of app {app}: reviewers cannot decide requests of their own apps"
                )));
            }
            record
        } else {
            self.app_for(actor, app, Access::Edit)?
        };
        // A request for a permission the catalog dropped can only be closed: withdrawn, or
        // reviewed and rejected.
        let permission = self.snapshot.read().catalog().permission(&request.permission).cloned().ok_or_else(|| {
            ServiceError::Conflict(format!(
                "the catalog no longer has the permission `{}`; the request can only be withdrawn or rejected",
                request.permission
            ))
        });
        let permission = match (permission, action) {
            (Ok(p), _) => Some(p),
            (Err(e), RequestAction::Approve | RequestAction::Hold) => return Err(e),
            (Err(_), _) => None,
        };
        // Checked and normalized once: what is stored is what was checked.
        let comment = match input.comment.as_deref().map(str::trim) {
            None | Some("") => String::new(),
            Some(text) => prose_text("comment", text, 4000)?,
        };
        let (reason_code, reason_text) = match action {
            RequestAction::Reject | RequestAction::Hold => {
                let kind =
                    if action == RequestAction::Hold { ReviewDecisionKind::Hold } else { ReviewDecisionKind::Reject };
                let (code, text) = self.reason_code(input.reason_code.as_deref(), kind)?;
                if comment.is_empty() {
                    return Err(ServiceError::Invalid(format!(
                        "`comment`: {action} needs a note to the applicant besides the reason code"
                    )));
                }
                (Some(code), Some(text))
            }
            _ => {
                if input.reason_code.is_some() {
                    return Err(ServiceError::Invalid(format!(
                        "`reason_code`: only reject and hold take a reason code, not {action}"
                    )));
                }
                (None, None)
            }
        };
        if action == RequestAction::Supplement && comment.is_empty() {
            return Err(ServiceError::Invalid("`comment`: say what was supplemented, for the reviewer".into()));
        }
        if action != RequestAction::Approve && (input.expires_at.is_some() || input.granted_limit.is_some()) {
            return Err(ServiceError::Invalid(format!(
                "`expires_at` and `granted_limit` go with approve, not {action}"
            )));
        }
        let now = self.clock.now();
        // The state before the grant an approval would make: its checks speak of holding and
        // rejecting, which only a request under review may be.
        let to = request.state.apply(action).map_err(|e| ServiceError::Conflict(format!("request {id}: {e}")))?;
        let grant = match (action, &permission) {
            (RequestAction::Approve, Some(p)) => Some(self.approval_grant(actor, &record, &request, p, &input, now)?),
            _ => None,
        };
        let event = RequestEvent {
            at: now,
            actor: Some(actor.account.id),
            action: action.as_str().into(),
            from: Some(request.state),
            to,
            reason_code,
            reason: reason_text,
            comment,
        };
        let audit = NewAuditEvent::new(
            now,
            Some(actor.account.id),
            &format!("request.{action}"),
            format!("permission_request:{id}"),
        )
        .app(app)
        .before(serde_json::json!({"state": request.state}))
        .after(serde_json::json!({
            "state": to, "reason_code": event.reason_code, "comment": event.comment,
            "grant": grant.as_ref().map(|g| serde_json::json!({"expires_at": g.expires_at, "params": g.params})),
        }));
        // A permission the catalog no longer has is named by its id.
        let named = permission
            .as_ref()
            .map_or((request.permission.as_str(), request.permission.as_str()), |p| (p.id.as_str(), p.name.as_str()));
        let messages = self.messages_for(&record, named, &id.to_string(), &event)?;
        let t = Transition { request_id: id, from: request.state, event };
        let requires = permission.as_ref().map(|p| requirements(p, t.event.at)).unwrap_or_default();
        let grant = grant.as_ref().map(|g| (g, &requires));
        let updated = match self.store.transition_request(&t, grant, &messages, &audit) {
            // A requirement of the grant that no longer holds: the reviewer's to decide.
            Err(crate::ports::StoreError::Conflict(m)) if grant.is_some() => {
                return Err(ServiceError::Conflict(format!("{m}; hold or reject the request")));
            }
            other => other?,
        };
        let updated = updated.ok_or_else(|| {
            ServiceError::Conflict(format!("request {id} changed while you acted on it; reload it and try again"))
        })?;
        if grant.is_some() {
            self.settle(app);
        }
        Ok(updated)
    }

    fn reason_code(&self, code: Option<&str>, kind: ReviewDecisionKind) -> ServiceResult<(String, String)> {
        let snapshot = self.snapshot.read();
        let allowed = || {
            snapshot
                .catalog()
                .review_reasons
                .iter()
                .filter(|r| r.applies_to.contains(&kind))
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let verb = if kind == ReviewDecisionKind::Hold { "hold" } else { "reject" };
        let Some(code) = code else {
            return Err(ServiceError::Invalid(format!(
                "`reason_code`: {verb} needs a reason code, one of: {}",
                allowed()
            )));
        };
        match snapshot.catalog().review_reason(code) {
            Some(r) if r.applies_to.contains(&kind) => Ok((r.id.clone(), r.text.clone())),
            Some(_) => Err(ServiceError::Invalid(format!(
                "`reason_code`: `{code}` is not a reason to {verb}; use one of: {}",
                allowed()
            ))),
            None => Err(ServiceError::Invalid(format!(
                "`reason_code`: the catalog has no review reason `{code}`; use one of: {}",
                allowed()
            ))),
        }
    }

    fn approval_grant(
        &self,
        actor: &Actor,
        record: &AppRecord,
        request: &PermissionRequest,
        permission: &Permission,
        input: &ActOnRequest,
        now: Timestamp,
    ) -> ServiceResult<NewGrant> {
        // Retired while the request was open: existing grants keep working, new ones are refused
        // (as a new request or an operator grant would be).
        if permission.retired {
            return Err(ServiceError::Conflict(format!(
                "request {} cannot be approved: `{}` was retired since it was made; reject it, or the applicant withdraws it",
                request.id, permission.id
            )));
        }
        // What the app had when it applied may be gone (Biz removed, a channel disconnected, a
        // prerequisite permission revoked): a grant now would hold what its prerequisites no
        // longer allow. The reviewer can hold or reject the request instead.
        self.check_prerequisites(record, permission).map_err(|e| match e {
            ServiceError::Internal(_) => e,
            e => {
                ServiceError::Conflict(format!("request {} cannot be approved now: {e}; hold or reject it", request.id))
            }
        })?;
        if let Some(at) = input.expires_at
            && at <= now
        {
            return Err(ServiceError::Invalid(format!("`expires_at` ({at}) is not in the future")));
        }
        let limit = if permission.grants_quota {
            let limit = input.granted_limit.or(request.requested_limit).filter(|l| *l > 0).ok_or_else(|| {
                ServiceError::Invalid("`granted_limit`: approving a quota request needs a positive limit".into())
            })?;
            Some(limit)
        } else if input.granted_limit.is_some() {
            return Err(ServiceError::Invalid(format!("`granted_limit`: `{}` does not raise a quota", permission.id)));
        } else {
            None
        };
        // A renewal continues from the end of the grant it renews.
        let start = match self.holding(record, &permission.id, request.requested_rule.as_deref(), now) {
            Holding::No => now,
            Holding::Until(end) if end.0 - now.0 <= RENEW_WITHIN_DAYS * 86_400 => end.max(now),
            Holding::Until(_) | Holding::Forever => {
                return Err(ServiceError::Conflict(format!(
                    "app {} already holds {} (granted since the request was made); reject or withdraw the request",
                    record.app.id,
                    holding_name(permission, request.requested_rule.as_deref())
                )));
            }
        };
        Ok(NewGrant {
            app_id: record.app.id,
            permission: permission.id.clone(),
            key_id: None,
            source: GrantSource::Review,
            granted_by: Some(actor.account.id),
            expires_at: input.expires_at.or_else(|| Self::default_expiry(permission, start)),
            params: quota_params(limit, request.requested_rule.as_deref()),
            reason: format!("request {} approved", request.id),
        })
    }

    pub fn permission_request(&self, actor: &Actor, id: i64) -> ServiceResult<PermissionRequest> {
        let request = self
            .store
            .request(id)?
            .ok_or_else(|| ServiceError::NotFound(format!("permission request {id} does not exist")))?;
        self.app_for(actor, request.app_id, Access::Read)?;
        Ok(request)
    }

    /// The requests `actor` may see, newest first, a page at a time: a queue longer than a page
    /// is read to its oldest request by asking again with `before` set to the answer's
    /// `next_before`.
    pub fn permission_requests(&self, actor: &Actor, query: ListRequests) -> ServiceResult<RequestPage> {
        let limit = match query.limit {
            None => MAX_PAGE,
            Some(n) if (1..=MAX_PAGE).contains(&n) => n,
            Some(n) => return Err(ServiceError::Invalid(format!("`limit`: {n} is not between 1 and {MAX_PAGE}"))),
        };
        let among_apps = if actor.is_staff() {
            None
        } else {
            if let Some(app) = query.app_id {
                self.app_for(actor, app, Access::Read)?;
            }
            Some(self.store.app_ids_of_member(actor.account.id)?)
        };
        let filter = RequestFilter {
            state: query.state,
            app_id: query.app_id,
            among_apps,
            before: query.before,
            // One more than the page, to know whether another follows.
            limit: limit + 1,
        };
        let mut requests = self.store.requests(&filter)?;
        let next_before = (requests.len() > limit).then(|| {
            requests.truncate(limit);
            requests.last().map(|r| r.id)
        });
        Ok(RequestPage { requests, next_before: next_before.flatten() })
    }

    /// The evidence file of a request, for the app's members and reviewers.
    pub fn request_evidence(&self, actor: &Actor, id: i64) -> ServiceResult<(EvidenceInfo, Vec<u8>)> {
        let request = self.permission_request(actor, id)?;
        let info = request
            .evidence
            .ok_or_else(|| ServiceError::NotFound(format!("permission request {id} has no evidence file")))?;
        self.store
            .evidence(info.id)?
            .ok_or_else(|| ServiceError::Internal(format!("evidence {} of request {id} is missing", info.id)))
    }

    /// The e-mails (one per member with an address) and webhook for one transition. `request_id`
    /// may be the placeholder `{request_id}`, which the store replaces when it knows the id.
    fn messages_for(
        &self,
        record: &AppRecord,
        (permission_id, permission_name): (&str, &str),
        request_id: &str,
        event: &RequestEvent,
    ) -> ServiceResult<Vec<NewMessage>> {
        let app = &record.app;
        let subject = format!(
            "[permgate] {} (app {}): request #{request_id} for {} is {}",
            app.name,
            app.id,
            permission_name,
            event.to.as_str().replace('_', " ")
        );
        let mut body = format!(
            "App: {} (id {})\nPermission: {} ({})\nRequest: #{request_id}\nState: {}{}\n",
            app.name,
            app.id,
            permission_name,
            permission_id,
            event.from.map(|f| format!("{f} -> ")).unwrap_or_default(),
            event.to
        );
        if let Some(reason) = &event.reason {
            body.push_str(&format!("Reason: {reason}\n"));
        }
        if !event.comment.is_empty() {
            body.push_str(&format!("Note: {}\n", event.comment));
        }
        match event.to {
            RequestState::OnHold => {
                body.push_str("\nSupplement the request (action `supplement`) once the points above are addressed.\n")
            }
            RequestState::Rejected => body.push_str("\nYou may apply again once the reason above is addressed.\n"),
            RequestState::Approved => body.push_str("\nThe permission takes effect on the app's next call.\n"),
            _ => {}
        }
        if let Some(url) = &self.notify.public_url {
            body.push_str(&format!("\n{}/#/requests/{request_id}\n", url.trim_end_matches('/')));
        }
        let doc = serde_json::json!({
            "type": format!("permission_request.{}", event.to),
            "request_id": request_id,
            "app_id": app.id,
            "permission": permission_id,
            "from": event.from,
            "to": event.to,
            "action": event.action,
            "actor": event.actor,
            "reason_code": event.reason_code,
            "comment": event.comment,
            "at": event.at,
        });
        self.app_messages(record, &subject, &body, doc)
    }
}

/// A grant's parameters: the limit (and rule) of a quota permission, else none.
fn quota_params(limit: Option<u64>, rule: Option<&str>) -> serde_json::Value {
    match (limit, rule) {
        (Some(limit), Some(rule)) => serde_json::json!({"limit": limit, "rule": rule}),
        (Some(limit), None) => serde_json::json!({"limit": limit}),
        _ => serde_json::json!({}),
    }
}

/// What the store checks again as it writes an approval's grant: the permission's prerequisites
/// that another write can take away meanwhile.
fn requirements(permission: &Permission, now: Timestamp) -> Requirements {
    let pre = &permission.prerequisites;
    let mut permissions = pre.permissions.clone();
    if pre.biz_app {
        permissions.insert(0, "biz_app".to_owned());
    }
    Requirements {
        permissions,
        channel_connected: pre.channel_connected,
        consent_items: pre.consent_items.clone(),
        not_held_after: Some(now.plus_seconds(RENEW_WITHIN_DAYS * 86_400)),
    }
}

/// `permission` and, where it is held once per rule, `rule`, as messages name the holding.
fn holding_name(permission: &Permission, rule: Option<&str>) -> String {
    crate::model::holding_name(&permission.id, rule.filter(|_| permission.names_its_rule()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_is_typed_by_content_not_by_name() {
        assert_eq!(evidence_type(b"\xFF\xD8\xFF\xE0\x00\x10JFIF"), Some("image/jpeg"));
        assert_eq!(evidence_type(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Some("image/png"));
        assert_eq!(evidence_type(b"%PDF-1.7\n"), Some("application/pdf"));
        assert_eq!(evidence_type(b"GIF89a"), None);
        assert_eq!(evidence_type(b"MZ\x90\x00"), None);
        let renamed = Upload { file_name: "screen.png".into(), bytes: b"#!/bin/sh\necho hi\n".to_vec() };
        let e = evidence(renamed).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("not a JPG, PNG or PDF"), "{e}");
    }

    #[test]
    fn an_oversized_file_is_refused_naming_the_limit() {
        let mut bytes = b"%PDF-1.7\n".to_vec();
        bytes.resize(MAX_EVIDENCE_BYTES + 1, b' ');
        let e =
            evidence(Upload { file_name: "big.pdf".into(), bytes }).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("at most 20 MB"), "{e}");
        let mut ok = b"%PDF-1.7\n".to_vec();
        ok.resize(MAX_EVIDENCE_BYTES, b' ');
        assert!(evidence(Upload { file_name: "a/b\\c.pdf".into(), bytes: ok }).is_ok_and(|e| e.file_name == "abc.pdf"));
    }

    #[test]
    fn service_urls_must_be_http_with_a_host() {
        assert!(service_url("https://example.com/app").is_ok());
        assert!(service_url("http://example.com").is_ok());
        assert!(service_url("ftp://example.com").is_err());
        assert!(service_url("https:///path").is_err());
        assert!(service_url("https://exa mple.com").is_err());
    }
}
