//! The JSON bodies of the HTTP API, decoded and checked as the handlers do before the
//! broker sees them (`kairos_api::inputs::check_json_body`): `POST /v1/requests` and the
//! other JSON bodies, then the domain parsers they use (names, TTLs, tasks). Must never
//! panic; a refusal is always a 4xx with a code and a message; what the domain accepts
//! round-trips through its text form.
//!
//! The first input byte picks the endpoint (`kairos_api::inputs::JsonBody::ALL`, mod 7);
//! the rest is the body.
#![no_main]

use kairos_api::inputs::{JsonBody, check_json_body, config_bundle_from_json};
use kairos_api::views::CreateRequestBody;
use kairos_domain::{EntitlementName, IdentityName, Task, TaskKind, TaskRef, Ttl};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let endpoint = JsonBody::ALL[usize::from(selector) % JsonBody::ALL.len()];
    if let Err(e) = check_json_body(endpoint, body) {
        assert!(
            e.status.is_client_error(),
            "{endpoint:?}: {} for a caller's body: {} {}",
            e.status,
            e.code,
            e.message
        );
        assert!(
            !e.code.is_empty() && !e.message.is_empty(),
            "{endpoint:?}: {e:?}"
        );
    }
    match endpoint {
        JsonBody::CreateRequest => {
            if let Ok(request) = serde_json::from_slice::<CreateRequestBody>(body) {
                domain_round_trips(&request);
            }
        }
        JsonBody::ConfigApply => {
            if let Ok(bundle) = config_bundle_from_json(body)
                && let Err(errors) = kairos_config::Catalog::from_bundle(&bundle)
            {
                let _ = errors.to_string();
            }
        }
        _ => {}
    }
});

/// What the domain accepts, it prints in a form it accepts again as the same value.
fn domain_round_trips(request: &CreateRequestBody) {
    if let Some(ttl) = request.ttl.as_deref()
        && let Ok(parsed) = Ttl::parse(ttl)
    {
        assert_eq!(Ttl::parse(&parsed.to_string()), Ok(parsed), "{ttl:?}");
        assert!(parsed.as_secs() > 0);
    }
    if let Ok(name) = EntitlementName::parse(request.entitlement.as_str()) {
        assert_eq!(name.as_str(), request.entitlement);
        assert_eq!(
            format!("{}/{}", name.target(), name.role()),
            request.entitlement
        );
    }
    if let Some(identity) = request.identity.as_deref()
        && let Ok(name) = IdentityName::parse(identity)
    {
        assert_eq!(name.to_string(), identity);
    }
    if let Ok(kind) = request.task.kind.parse::<TaskKind>() {
        assert_eq!(kind.as_str(), request.task.kind);
        if let Ok(reference) = TaskRef::parse(request.task.reference.as_str()) {
            assert_eq!(reference.as_str(), request.task.reference);
            if let Ok(task) = Task::new(kind, reference, request.task.reason.clone()) {
                let json = serde_json::to_value(&task).unwrap_or_default();
                assert_eq!(serde_json::from_value::<Task>(json).ok(), Some(task));
            }
        }
    }
}
