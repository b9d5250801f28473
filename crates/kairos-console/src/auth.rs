//! Who is signed in: the session cookie → the stored session → the person, checked on
//! every request. Anything that does not check out — no cookie, a forged or unknown one,
//! an idle or expired session, a revoked token, a person who is gone — is sent to the
//! sign-in page and told nothing more.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use kairos_broker::{Broker, Caller};
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
}

/// A signed-in person and their live session.
pub struct Signed {
    pub caller: Caller,
    pub user: User,
    pub session: ConsoleSession,
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
        let Some(user) = user.filter(|u| u.role != Role::ResourceServer) else {
            end("person gone").await;
            return Err(refuse);
        };
        if now.since(stored.last_seen_at) >= limits.touch_every()
            && let Err(e) = store.touch_session(&id_hash, now).await
        {
            tracing::warn!(error = %e, "recording a console session's use failed");
        }
        Ok(Self {
            caller: Caller::User(user.clone()),
            user,
            session: stored,
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
