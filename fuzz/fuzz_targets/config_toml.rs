//! The configuration loader (`kairos_config::Catalog::from_bundle`, what `kairos server
//! --config` and `POST /v1/config/apply` run) on arbitrary text. Must never panic; every
//! error names a file of the bundle; a catalog that validates diffs empty against itself
//! and its issuers make a workload verifier (so the server can run what config accepts).
//!
//! The input is the main file `kairos.toml`; after a NUL byte, the text of
//! `policies/base.cedar`; after a second NUL, the text of `ci-jwks.json`. Parts left out
//! keep the valid defaults below, which the seed configuration refers to.
#![no_main]

use std::collections::BTreeMap;

use kairos_config::{Catalog, ConfigBundle, JwksRef};
use kairos_crypto::workload::{IssuerTrust, JwksSource, WorkloadVerifier};
use libfuzzer_sys::fuzz_target;

const JWKS: &str = include_str!("../../crates/kairos-config/tests/fixtures/ci-jwks.json");
const BASE_CEDAR: &str =
    include_str!("../../crates/kairos-config/tests/fixtures/policies/base.cedar");
const PAYMENTS_CEDAR: &str =
    include_str!("../../crates/kairos-config/tests/fixtures/policies/payments.cedar");

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\0');
    let main = parts.next().unwrap_or_default();
    let base = parts.next().unwrap_or(BASE_CEDAR);
    let jwks = parts.next().unwrap_or(JWKS);
    let files: BTreeMap<String, String> = [
        ("kairos.toml", main),
        ("ci-jwks.json", jwks),
        ("policies/base.cedar", base),
        ("policies/payments.cedar", PAYMENTS_CEDAR),
    ]
    .into_iter()
    .map(|(path, text)| (path.to_owned(), text.to_owned()))
    .collect();
    let bundle = ConfigBundle {
        main_path: "kairos.toml".to_owned(),
        files,
    };
    match Catalog::from_bundle(&bundle) {
        Ok(catalog) => {
            assert!(Catalog::diff(&catalog, &catalog).is_empty());
            let trusts = catalog
                .issuers()
                .map(|i| IssuerTrust {
                    name: i.name.to_string(),
                    issuer: i.issuer.clone(),
                    audience: i.audience.clone(),
                    jwks: match &i.jwks {
                        JwksRef::Inline { jwks, .. } => JwksSource::Inline(jwks.clone()),
                        JwksRef::Url(url) => JwksSource::Url(url.clone()),
                    },
                    max_token_age: i.max_token_age.as_duration(),
                    spiffe_trust_domain: i.spiffe_trust_domain.clone(),
                })
                .collect::<Vec<_>>();
            if let Err(e) = WorkloadVerifier::new(trusts) {
                panic!("the catalog validated but its issuers are refused: {e}");
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            for error in errors.iter() {
                assert!(
                    bundle.files.contains_key(&error.file),
                    "error names a file outside the bundle: {error}"
                );
                assert!(!error.message.is_empty(), "{error:?}");
            }
            let _ = errors.to_string();
        }
    }
});
