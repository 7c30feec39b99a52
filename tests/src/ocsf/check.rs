//! Checking one event against the compiled schema. Every problem is reported, none stops the walk (except an
//! unknown class, without which there is nothing to check against), and nothing in the event can panic it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::compile::{AttrType, Attribute, Constraint, Entity, Primitive, Requirement, Schema};
use super::formats;

/// Objects nested deeper than this are reported rather than walked (a parsed event is at most 128 deep anyway).
const MAX_DEPTH: usize = 64;

pub(super) fn validate(schema: &Schema, event: &Value) -> Vec<String> {
    let mut checker = Checker { schema, profiles: BTreeSet::new(), problems: Vec::new() };
    let Some(event) = event.as_object() else {
        checker.problem("$", format!("an event is a JSON object, not {}", describe(event)));
        return checker.problems;
    };
    let Some(class) = checker.class(event) else { return checker.problems };
    checker.profiles = checker.event_profiles(event);
    checker.entity(event, class, "$", 0);
    checker.computed(event, class);
    checker.version(event);
    checker.problems
}

struct Checker<'s> {
    schema: &'s Schema,
    /// The event's `metadata.profiles`: the profiles whose attributes exist for this event.
    profiles: BTreeSet<String>,
    problems: Vec<String>,
}

impl<'s> Checker<'s> {
    fn problem(&mut self, path: &str, message: impl AsRef<str>) {
        self.problems.push(format!("{path}: {}", message.as_ref()));
    }

    fn class(&mut self, event: &Map<String, Value>) -> Option<&'s Entity> {
        let uid = match event.get("class_uid") {
            None | Some(Value::Null) => {
                self.problem("$.class_uid", "required attribute is missing (it selects the event's class)");
                return None;
            }
            Some(value) => match value.as_i64() {
                Some(uid) => uid,
                None => {
                    self.problem("$.class_uid", format!("expected integer_t, got {}", describe(value)));
                    return None;
                }
            },
        };
        let class = self.schema.classes.get(&uid);
        if class.is_none() {
            let known: Vec<String> = self.schema.classes.keys().map(i64::to_string).collect();
            self.problem("$.class_uid", format!("unknown class {uid} (this schema has {})", known.join(", ")));
        }
        class
    }

    fn event_profiles(&mut self, event: &Map<String, Value>) -> BTreeSet<String> {
        let mut profiles = BTreeSet::new();
        let listed = event.get("metadata").and_then(|m| m.get("profiles")).and_then(Value::as_array);
        // Entries that are not strings are reported by the type check of metadata.profiles (string_t array).
        for (i, name) in listed.into_iter().flatten().enumerate().filter_map(|(i, p)| Some((i, p.as_str()?))) {
            if !self.schema.profiles.contains(name) {
                self.problem(&format!("$.metadata.profiles[{i}]"), format!("unknown profile {name:?}"));
            }
            profiles.insert(name.to_owned());
        }
        profiles
    }

    fn visible(&self, attribute: &Attribute) -> bool {
        attribute.profile.as_ref().is_none_or(|p| self.profiles.contains(p))
    }

    /// The attributes of `item` (the event or an object) against `entity` (its class or object).
    fn entity(&mut self, item: &Map<String, Value>, entity: &'s Entity, path: &str, depth: usize) {
        let attributes: Vec<(&'s String, &'s Attribute)> =
            entity.attributes.iter().filter(|(_, a)| self.visible(a)).collect();
        for (name, attribute) in attributes {
            let at = child(path, name);
            match item.get(name) {
                // The server reads null as absent.
                None | Some(Value::Null) => {
                    if attribute.requirement == Requirement::Required {
                        self.problem(&at, "required attribute is missing");
                    }
                }
                Some(value) => {
                    self.attribute(value, attribute, &at, depth);
                    // At the event's top, category_uid and type_uid are checked by `computed`, which says how
                    // they are derived; their captions are still checked here.
                    let derived = depth == 0 && matches!(name.as_str(), "category_uid" | "type_uid");
                    self.enumeration(item, name, attribute, value, path, derived);
                }
            }
        }
        // An object that defines no attributes at all (`object`, the type of `unmapped`) takes anything.
        if !entity.attributes.is_empty() {
            for key in item.keys() {
                match entity.attributes.get(key) {
                    Some(attribute) if self.visible(attribute) => {}
                    Some(attribute) => {
                        let profile = attribute.profile.as_deref().unwrap_or_default();
                        let message =
                            format!("attribute of profile {profile:?}, which metadata.profiles does not list");
                        self.problem(&child(path, key), message);
                    }
                    None => {
                        let message = match entity.uid {
                            Some(uid) => format!("unknown attribute: class {} ({uid}) does not define it", entity.name),
                            None => format!("unknown attribute: object {} does not define it", entity.name),
                        };
                        self.problem(&child(path, key), message);
                    }
                }
            }
        }
        for constraint in &entity.constraints {
            let (kind, names, ok): (_, _, fn(usize) -> bool) = match constraint {
                Constraint::AtLeastOne(names) => ("at_least_one", names, |n| n >= 1),
                Constraint::JustOne(names) => ("just_one", names, |n| n == 1),
            };
            let present = names.iter().filter(|n| item.get(n.as_str()).is_some_and(|v| !v.is_null())).count();
            if !ok(present) {
                let message = format!(
                    "constraint {kind} of {} {} not met: {present} of [{}] present",
                    if entity.uid.is_some() { "class" } else { "object" },
                    entity.name,
                    names.join(", ")
                );
                self.problem(path, message);
            }
        }
    }

    fn attribute(&mut self, value: &Value, attribute: &'s Attribute, path: &str, depth: usize) {
        if !attribute.is_array {
            return self.value(value, &attribute.ty, path, depth);
        }
        let Some(items) = value.as_array() else {
            return self.problem(path, format!("expected an array of {}, got {}", attribute.ty, describe(value)));
        };
        for (i, item) in items.iter().enumerate() {
            self.value(item, &attribute.ty, &format!("{path}[{i}]"), depth);
        }
    }

    fn value(&mut self, value: &Value, ty: &'s AttrType, path: &str, depth: usize) {
        match ty {
            AttrType::Data(name) => self.data(value, name, path),
            AttrType::Object(name) => {
                let Some(object) = self.schema.objects.get(name) else { return };
                match value.as_object() {
                    Some(_) if depth >= MAX_DEPTH => self.problem(path, "objects nested too deeply to check"),
                    Some(item) => self.entity(item, object, path, depth + 1),
                    None => self.problem(path, format!("expected object {name}, got {}", describe(value))),
                }
            }
        }
    }

    fn data(&mut self, value: &Value, type_name: &str, path: &str) {
        let Some(ty) = self.schema.types.get(type_name) else { return };
        let (ok, base) = match ty.primitive {
            Primitive::Json => return,
            Primitive::Boolean => (value.is_boolean(), "boolean"),
            // As in the server: integer_t is a 64-bit integer, long_t wider (JSON gives us up to u64).
            Primitive::Integer => (value.is_i64(), "integer"),
            Primitive::Long => (value.is_i64() || value.is_u64(), "integer"),
            Primitive::Float => (value.is_number(), "number"),
            Primitive::String => (value.is_string(), "string"),
        };
        if !ok {
            return self.problem(path, format!("expected {type_name} ({base}), got {}", describe(value)));
        }
        if let (Some(max_len), Some(text)) = (ty.max_len, value.as_str())
            && text.chars().count() > max_len
        {
            self.problem(path, format!("longer than the {max_len} characters of {type_name}"));
        }
        if let (Some((low, high)), Some(number)) = (ty.range, value.as_f64())
            && !(low..=high).contains(&number)
        {
            self.problem(path, format!("{number} is outside the range {low}..={high} of {type_name}"));
        }
        if let Some(values) = &ty.values
            && !values.contains(value)
        {
            self.problem(path, format!("{} is not a value of {type_name}", describe(value)));
        }
        if let Some(expected) = value.as_str().and_then(|text| formats::check(type_name, text)) {
            self.problem(path, format!("{} is not {expected} ({type_name})", describe(value)));
        }
    }

    /// An enum attribute's value, and its caption sibling (`severity` for `severity_id`) when present.
    fn enumeration(
        &mut self,
        item: &Map<String, Value>,
        name: &str,
        attribute: &Attribute,
        value: &Value,
        parent: &str,
        derived: bool,
    ) {
        let Some(values) = &attribute.enumeration else { return };
        let sibling = attribute.sibling.as_deref().and_then(|s| Some((s, item.get(s).filter(|v| !v.is_null())?)));
        let at = child(parent, name);
        if !attribute.is_array {
            let sibling = sibling.map(|(s, v)| (Some(v), child(parent, s)));
            return self.enum_value(value, values, &at, name, sibling, derived);
        }
        // Enum arrays (`category_ids`) pair with caption arrays element by element.
        for (i, element) in value.as_array().into_iter().flatten().enumerate() {
            let sibling =
                sibling.filter(|(_, v)| v.is_array()).map(|(s, v)| (v.get(i), format!("{}[{i}]", child(parent, s))));
            self.enum_value(element, values, &format!("{at}[{i}]"), name, sibling, derived);
        }
    }

    fn enum_value(
        &mut self,
        value: &Value,
        values: &BTreeMap<String, String>,
        path: &str,
        name: &str,
        sibling: Option<(Option<&Value>, String)>,
        derived: bool,
    ) {
        // Enum keys are strings ("1"); a value of another kind was already reported by the type check.
        let key = match value {
            Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
            Value::String(s) => s.clone(),
            _ => return,
        };
        let Some(caption) = values.get(&key) else {
            if !derived {
                let defined: Vec<&str> = values.keys().map(String::as_str).collect();
                let message = format!("{} is not a value of enum {name} ({})", describe(value), defined.join(", "));
                self.problem(path, message);
            }
            return;
        };
        // 99 is Other: its caption sibling then carries the source's own word (API Activity "Invoke").
        if key == "99" {
            return;
        }
        match sibling {
            Some((Some(actual), sibling_path)) if actual.as_str() != Some(caption.as_str()) => {
                let message = format!("must be the caption of {name} {key}, {caption:?}, not {}", describe(actual));
                self.problem(&sibling_path, message);
            }
            Some((None, sibling_path)) => self.problem(&sibling_path, format!("missing caption of {name} {key}")),
            _ => {}
        }
    }

    /// The fields OCSF computes: `category_uid` is the class's category, `type_uid` is
    /// `class_uid * 100 + activity_id`.
    fn computed(&mut self, event: &Map<String, Value>, class: &Entity) {
        let int = |key: &str| event.get(key).and_then(Value::as_i64);
        if let (Some(category_uid), Some(expected)) = (int("category_uid"), class.category_uid)
            && category_uid != expected
        {
            let message = format!("must be {expected}, the category of class {}, not {category_uid}", class.name);
            self.problem("$.category_uid", message);
        }
        if let (Some(class_uid), Some(activity_id), Some(type_uid)) = (class.uid, int("activity_id"), int("type_uid")) {
            match class_uid.checked_mul(100).and_then(|c| c.checked_add(activity_id)) {
                Some(expected) if expected == type_uid => {}
                Some(expected) => self.problem(
                    "$.type_uid",
                    format!("must be class_uid * 100 + activity_id = {expected}, not {type_uid}"),
                ),
                None => self.problem("$.type_uid", "class_uid * 100 + activity_id overflows"),
            }
        }
    }

    /// The event says which schema it follows; this checks against exactly one.
    fn version(&mut self, event: &Map<String, Value>) {
        if let Some(version) = event.get("metadata").and_then(|m| m.get("version")).and_then(Value::as_str)
            && version != self.schema.version
        {
            let message = format!("{version:?}, but this validator checks OCSF {}", self.schema.version);
            self.problem("$.metadata.version", message);
        }
    }
}

/// `parent.key`, or `parent["key"]` when the key is not a plain name (unknown keys come from the event).
fn child(parent: &str, key: &str) -> String {
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        format!("{parent}.{key}")
    } else {
        format!("{parent}[{}]", Value::from(key))
    }
}

/// A value for a message: its JSON kind and (shortened) text.
fn describe(value: &Value) -> String {
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let text = value.to_string();
    if text.chars().count() > 60 {
        format!("{kind} {}…", text.chars().take(57).collect::<String>())
    } else {
        format!("{kind} {text}")
    }
}
