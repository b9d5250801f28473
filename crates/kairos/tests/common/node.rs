//! npm packages the tests run under Node (the browser driver, the test IdP), installed
//! from their committed lock files into a cache outside the repository.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Copies `files` of `tests/<subdir>` into the cache dir (`$<env_var>`, default
/// `~/.cache/kairos/<cache_name>`) and runs `npm ci` there when the lock file changed or
/// `node_modules/<module>` is missing. Returns the cache dir.
pub fn node_deps(
    subdir: &str,
    env_var: &str,
    cache_name: &str,
    files: &[&str],
    module: &str,
) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(subdir);
    let dir = std::env::var_os(env_var).map_or_else(
        || {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
            PathBuf::from(home).join(".cache/kairos").join(cache_name)
        },
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::read(src.join("package-lock.json")).unwrap();
    let installed = std::fs::read(dir.join("package-lock.json")).ok();
    for file in ["package.json", "package-lock.json"].iter().chain(files) {
        std::fs::copy(src.join(file), dir.join(file)).unwrap();
    }
    if installed.as_deref() != Some(lock.as_slice())
        || !dir.join("node_modules").join(module).exists()
    {
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .expect("npm is needed for these tests (apt-get install -y npm)");
        assert!(
            out.status.success(),
            "npm ci in {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir
}
