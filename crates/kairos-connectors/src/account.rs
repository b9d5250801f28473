use std::fmt;

/// A managed account name: the target's managed prefix plus a suffix derived from the
/// grant. Only `[a-z0-9_]`, at most 63 bytes (PostgreSQL's identifier limit), so it is
/// safe in every target even before quoting.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("account name {0:?} must be 1-63 characters of a-z, 0-9 and _")]
pub struct AccountNameError(pub String);

impl AccountName {
    pub fn parse(s: impl Into<String>) -> Result<Self, AccountNameError> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(Self(s))
        } else {
            Err(AccountNameError(s.chars().take(80).collect()))
        }
    }

    /// The account for a grant: `prefix` + the grant id's hex (e.g. `kairos_01a2…`).
    pub fn for_grant(
        prefix: &str,
        grant: &kairos_domain::GrantId,
    ) -> Result<Self, AccountNameError> {
        let hex = grant.as_str().trim_start_matches("grt_");
        Self::parse(format!("{prefix}{hex}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn has_prefix(&self, prefix: &str) -> bool {
        self.0.starts_with(prefix)
    }
}

impl fmt::Display for AccountName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(AccountName::parse("kairos_0123abc").is_ok());
        assert!(AccountName::parse("Kairos").is_err());
        assert!(AccountName::parse("a\"; drop role x; --").is_err());
        assert!(AccountName::parse("x".repeat(64)).is_err());
        let g = kairos_domain::GrantId::generate();
        let a = AccountName::for_grant("kairos_", &g).unwrap();
        assert_eq!(a.as_str().len(), 7 + 32);
        assert!(a.has_prefix("kairos_"));
    }
}
