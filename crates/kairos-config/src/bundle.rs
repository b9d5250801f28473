//! The catalog's files as one value, and the only code that reads them from disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::ConfigError;
use crate::tree::{self, Node, Value};

/// The main catalog file and every file it references (JWKS files, trust bundles, policy
/// files), keyed by path relative to the main file's directory. The CLI reads it from disk and ships
/// it to the server, which validates it with [`crate::Catalog::from_bundle`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConfigBundle {
    /// Key of the main file in `files`, e.g. `kairos.toml`.
    pub main_path: String,
    pub files: BTreeMap<String, String>,
}

impl ConfigBundle {
    /// Reads the main file at `path`, then the `jwks_file`s and the files matched by the
    /// `[policy] files` globs it names. A missing file or a glob that matches nothing is
    /// an error naming the key that refers to it. Problems *inside* the files are left
    /// for [`crate::Catalog::from_bundle`], which reports them all at once.
    pub fn read_from_disk(path: impl AsRef<Path>) -> Result<ConfigBundle, ConfigError> {
        let path = path.as_ref();
        let main_path = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let base = path.parent().unwrap_or(Path::new(""));
        let text = read(path, &main_path, None)?;
        let mut files = BTreeMap::new();

        // A main file that does not parse still makes a bundle: the syntax error is
        // reported by `from_bundle` like every other problem.
        if let Ok(root) = tree::parse(&text) {
            let at = |node: &Node, key: String| Location {
                file: main_path.clone(),
                line: line_of(&text, node.span.start),
                key,
            };
            for (i, issuer) in array(&root, "issuer").iter().enumerate() {
                if let Some((file, node)) = string_at(issuer, "jwks_file") {
                    let where_ = at(node, format!("issuer[{i}].jwks_file"));
                    let contents = read(&fs_path(base, file), file, Some(&where_))?;
                    files.insert(normalize(file), contents);
                }
            }
            for (i, td) in array(&root, "trust_domain").iter().enumerate() {
                if let Some((file, node)) = string_at(td, "bundle_file") {
                    let where_ = at(node, format!("trust_domain[{i}].bundle_file"));
                    let contents = read(&fs_path(base, file), file, Some(&where_))?;
                    files.insert(normalize(file), contents);
                }
            }
            if let Some(policy) = get(&root, "policy")
                && let Some(Value::Array(globs)) = get(policy, "files").map(|n| &n.value)
            {
                for (i, node) in globs.iter().enumerate() {
                    let Value::String(pattern) = &node.value else {
                        continue;
                    };
                    let where_ = at(node, format!("policy.files[{i}]"));
                    for (key, file) in glob_files(base, pattern, &where_)? {
                        let contents = read(&file, &key, Some(&where_))?;
                        files.insert(key, contents);
                    }
                }
            }
        }
        files.insert(main_path.clone(), text);
        Ok(ConfigBundle { main_path, files })
    }
}

/// Where a reference to another file was written.
struct Location {
    file: String,
    line: u32,
    key: String,
}

impl Location {
    fn error(&self, message: String) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: Some(self.line),
            column: None,
            key: Some(self.key.clone()),
            message,
        }
    }
}

fn read(path: &Path, shown: &str, referenced_at: Option<&Location>) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| {
        let message = format!("cannot read {shown:?} ({}): {e}", path.display());
        match referenced_at {
            Some(at) => at.error(message),
            None => ConfigError {
                file: shown.to_owned(),
                line: None,
                column: None,
                key: None,
                message,
            },
        }
    })
}

/// The files a glob matches, as (bundle key, disk path), sorted.
fn glob_files(
    base: &Path,
    pattern: &str,
    at: &Location,
) -> Result<Vec<(String, PathBuf)>, ConfigError> {
    let escaped_base = glob::Pattern::escape(&base.to_string_lossy());
    // An absolute pattern is used as written, and so are the keys of what it matches (the
    // catalog matches the pattern against them as written); a relative one is relative to
    // the config file's directory, and so are its keys.
    let absolute = Path::new(pattern).is_absolute();
    let full = if base.as_os_str().is_empty() || absolute {
        pattern.to_owned()
    } else {
        format!("{escaped_base}/{pattern}")
    };
    let paths =
        glob::glob(&full).map_err(|e| at.error(format!("{pattern:?} is not a valid glob: {e}")))?;
    let mut found = Vec::new();
    for entry in paths {
        let path = entry
            .map_err(|e| at.error(format!("cannot read {}: {}", e.path().display(), e.error())))?;
        if !path.is_file() {
            continue;
        }
        let relative = if absolute {
            &path
        } else {
            path.strip_prefix(base).unwrap_or(&path)
        };
        let key = normalize(&relative.to_string_lossy().replace('\\', "/"));
        found.push((key, path));
    }
    if found.is_empty() {
        return Err(at.error(format!(
            "glob {pattern:?} matches no file (looked in {})",
            if base.as_os_str().is_empty() {
                ".".to_owned()
            } else {
                base.display().to_string()
            }
        )));
    }
    found.sort();
    Ok(found)
}

fn fs_path(base: &Path, file: &str) -> PathBuf {
    if base.as_os_str().is_empty() {
        PathBuf::from(file)
    } else {
        base.join(file)
    }
}

/// `./a/../b//c` → `b/c`. Leading `..` and a leading `/` are kept.
pub(crate) fn normalize(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            ".." if absolute => {}
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    if absolute {
        format!("/{joined}")
    } else {
        joined
    }
}

/// The bundle key of `reference`, written in the main file at `main_path`.
pub(crate) fn resolve(main_path: &str, reference: &str) -> String {
    match main_path.rsplit_once('/') {
        Some((dir, _)) if !reference.starts_with('/') => normalize(&format!("{dir}/{reference}")),
        _ => normalize(reference),
    }
}

pub(crate) fn line_of(text: &str, offset: usize) -> u32 {
    let offset = offset.min(text.len());
    let newlines = text.as_bytes()[..offset]
        .iter()
        .filter(|b| **b == b'\n')
        .count();
    u32::try_from(newlines + 1).unwrap_or(u32::MAX)
}

fn get<'a>(node: &'a Node, key: &str) -> Option<&'a Node> {
    match &node.value {
        Value::Table(entries) => entries.iter().find(|e| e.key == key).map(|e| &e.node),
        _ => None,
    }
}

fn array<'a>(node: &'a Node, key: &str) -> &'a [Node] {
    match get(node, key).map(|n| &n.value) {
        Some(Value::Array(items)) => items,
        _ => &[],
    }
}

fn string_at<'a>(node: &'a Node, key: &str) -> Option<(&'a str, &'a Node)> {
    let found = get(node, key)?;
    match &found.value {
        Value::String(s) => Some((s, found)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalize_and_resolve() {
        assert_eq!(normalize("./a/../b//c"), "b/c");
        assert_eq!(normalize("../p/x.cedar"), "../p/x.cedar");
        assert_eq!(normalize("/etc/./k"), "/etc/k");
        assert_eq!(resolve("kairos.toml", "./jwks.json"), "jwks.json");
        assert_eq!(resolve("conf/kairos.toml", "jwks.json"), "conf/jwks.json");
        assert_eq!(resolve("conf/kairos.toml", "../x"), "x");
        assert_eq!(line_of("a\nb\nc", 2), 2);
    }
}
