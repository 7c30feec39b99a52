//! Compiling the OCSF schema sources (`dictionary.json`, `events/`, `objects/`, `profiles/`) into the classes
//! and objects the validator walks, the way the OCSF server compiles them:
//!
//! 1. `$include` in a file's `attributes` (a profile, e.g. `profiles/host.json`) is read and deep-merged *under*
//!    the file's own attributes (the including file wins). Attributes that come from a profile (`"meta":
//!    "profile"`) are tagged with `"profile": <name>`, so a class attribute that restates one with `"profile":
//!    null` (api_activity's `actor` and `api`) takes it out of the profile.
//! 2. `extends` chains are resolved parent first: the attributes deep-merge (child keys win, enums merge key by
//!    key, a `null` attribute removes the parent's), other keys are the child's when it has them, `profiles`
//!    are the union. `constraints` are the child's when it states any (even `{}`), else the parent's.
//! 3. Each attribute is completed from the dictionary: `deep_merge(dictionary entry, local entry)`.
//! 4. Every `timestamp_t` attribute `x` gets an optional `x_dt` (`datetime_t`) of the `datetime` profile.
//! 5. A class's `class_uid`, `category_uid` and `type_uid` enums are computed from its uid, its category and its
//!    `activity_id` enum (`type_uid` = `class_uid * 100 + activity_id`, captioned "Class: Activity").

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

type Result<T> = std::result::Result<T, String>;

/// An OCSF schema compiled from its sources: what [`super::validate`] checks events against.
#[derive(Debug)]
pub struct Schema {
    pub(super) version: String,
    pub(super) types: BTreeMap<String, DataType>,
    pub(super) classes: BTreeMap<i64, Entity>,
    pub(super) objects: BTreeMap<String, Entity>,
    pub(super) profiles: BTreeSet<String>,
}

/// A data type of the dictionary's `types`, flattened onto its primitive (`port_t` → `integer_t` with a range).
#[derive(Debug)]
pub struct DataType {
    pub primitive: Primitive,
    pub max_len: Option<usize>,
    pub range: Option<(f64, f64)>,
    pub values: Option<Vec<Value>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Primitive {
    Boolean,
    Integer,
    Long,
    Float,
    String,
    Json,
}

/// What an attribute holds: a dictionary data type, or an object of `objects/` (`user`, `network_endpoint`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrType {
    Data(String),
    Object(String),
}

impl fmt::Display for AttrType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrType::Data(name) => write!(f, "{name}"),
            AttrType::Object(name) => write!(f, "object `{name}`"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    Required,
    Recommended,
    Optional,
}

/// One attribute of a class or object, completed from the dictionary.
#[derive(Debug, Clone)]
pub struct Attribute {
    pub ty: AttrType,
    pub is_array: bool,
    pub requirement: Requirement,
    /// Enum value (the JSON key, e.g. `"1"`) → caption.
    pub enumeration: Option<BTreeMap<String, String>>,
    /// The caption attribute of an enum (`severity` for `severity_id`).
    pub sibling: Option<String>,
    /// The profile the attribute belongs to: it exists only when the event lists the profile.
    pub profile: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Constraint {
    AtLeastOne(Vec<String>),
    JustOne(Vec<String>),
}

/// A compiled event class or object.
#[derive(Debug)]
pub struct Entity {
    pub name: String,
    pub caption: String,
    /// The `class_uid` (classes only).
    pub uid: Option<i64>,
    /// The category's uid (classes only; 0 for `base_event`, whose category "other" is not in categories.json).
    pub category_uid: Option<i64>,
    pub attributes: BTreeMap<String, Attribute>,
    pub constraints: Vec<Constraint>,
}

impl Schema {
    /// Compiles the schema sources under `root` (a checkout of ocsf-schema, or the part of it a class needs).
    pub fn load(root: &Path) -> Result<Schema> {
        let version = read_json(&root.join("version.json"))?
            .get("version")
            .and_then(Value::as_str)
            .ok_or("version.json has no version")?
            .to_owned();
        let dictionary = read_json(&root.join("dictionary.json"))?;
        let dictionary_attributes =
            dictionary.get("attributes").and_then(Value::as_object).ok_or("dictionary.json has no attributes")?;
        let types = compile_types(
            dictionary.pointer("/types/attributes").and_then(Value::as_object).ok_or("dictionary.json has no types")?,
        )?;
        let categories = read_categories(&root.join("categories.json"))?;
        let mut profiles = BTreeSet::new();
        for path in json_files(&root.join("profiles"))? {
            profiles.insert(name_of(&read_json(&path)?, &path)?);
        }
        let raw_classes = read_sources(root, "events")?;
        let raw_objects = read_sources(root, "objects")?;
        let compiler = Compiler { dictionary: dictionary_attributes, types: &types, objects: &raw_objects };

        let mut objects = BTreeMap::new();
        for name in raw_objects.keys() {
            let resolved = resolve_extends(&raw_objects, name, 0)?;
            objects.insert(name.clone(), compiler.entity(&resolved).map_err(|e| format!("object {name}: {e}"))?);
        }
        let mut classes = BTreeMap::new();
        for (name, raw) in &raw_classes {
            // Classes without a uid (`application`, `iam`) are abstract parents; base_event is itself a class (0).
            if name != "base_event" && raw.get("uid").is_none() {
                continue;
            }
            let resolved = resolve_extends(&raw_classes, name, 0)?;
            let class = compiler.class(&resolved, &categories).map_err(|e| format!("class {name}: {e}"))?;
            let uid = class.uid.unwrap_or_default();
            if let Some(other) = classes.insert(uid, class) {
                return Err(format!("class_uid {uid} is defined by both {} and {name}", other.name));
            }
        }
        Ok(Schema { version, types, classes, objects, profiles })
    }

    /// The schema's version (`version.json`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The class with this `class_uid`.
    pub fn class(&self, class_uid: i64) -> Option<&Entity> {
        self.classes.get(&class_uid)
    }

    /// The object of this name (`user`, `network_endpoint`, …).
    pub fn object(&self, name: &str) -> Option<&Entity> {
        self.objects.get(name)
    }

    /// The names of the profiles an event may list in `metadata.profiles`.
    pub fn profiles(&self) -> &BTreeSet<String> {
        &self.profiles
    }
}

struct Compiler<'a> {
    dictionary: &'a Map<String, Value>,
    types: &'a BTreeMap<String, DataType>,
    objects: &'a BTreeMap<String, Value>,
}

impl Compiler<'_> {
    fn entity(&self, resolved: &Map<String, Value>) -> Result<Entity> {
        let name = resolved.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
        let caption = resolved.get("caption").and_then(Value::as_str).unwrap_or(&name).to_owned();
        let mut attributes = BTreeMap::new();
        let mut datetimes = Vec::new();
        for (key, local) in resolved.get("attributes").and_then(Value::as_object).into_iter().flatten() {
            let entry =
                self.dictionary.get(key).ok_or_else(|| format!("attribute `{key}` is not in the dictionary"))?;
            if local.get("$include").is_some() {
                return Err(format!("attribute `{key}`: an attribute-level $include is not supported"));
            }
            let merged = deep_merge(entry.clone(), local.clone());
            let attribute = self.attribute(&merged).map_err(|e| format!("attribute `{key}`: {e}"))?;
            // The server adds `x_dt` for the dictionary's timestamp_t attributes (a local type override aside).
            if entry.get("type").and_then(Value::as_str) == Some("timestamp_t") {
                let datetime = Attribute {
                    ty: AttrType::Data("datetime_t".to_owned()),
                    is_array: attribute.is_array,
                    requirement: Requirement::Optional,
                    enumeration: None,
                    sibling: None,
                    profile: Some("datetime".to_owned()),
                };
                datetimes.push((format!("{key}_dt"), datetime));
            }
            attributes.insert(key.clone(), attribute);
        }
        // Inserted last: the synthetic attributes win over any stated ones, as in the server.
        attributes.extend(datetimes);
        let constraints = constraints(resolved.get("constraints"))?;
        Ok(Entity { name, caption, uid: None, category_uid: None, attributes, constraints })
    }

    fn attribute(&self, merged: &Value) -> Result<Attribute> {
        let type_name = merged.get("type").and_then(Value::as_str).ok_or("no type")?;
        let ty = if self.types.contains_key(type_name) {
            AttrType::Data(type_name.to_owned())
        } else if self.objects.contains_key(type_name) {
            AttrType::Object(type_name.to_owned())
        } else {
            return Err(format!("type `{type_name}` is neither a data type nor an object"));
        };
        let requirement = match merged.get("requirement").and_then(Value::as_str) {
            Some("required") => Requirement::Required,
            Some("recommended") => Requirement::Recommended,
            // The server reads a missing requirement as optional.
            _ => Requirement::Optional,
        };
        let enumeration = merged.get("enum").and_then(Value::as_object).map(|values| {
            values
                .iter()
                .map(|(key, value)| {
                    (key.clone(), value.get("caption").and_then(Value::as_str).unwrap_or_default().to_owned())
                })
                .collect()
        });
        Ok(Attribute {
            ty,
            is_array: merged.get("is_array").and_then(Value::as_bool).unwrap_or(false),
            requirement,
            enumeration,
            sibling: merged.get("sibling").and_then(Value::as_str).map(str::to_owned),
            profile: merged.get("profile").and_then(Value::as_str).map(str::to_owned),
        })
    }

    fn class(&self, resolved: &Map<String, Value>, categories: &BTreeMap<String, (i64, String)>) -> Result<Entity> {
        let mut class = self.entity(resolved)?;
        let category = resolved.get("category").and_then(Value::as_str).and_then(|c| categories.get(c));
        let category_uid = category.map_or(0, |(uid, _)| *uid);
        let local_uid = resolved.get("uid").and_then(Value::as_i64).unwrap_or(0);
        let uid = category_uid.checked_mul(1000).and_then(|c| c.checked_add(local_uid)).ok_or("class_uid overflows")?;
        class.uid = Some(uid);
        class.category_uid = Some(category_uid);

        // The sources state only base_event's placeholders (class 0, category 0); each class gets its own.
        if let Some(attribute) = class.attributes.get_mut("class_uid") {
            attribute.enumeration = Some(BTreeMap::from([(uid.to_string(), class.caption.clone())]));
        }
        if let (Some((category_uid, caption)), Some(attribute)) = (category, class.attributes.get_mut("category_uid")) {
            attribute.enumeration = Some(BTreeMap::from([(category_uid.to_string(), caption.clone())]));
        }
        let activities = ["activity_id", "disposition_id"]
            .iter()
            .find_map(|key| class.attributes.get(*key).and_then(|a| a.enumeration.clone()))
            .unwrap_or_default();
        let mut types = BTreeMap::new();
        let class_type = uid.checked_mul(100).ok_or("type_uid overflows")?;
        for (key, caption) in activities {
            if let Some(type_uid) = key.parse::<i64>().ok().and_then(|id| class_type.checked_add(id)) {
                types.insert(type_uid.to_string(), format!("{}: {caption}", class.caption));
            }
        }
        // As in the server, activity 0 is always there, captioned "Unknown".
        types.insert(class_type.to_string(), format!("{}: Unknown", class.caption));
        if let Some(attribute) = class.attributes.get_mut("type_uid") {
            attribute.enumeration = Some(types);
        }
        Ok(class)
    }
}

fn compile_types(raw: &Map<String, Value>) -> Result<BTreeMap<String, DataType>> {
    let mut types = BTreeMap::new();
    for (name, ty) in raw {
        // A derived type (`port_t`) names its base in `type`; its own constraints come first, then the base's.
        let base_name = ty.get("type").and_then(Value::as_str).unwrap_or(name);
        let base = raw.get(base_name).filter(|_| base_name != name);
        let pick = |key: &str| ty.get(key).or_else(|| base.and_then(|b| b.get(key)));
        let primitive = match base_name {
            "boolean_t" => Primitive::Boolean,
            "integer_t" => Primitive::Integer,
            "long_t" => Primitive::Long,
            "float_t" => Primitive::Float,
            "string_t" => Primitive::String,
            "json_t" => Primitive::Json,
            other => return Err(format!("data type {name}: unknown primitive type {other}")),
        };
        let range = pick("range").and_then(Value::as_array).and_then(|r| match r.as_slice() {
            [low, high] => Some((low.as_f64()?, high.as_f64()?)),
            _ => None,
        });
        types.insert(
            name.clone(),
            DataType {
                primitive,
                max_len: pick("max_len").and_then(Value::as_u64).and_then(|n| usize::try_from(n).ok()),
                range,
                values: pick("values").and_then(Value::as_array).cloned(),
            },
        );
    }
    Ok(types)
}

fn constraints(raw: Option<&Value>) -> Result<Vec<Constraint>> {
    let mut constraints = Vec::new();
    for (kind, names) in raw.and_then(Value::as_object).into_iter().flatten() {
        let names: Vec<String> =
            names.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect();
        constraints.push(match kind.as_str() {
            "at_least_one" => Constraint::AtLeastOne(names),
            "just_one" => Constraint::JustOne(names),
            other => return Err(format!("unknown constraint `{other}`")),
        });
    }
    Ok(constraints)
}

fn read_categories(path: &Path) -> Result<BTreeMap<String, (i64, String)>> {
    let categories = read_json(path)?;
    let mut out = BTreeMap::new();
    for (name, category) in categories.get("attributes").and_then(Value::as_object).into_iter().flatten() {
        let uid = category.get("uid").and_then(Value::as_i64).ok_or_else(|| format!("category {name}: no uid"))?;
        let caption = category.get("caption").and_then(Value::as_str).unwrap_or(name);
        out.insert(name.clone(), (uid, caption.to_owned()));
    }
    Ok(out)
}

/// Every class (`events/`) or object (`objects/`) by name, with its `$include`s merged in.
fn read_sources(root: &Path, dir: &str) -> Result<BTreeMap<String, Value>> {
    let mut items = BTreeMap::new();
    for path in json_files(&root.join(dir))? {
        let mut item = read_json(&path)?;
        resolve_includes(root, &mut item).map_err(|e| format!("{}: {e}", path.display()))?;
        let name = name_of(&item, &path)?;
        if items.insert(name.clone(), item).is_some() {
            return Err(format!("{} defines `{name}` a second time", path.display()));
        }
    }
    Ok(items)
}

fn resolve_includes(root: &Path, item: &mut Value) -> Result<()> {
    let Some(attributes) = item.get_mut("attributes").and_then(Value::as_object_mut) else { return Ok(()) };
    let files = match attributes.remove("$include") {
        None => return Ok(()),
        Some(Value::String(file)) => vec![file],
        Some(Value::Array(files)) => files
            .iter()
            .map(|f| f.as_str().map(str::to_owned).ok_or_else(|| "bad $include entry".to_owned()))
            .collect::<Result<_>>()?,
        Some(_) => return Err("bad $include".to_owned()),
    };
    // Sequentially, as the server does: each file goes under what has been merged so far.
    let mut merged = std::mem::take(attributes);
    for file in files {
        merged = merge_maps(included_attributes(&read_json(&root.join(&file))?), merged);
    }
    *attributes = merged;
    Ok(())
}

/// The attributes of an included file; a profile's are tagged with its name and get its `annotations`.
fn included_attributes(included: &Value) -> Map<String, Value> {
    let profile = included.get("name").filter(|_| included.get("meta").and_then(Value::as_str) == Some("profile"));
    let annotations = included.get("annotations");
    let mut attributes = included.get("attributes").and_then(Value::as_object).cloned().unwrap_or_default();
    for attribute in attributes.values_mut() {
        if let (Some(profile), Some(map)) = (profile, attribute.as_object_mut()) {
            map.insert("profile".to_owned(), profile.clone());
        }
        if let Some(annotations) = annotations {
            *attribute = deep_merge(annotations.clone(), std::mem::take(attribute));
        }
    }
    attributes
}

/// `name`'s item with its `extends` chain merged in, parent first.
fn resolve_extends(items: &BTreeMap<String, Value>, name: &str, depth: usize) -> Result<Map<String, Value>> {
    if depth > 32 {
        return Err(format!("`{name}`: extends chain too long (a cycle?)"));
    }
    let item = items.get(name).and_then(Value::as_object).ok_or_else(|| format!("`{name}` is not defined"))?;
    let Some(parent) = item.get("extends").and_then(Value::as_str) else { return Ok(item.clone()) };
    let mut base = resolve_extends(items, parent, depth + 1).map_err(|e| format!("{name}: {e}"))?;
    let inherited = match base.remove("attributes") {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let own = item.get("attributes").and_then(Value::as_object).cloned().unwrap_or_default();
    let mut attributes = merge_maps(inherited, own);
    // `"attr": null` in a child removes the parent's attribute.
    attributes.retain(|_, attribute| !attribute.is_null());
    for (key, value) in item {
        match (key.as_str(), value) {
            ("attributes", _) | (_, Value::Null) => {}
            ("profiles", Value::Array(own)) => {
                let mut profiles = base.get("profiles").and_then(Value::as_array).cloned().unwrap_or_default();
                profiles.extend(own.iter().filter(|p| !profiles.contains(p)).cloned().collect::<Vec<_>>());
                base.insert(key.clone(), Value::Array(profiles));
            }
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
    base.insert("attributes".to_owned(), Value::Object(attributes));
    Ok(base)
}

/// The server's deep merge: maps merge key by key with `right` winning; an empty map on either side yields the
/// other; anything else is `right` (`null` included, which is how `"profile": null` unsets a profile).
fn deep_merge(left: Value, right: Value) -> Value {
    match (left, right) {
        (Value::Object(left), Value::Object(right)) => Value::Object(merge_maps(left, right)),
        (left, Value::Null) => left,
        (_, right) => right,
    }
}

fn merge_maps(mut left: Map<String, Value>, right: Map<String, Value>) -> Map<String, Value> {
    for (key, right) in right {
        let merged = match (left.remove(&key), right) {
            (Some(Value::Object(l)), Value::Object(r)) if r.is_empty() => Value::Object(l),
            (Some(Value::Object(l)), Value::Object(r)) => Value::Object(merge_maps(l, r)),
            (_, right) => right,
        };
        left.insert(key, merged);
    }
    left
}

fn name_of(item: &Value, path: &Path) -> Result<String> {
    item.get("name").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| format!("{}: no name", path.display()))
}

fn read_json(path: &Path) -> Result<Value> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The `.json` files under `dir`, recursively, in a stable order.
fn json_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}
