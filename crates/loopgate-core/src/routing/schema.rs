//! The Cedar schema loopgate generates from what systems declare, and
//! validation of a policy set against it.
//!
//! A system may declare its actions with the types of their context
//! attributes, and the types of its subjects' attributes. The schema has
//! `System` and `Subject` entity types and one action per declared action,
//! whose context holds the declared attributes (all optional: policies guard
//! with `has`) plus what loopgate adds (`confidence`, `risk_tier`,
//! `oversight`, and optional `model_version`). Policies are type-checked with Cedar's
//! strict validator; a policy that names an action no system declares
//! cannot be checked and gets a warning instead.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use cedar_policy::{ActionConstraint, Policy, PolicySet, Schema, ValidationMode, Validator};
use serde::{Deserialize, Serialize};

use super::{Policies, located_message};

/// The type of a context or subject attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttrType {
    /// A whole number (amounts in minor units).
    Long,
    /// Text.
    String,
    /// `true` or `false`.
    Bool,
    /// A number with a fraction (4 places), Cedar's `decimal`.
    #[serde(rename = "decimal")]
    Decimal,
    /// A set of texts.
    #[serde(rename = "Set<String>")]
    Strings,
    /// A set of whole numbers.
    #[serde(rename = "Set<Long>")]
    Longs,
}

impl AttrType {
    /// The Cedar type's name.
    pub fn cedar(self) -> &'static str {
        match self {
            AttrType::Long => "Long",
            AttrType::String => "String",
            AttrType::Bool => "Bool",
            AttrType::Decimal => "decimal",
            AttrType::Strings => "Set<String>",
            AttrType::Longs => "Set<Long>",
        }
    }

    /// What a value of this type is, in words.
    pub(crate) fn described(self) -> &'static str {
        match self {
            AttrType::Long => "a whole number (Long)",
            AttrType::String => "text (String)",
            AttrType::Bool => "true or false (Bool)",
            AttrType::Decimal => "a number of at most 4 fractional digits (decimal)",
            AttrType::Strings => "a list of texts (Set<String>)",
            AttrType::Longs => "a list of whole numbers (Set<Long>)",
        }
    }
}

/// A declared attribute: its type, and whether every proposal must carry it.
///
/// Written as the type alone (`"Long"`: optional) or as
/// `{"type": "Long", "required": true}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "DeclaredWire", into = "DeclaredWire")]
pub struct Declared {
    /// The type.
    pub kind: AttrType,
    /// Proposals without it are refused; policies may use it without `has`.
    pub required: bool,
}

impl From<AttrType> for Declared {
    fn from(kind: AttrType) -> Declared {
        Declared {
            kind,
            required: false,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum DeclaredWire {
    Type(AttrType),
    Full {
        #[serde(rename = "type")]
        kind: AttrType,
        #[serde(default)]
        required: bool,
    },
}

impl From<DeclaredWire> for Declared {
    fn from(wire: DeclaredWire) -> Declared {
        match wire {
            DeclaredWire::Type(kind) => Declared::from(kind),
            DeclaredWire::Full { kind, required } => Declared { kind, required },
        }
    }
}

impl From<Declared> for DeclaredWire {
    fn from(declared: Declared) -> DeclaredWire {
        match declared.required {
            false => DeclaredWire::Type(declared.kind),
            true => DeclaredWire::Full {
                kind: declared.kind,
                required: true,
            },
        }
    }
}

/// What a system declares about its proposals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shape {
    /// Actions and the types of their context attributes.
    #[serde(default)]
    pub actions: BTreeMap<String, ActionShape>,
    /// Types of the subject attributes.
    #[serde(default)]
    pub subject_attributes: BTreeMap<String, Declared>,
    /// Refuse this system's proposals for actions it does not declare
    /// (the server's `require_shapes` applies to every system).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_shapes: bool,
}

/// One declared action.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionShape {
    /// Context attribute types.
    #[serde(default)]
    pub context: BTreeMap<String, Declared>,
}

/// The generated schema: its text, Cedar's parse of it, and the notes made
/// while merging what systems declared.
#[derive(Debug, Clone)]
pub struct GeneratedSchema {
    /// Cedar schema syntax.
    pub text: String,
    /// The actions it declares.
    pub actions: BTreeSet<String>,
    /// The context attributes each declared action types.
    pub context_attributes: BTreeMap<String, BTreeSet<String>>,
    /// The subject attributes some system types.
    pub subject_attributes: BTreeSet<String>,
    /// Conflicts left out (two systems declaring one attribute differently).
    pub notes: Vec<String>,
    schema: Option<Schema>,
}

/// A problem the validator found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    /// The policy id.
    pub policy: String,
    /// What is wrong, with the line and column.
    pub message: String,
}

/// Validation of a policy set: errors refuse a publish, warnings do not.
#[derive(Debug, Clone, Default)]
pub struct Validation {
    /// Type errors, unknown attributes, unknown entity types.
    pub errors: Vec<Finding>,
    /// Impossible policies, policies that could not be checked.
    pub warnings: Vec<Finding>,
}

/// A system's stored declaration, read in place (no copy of the JSON); an
/// error names the system.
pub fn read_declaration(system: &str, value: &serde_json::Value) -> Result<Shape, String> {
    Shape::deserialize(value)
        .map_err(|e| format!("system `{system}`: its shape does not read: {e}"))
}

/// The schema of every system's stored declaration (`(system id, shape)`,
/// `None` for a system that declares nothing); an error names a system
/// whose declaration does not read.
pub fn schema_of<'a>(
    declarations: impl IntoIterator<Item = (&'a str, Option<&'a serde_json::Value>)>,
) -> Result<GeneratedSchema, String> {
    let mut shapes = Vec::new();
    for (system, value) in declarations {
        if let Some(value) = value {
            shapes.push(read_declaration(system, value)?);
        }
    }
    Ok(generate(&shapes))
}

/// Generates the schema from the systems' declarations. An attribute is
/// required in the schema only when every declaration of it says so.
pub fn generate<'a>(shapes: impl IntoIterator<Item = &'a Shape>) -> GeneratedSchema {
    let mut notes = Vec::new();
    let mut contexts: BTreeMap<&str, BTreeMap<&str, Declared>> = BTreeMap::new();
    let mut subject: BTreeMap<&str, Declared> = BTreeMap::new();
    let mut conflicts: BTreeSet<(String, String)> = BTreeSet::new();
    for shape in shapes {
        for (action, declared) in &shape.actions {
            let context = contexts.entry(action).or_default();
            for (name, kind) in &declared.context {
                merge(context, name, *kind, || {
                    conflicts.insert((format!("action `{action}`"), name.clone()));
                });
            }
        }
        for (name, kind) in &shape.subject_attributes {
            merge(&mut subject, name, *kind, || {
                conflicts.insert(("subject attributes".to_owned(), name.clone()));
            });
        }
    }
    for (place, name) in &conflicts {
        notes.push(format!(
            "{place}: systems declare `{name}` with different types; it is left out of the schema"
        ));
        if place == "subject attributes" {
            subject.remove(name.as_str());
        } else {
            for context in contexts.values_mut() {
                context.remove(name.as_str());
            }
        }
    }

    let mut text = String::from(
        "// Generated by loopgate from the systems' declarations. Do not edit.\n\
         entity System = { \"oversight\": String, \"risk_tier\": String };\n",
    );
    let _ = writeln!(
        text,
        "entity Subject = {{ \"attributes\": {}, \"type\": String }};",
        record(&subject)
    );
    for (action, context) in &contexts {
        let mut context: BTreeMap<&str, Declared> = context.clone();
        // `confidence` is declared present so that policies may compare it
        // without `has`; a proposal without one makes such a policy an
        // evaluation error, which counts the most restrictive way it can.
        let ours = [
            ("confidence", AttrType::Decimal),
            ("oversight", AttrType::String),
            ("risk_tier", AttrType::String),
        ];
        for (name, kind) in ours {
            context.insert(
                name,
                Declared {
                    kind,
                    required: true,
                },
            );
        }
        context.insert("model_version", Declared::from(AttrType::String));
        let _ = writeln!(
            text,
            "action {} appliesTo {{\n  principal: [System],\n  resource: [Subject],\n  context: {}\n}};",
            quote(action),
            record(&context)
        );
    }
    let schema = Schema::from_cedarschema_str(&text)
        .map(|(schema, _warnings)| schema)
        .map_err(|error| notes.push(format!("the generated schema does not parse: {error}")))
        .ok();
    GeneratedSchema {
        text,
        actions: contexts.keys().map(|it| (*it).to_owned()).collect(),
        context_attributes: contexts
            .iter()
            .map(|(action, context)| {
                let names = context.keys().map(|it| (*it).to_owned()).collect();
                ((*action).to_owned(), names)
            })
            .collect(),
        subject_attributes: subject.keys().map(|it| (*it).to_owned()).collect(),
        notes,
        schema,
    }
}

fn merge<'a>(
    into: &mut BTreeMap<&'a str, Declared>,
    name: &'a str,
    declared: Declared,
    mut conflict: impl FnMut(),
) {
    match into.get_mut(name) {
        Some(existing) if existing.kind != declared.kind => conflict(),
        Some(existing) => existing.required &= declared.required,
        None => {
            into.insert(name, declared);
        }
    }
}

/// A record type; attributes not required are optional (`name?: Type`).
fn record(fields: &BTreeMap<&str, Declared>) -> String {
    if fields.is_empty() {
        return "{}".to_owned();
    }
    let fields: Vec<String> = fields
        .iter()
        .map(|(name, declared)| {
            let optional = if declared.required { "" } else { "?" };
            format!("{}{optional}: {}", quote(name), declared.kind.cedar())
        })
        .collect();
    format!("{{ {} }}", fields.join(", "))
}

/// A Cedar string literal (JSON escapes are Cedar escapes for these names).
fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| String::from("\"\""))
}

impl GeneratedSchema {
    /// Validates `policies`: the policies it can check with Cedar's strict
    /// validator, a warning for each that names an action it does not know.
    pub fn validate(&self, policies: &Policies) -> Validation {
        let mut validation = Validation::default();
        let Some(schema) = &self.schema else {
            return validation;
        };
        if self.actions.is_empty() {
            return validation;
        }
        let mut checked = PolicySet::new();
        for policy in policies.set.policies() {
            let unknown = self.unknown_actions(policy);
            if unknown.is_empty() {
                let _ = checked.add(policy.clone());
            } else {
                validation.warnings.push(Finding {
                    policy: policy.id().to_string(),
                    message: format!(
                        "not type-checked: no system declares action {}",
                        unknown
                            .iter()
                            .map(|it| format!("`{it}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        }
        let result = Validator::new(schema.clone()).validate(&checked, ValidationMode::Strict);
        let finding = |policy: String, message: String| {
            let prefix = format!("for policy `{policy}`, ");
            let message = message
                .strip_prefix(&prefix)
                .map_or(message.clone(), str::to_owned);
            Finding { policy, message }
        };
        for error in result.validation_errors() {
            let message = located_message(policies.text(), error);
            validation
                .errors
                .push(finding(error.policy_id().to_string(), message));
        }
        for warning in result.validation_warnings() {
            let message = located_message(policies.text(), warning);
            validation
                .warnings
                .push(finding(warning.policy_id().to_string(), message));
        }
        validation.errors.sort();
        validation.warnings.sort();
        validation
    }

    fn unknown_actions(&self, policy: &Policy) -> Vec<String> {
        let named = match policy.action_constraint() {
            ActionConstraint::Any => Vec::new(),
            ActionConstraint::Eq(uid) => vec![uid],
            ActionConstraint::In(uids) => uids,
        };
        named
            .into_iter()
            .map(|uid| uid.id().unescaped().to_owned())
            .filter(|id| !self.actions.contains(id))
            .collect()
    }
}
