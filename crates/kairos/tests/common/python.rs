//! Python packages the tests run as clients written by others (the Standard Webhooks
//! library, PyJWT, the MCP SDK), each set in its own venv under `~/.cache/kairos`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The python of the venv `~/.cache/kairos/<venv>`, made and filled with `requirements`
/// the first time, or whenever `check` (a Python snippet that imports what the test needs)
/// fails in it.
pub fn venv_python(venv: &str, requirements: &[&str], check: &str) -> PathBuf {
    let home = std::env::var("HOME").unwrap();
    let venv = Path::new(&home).join(".cache/kairos").join(venv);
    let py = venv.join("bin/python");
    let ok = |py: &Path| {
        Command::new(py)
            .args(["-c", check])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ok(&py) {
        let s = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap();
        assert!(s.success(), "python3 -m venv failed");
        let s = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(requirements)
            .status()
            .unwrap();
        assert!(s.success(), "pip install {requirements:?} failed");
    }
    py
}
