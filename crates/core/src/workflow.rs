//! The permission-request state machine (SPEC section 4): a request is `submitted`, a reviewer
//! starts the review, then approves, rejects or puts it on hold; an applicant supplements a held
//! request (back to `submitted`) or withdraws an open one. Transitions are methods that either
//! return the next state or say why the move is illegal; nothing else changes a state.

use serde::Serialize;

use crate::model::{AccountId, AppId, string_enum};
use crate::time::Timestamp;

string_enum!(
    /// Where a permission request stands.
    RequestState {
        Submitted => "submitted",
        InReview => "in_review",
        OnHold => "on_hold",
        Approved => "approved",
        Rejected => "rejected",
        Withdrawn => "withdrawn",
    }
);

string_enum!(
    /// What someone does to a request.
    RequestAction {
        StartReview => "start_review",
        Approve => "approve",
        Reject => "reject",
        Hold => "hold",
        Supplement => "supplement",
        Withdraw => "withdraw",
    }
);

/// A move the state machine does not allow from the current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {} a request that is {}{}", action.verb(), from.as_str(), from.hint_for(*action))]
pub struct IllegalTransition {
    pub from: RequestState,
    pub action: RequestAction,
}

type Step = Result<RequestState, IllegalTransition>;

impl RequestState {
    /// Open requests block a second request for the same app and permission.
    pub fn is_open(self) -> bool {
        matches!(self, RequestState::Submitted | RequestState::InReview | RequestState::OnHold)
    }

    fn illegal(self, action: RequestAction) -> Step {
        Err(IllegalTransition { from: self, action })
    }

    /// `submitted` → `in_review`.
    pub fn start_review(self) -> Step {
        match self {
            RequestState::Submitted => Ok(RequestState::InReview),
            other => other.illegal(RequestAction::StartReview),
        }
    }

    /// `in_review` → `approved`.
    pub fn approve(self) -> Step {
        match self {
            RequestState::InReview => Ok(RequestState::Approved),
            other => other.illegal(RequestAction::Approve),
        }
    }

    /// `in_review` → `rejected`.
    pub fn reject(self) -> Step {
        match self {
            RequestState::InReview => Ok(RequestState::Rejected),
            other => other.illegal(RequestAction::Reject),
        }
    }

    /// `in_review` → `on_hold` (a supplement is needed).
    pub fn hold(self) -> Step {
        match self {
            RequestState::InReview => Ok(RequestState::OnHold),
            other => other.illegal(RequestAction::Hold),
        }
    }

    /// `on_hold` → `submitted`, when the applicant supplements.
    pub fn supplement(self) -> Step {
        match self {
            RequestState::OnHold => Ok(RequestState::Submitted),
            other => other.illegal(RequestAction::Supplement),
        }
    }

    /// Any open state → `withdrawn`.
    pub fn withdraw(self) -> Step {
        if self.is_open() { Ok(RequestState::Withdrawn) } else { self.illegal(RequestAction::Withdraw) }
    }

    /// The transition for `action`.
    pub fn apply(self, action: RequestAction) -> Step {
        match action {
            RequestAction::StartReview => self.start_review(),
            RequestAction::Approve => self.approve(),
            RequestAction::Reject => self.reject(),
            RequestAction::Hold => self.hold(),
            RequestAction::Supplement => self.supplement(),
            RequestAction::Withdraw => self.withdraw(),
        }
    }

    /// What would help, appended to an illegal-transition message.
    fn hint_for(self, action: RequestAction) -> &'static str {
        match (self, action) {
            (RequestState::Submitted, RequestAction::Approve | RequestAction::Reject | RequestAction::Hold) => {
                "; start the review first (action `start_review`)"
            }
            (RequestState::OnHold, RequestAction::StartReview) => "; it waits for the applicant's supplement",
            (RequestState::Approved | RequestState::Rejected | RequestState::Withdrawn, _) => {
                "; the request is closed (apply again with a new request)"
            }
            _ => "",
        }
    }
}

impl RequestAction {
    fn verb(self) -> &'static str {
        match self {
            RequestAction::StartReview => "start reviewing",
            RequestAction::Approve => "approve",
            RequestAction::Reject => "reject",
            RequestAction::Hold => "put on hold",
            RequestAction::Supplement => "supplement",
            RequestAction::Withdraw => "withdraw",
        }
    }

    /// Reviewer actions are taken by reviewers and admins who are not members of the app;
    /// the others by the app's owner or editors.
    pub fn by_reviewer(self) -> bool {
        matches!(
            self,
            RequestAction::StartReview | RequestAction::Approve | RequestAction::Reject | RequestAction::Hold
        )
    }
}

/// The evidence file of a request, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct EvidenceInfo {
    pub id: i64,
    pub file_name: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
}

/// An evidence file about to be stored with its request, in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvidence {
    pub file_name: String,
    pub content_type: String,
    pub sha256: String,
    pub bytes: Vec<u8>,
}

/// One entry of a request's history: its submission or one action on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct RequestEvent {
    pub at: Timestamp,
    pub actor: Option<AccountId>,
    /// `submit` or the action's name.
    pub action: String,
    pub from: Option<RequestState>,
    pub to: RequestState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
    /// The catalog's text for `reason_code`, as the applicant reads it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub comment: String,
}

/// An application for a permission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct PermissionRequest {
    pub id: i64,
    pub app_id: AppId,
    pub permission: String,
    pub state: RequestState,
    pub service_url: String,
    pub reason: String,
    pub usage_scenario: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_rule: Option<String>,
    pub evidence: Option<EvidenceInfo>,
    pub applicant: AccountId,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The grant an approval created.
    pub grant_id: Option<i64>,
    /// Oldest first; empty in listings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<RequestEvent>,
}

/// A request about to be stored; `state` is `submitted`, or `approved` for a permission granted
/// at once (then `grant` is written in the same transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRequest {
    pub app_id: AppId,
    pub permission: String,
    pub service_url: String,
    pub reason: String,
    pub usage_scenario: String,
    pub requested_limit: Option<u64>,
    pub requested_rule: Option<String>,
    pub applicant: AccountId,
    pub event: RequestEvent,
}

/// A change of a request's state, applied only if the request is still in `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub request_id: i64,
    pub from: RequestState,
    pub event: RequestEvent,
}

/// Which requests a listing shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFilter {
    pub state: Option<RequestState>,
    pub app_id: Option<AppId>,
    /// Restricts the listing to these apps (a developer sees their apps' requests only).
    pub among_apps: Option<Vec<AppId>>,
    /// Only requests older (by id) than this one.
    pub before: Option<i64>,
    pub limit: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The transitions SPEC section 4 allows, and no others.
    const ALLOWED: &[(RequestState, RequestAction, RequestState)] = &[
        (RequestState::Submitted, RequestAction::StartReview, RequestState::InReview),
        (RequestState::InReview, RequestAction::Approve, RequestState::Approved),
        (RequestState::InReview, RequestAction::Reject, RequestState::Rejected),
        (RequestState::InReview, RequestAction::Hold, RequestState::OnHold),
        (RequestState::OnHold, RequestAction::Supplement, RequestState::Submitted),
        (RequestState::Submitted, RequestAction::Withdraw, RequestState::Withdrawn),
        (RequestState::InReview, RequestAction::Withdraw, RequestState::Withdrawn),
        (RequestState::OnHold, RequestAction::Withdraw, RequestState::Withdrawn),
    ];

    #[test]
    fn exactly_the_specified_transitions_are_legal() {
        for &from in RequestState::ALL {
            for &action in RequestAction::ALL {
                let expected = ALLOWED.iter().find(|(f, a, _)| *f == from && *a == action).map(|(_, _, to)| *to);
                match (from.apply(action), expected) {
                    (Ok(to), Some(want)) => assert_eq!(to, want, "{from} --{action}-->"),
                    (Err(e), None) => assert_eq!(e, IllegalTransition { from, action }),
                    (got, want) => unreachable!("{from} --{action}--> gave {got:?}, expected {want:?}"),
                }
            }
        }
    }

    #[test]
    fn closed_states_accept_nothing() {
        for from in RequestState::ALL.iter().copied().filter(|s| !s.is_open()) {
            assert!(RequestAction::ALL.iter().copied().all(|a| from.apply(a).is_err()), "{from}");
        }
    }

    #[test]
    fn illegal_moves_say_what_to_do() {
        let e = RequestState::Submitted.approve().err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("cannot approve a request that is submitted; start the review first (action `start_review`)")
        );
        let e = RequestState::Rejected.supplement().err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "cannot supplement a request that is rejected; the request is closed (apply again with a new request)"
            )
        );
    }

    #[test]
    fn names_round_trip() {
        for &s in RequestState::ALL {
            assert_eq!(s.as_str().parse::<RequestState>().ok(), Some(s));
        }
        for &a in RequestAction::ALL {
            assert_eq!(a.as_str().parse::<RequestAction>().ok(), Some(a));
        }
        assert!("approved!".parse::<RequestState>().is_err());
    }
}
