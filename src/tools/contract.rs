//! What a tool's arguments are: the one definition on the bridge's side.
//!
//! Each tool declares its [`Spec`] beside its typed arguments; the request's
//! arguments are checked against it (names, required, lengths, allowed
//! values) before they are read into the tool's type, and provenance
//! ([`same_call`]) compares exactly the arguments it names. The plugin's
//! zod schemas are written to `opencode-plugin/fixtures/contract.json`
//! (`npm run contract`) and the tests on both sides check their own
//! definition against that file, so a tool or an argument added on one side
//! only fails the suite.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{ToolError, fail};

/// One argument: every argument is a string (or absent/null when optional).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arg {
    pub name: &'static str,
    /// Required arguments must be present and not blank.
    pub required: bool,
    /// Longest value, in characters (Unicode scalar values).
    pub max_chars: Option<usize>,
    /// Said when the value is too long, after "`name` is over N characters".
    pub too_long_hint: &'static str,
    /// The values allowed, when only some are (an enum in the plugin).
    pub one_of: &'static [&'static str],
}

impl Arg {
    /// A required string argument.
    pub const fn required(name: &'static str) -> Self {
        Self {
            name,
            required: true,
            max_chars: None,
            too_long_hint: "",
            one_of: &[],
        }
    }

    /// An optional string argument.
    pub const fn optional(name: &'static str) -> Self {
        Self {
            required: false,
            ..Self::required(name)
        }
    }

    pub const fn max(self, chars: usize, hint: &'static str) -> Self {
        Self {
            max_chars: Some(chars),
            too_long_hint: hint,
            ..self
        }
    }

    pub const fn one_of(self, values: &'static [&'static str]) -> Self {
        Self {
            one_of: values,
            ..self
        }
    }
}

/// A tool's name (without OpenCode's `pocketbrain_` prefix) and arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub name: &'static str,
    pub args: &'static [Arg],
}

/// The `chat` argument several tools share.
pub const CHAT: Arg = Arg::optional("chat");

impl Spec {
    /// Checks `args` against the spec and reads them into the tool's type.
    pub fn parse<T: DeserializeOwned>(&self, args: &Value) -> Result<T, ToolError> {
        let Some(obj) = args.as_object() else {
            return Err(fail("invalid_arguments", "arguments must be an object"));
        };
        self.check(obj)?;
        T::deserialize(args).map_err(|e| fail("invalid_arguments", format!("arguments: {e}")))
    }

    fn check(&self, obj: &Map<String, Value>) -> Result<(), ToolError> {
        if let Some(unknown) = obj.keys().find(|k| !self.args.iter().any(|a| a.name == *k)) {
            let known: Vec<&str> = self.args.iter().map(|a| a.name).collect();
            return Err(fail(
                "invalid_arguments",
                format!(
                    "unknown argument `{unknown}`; {} takes: {}",
                    self.name,
                    known.join(", ")
                ),
            ));
        }
        for arg in self.args {
            let name = arg.name;
            let value = match obj.get(name) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.as_str()),
                Some(_) => {
                    return Err(fail(
                        "invalid_arguments",
                        format!("`{name}` must be a string"),
                    ));
                }
            };
            let Some(value) = value.filter(|v| !(arg.required && v.trim().is_empty())) else {
                if arg.required {
                    return Err(fail("invalid_arguments", format!("`{name}` is required")));
                }
                continue;
            };
            // Characters, as the plugin's schema counts them.
            if let Some(max) = arg.max_chars
                && value.chars().count() > max
            {
                return Err(fail(
                    "invalid_arguments",
                    format!("`{name}` is over {max} characters{}", arg.too_long_hint),
                ));
            }
            if !arg.one_of.is_empty() && !arg.one_of.contains(&value) {
                let quoted: Vec<String> = arg.one_of.iter().map(|v| format!("{v:?}")).collect();
                return Err(fail(
                    "invalid_arguments",
                    format!("`{name}` must be {}", quoted.join(" or ")),
                ));
            }
        }
        Ok(())
    }

    /// The spec in the shape of `contract.json`'s `args` entry for one tool.
    pub fn contract_json(&self) -> Value {
        let args: Map<String, Value> = self
            .args
            .iter()
            .map(|a| {
                let mut o = Map::new();
                o.insert("required".into(), a.required.into());
                if let Some(m) = a.max_chars {
                    o.insert("max_chars".into(), m.into());
                }
                if !a.one_of.is_empty() {
                    o.insert("one_of".into(), a.one_of.into());
                }
                (a.name.to_owned(), Value::Object(o))
            })
            .collect();
        Value::Object(args)
    }
}

/// Whether a request's arguments are the arguments the model gave in
/// OpenCode's record of the call (`input`): every argument the spec names
/// equal on both sides (absent and null alike), and nothing in the request
/// the spec does not name. Keys in `input` the spec does not know are not
/// compared: OpenCode keeps what the model wrote, the plugin gets what zod
/// let through.
pub fn same_call(spec: &Spec, request: &Value, input: &Value) -> bool {
    let Some(req) = request.as_object() else {
        return false;
    };
    fn given(v: Option<&Value>) -> Option<&Value> {
        v.filter(|v| !v.is_null())
    }
    req.keys().all(|k| spec.args.iter().any(|a| a.name == k))
        && spec
            .args
            .iter()
            .all(|a| given(req.get(a.name)) == given(input.get(a.name)))
}
