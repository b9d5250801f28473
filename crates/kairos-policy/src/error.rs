use std::fmt;

/// A place in a policy file: 1-based line and column (columns count characters).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceLocation {
    pub file: String,
    pub line: u32,
    pub column: u32,
}

impl SourceLocation {
    /// The location of byte `offset` in `text`. Offsets past the end or inside a
    /// character are clamped to the nearest preceding character boundary.
    pub fn from_offset(file: &str, text: &str, offset: usize) -> Self {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Self {
            file: file.to_owned(),
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        }
    }
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One problem with the policies, or with evaluating a request against them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    /// Where the problem is, when it is in a policy file.
    pub location: Option<SourceLocation>,
    pub kind: PolicyErrorKind,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(at) => write!(f, "{at}: {}", self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

impl PolicyError {
    pub(crate) fn at(location: SourceLocation, kind: PolicyErrorKind) -> Self {
        Self {
            location: Some(location),
            kind,
        }
    }
    pub(crate) fn nowhere(kind: PolicyErrorKind) -> Self {
        Self {
            location: None,
            kind,
        }
    }
}

/// What is wrong. `Display` does not repeat the location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyErrorKind {
    /// Cedar could not parse the file.
    #[error("{0}")]
    Syntax(String),
    /// The policy parses but does not fit the Kairos entity model (a misspelt
    /// attribute, an unknown entity type or action, a type mismatch).
    #[error("policy {policy}: {message}")]
    Invalid { policy: String, message: String },
    #[error(
        "policy id {id:?} is already used by the policy at {first}; policy ids must be unique across all policy files: give one of them a different @id(\"...\")"
    )]
    DuplicateId { id: String, first: SourceLocation },
    #[error("policy {policy}: {message}")]
    Annotation { policy: String, message: String },
    #[error(
        "policy {policy} is a template (it uses ?principal or ?resource); Kairos does not link templates: name the principal or resource, or drop the constraint"
    )]
    Template { policy: String },
    /// The request could not be turned into Cedar entities (should not happen with
    /// validated names).
    #[error("cannot evaluate the request: {0}")]
    Request(String),
    /// The built-in schema does not parse: a bug in Kairos, caught by its tests.
    #[error("internal error: the Kairos entity schema does not parse: {0}")]
    Schema(String),
}

/// All the problems found while compiling policies; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors(Vec<PolicyError>);

impl PolicyErrors {
    /// `None` when there is nothing to report.
    pub(crate) fn from_vec(mut errors: Vec<PolicyError>) -> Option<Self> {
        if errors.is_empty() {
            return None;
        }
        errors.sort_by(|a, b| a.location.cmp(&b.location));
        Some(Self(errors))
    }
    pub fn iter(&self) -> std::slice::Iter<'_, PolicyError> {
        self.0.iter()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Always false: there is at least one error. Present for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn into_vec(self) -> Vec<PolicyError> {
        self.0
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl IntoIterator for PolicyErrors {
    type Item = PolicyError;
    type IntoIter = std::vec::IntoIter<PolicyError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a PolicyErrors {
    type Item = &'a PolicyError;
    type IntoIter = std::slice::Iter<'a, PolicyError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}
