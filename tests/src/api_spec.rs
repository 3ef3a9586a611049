//! Validation of JSON against the machine-readable Telegram Bot API specification.
//!
//! The spec lives in `tests/data/telegram-bot-api/api.json` (Bot API 10.1, scraped from the
//! official documentation by PaulSonOfLars/telegram-bot-api-spec, MIT licence, see the LICENSE
//! file beside it). The test bed uses it to check that the fake Telegram server answers with
//! result shapes Telegram would produce, and that the requests the runtime and the operator
//! send carry the parameters Telegram expects.
//!
//! Type expressions are the strings the spec uses: `Integer`, `Float`, `String`, `Boolean`,
//! `True`, a type name such as `Message`, or `Array of <expr>` (nestable, e.g.
//! `Array of Array of InlineKeyboardButton`).
//!
//! Rules:
//! * `Integer` is a JSON integer that fits an `i64`; `Float` is any JSON number; `String` a
//!   string; `Boolean` a bool; `True` the literal `true`.
//! * An object type must be a JSON object with every required field present, no field the
//!   spec does not list (a fake must not invent fields) and every field valid. A string field
//!   whose description fixes its value (`always "creator"`, `must be photo`) must carry exactly
//!   that value.
//! * A type with subtypes (`ChatMember`, `MaybeInaccessibleMessage`, ...) is valid if one
//!   subtype is. When the value's discriminating field (`type`, `status`, `source`) selects
//!   subtypes only those are tried; otherwise the problems of the closest subtype are reported.
//! * A type with neither fields nor subtypes (`InputFile`, `CallbackGame`, `VideoChatStarted`)
//!   accepts any object; `InputFile` also accepts a string (file_id, URL or `attach://name`).
//! * Only in [`ApiSpec::check_request`], top-level parameters may be form-encoded: a string of
//!   digits is accepted for `Integer`, a numeric string for `Float`, `"true"`/`"false"` for
//!   `Boolean` (`"true"` for `True`), and a parameter of an object or array type may be a
//!   JSON-serialized string, which is parsed and checked strictly.
//!
//! Problems are reported as strings with a JSON-path-like location, for instance
//! `result.chat.type: expected String, got 5` or `result.foo: unknown field of Message`.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

/// Relative location of the spec inside the crate (below `CARGO_MANIFEST_DIR`).
pub const SPEC_RELATIVE_PATH: &str = "data/telegram-bot-api/api.json";

/// Path of the checked-in spec file.
pub fn spec_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(SPEC_RELATIVE_PATH)
}

/// Error while loading the spec.
#[derive(Debug)]
pub enum SpecError {
    /// The file could not be read.
    Io { path: PathBuf, source: std::io::Error },
    /// The file is not valid JSON or does not have the expected shape.
    Parse(serde_json::Error),
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::Io { path, source } => {
                write!(f, "cannot read Bot API spec {}: {source}", path.display())
            }
            SpecError::Parse(e) => write!(f, "cannot parse Bot API spec: {e}"),
        }
    }
}

impl std::error::Error for SpecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SpecError::Io { source, .. } => Some(source),
            SpecError::Parse(e) => Some(e),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw file format

#[derive(Deserialize)]
struct RawSpec {
    version: String,
    #[serde(default)]
    release_date: String,
    #[serde(default)]
    methods: HashMap<String, RawMethod>,
    #[serde(default)]
    types: HashMap<String, RawType>,
}

#[derive(Deserialize)]
struct RawMethod {
    name: String,
    #[serde(default)]
    returns: Vec<String>,
    #[serde(default)]
    fields: Vec<RawField>,
}

#[derive(Deserialize)]
struct RawType {
    name: String,
    #[serde(default)]
    fields: Vec<RawField>,
    #[serde(default)]
    subtypes: Vec<String>,
}

#[derive(Deserialize)]
struct RawField {
    name: String,
    #[serde(default)]
    types: Vec<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    description: String,
}

// ---------------------------------------------------------------------------------------------
// Parsed model

#[derive(Debug, Clone)]
struct Field {
    name: String,
    types: Vec<String>,
    required: bool,
    /// Value fixed by the description (`always "creator"`, `must be photo`), for String fields.
    fixed: Option<String>,
}

#[derive(Debug, Clone)]
struct Method {
    name: String,
    returns: Vec<String>,
    fields: Vec<Field>,
}

#[derive(Debug, Clone)]
struct TypeDef {
    fields: Vec<Field>,
    /// Type expressions; usually type names, but `RichText` also lists `String` and
    /// `Array of RichText`.
    subtypes: Vec<String>,
}

/// The parsed Telegram Bot API specification.
#[derive(Debug, Clone)]
pub struct ApiSpec {
    version: String,
    release_date: String,
    methods: HashMap<String, Method>,
    /// Lower-cased method name -> canonical name.
    method_index: HashMap<String, String>,
    types: HashMap<String, TypeDef>,
}

/// Whether form-encoded leniency applies (top-level request parameters only).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Strict,
    Request,
}

const ARRAY_OF: &str = "Array of ";
const SCALARS: [&str; 5] = ["Integer", "Float", "String", "Boolean", "True"];

static SPEC: OnceLock<ApiSpec> = OnceLock::new();

impl ApiSpec {
    /// Loads the spec shipped in `tests/data/telegram-bot-api/api.json`.
    ///
    /// # Errors
    /// If the file cannot be read or parsed.
    pub fn load() -> Result<ApiSpec, SpecError> {
        Self::from_path(spec_path())
    }

    /// The shipped spec, parsed once per process.
    ///
    /// # Panics
    /// If the checked-in spec file is missing or corrupt (test bed only).
    pub fn get() -> &'static ApiSpec {
        SPEC.get_or_init(|| match ApiSpec::load() {
            Ok(spec) => spec,
            Err(e) => panic!("{e}"),
        })
    }

    /// Loads a spec file in the same format from another location.
    ///
    /// # Errors
    /// If the file cannot be read or parsed.
    pub fn from_path(path: impl AsRef<Path>) -> Result<ApiSpec, SpecError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Io { path: path.to_path_buf(), source })?;
        Self::from_json_str(&text)
    }

    /// Parses a spec from its JSON text.
    ///
    /// # Errors
    /// If the text is not JSON of the spec's shape.
    pub fn from_json_str(text: &str) -> Result<ApiSpec, SpecError> {
        let raw: RawSpec = serde_json::from_str(text).map_err(SpecError::Parse)?;
        let mut methods = HashMap::with_capacity(raw.methods.len());
        let mut method_index = HashMap::with_capacity(raw.methods.len());
        for (key, m) in raw.methods {
            let name = if m.name.is_empty() { key } else { m.name };
            method_index.insert(name.to_ascii_lowercase(), name.clone());
            methods.insert(name.clone(), Method { name, returns: m.returns, fields: m.fields.into_iter().map(Field::from_raw).collect() });
        }
        let mut types = HashMap::with_capacity(raw.types.len());
        for (key, t) in raw.types {
            let name = if t.name.is_empty() { key } else { t.name };
            types.insert(name, TypeDef { fields: t.fields.into_iter().map(Field::from_raw).collect(), subtypes: t.subtypes });
        }
        Ok(ApiSpec { version: raw.version, release_date: raw.release_date, methods, method_index, types })
    }

    /// The version string, e.g. `"Bot API 10.1"`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The release date as written in the spec, e.g. `"June 11, 2026"`.
    pub fn release_date(&self) -> &str {
        &self.release_date
    }

    /// Case-insensitive lookup; returns the canonical name (`"SENDMESSAGE"` -> `"sendMessage"`).
    pub fn method_name(&self, name: &str) -> Option<&str> {
        self.method(name).map(|m| m.name.as_str())
    }

    /// All method names, sorted.
    pub fn method_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.methods.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Whether `name` is a type of the spec (not a scalar such as `Integer`).
    pub fn has_type(&self, name: &str) -> bool {
        self.types.contains_key(name)
    }

    /// Names of the required parameters of `method` (empty for an unknown method).
    pub fn required_params(&self, method: &str) -> Vec<&str> {
        self.method(method).map(|m| m.fields.iter().filter(|f| f.required).map(|f| f.name.as_str()).collect()).unwrap_or_default()
    }

    /// Names of all parameters of `method` (empty for an unknown method).
    pub fn params(&self, method: &str) -> Vec<&str> {
        self.method(method).map(|m| m.fields.iter().map(|f| f.name.as_str()).collect()).unwrap_or_default()
    }

    /// Declared return type expressions of `method`, e.g. `["Message", "Boolean"]`.
    pub fn returns(&self, method: &str) -> Vec<&str> {
        self.method(method).map(|m| m.returns.iter().map(String::as_str).collect()).unwrap_or_default()
    }

    /// Checks a request's parameters (a JSON object; `null` counts as no parameters) against
    /// `method`: every required parameter present, no unknown parameter, each value matching
    /// one of the declared types, with form-encoded strings accepted (see the module docs).
    ///
    /// # Errors
    /// Every problem found (an unknown method is one problem).
    pub fn check_request(&self, method: &str, params: &Value) -> Result<(), Vec<String>> {
        let Some(m) = self.method(method) else {
            return Err(vec![format!("unknown method {method}")]);
        };
        let empty = serde_json::Map::new();
        let obj = match params {
            Value::Object(o) => o,
            Value::Null => &empty,
            other => {
                return Err(vec![format!("params: expected a JSON object of parameters of {}, got {}", m.name, show(other))]);
            }
        };
        let mut problems = Vec::new();
        for f in &m.fields {
            if f.required && !obj.contains_key(&f.name) {
                problems.push(format!("{}: missing required parameter of {}", f.name, m.name));
            }
        }
        for (key, value) in obj {
            match m.fields.iter().find(|f| &f.name == key) {
                None => problems.push(format!("{key}: unknown parameter of {}", m.name)),
                Some(f) => problems.extend(self.check_request_param(f, value, key)),
            }
        }
        finish(problems)
    }

    /// Checks a method's `result` value against its declared return type(s).
    ///
    /// # Errors
    /// Every problem found, located from `result`.
    pub fn check_result(&self, method: &str, result: &Value) -> Result<(), Vec<String>> {
        let Some(m) = self.method(method) else {
            return Err(vec![format!("unknown method {method}")]);
        };
        let alts: Vec<&str> = m.returns.iter().map(String::as_str).collect();
        finish(self.check_any(&alts, result, "result", Mode::Strict))
    }

    /// Checks a value against a type expression such as `"Message"`, `"Array of Update"`,
    /// `"Integer"` or `"Array of Array of InlineKeyboardButton"`.
    ///
    /// # Errors
    /// Every problem found, located from `value`.
    pub fn check_value(&self, type_expr: &str, value: &Value) -> Result<(), Vec<String>> {
        finish(self.check_expr(type_expr, value, "value", Mode::Strict))
    }

    /// Checks an Update object: a valid `Update` with exactly one field set besides `update_id`.
    ///
    /// # Errors
    /// Every problem found, located from `update`.
    pub fn check_update(&self, update: &Value) -> Result<(), Vec<String>> {
        let mut problems = self.check_expr("Update", update, "update", Mode::Strict);
        if let Value::Object(obj) = update {
            let payload: Vec<&str> = obj.keys().map(String::as_str).filter(|k| *k != "update_id").collect();
            match payload.len() {
                0 => problems.push("update: no field set besides update_id".to_string()),
                1 => {}
                _ => problems.push(format!(
                    "update: more than one field set besides update_id ({}); at most one may be present",
                    payload.join(", ")
                )),
            }
        }
        finish(problems)
    }

    // -----------------------------------------------------------------------------------------
    // Internals

    fn method(&self, name: &str) -> Option<&Method> {
        self.methods
            .get(name)
            .or_else(|| self.method_index.get(&name.to_ascii_lowercase()).and_then(|canonical| self.methods.get(canonical)))
    }

    /// One top-level request parameter: form-encoded leniency, and JSON-serialized strings for
    /// object/array types.
    fn check_request_param(&self, f: &Field, value: &Value, path: &str) -> Vec<String> {
        let alts: Vec<&str> = f.types.iter().map(String::as_str).collect();
        let problems = self.check_any(&alts, value, path, Mode::Request);
        if problems.is_empty() {
            return problems;
        }
        if let Value::String(s) = value {
            let structured: Vec<&str> = alts.iter().copied().filter(|t| !SCALARS.contains(t) && *t != "InputFile").collect();
            if !structured.is_empty() {
                return match serde_json::from_str::<Value>(s) {
                    Ok(parsed) => self.check_any(&structured, &parsed, path, Mode::Strict),
                    Err(e) => vec![format!(
                        "{path}: expected {} (or its JSON serialization), got a string that is not JSON ({e}): {}",
                        alts.join(" or "),
                        show(value)
                    )],
                };
            }
        }
        problems
    }

    /// Valid if any alternative matches (see [`Self::check_alternatives`]).
    fn check_any(&self, alts: &[&str], v: &Value, path: &str, mode: Mode) -> Vec<String> {
        self.check_alternatives(None, alts, v, path, mode)
    }

    /// A type with subtypes: valid if any subtype matches.
    fn check_union(&self, name: &str, t: &TypeDef, v: &Value, path: &str, mode: Mode) -> Vec<String> {
        let subtypes: Vec<&str> = t.subtypes.iter().map(String::as_str).collect();
        self.check_alternatives(Some(name), &subtypes, v, path, mode)
    }

    /// Valid if any alternative matches. Otherwise: for objects whose discriminating field
    /// (`type`, `status`, `source`) selects alternatives, the problems of the closest selected
    /// one; if every alternative is discriminated and none is selected, the allowed values;
    /// else the problems of the closest alternative whose JSON shape fits, or a single
    /// "expected A or B" problem. `name` is the union type's name, if it is one.
    fn check_alternatives(&self, name: Option<&str>, alts: &[&str], v: &Value, path: &str, mode: Mode) -> Vec<String> {
        let label = || name.map_or_else(|| alts.join(" or "), str::to_string);
        match alts {
            [] => return vec![format!("{path}: the spec declares no type here")],
            [single] if name.is_none() => return self.check_expr(single, v, path, mode),
            _ => {}
        }
        if alts.iter().all(|a| a.starts_with(ARRAY_OF)) {
            // The scraper splits "Array of InputMediaAudio, InputMediaDocument, InputMediaPhoto
            // and InputMediaVideo" into one array type per item type; the documented meaning is
            // an array whose items are any of them (albums may mix photos and videos).
            let Value::Array(items) = v else {
                return vec![format!("{path}: expected {}, got {}", label(), show(v))];
            };
            let item_alts: Vec<&str> = alts.iter().filter_map(|a| a.strip_prefix(ARRAY_OF)).collect();
            let mut problems = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                problems.extend(self.check_any(&item_alts, item, &item_path, Mode::Strict));
            }
            return problems;
        }
        if let Value::Object(obj) = v {
            let mut selected: Vec<&str> = Vec::new();
            let mut discriminated = 0usize;
            // (field, allowed values) in spec order.
            let mut allowed: Vec<(&str, Vec<&str>)> = Vec::new();
            for alt in alts {
                let Some(t) = self.types.get(*alt) else {
                    continue;
                };
                let fixed: Vec<(&str, &str)> =
                    t.fields.iter().filter_map(|f| f.fixed.as_deref().map(|val| (f.name.as_str(), val))).collect();
                if fixed.is_empty() {
                    continue;
                }
                discriminated += 1;
                for (field, val) in &fixed {
                    match allowed.iter_mut().find(|(f, _)| f == field) {
                        Some((_, vals)) if !vals.contains(val) => vals.push(val),
                        Some(_) => {}
                        None => allowed.push((field, vec![val])),
                    }
                }
                if fixed.iter().all(|(field, val)| obj.get(*field).and_then(Value::as_str) == Some(*val)) {
                    selected.push(alt);
                }
            }
            if !selected.is_empty() {
                return self.closest(&label(), &selected, v, path, mode);
            }
            if discriminated == alts.len() {
                let problems: Vec<String> = allowed
                    .into_iter()
                    .filter(|(field, vals)| obj.get(*field).and_then(Value::as_str).is_none_or(|got| !vals.contains(&got)))
                    .map(|(field, vals)| {
                        let quoted: Vec<String> = vals.iter().map(|v| format!("\"{v}\"")).collect();
                        let got = obj.get(field).map_or_else(|| "nothing".to_string(), show);
                        format!("{}: expected one of {} for {}, got {got}", join(path, field), quoted.join(", "), label())
                    })
                    .collect();
                if !problems.is_empty() {
                    return problems;
                }
            }
        }
        self.closest(&label(), alts, v, path, mode)
    }

    /// Checks each alternative whose JSON shape fits; empty if one matches, otherwise the
    /// problems of the one with the fewest problems, or "expected {label}" if none fits.
    fn closest(&self, label: &str, alts: &[&str], v: &Value, path: &str, mode: Mode) -> Vec<String> {
        let mut best: Option<Vec<String>> = None;
        for alt in alts {
            if !self.shape_matches(alt, v, mode) {
                continue;
            }
            let problems = self.check_expr(alt, v, path, mode);
            if problems.is_empty() {
                return problems;
            }
            if best.as_ref().is_none_or(|b| problems.len() < b.len()) {
                best = Some(problems);
            }
        }
        best.unwrap_or_else(|| vec![format!("{path}: expected {label}, got {}", show(v))])
    }

    /// Whether the value has the right JSON kind for the expression (used to pick the closest
    /// alternative of a union).
    fn shape_matches(&self, expr: &str, v: &Value, mode: Mode) -> bool {
        if expr.starts_with(ARRAY_OF) {
            return v.is_array();
        }
        match expr {
            "Integer" | "Float" | "String" | "Boolean" | "True" => scalar_problem(expr, v, mode).is_none(),
            "InputFile" => v.is_string() || v.is_object(),
            name => match self.types.get(name) {
                None => false,
                Some(t) if !t.subtypes.is_empty() => t.subtypes.iter().any(|s| self.shape_matches(s, v, mode)),
                Some(_) => v.is_object(),
            },
        }
    }

    fn check_expr(&self, expr: &str, v: &Value, path: &str, mode: Mode) -> Vec<String> {
        if let Some(inner) = expr.strip_prefix(ARRAY_OF) {
            let Value::Array(items) = v else {
                return vec![format!("{path}: expected {expr}, got {}", show(v))];
            };
            let mut problems = Vec::new();
            for (i, item) in items.iter().enumerate() {
                problems.extend(self.check_expr(inner, item, &format!("{path}[{i}]"), Mode::Strict));
            }
            return problems;
        }
        if SCALARS.contains(&expr) {
            return scalar_problem(expr, v, mode).map(|p| vec![format!("{path}: {p}")]).unwrap_or_default();
        }
        let Some(t) = self.types.get(expr) else {
            return vec![format!("{path}: the spec references unknown type {expr}")];
        };
        if !t.subtypes.is_empty() {
            return self.check_union(expr, t, v, path, mode);
        }
        if expr == "InputFile" && v.is_string() {
            return Vec::new();
        }
        let Value::Object(obj) = v else {
            return vec![format!("{path}: expected {expr}, got {}", show(v))];
        };
        if t.fields.is_empty() {
            // InputFile, CallbackGame, VideoChatStarted, ...: any object.
            return Vec::new();
        }
        let mut problems = Vec::new();
        for f in &t.fields {
            if f.required && !obj.contains_key(&f.name) {
                problems.push(format!("{}: missing required field of {expr}", join(path, &f.name)));
            }
        }
        for (key, value) in obj {
            let field_path = join(path, key);
            let Some(f) = t.fields.iter().find(|f| &f.name == key) else {
                problems.push(format!("{field_path}: unknown field of {expr}"));
                continue;
            };
            let alts: Vec<&str> = f.types.iter().map(String::as_str).collect();
            let field_problems = self.check_any(&alts, value, &field_path, Mode::Strict);
            if !field_problems.is_empty() {
                problems.extend(field_problems);
                continue;
            }
            if let Some(fixed) = &f.fixed
                && value.as_str() != Some(fixed.as_str())
            {
                problems.push(format!("{field_path}: expected \"{fixed}\" for {expr}, got {}", show(value)));
            }
        }
        problems
    }
}

impl Field {
    fn from_raw(f: RawField) -> Field {
        let fixed = if f.types.len() == 1 && f.types[0] == "String" { fixed_value(&f.description) } else { None };
        Field { name: f.name, types: f.types, required: f.required, fixed }
    }
}

/// Extracts the value a description fixes: `... always "creator"`, `... always “creator”`,
/// `... must be photo` (at the end of the description, optionally followed by a period).
fn fixed_value(description: &str) -> Option<String> {
    let d = description.trim_end().trim_end_matches('.');
    for keyword in [" always ", " must be "] {
        let Some(pos) = d.rfind(keyword) else {
            continue;
        };
        let rest = &d[pos + keyword.len()..];
        let quoted =
            rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')).or_else(|| rest.strip_prefix('“').and_then(|r| r.strip_suffix('”')));
        let (value, bare) = match quoted {
            Some(v) => (v, false),
            None => (rest, true),
        };
        let valid = !value.is_empty()
            && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || (!bare && c.is_ascii_uppercase()));
        if valid {
            return Some(value.to_string());
        }
    }
    None
}

/// `None` if `v` is a valid `ty` scalar, otherwise the problem (without location).
fn scalar_problem(ty: &str, v: &Value, mode: Mode) -> Option<String> {
    let lenient = mode == Mode::Request;
    let ok = match ty {
        "Integer" => v.is_i64() || (lenient && v.as_str().is_some_and(is_integer_string)),
        "Float" => v.is_number() || (lenient && v.as_str().is_some_and(|s| s.trim().parse::<f64>().is_ok_and(f64::is_finite))),
        "String" => v.is_string(),
        "Boolean" => v.is_boolean() || (lenient && matches!(v.as_str(), Some("true" | "false"))),
        "True" => *v == Value::Bool(true) || (lenient && v.as_str() == Some("true")),
        _ => false,
    };
    if ok { None } else { Some(format!("expected {ty}, got {}", show(v))) }
}

/// An optional minus sign followed by ASCII digits, fitting an i64.
fn is_integer_string(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && s.parse::<i64>().is_ok()
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

/// Compact rendering of a value for messages, shortened to about 80 characters.
fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() <= 80 {
        s
    } else {
        let mut short: String = s.chars().take(77).collect();
        short.push_str("...");
        short
    }
}

fn finish(problems: Vec<String>) -> Result<(), Vec<String>> {
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> &'static ApiSpec {
        ApiSpec::get()
    }

    fn private_chat() -> Value {
        json!({"id": 42, "type": "private", "first_name": "Ada", "username": "ada"})
    }

    fn user() -> Value {
        json!({"id": 42, "is_bot": false, "first_name": "Ada", "username": "ada", "language_code": "en"})
    }

    fn text_message() -> Value {
        json!({
            "message_id": 7,
            "from": {"id": 1000, "is_bot": true, "first_name": "Fleet bot", "username": "fleet_bot"},
            "chat": private_chat(),
            "date": 1_781_000_000,
            "text": "Hello /start",
            "entities": [{"type": "bot_command", "offset": 6, "length": 6}],
            "reply_markup": {"inline_keyboard": [
                [{"text": "Yes", "callback_data": "yes"}, {"text": "No", "callback_data": "no"}],
                [{"text": "Docs", "url": "https://example.com"}]
            ]}
        })
    }

    fn errors(r: Result<(), Vec<String>>) -> Vec<String> {
        r.err().unwrap_or_default()
    }

    #[test]
    fn loads_shipped_spec_for_bot_api_10_1() {
        let spec = ApiSpec::load().expect("spec loads");
        assert_eq!(spec.version(), "Bot API 10.1");
        assert!(spec.method_names().len() > 150);
        assert!(spec.has_type("Message"));
        assert!(std::ptr::eq(ApiSpec::get(), ApiSpec::get()));
    }

    #[test]
    fn every_type_referenced_by_the_spec_resolves() {
        let s = spec();
        let mut exprs: Vec<&str> = Vec::new();
        for m in s.methods.values() {
            exprs.extend(m.returns.iter().map(String::as_str));
            for f in &m.fields {
                exprs.extend(f.types.iter().map(String::as_str));
            }
        }
        for t in s.types.values() {
            exprs.extend(t.subtypes.iter().map(String::as_str));
            for f in &t.fields {
                exprs.extend(f.types.iter().map(String::as_str));
            }
        }
        for e in exprs {
            let mut base = e;
            while let Some(inner) = base.strip_prefix(ARRAY_OF) {
                base = inner;
            }
            assert!(SCALARS.contains(&base) || s.has_type(base), "unresolved type {e}");
        }
    }

    /// A minimal value of a type expression built from the spec: required fields only, the
    /// first subtype of a union, empty arrays.
    fn minimal(s: &ApiSpec, expr: &str, depth: usize) -> Value {
        assert!(depth < 32, "required fields recurse without end at {expr}");
        if expr.starts_with(ARRAY_OF) {
            return json!([]);
        }
        match expr {
            "Integer" => json!(1),
            "Float" => json!(1.5),
            "String" | "InputFile" => json!("s"),
            "Boolean" | "True" => json!(true),
            name => {
                let t = &s.types[name];
                if let Some(first) = t.subtypes.first() {
                    return minimal(s, first, depth + 1);
                }
                let mut obj = serde_json::Map::new();
                for f in t.fields.iter().filter(|f| f.required) {
                    let v = match &f.fixed {
                        Some(fixed) => json!(fixed),
                        None => minimal(s, &f.types[0], depth + 1),
                    };
                    obj.insert(f.name.clone(), v);
                }
                Value::Object(obj)
            }
        }
    }

    #[test]
    fn minimal_instances_of_every_type_result_and_request_validate() {
        let s = spec();
        for name in s.types.keys() {
            let v = minimal(s, name, 0);
            assert_eq!(s.check_value(name, &v), Ok(()), "type {name}: {v}");
            for sub in &s.types[name].subtypes {
                let v = minimal(s, sub, 0);
                assert_eq!(s.check_value(name, &v), Ok(()), "{sub} as {name}: {v}");
            }
        }
        for m in s.methods.values() {
            let result = minimal(s, &m.returns[0], 0);
            assert_eq!(s.check_result(&m.name, &result), Ok(()), "result of {}: {result}", m.name);
            let mut params = serde_json::Map::new();
            for f in m.fields.iter().filter(|f| f.required) {
                params.insert(f.name.clone(), minimal(s, &f.types[0], 0));
            }
            let params = Value::Object(params);
            assert_eq!(s.check_request(&m.name, &params), Ok(()), "request of {}: {params}", m.name);
        }
    }

    #[test]
    fn send_message_requires_chat_id_and_text() {
        assert_eq!(spec().required_params("sendMessage"), vec!["chat_id", "text"]);
        let params = spec().params("sendMessage");
        assert!(params.contains(&"reply_markup") && params.contains(&"parse_mode"));
        assert!(spec().required_params("noSuchMethod").is_empty());
    }

    #[test]
    fn method_lookup_is_case_insensitive_and_canonical() {
        assert_eq!(spec().method_name("SENDMESSAGE"), Some("sendMessage"));
        assert_eq!(spec().method_name("getme"), Some("getMe"));
        assert_eq!(spec().method_name("sendMessages"), None);
        assert_eq!(spec().required_params("SendMessage"), vec!["chat_id", "text"]);
    }

    #[test]
    fn realistic_text_message_passes_as_send_message_result() {
        assert_eq!(spec().check_result("sendMessage", &text_message()), Ok(()));
    }

    #[test]
    fn message_with_invented_field_is_rejected() {
        let mut msg = text_message();
        msg["foo"] = json!(1);
        msg["chat"]["bar"] = json!(true);
        let errs = errors(spec().check_result("sendMessage", &msg));
        assert!(errs.contains(&"result.foo: unknown field of Message".to_string()), "{errs:?}");
        assert!(errs.contains(&"result.chat.bar: unknown field of Chat".to_string()), "{errs:?}");
    }

    #[test]
    fn wrongly_typed_field_is_rejected_with_its_location() {
        let mut msg = text_message();
        msg["chat"]["type"] = json!(5);
        let errs = errors(spec().check_result("sendMessage", &msg));
        assert_eq!(errs, vec!["result.chat.type: expected String, got 5".to_string()]);

        let mut msg = text_message();
        msg["message_id"] = json!("7");
        let errs = errors(spec().check_result("sendMessage", &msg));
        assert_eq!(errs, vec!["result.message_id: expected Integer, got \"7\"".to_string()]);
    }

    #[test]
    fn missing_required_field_is_rejected() {
        let mut msg = text_message();
        msg.as_object_mut().map(|o| o.remove("date"));
        let errs = errors(spec().check_result("sendMessage", &msg));
        assert_eq!(errs, vec!["result.date: missing required field of Message".to_string()]);
    }

    #[test]
    fn nested_array_of_array_types_are_checked() {
        let kb = json!({"inline_keyboard": [[{"text": "A", "callback_data": "a"}], []]});
        assert_eq!(spec().check_value("InlineKeyboardMarkup", &kb), Ok(()));
        assert_eq!(spec().check_value("Array of Array of InlineKeyboardButton", &kb["inline_keyboard"]), Ok(()));
        let flat = json!({"inline_keyboard": [{"text": "A", "callback_data": "a"}]});
        let errs = errors(spec().check_value("InlineKeyboardMarkup", &flat));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("value.inline_keyboard[0]: expected Array of InlineKeyboardButton"));
        let bad_button = json!({"inline_keyboard": [[{"text": 1}]]});
        let errs = errors(spec().check_value("InlineKeyboardMarkup", &bad_button));
        assert_eq!(errs, vec!["value.inline_keyboard[0][0].text: expected String, got 1".to_string()]);
    }

    #[test]
    fn scalar_types_follow_json_kinds() {
        let s = spec();
        assert_eq!(s.check_value("Integer", &json!(-1001234567890_i64)), Ok(()));
        assert!(s.check_value("Integer", &json!(1.5)).is_err());
        assert!(s.check_value("Integer", &json!("123")).is_err());
        assert_eq!(s.check_value("Float", &json!(3)), Ok(()));
        assert_eq!(s.check_value("Float", &json!(3.25)), Ok(()));
        assert_eq!(s.check_value("True", &json!(true)), Ok(()));
        assert!(s.check_value("True", &json!(false)).is_err());
        assert!(s.check_value("Boolean", &json!("true")).is_err());
        assert_eq!(s.check_value("Array of Update", &json!([])), Ok(()));
        assert!(s.check_value("NoSuchType", &json!({})).is_err());
    }

    #[test]
    fn boolean_or_message_results_accept_either() {
        assert_eq!(spec().check_result("editMessageText", &json!(true)), Ok(()));
        assert_eq!(spec().check_result("editMessageText", &text_message()), Ok(()));
        let errs = errors(spec().check_result("editMessageText", &json!("ok")));
        assert_eq!(errs, vec!["result: expected Message or Boolean, got \"ok\"".to_string()]);
        let mut msg = text_message();
        msg["extra"] = json!(0);
        let errs = errors(spec().check_result("editMessageText", &msg));
        assert_eq!(errs, vec!["result.extra: unknown field of Message".to_string()]);
    }

    #[test]
    fn get_updates_result_is_an_array_of_updates() {
        let updates = json!([{"update_id": 1, "message": text_message()}]);
        assert_eq!(spec().check_result("getUpdates", &updates), Ok(()));
        assert!(spec().check_result("getUpdates", &json!({"update_id": 1})).is_err());
    }

    #[test]
    fn message_update_passes() {
        let update = json!({"update_id": 10, "message": text_message()});
        assert_eq!(spec().check_update(&update), Ok(()));
    }

    #[test]
    fn pre_checkout_query_update_passes() {
        let update = json!({
            "update_id": 11,
            "pre_checkout_query": {
                "id": "pcq-1",
                "from": user(),
                "currency": "XTR",
                "total_amount": 50,
                "invoice_payload": "plan:pro"
            }
        });
        assert_eq!(spec().check_update(&update), Ok(()));
    }

    #[test]
    fn callback_query_update_passes_with_accessible_and_inaccessible_message() {
        let mut update = json!({
            "update_id": 12,
            "callback_query": {
                "id": "cbq-1",
                "from": user(),
                "message": text_message(),
                "chat_instance": "-123456789",
                "data": "yes"
            }
        });
        assert_eq!(spec().check_update(&update), Ok(()));
        update["callback_query"]["message"] = json!({"chat": private_chat(), "message_id": 7, "date": 0});
        assert_eq!(spec().check_update(&update), Ok(()));
    }

    #[test]
    fn update_must_carry_exactly_one_payload() {
        let errs = errors(spec().check_update(&json!({"update_id": 1})));
        assert_eq!(errs, vec!["update: no field set besides update_id".to_string()]);
        let two = json!({"update_id": 1, "message": text_message(), "edited_message": text_message()});
        assert_eq!(errors(spec().check_update(&two)).len(), 1);
        let errs = errors(spec().check_update(&json!({"update_id": 1, "mesage": text_message()})));
        assert!(errs.contains(&"update.mesage: unknown field of Update".to_string()), "{errs:?}");
    }

    #[test]
    fn union_problems_come_from_the_closest_subtype() {
        // MaybeInaccessibleMessage: a broken Message reports Message's problems.
        let mut msg = text_message();
        msg["chat"]["id"] = json!("42");
        let errs = errors(spec().check_value("MaybeInaccessibleMessage", &msg));
        assert_eq!(errs, vec!["value.chat.id: expected Integer, got \"42\"".to_string()]);
        let errs = errors(spec().check_value("MaybeInaccessibleMessage", &json!(3)));
        assert_eq!(errs, vec!["value: expected MaybeInaccessibleMessage, got 3".to_string()]);
    }

    #[test]
    fn chat_member_is_discriminated_by_status() {
        let member = json!({"status": "member", "user": user()});
        assert_eq!(spec().check_result("getChatMember", &member), Ok(()));
        let admin = json!({
            "status": "administrator", "user": user(), "can_be_edited": false, "is_anonymous": false,
            "can_manage_chat": true, "can_delete_messages": true, "can_manage_video_chats": false,
            "can_restrict_members": true, "can_promote_members": false, "can_change_info": true,
            "can_invite_users": true, "can_post_stories": false, "can_edit_stories": false,
            "can_delete_stories": false
        });
        assert_eq!(spec().check_result("getChatMember", &admin), Ok(()));
        let mut not_admin = admin.clone();
        not_admin.as_object_mut().map(|o| o.remove("can_invite_users"));
        let errs = errors(spec().check_result("getChatMember", &not_admin));
        assert_eq!(errs, vec!["result.can_invite_users: missing required field of ChatMemberAdministrator".to_string()]);
        let errs = errors(spec().check_result("getChatMember", &json!({"status": "boss", "user": user()})));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("result.status: expected one of \"creator\", \"administrator\""), "{errs:?}");
        // A field of another subtype is not accepted just because some subtype knows it.
        let errs = errors(spec().check_result("getChatMember", &json!({"status": "member", "user": user(), "is_anonymous": true})));
        assert_eq!(errs, vec!["result.is_anonymous: unknown field of ChatMemberMember".to_string()]);
    }

    #[test]
    fn fixed_discriminator_values_are_enforced_on_concrete_types() {
        let errs = errors(spec().check_value("ChatMemberLeft", &json!({"status": "member", "user": user()})));
        assert_eq!(errs, vec!["value.status: expected \"left\" for ChatMemberLeft, got \"member\"".to_string()]);
        assert_eq!(fixed_value("Type of the media, must be photo"), Some("photo".to_string()));
        assert_eq!(fixed_value("Type of the result, always \"user\""), Some("user".to_string()));
        assert_eq!(fixed_value("Currency, must be one of \"XTR\" or \"TON\"."), None);
    }

    #[test]
    fn rich_text_accepts_strings_arrays_and_objects() {
        let s = spec();
        assert_eq!(s.check_value("RichText", &json!("plain")), Ok(()));
        assert_eq!(s.check_value("RichText", &json!(["a", ["b"]])), Ok(()));
        assert!(s.check_value("RichText", &json!(5)).is_err());
    }

    #[test]
    fn request_accepts_form_encoded_strings() {
        let params = json!({
            "chat_id": "123",
            "text": "hi",
            "disable_notification": "true",
            "message_thread_id": "-5",
            "reply_markup": "{\"inline_keyboard\":[[{\"text\":\"A\",\"callback_data\":\"a\"}]]}",
            "entities": "[{\"type\":\"bold\",\"offset\":0,\"length\":2}]"
        });
        assert_eq!(spec().check_request("sendMessage", &params), Ok(()));
    }

    #[test]
    fn request_accepts_json_bodies() {
        let params = json!({
            "chat_id": -1001234567890_i64,
            "text": "hi",
            "parse_mode": "HTML",
            "reply_markup": {"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]},
            "reply_parameters": {"message_id": 3}
        });
        assert_eq!(spec().check_request("sendMessage", &params), Ok(()));
        assert_eq!(spec().check_request("sendMessage", &json!({"chat_id": "@channel", "text": "x"})), Ok(()));
        assert_eq!(spec().check_request("getMe", &Value::Null), Ok(()));
        assert_eq!(spec().check_request("getMe", &json!({})), Ok(()));
    }

    #[test]
    fn request_missing_required_or_unknown_parameter_is_rejected() {
        let errs = errors(spec().check_request("sendMessage", &json!({"chat_id": 1})));
        assert_eq!(errs, vec!["text: missing required parameter of sendMessage".to_string()]);
        let errs = errors(spec().check_request("sendMessage", &json!({"chat_id": 1, "text": "x", "txt": "y"})));
        assert_eq!(errs, vec!["txt: unknown parameter of sendMessage".to_string()]);
        assert!(spec().check_request("sendMesage", &json!({})).is_err());
    }

    #[test]
    fn request_checks_values_inside_json_serialized_parameters() {
        let params = json!({"chat_id": 1, "text": "x", "reply_markup": "{\"inline_keyboard\":[[{\"text\":5}]]}"});
        let errs = errors(spec().check_request("sendMessage", &params));
        assert_eq!(errs, vec!["reply_markup.inline_keyboard[0][0].text: expected String, got 5".to_string()]);
        let params = json!({"chat_id": 1, "text": "x", "reply_markup": "not json"});
        assert_eq!(errors(spec().check_request("sendMessage", &params)).len(), 1);
        // Inside JSON, numbers must be real numbers: the leniency is for top-level form values.
        let params = json!({"chat_id": 1, "text": "x", "reply_parameters": {"message_id": "3"}});
        let errs = errors(spec().check_request("sendMessage", &params));
        assert_eq!(errs, vec!["reply_parameters.message_id: expected Integer, got \"3\"".to_string()]);
        let params = json!({"chat_id": "12a", "text": "x"});
        assert!(spec().check_request("sendMessage", &params).is_ok(), "chat_id may be a @username string");
        let errs = errors(spec().check_request("getChatMember", &json!({"chat_id": 1, "user_id": "12a"})));
        assert_eq!(errs, vec!["user_id: expected Integer, got \"12a\"".to_string()]);
    }

    #[test]
    fn request_accepts_input_file_strings_and_media_groups() {
        let photo = json!({"chat_id": 1, "photo": "attach://photo1", "caption": "c"});
        assert_eq!(spec().check_request("sendPhoto", &photo), Ok(()));
        let group = json!({"chat_id": 1, "media": [
            {"type": "photo", "media": "attach://a"},
            {"type": "photo", "media": "AgACAgQAAx"}
        ]});
        assert_eq!(spec().check_request("sendMediaGroup", &group), Ok(()));
        let mixed_album = json!({"chat_id": 1, "media": [
            {"type": "photo", "media": "attach://a"},
            {"type": "video", "media": "attach://b", "supports_streaming": true}
        ]});
        assert_eq!(spec().check_request("sendMediaGroup", &mixed_album), Ok(()));
        let bad_album = json!({"chat_id": 1, "media": [{"type": "photo", "media": "x"}, {"type": "sticker", "media": "y"}]});
        let errs = errors(spec().check_request("sendMediaGroup", &bad_album));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("media[1]"), "{errs:?}");
        let form_album = json!({"chat_id": "1", "media": "[{\"type\":\"photo\",\"media\":\"attach://a\"},{\"type\":\"photo\",\"media\":\"attach://b\"}]"});
        assert_eq!(spec().check_request("sendMediaGroup", &form_album), Ok(()));
        let commands = json!({"commands": [{"command": "start", "description": "Start"}],
                              "scope": {"type": "all_private_chats"}});
        assert_eq!(spec().check_request("setMyCommands", &commands), Ok(()));
        let bad_scope = json!({"commands": [], "scope": {"type": "everyone"}});
        assert!(spec().check_request("setMyCommands", &bad_scope).is_err());
    }
}
