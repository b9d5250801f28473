//! `kairos apply`: read the configuration bundle from disk, check it, and build the body
//! of `POST /v1/config/apply`.

use std::path::Path;

use kairos_config::{Catalog, ConfigBundle, ConfigErrors};
use serde_json::{Value, json};

/// The request body, or the local problem to show (exit 2). The server validates the
/// bundle again; checking here first reports every problem without a round trip, and
/// before anything is sent.
pub fn read(path: &Path) -> Result<Value, String> {
    let bundle = ConfigBundle::read_from_disk(path).map_err(|e| e.to_string())?;
    Catalog::from_bundle(&bundle).map_err(|e| describe(&e))?;
    Ok(json!({ "main_path": bundle.main_path, "files": bundle.files }))
}

fn describe(errors: &ConfigErrors) -> String {
    if errors.len() == 1 {
        return errors.to_string();
    }
    let mut out = format!("the configuration has {} problems:", errors.len());
    for e in errors {
        out.push_str("\n  ");
        out.push_str(&e.to_string());
    }
    out
}
