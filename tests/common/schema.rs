//! The JSON result's schema, docs/push-result.schema.json: every `--format json` a test reads
//! can be held to it.

use serde_json::Value;

/// Asserts that `result` follows docs/push-result.schema.json.
pub fn assert_follows_schema(result: &Value) {
    validate(result, &schema(), "$");
}

/// Checks `value` against the subset of JSON Schema that docs/push-result.schema.json uses:
/// type, required, properties, items, enum.
fn validate(value: &Value, schema: &Value, path: &str) {
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        assert!(
            allowed.contains(value),
            "{path}: {value} not in {allowed:?}"
        );
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => panic!("{path}: bad schema type"),
        };
        let actual = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let ok = types.contains(&actual) || (actual == "integer" && types.contains(&"number"));
        assert!(ok, "{path}: {actual} is not {types:?}");
    }
    if let Value::Object(fields) = value {
        for name in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = name.as_str().unwrap();
            assert!(fields.contains_key(name), "{path}: missing {name}");
        }
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for name in fields.keys() {
                assert!(
                    properties.contains_key(name),
                    "{path}: {name} is not in the schema"
                );
            }
            for (name, field) in fields {
                validate(field, &properties[name], &format!("{path}.{name}"));
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            validate(item, item_schema, &format!("{path}[{i}]"));
        }
    }
}

fn schema() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/push-result.schema.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}
