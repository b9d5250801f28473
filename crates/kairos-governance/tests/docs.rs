//! ARCHITECTURE.md's mapping tables say what the code maps: every alert kind and every
//! posture finding has its row, with the same OWASP NHI risk and NIST CSF subcategories.
#![allow(clippy::unwrap_used, clippy::panic)]

use kairos_governance::AlertKind;
use kairos_governance::RiskMapping;
use kairos_governance::posture::finding_mappings;

fn doc() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../ARCHITECTURE.md"
    ))
    .unwrap()
}

fn check_row(doc: &str, id: &str, m: &RiskMapping) {
    let prefix = format!("| `{id}` | {} {} |", m.nhi.id(), m.nhi.title());
    let row = doc
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("ARCHITECTURE.md has no row starting {prefix:?}"));
    let csf_cell = row.split('|').nth(3).unwrap().trim();
    let documented: Vec<&str> = csf_cell.split(", ").collect();
    let code: Vec<&str> = m.csf.iter().map(|c| c.id()).collect();
    assert_eq!(documented, code, "row {id}: CSF subcategories differ");
    assert!(
        row.contains(m.why),
        "row {id}: the why differs from the code's"
    );
}

#[test]
fn the_docs_mapping_tables_match_the_code() {
    let doc = doc();
    for kind in AlertKind::ALL {
        check_row(&doc, kind.as_str(), &kind.mapping());
    }
    for (id, m) in finding_mappings() {
        check_row(&doc, id, &m);
    }
}
