//! From policy files to a validated Cedar policy set with Kairos metadata per policy.

use std::collections::BTreeMap;
use std::str::FromStr;

use cedar_policy::{Effect, PolicyId, Schema, ValidationMode, Validator};
use miette::Diagnostic;

use crate::error::{PolicyError, PolicyErrorKind, PolicyErrors, SourceLocation};
use crate::{CompiledPolicy, MAX_APPROVALS, PolicyEffect, PolicyLanguage, PolicySource, SCHEMA};

/// Annotations Kairos reads. Anything else is refused, so that a misspelt
/// `@approval("2")` cannot silently turn into an auto-grant.
const KNOWN_ANNOTATIONS: [&str; 4] = ["id", "approvals", "reason", "description"];

pub(crate) struct Compiled {
    pub cedar: cedar_policy::PolicySet,
    pub policies: BTreeMap<String, CompiledPolicy>,
    pub rego: Vec<crate::rego::RegoModule>,
}

pub(crate) fn compile(files: &[PolicySource]) -> Result<Compiled, PolicyErrors> {
    let mut errors = Vec::new();
    let mut cedar = cedar_policy::PolicySet::new();
    let mut policies: BTreeMap<String, CompiledPolicy> = BTreeMap::new();
    let mut rego = Vec::new();

    for file in files {
        if PolicyLanguage::of(&file.path) == PolicyLanguage::Rego {
            let Some(module) = crate::rego::compile_file(file, &mut errors) else {
                continue;
            };
            let meta = CompiledPolicy {
                id: module.name.clone(),
                location: SourceLocation::from_offset(&file.path, &file.text, 0),
                effect: PolicyEffect::Rego,
                approvals: 0,
                reason: None,
                description: None,
                text: file.text.clone(),
            };
            if let Some(first) = policies.get(&meta.id) {
                errors.push(PolicyError::at(
                    meta.location.clone(),
                    PolicyErrorKind::Invalid {
                        policy: meta.id.clone(),
                        message: format!(
                            "policy id {:?} is already used by the policy at {}: a Rego file's id is its file name, which must be unique across all policy files; rename one of them",
                            meta.id, first.location
                        ),
                    },
                ));
                continue;
            }
            policies.insert(meta.id.clone(), meta);
            rego.push(module);
            continue;
        }
        for (policy, meta) in compile_file(file, &mut errors) {
            if let Some(first) = policies.get(&meta.id) {
                errors.push(PolicyError::at(
                    meta.location.clone(),
                    PolicyErrorKind::DuplicateId {
                        id: meta.id.clone(),
                        first: first.location.clone(),
                    },
                ));
                continue;
            }
            let renamed = policy.new_id(PolicyId::new(&meta.id));
            if let Err(e) = cedar.add(renamed) {
                // Ids are unique by the check above, so this is unexpected; report it anyway.
                errors.push(PolicyError::at(
                    meta.location.clone(),
                    PolicyErrorKind::Invalid {
                        policy: meta.id.clone(),
                        message: e.to_string(),
                    },
                ));
                continue;
            }
            policies.insert(meta.id.clone(), meta);
        }
    }

    validate(&cedar, &policies, files, &mut errors);

    match PolicyErrors::from_vec(errors) {
        Some(errors) => Err(errors),
        None => Ok(Compiled {
            cedar,
            policies,
            rego,
        }),
    }
}

/// Parses one file; returns its policies (with their final ids) and records problems.
fn compile_file(
    file: &PolicySource,
    errors: &mut Vec<PolicyError>,
) -> Vec<(cedar_policy::Policy, CompiledPolicy)> {
    let parsed = match cedar_policy::PolicySet::from_str(&file.text) {
        Ok(parsed) => parsed,
        Err(parse_errors) => {
            for e in parse_errors.iter() {
                errors.push(PolicyError::at(
                    diagnostic_location(e, &file.path, &file.text),
                    PolicyErrorKind::Syntax(diagnostic_message(e)),
                ));
            }
            return Vec::new();
        }
    };

    // Cedar names the statements of a file `policy0`, `policy1`, ... in source order.
    // Put policies and templates back in that order so that each one's text can be
    // found after the previous one's, which gives its position in the file.
    enum Statement<'a> {
        Policy(&'a cedar_policy::Policy),
        Template,
    }
    let mut statements: Vec<(usize, String, Statement<'_>)> = Vec::new();
    for p in parsed.policies() {
        statements.push((
            statement_index(p.id()),
            p.to_cedar().unwrap_or_default(),
            Statement::Policy(p),
        ));
    }
    for t in parsed.templates() {
        statements.push((statement_index(t.id()), t.to_cedar(), Statement::Template));
    }
    statements.sort_by_key(|(index, _, _)| *index);

    let stem = file_stem(&file.path);
    let mut cursor = 0;
    let mut out = Vec::new();
    for (index, text, statement) in statements {
        let offset = file.text[cursor..]
            .find(&text)
            .map_or(cursor, |o| cursor + o);
        cursor = (offset + text.len()).min(file.text.len());
        let location = SourceLocation::from_offset(&file.path, &file.text, offset);
        let default_id = format!("{stem}:{index}");
        let policy = match statement {
            Statement::Template => {
                errors.push(PolicyError::at(
                    location,
                    PolicyErrorKind::Template { policy: default_id },
                ));
                continue;
            }
            Statement::Policy(policy) => policy,
        };
        let at_annotation = |name: &str| {
            let within = text.find(&format!("@{name}")).unwrap_or(0);
            SourceLocation::from_offset(&file.path, &file.text, offset + within)
        };
        let mut id = default_id;
        let mut approvals = 0;
        let mut reason = None;
        let mut description = None;
        let bad = |errors: &mut Vec<PolicyError>, name: &str, policy: &str, message: String| {
            errors.push(PolicyError::at(
                at_annotation(name),
                PolicyErrorKind::Annotation {
                    policy: policy.to_owned(),
                    message,
                },
            ));
        };
        // `@id` first, so that other problems name the policy by its final id.
        if let Some(value) = policy.annotation("id") {
            if value.trim().is_empty() || value.chars().any(char::is_control) {
                bad(
                    errors,
                    "id",
                    &id,
                    format!("@id({value:?}) must be a non-empty name without control characters"),
                );
            } else {
                id = value.to_owned();
            }
        }
        let mut ok = true;
        for (name, value) in policy.annotations() {
            match name {
                "id" => {}
                "approvals" => match parse_approvals(value) {
                    Some(_) if policy.effect() == Effect::Forbid => {
                        ok = false;
                        bad(
                            errors,
                            name,
                            &id,
                            "@approvals on a forbid policy means nothing: a forbid always denies; move it to a permit policy".to_owned(),
                        );
                    }
                    Some(n) => approvals = n,
                    None => {
                        ok = false;
                        bad(
                            errors,
                            name,
                            &id,
                            format!(
                                "@approvals({value:?}) must be a whole number from 0 to {MAX_APPROVALS}, e.g. @approvals(\"2\")"
                            ),
                        );
                    }
                },
                "reason" if value.trim().is_empty() => {
                    ok = false;
                    bad(
                        errors,
                        name,
                        &id,
                        "@reason must not be empty: it is shown to requesters".to_owned(),
                    );
                }
                "reason" => reason = Some(value.to_owned()),
                "description" => description = Some(value.to_owned()),
                other => {
                    ok = false;
                    bad(
                        errors,
                        other,
                        &id,
                        format!(
                            "unknown annotation @{other}; Kairos reads {}",
                            KNOWN_ANNOTATIONS.map(|a| format!("@{a}")).join(", ")
                        ),
                    );
                }
            }
        }
        if !ok {
            continue;
        }
        let effect = match policy.effect() {
            Effect::Permit => PolicyEffect::Permit,
            Effect::Forbid => PolicyEffect::Forbid,
        };
        out.push((
            policy.clone(),
            CompiledPolicy {
                id,
                location,
                effect,
                approvals,
                reason,
                description,
                text,
            },
        ));
    }
    out
}

/// Checks the policies against the Kairos entity model, so that a misspelt attribute
/// or a comparison of a number with a string is caught now rather than at request time.
fn validate(
    cedar: &cedar_policy::PolicySet,
    policies: &BTreeMap<String, CompiledPolicy>,
    files: &[PolicySource],
    errors: &mut Vec<PolicyError>,
) {
    let schema = match Schema::from_cedarschema_str(SCHEMA) {
        Ok((schema, _warnings)) => schema,
        Err(e) => {
            errors.push(PolicyError::nowhere(PolicyErrorKind::Schema(e.to_string())));
            return;
        }
    };
    let result = Validator::new(schema).validate(cedar, ValidationMode::Strict);
    for e in result.validation_errors() {
        let id = e.policy_id().to_string();
        let Some(meta) = policies.get(&id) else {
            continue;
        };
        // Cedar's spans index the text of the file the policy was parsed from.
        let location = files
            .iter()
            .find(|f| f.path == meta.location.file)
            .and_then(|f| {
                first_label_offset(e).map(|o| SourceLocation::from_offset(&f.path, &f.text, o))
            })
            .unwrap_or_else(|| meta.location.clone());
        errors.push(PolicyError::at(
            location,
            PolicyErrorKind::Invalid {
                policy: id,
                message: diagnostic_message(e),
            },
        ));
    }
}

fn parse_approvals(value: &str) -> Option<u32> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|n| *n <= MAX_APPROVALS)
}

fn statement_index(id: &PolicyId) -> usize {
    id.to_string()
        .strip_prefix("policy")
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX)
}

fn file_stem(path: &str) -> &str {
    let name = path.rsplit(['/', '\\']).next().unwrap_or(path);
    match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => name,
    }
}

fn first_label_offset(d: &dyn Diagnostic) -> Option<usize> {
    d.labels()?.map(|l| l.offset()).min()
}

fn diagnostic_location(d: &dyn Diagnostic, file: &str, text: &str) -> SourceLocation {
    SourceLocation::from_offset(file, text, first_label_offset(d).unwrap_or(0))
}

/// Cedar's message plus its help text, when it has some.
fn diagnostic_message(d: &dyn Diagnostic) -> String {
    let mut message = d.to_string();
    if let Some(help) = d.help() {
        message.push_str("; ");
        message.push_str(&help.to_string());
    }
    message
}
