//! What each finding addresses in two frameworks auditors read: the OWASP Non-Human
//! Identities Top 10 (2025) and the NIST Cybersecurity Framework 2.0.
//!
//! The table here is the single source: the posture report and the docs' mapping table
//! (ARCHITECTURE.md, "Governance") are written from it.

use std::fmt;

use crate::alert::AlertKind;

/// A risk of the OWASP Non-Human Identities Top 10 (2025).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NhiRisk {
    /// NHI1:2025 Improper Offboarding.
    ImproperOffboarding,
    /// NHI2:2025 Secret Leakage.
    SecretLeakage,
    /// NHI3:2025 Vulnerable Third-Party NHI.
    VulnerableThirdParty,
    /// NHI4:2025 Insecure Authentication.
    InsecureAuthentication,
    /// NHI5:2025 Overprivileged NHI.
    Overprivileged,
    /// NHI6:2025 Insecure Cloud Deployment Configurations.
    InsecureCloudDeployment,
    /// NHI7:2025 Long-Lived Secrets.
    LongLivedSecrets,
    /// NHI8:2025 Environment Isolation.
    EnvironmentIsolation,
    /// NHI9:2025 NHI Reuse.
    Reuse,
    /// NHI10:2025 Human Use of NHI.
    HumanUse,
}

impl NhiRisk {
    pub const ALL: [NhiRisk; 10] = [
        Self::ImproperOffboarding,
        Self::SecretLeakage,
        Self::VulnerableThirdParty,
        Self::InsecureAuthentication,
        Self::Overprivileged,
        Self::InsecureCloudDeployment,
        Self::LongLivedSecrets,
        Self::EnvironmentIsolation,
        Self::Reuse,
        Self::HumanUse,
    ];
    /// `NHI1` … `NHI10`.
    pub fn id(self) -> &'static str {
        match self {
            Self::ImproperOffboarding => "NHI1",
            Self::SecretLeakage => "NHI2",
            Self::VulnerableThirdParty => "NHI3",
            Self::InsecureAuthentication => "NHI4",
            Self::Overprivileged => "NHI5",
            Self::InsecureCloudDeployment => "NHI6",
            Self::LongLivedSecrets => "NHI7",
            Self::EnvironmentIsolation => "NHI8",
            Self::Reuse => "NHI9",
            Self::HumanUse => "NHI10",
        }
    }
    pub fn title(self) -> &'static str {
        match self {
            Self::ImproperOffboarding => "Improper Offboarding",
            Self::SecretLeakage => "Secret Leakage",
            Self::VulnerableThirdParty => "Vulnerable Third-Party NHI",
            Self::InsecureAuthentication => "Insecure Authentication",
            Self::Overprivileged => "Overprivileged NHI",
            Self::InsecureCloudDeployment => "Insecure Cloud Deployment Configurations",
            Self::LongLivedSecrets => "Long-Lived Secrets",
            Self::EnvironmentIsolation => "Environment Isolation",
            Self::Reuse => "NHI Reuse",
            Self::HumanUse => "Human Use of NHI",
        }
    }
}

impl fmt::Display for NhiRisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:2025 {}", self.id(), self.title())
    }
}

/// A NIST CSF 2.0 subcategory, by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CsfSubcategory(pub &'static str);

impl CsfSubcategory {
    /// Roles, responsibilities and authorities are established and enforced.
    pub const GV_RR_02: Self = Self("GV.RR-02");
    /// Changes and exceptions are managed, assessed for risk impact, recorded, tracked.
    pub const ID_RA_07: Self = Self("ID.RA-07");
    /// Improvements are identified from the execution of operational processes.
    pub const ID_IM_03: Self = Self("ID.IM-03");
    /// Identities and credentials of users, services and hardware are managed.
    pub const PR_AA_01: Self = Self("PR.AA-01");
    /// Identities are proofed and bound to credentials by the context of interactions.
    pub const PR_AA_02: Self = Self("PR.AA-02");
    /// Users, services and hardware are authenticated.
    pub const PR_AA_03: Self = Self("PR.AA-03");
    /// Identity assertions are protected, conveyed and verified.
    pub const PR_AA_04: Self = Self("PR.AA-04");
    /// Access permissions are defined in policy, managed, enforced and reviewed, with
    /// least privilege and separation of duties.
    pub const PR_AA_05: Self = Self("PR.AA-05");
    /// Networks and network services are monitored for adverse events.
    pub const DE_CM_01: Self = Self("DE.CM-01");
    /// Personnel activity and technology usage are monitored for adverse events.
    pub const DE_CM_03: Self = Self("DE.CM-03");
    /// Computing hardware, software, runtime environments and their data are monitored.
    pub const DE_CM_09: Self = Self("DE.CM-09");
    /// Potentially adverse events are analysed to understand them.
    pub const DE_AE_02: Self = Self("DE.AE-02");
    /// The incident response plan is executed once an incident is declared.
    pub const RS_MA_01: Self = Self("RS.MA-01");
    /// Incidents are contained.
    pub const RS_MI_01: Self = Self("RS.MI-01");

    pub fn id(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for CsfSubcategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Where a finding sits in both frameworks, and why, in one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RiskMapping {
    pub nhi: NhiRisk,
    pub csf: &'static [CsfSubcategory],
    pub why: &'static str,
}

pub(crate) fn for_alert(kind: AlertKind) -> RiskMapping {
    use CsfSubcategory as C;
    use NhiRisk as N;
    let (nhi, csf, why): (NhiRisk, &'static [CsfSubcategory], &'static str) = match kind {
        AlertKind::Orphaned => (
            N::ImproperOffboarding,
            &[C::GV_RR_02, C::PR_AA_01],
            "an identity nobody answers for outlives its owners: nobody offboards it",
        ),
        AlertKind::RecertOverdue => (
            N::ImproperOffboarding,
            &[C::PR_AA_01, C::PR_AA_05],
            "access not re-attested on time may no longer be needed",
        ),
        AlertKind::BreakGlass => (
            N::Overprivileged,
            &[C::PR_AA_05, C::RS_MA_01],
            "emergency access skips the usual approvals and must be loud",
        ),
        AlertKind::ReviewOverdue => (
            N::Overprivileged,
            &[C::ID_IM_03, C::PR_AA_05],
            "an emergency use nobody reviewed teaches nothing and may hide misuse",
        ),
        AlertKind::ExceptionRotationOverdue => (
            N::LongLivedSecrets,
            &[C::ID_RA_07, C::PR_AA_01],
            "a static secret past its rotation date has lived longer than accepted",
        ),
        AlertKind::ExceptionExpired => (
            N::LongLivedSecrets,
            &[C::ID_RA_07],
            "a standing exception past its end date is standing privilege nobody accepted",
        ),
        AlertKind::UseAfterEnd => (
            N::SecretLeakage,
            &[C::DE_CM_03, C::DE_AE_02, C::PR_AA_04],
            "a credential presented after its end was kept or copied",
        ),
        AlertKind::UnexpectedSource => (
            N::EnvironmentIsolation,
            &[C::DE_CM_01, C::PR_AA_03],
            "an identity used from where it does not run may be stolen or misrouted",
        ),
        AlertKind::SharedIdentity => (
            N::Reuse,
            &[C::DE_CM_03, C::PR_AA_02],
            "one identity used by many workloads cannot be attributed or scoped",
        ),
        AlertKind::DormantIdentity => (
            N::ImproperOffboarding,
            &[C::PR_AA_01, C::DE_CM_03],
            "an identity nobody uses is attack surface without a purpose",
        ),
        AlertKind::HeldPastUse => (
            N::Overprivileged,
            &[C::PR_AA_05, C::DE_CM_03],
            "access held after its task is done is standing privilege",
        ),
        AlertKind::IdentitySuspended => (
            N::ImproperOffboarding,
            &[C::PR_AA_01, C::RS_MI_01],
            "a suspended identity's access was ended and its requests are refused",
        ),
    };
    RiskMapping { nhi, csf, why }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_the_published_ones() {
        let ids: Vec<_> = NhiRisk::ALL.iter().map(|r| r.id()).collect();
        assert_eq!(
            ids,
            [
                "NHI1", "NHI2", "NHI3", "NHI4", "NHI5", "NHI6", "NHI7", "NHI8", "NHI9", "NHI10"
            ]
        );
        assert_eq!(
            NhiRisk::ImproperOffboarding.to_string(),
            "NHI1:2025 Improper Offboarding"
        );
        for m in AlertKind::ALL.map(AlertKind::mapping) {
            for c in m.csf {
                let (function, rest) = c.id().split_once('.').unwrap();
                assert!(
                    ["GV", "ID", "PR", "DE", "RS", "RC"].contains(&function),
                    "{c}"
                );
                assert!(rest.contains('-'), "{c}");
            }
        }
    }
}
