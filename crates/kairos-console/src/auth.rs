//! Who is signed in: the session cookie → the stored session → the person, checked on
//! every request. Anything that does not check out — no cookie, a forged or unknown one,
//! an idle or expired session, a revoked token, a person who is gone — is sent to the
//! sign-in page and told nothing more.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use kairos_broker::{Broker, BrokerError, Caller};
use kairos_domain::{Request, RequestId, TeamName};
use kairos_store::{ConsoleSession, Role, User};

use crate::error::PageError;
use crate::session::{self, CookieTransport, SessionLimits, SessionStatus};

/// How the console runs.
#[derive(Debug, Clone, Copy)]
pub struct ConsoleSettings {
    pub limits: SessionLimits,
    pub transport: CookieTransport,
}

#[derive(Clone)]
pub struct ConsoleState {
    pub broker: Arc<Broker>,
    pub settings: ConsoleSettings,
    /// The single sign-on client (discovery cache).
    pub oidc: Arc<crate::oidc::OidcClient>,
}

/// A signed-in person and their live session.
pub struct Signed {
    /// The person as the broker sees them: after single sign-on with a groups claim, with
    /// only the teams the IdP also asserted.
    pub caller: Caller,
    pub user: User,
    pub session: ConsoleSession,
    /// The teams this session may act with, when single sign-on narrowed them.
    pub narrowed: Option<Vec<TeamName>>,
}

impl Signed {
    /// Refuses a state-changing form without this session's CSRF token (403, nothing
    /// changes).
    pub fn check_csrf(&self, given: Option<&str>) -> Result<(), PageError> {
        if session::csrf_matches(&self.session.csrf_secret, given) {
            Ok(())
        } else {
            Err(PageError::Csrf)
        }
    }

    pub fn has_role(&self, roles: &[Role]) -> bool {
        self.user.role == Role::Admin || roles.contains(&self.user.role)
    }

    /// Whether this session may act for `team` (always, unless single sign-on narrowed
    /// its teams). The broker lets an approver listed by name in a team decide for it;
    /// a narrowed session must also hold the team.
    pub fn acts_for(&self, team: &TeamName) -> bool {
        self.narrowed
            .as_ref()
            .is_none_or(|teams| teams.contains(team))
    }

    /// Whether `request` waits for this person's decision, narrowing included.
    pub fn awaits_decision(&self, broker: &Broker, request: &Request) -> bool {
        broker.awaits_decision_of(&self.caller, request)
            && broker
                .approving_team_of(request)
                .is_some_and(|team| self.acts_for(&team))
    }

    /// Refuses a decision on `request` for a team this session does not act for.
    pub async fn check_may_decide(&self, broker: &Broker, id: &RequestId) -> Result<(), PageError> {
        if self.narrowed.is_none() {
            return Ok(());
        }
        let request = broker.get_request(&self.caller, id, None).await?.request;
        match broker.approving_team_of(&request) {
            Some(team) if self.acts_for(&team) => Ok(()),
            Some(team) => Err(PageError::Broker(BrokerError::Forbidden(format!(
                "{} signed in through single sign-on, and the identity provider did not assert team {team}, which approves this request: only the teams your IdP groups confirm count for this session",
                self.user.name
            )))),
            None => Err(PageError::Broker(BrokerError::Conflict(
                "the request's identity is no longer configured".into(),
            ))),
        }
    }
}

/// Sent to the sign-in page (and the stale cookie removed).
pub struct SignInFirst(CookieTransport);

impl IntoResponse for SignInFirst {
    fn into_response(self) -> Response {
        (
            [(header::SET_COOKIE, session::clear_cookie(self.0))],
            Redirect::to("/ui/login"),
        )
            .into_response()
    }
}

pub fn session_id(headers: &HeaderMap) -> Option<&str> {
    session::cookie_value(
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

/// A person who may use the console; workloads and resource servers may not.
pub fn console_person(caller: &Caller) -> Result<&User, PageError> {
    match caller {
        Caller::Workload { identity } => Err(PageError::NotAPerson(format!(
            "That is the platform token of workload {identity}. Workloads use the API; the console is for people: sign in with your own API token."
        ))),
        Caller::User(u) if u.role == Role::ResourceServer => Err(PageError::NotAPerson(format!(
            "{} is a resource server. Resource servers introspect tokens over the API; the console is for people: sign in with your own API token.",
            u.name
        ))),
        Caller::User(u) => Ok(u),
    }
}

impl FromRequestParts<ConsoleState> for Signed {
    type Rejection = SignInFirst;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        let refuse = SignInFirst(state.settings.transport);
        let id = session_id(&parts.headers).ok_or(SignInFirst(state.settings.transport))?;
        let id_hash = session::hash_id(id);
        let store = state.broker.store();
        let stored = match store.get_session(&id_hash).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(refuse),
            Err(e) => {
                tracing::error!(error = %e, "reading a console session failed");
                return Err(refuse);
            }
        };
        let now = state.broker.now();
        let limits = state.settings.limits;
        let end = |why: &'static str| {
            let store = Arc::clone(store);
            let id_hash = id_hash.clone();
            async move {
                tracing::debug!(why, "console session ended");
                if let Err(e) = store.delete_session(&id_hash, Vec::new()).await {
                    tracing::warn!(error = %e, "deleting an ended console session failed");
                }
            }
        };
        match session::status(&stored, now, limits) {
            SessionStatus::Live => {}
            SessionStatus::Idle => {
                end("idle").await;
                return Err(refuse);
            }
            SessionStatus::Expired => {
                end("expired").await;
                return Err(refuse);
            }
        }
        // The person, as they are now: a revoked token or a removed user ends the session.
        let user = match &stored.token_id {
            Some(token_id) => match store.find_token(token_id).await {
                Ok(Some((token, user)))
                    if token.revoked_at.is_none() && user.name == stored.user =>
                {
                    Some(user)
                }
                Ok(_) => None,
                Err(e) => {
                    tracing::error!(error = %e, "reading a console session's token failed");
                    return Err(refuse);
                }
            },
            None => store.get_user(&stored.user).await.ok().flatten(),
        };
        let Some(mut user) = user.filter(|u| u.role != Role::ResourceServer) else {
            end("person gone").await;
            return Err(refuse);
        };
        // Single sign-on: only while it is configured, and with the teams the IdP asserted
        // when a groups claim is configured (the narrowing is part of the id, so the stored
        // hash vouches for it).
        let mut narrowed = None;
        if stored.token_id.is_none() {
            let catalog = state.broker.catalog();
            let Some(oidc) = catalog.console().oidc.as_ref() else {
                end("single sign-on no longer configured").await;
                return Err(refuse);
            };
            if oidc.groups_claim.is_some() {
                let Some(teams) = crate::oidc::decode_teams(id) else {
                    end("single sign-on session without its teams").await;
                    return Err(refuse);
                };
                user.teams.retain(|t| teams.contains(t));
                narrowed = Some(teams);
            }
        }
        if now.since(stored.last_seen_at) >= limits.touch_every()
            && let Err(e) = store.touch_session(&id_hash, now).await
        {
            tracing::warn!(error = %e, "recording a console session's use failed");
        }
        Ok(Self {
            caller: Caller::User(user.clone()),
            user,
            session: stored,
            narrowed,
        })
    }
}

/// Refuses a form posted from another site: its `Sec-Fetch-Site` is `cross-site`, or its
/// `Origin` is not this server's. (SameSite=Lax already keeps the cookie off such posts;
/// this also covers the sign-in form, which has no session yet.)
pub fn same_origin(headers: &HeaderMap) -> Result<(), PageError> {
    let fetch_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if fetch_site.eq_ignore_ascii_case("cross-site") {
        return Err(PageError::CrossSite);
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (None, _) => Ok(()),
        (Some(origin), Some(host)) => {
            let authority = origin
                .split_once("://")
                .map_or(origin, |(_, rest)| rest)
                .trim_end_matches('/');
            if authority.eq_ignore_ascii_case(host) {
                Ok(())
            } else {
                Err(PageError::CrossSite)
            }
        }
        (Some(_), None) => Err(PageError::CrossSite),
    }
}
