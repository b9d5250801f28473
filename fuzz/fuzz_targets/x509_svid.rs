//! The X.509-SVID path a TLS client's certificate takes (`kairos_crypto::spiffe`): the
//! leaf's facts from arbitrary DER, the SPIFFE rules on them, a full verification against a
//! trust domain whose bundle is the same bytes as a PEM/JSON bundle when it parses, and
//! SPIFFE ID parsing of the input as text. Must never panic; an ID that parses prints back
//! as the same text.
#![no_main]

use kairos_crypto::spiffe::{
    self, CertificateDer, SpiffeId, SvidVerifier, TrustBundle, leaf_facts, svid_rules,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = 1_800_000_000;
    if let Ok(facts) = leaf_facts(data) {
        let _ = svid_rules(&facts, now);
        let _ = spiffe::claims_spiffe_id(&facts);
        let _ = spiffe::check_validity(&facts, now);
    }
    let text = String::from_utf8_lossy(data);
    if let Ok(id) = SpiffeId::parse(&text) {
        assert_eq!(id.to_string(), text);
    }
    let bundle = TrustBundle::parse(&text).ok();
    let domains: Vec<(&str, &TrustBundle)> = bundle.iter().map(|b| ("td.example", b)).collect();
    if let Ok(verifier) = SvidVerifier::new(domains) {
        let chain = [CertificateDer::from(data)];
        let _ = verifier.verify(&chain, now);
    }
    let _ = spiffe::x5t_s256(data);
});
