use std::fmt;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} is {len} characters long; the limit is {max}")]
    TooLong {
        kind: &'static str,
        len: usize,
        max: usize,
    },
    #[error(
        "{kind} {value:?} contains {found:?}; use lowercase letters, digits, '-', '_' and '.'{extra}"
    )]
    BadChar {
        kind: &'static str,
        value: String,
        found: char,
        extra: &'static str,
    },
}

fn check(kind: &'static str, value: &str, allow_slash: bool) -> Result<(), NameError> {
    const MAX: usize = 128;
    if value.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if value.len() > MAX {
        return Err(NameError::TooLong {
            kind,
            len: value.len(),
            max: MAX,
        });
    }
    let ok = |c: char| {
        c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || matches!(c, '-' | '_' | '.')
            || (allow_slash && c == '/')
    };
    if let Some(found) = value.chars().find(|c| !ok(*c)) {
        return Err(NameError::BadChar {
            kind,
            value: value.chars().take(64).collect(),
            found,
            extra: if allow_slash {
                " (and one '/' between target and role)"
            } else {
                ""
            },
        });
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty(String);

        impl $ty {
            pub fn parse(value: impl Into<String>) -> Result<Self, NameError> {
                let value = value.into();
                check($kind, &value, false)?;
                Ok(Self(value))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $ty {
            type Error = NameError;
            fn try_from(value: String) -> Result<Self, NameError> {
                Self::parse(value)
            }
        }
        impl From<$ty> for String {
            fn from(value: $ty) -> String {
                value.0
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::str::FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::parse(s)
            }
        }
    };
}

name_type!(
    /// A registered non-human identity (`nightly-backup`).
    IdentityName,
    "identity name"
);
name_type!(
    /// A team that owns identities and targets and approves requests.
    TeamName,
    "team name"
);
name_type!(
    /// A downstream system that honours credentials (`orders-api`, `orders-db`).
    TargetName,
    "target name"
);
name_type!(
    /// A person with an API token (operator, approver, auditor, admin).
    UserName,
    "user name"
);
name_type!(
    /// A standing exception: a registered static secret that cannot be removed yet
    /// (`legacy-billing`).
    ExceptionName,
    "exception name"
);

/// `target/role`, e.g. `orders-api/read`.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct EntitlementName(String);

impl EntitlementName {
    pub fn parse(value: impl Into<String>) -> Result<Self, NameError> {
        let value = value.into();
        check("entitlement name", &value, true)?;
        let mut parts = value.split('/');
        let target = parts.next().unwrap_or_default();
        let role = parts.next().unwrap_or_default();
        if target.is_empty() || role.is_empty() || parts.next().is_some() {
            return Err(NameError::BadChar {
                kind: "entitlement name",
                value: value.chars().take(64).collect(),
                found: '/',
                extra: "; write it as `target/role`, e.g. `orders-api/read`",
            });
        }
        Ok(Self(value))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The target half of `target/role`.
    pub fn target(&self) -> &str {
        self.0.split('/').next().unwrap_or_default()
    }
    /// The role half of `target/role`.
    pub fn role(&self) -> &str {
        self.0.split('/').nth(1).unwrap_or_default()
    }
}
impl TryFrom<String> for EntitlementName {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, NameError> {
        Self::parse(value)
    }
}
impl From<EntitlementName> for String {
    fn from(value: EntitlementName) -> String {
        value.0
    }
}
impl fmt::Display for EntitlementName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::str::FromStr for EntitlementName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_entitlement(input: &str, ok: bool) {
        assert_eq!(EntitlementName::parse(input).is_ok(), ok, "{input}");
    }

    #[test]
    fn entitlement_names() {
        check_entitlement("orders-api/read", true);
        check_entitlement("orders-api", false);
        check_entitlement("/read", false);
        check_entitlement("a/b/c", false);
        check_entitlement("Orders/read", false);
        check_entitlement("a/b'; drop", false);
        let e = EntitlementName::parse("orders-db/readonly").unwrap();
        assert_eq!((e.target(), e.role()), ("orders-db", "readonly"));
    }

    #[test]
    fn identity_names() {
        assert!(IdentityName::parse("nightly-backup").is_ok());
        assert!(IdentityName::parse("").is_err());
        assert!(IdentityName::parse("x".repeat(200)).is_err());
        assert!(IdentityName::parse("a b").is_err());
    }
}
