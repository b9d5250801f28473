use std::fmt;

/// What kind of work a grant is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    Change,
    Incident,
    Maintenance,
    Job,
}

impl TaskKind {
    pub const ALL: [TaskKind; 4] = [Self::Change, Self::Incident, Self::Maintenance, Self::Job];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Change => "change",
            Self::Incident => "incident",
            Self::Maintenance => "maintenance",
            Self::Job => "job",
        }
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TaskKind {
    type Err = TaskError;
    fn from_str(s: &str) -> Result<Self, TaskError> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| TaskError::UnknownKind(s.chars().take(32).collect()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    #[error("task kind {0:?} is unknown; use one of change, incident, maintenance, job")]
    UnknownKind(String),
    #[error(
        "task reference must be 1-200 printable characters (a ticket, pipeline run or incident id)"
    )]
    BadRef,
    #[error("task reason must be 1-1000 characters: say why the access is needed")]
    BadReason,
}

/// The ticket, pipeline run or incident id a grant is for (`CHG-1234`, `run/8812`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TaskRef(String);

impl TaskRef {
    pub fn parse(s: impl Into<String>) -> Result<Self, TaskError> {
        let s = s.into();
        if s.is_empty() || s.chars().count() > 200 || s.chars().any(char::is_control) {
            return Err(TaskError::BadRef);
        }
        Ok(Self(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for TaskRef {
    type Error = TaskError;
    fn try_from(s: String) -> Result<Self, TaskError> {
        Self::parse(s)
    }
}
impl From<TaskRef> for String {
    fn from(t: TaskRef) -> String {
        t.0
    }
}
impl fmt::Display for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The task a grant is bound to: kind, reference and reason.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Task {
    pub kind: TaskKind,
    #[serde(rename = "ref")]
    pub reference: TaskRef,
    pub reason: String,
}

impl Task {
    pub fn new(kind: TaskKind, reference: TaskRef, reason: String) -> Result<Self, TaskError> {
        if reason.trim().is_empty() || reason.chars().count() > 1000 {
            return Err(TaskError::BadReason);
        }
        Ok(Self {
            kind,
            reference,
            reason,
        })
    }
}
