//! The JSON-lines schema (docs/json-lines.schema.json) against real `sitfer run` output, and
//! against the examples in docs/json-lines.md.
//!
//! The schema uses a small part of JSON Schema (type, properties, required,
//! additionalProperties: false, items, minItems/maxItems, enum, minimum/maximum, oneOf, local
//! $ref); the checker below implements exactly that part, so the test needs no validator crate,
//! and refuses any other keyword so the schema cannot silently outgrow it.

use serde_json::Value;
use std::path::{Path, PathBuf};

mod common;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn schema() -> Value {
    let p = repo().join("docs/json-lines.schema.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

const KNOWN: &[&str] = &[
    "$schema",
    "$id",
    "$ref",
    "$defs",
    "title",
    "description",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "enum",
    "minimum",
    "maximum",
    "oneOf",
];

/// Every way `v` breaks `schema` (empty: valid), each with the JSON path of the value.
fn check(root: &Value, schema: &Value, v: &Value, at: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let s = schema.as_object().expect("a schema is an object");
    for k in s.keys() {
        assert!(
            KNOWN.contains(&k.as_str()),
            "schema keyword {k:?} is not supported by this checker"
        );
    }
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r
            .strip_prefix("#/$defs/")
            .unwrap_or_else(|| panic!("non-local $ref {r}"));
        let target = &root["$defs"][name];
        assert!(!target.is_null(), "$ref to a missing definition {r}");
        return check(root, target, v, at);
    }
    if let Some(alts) = s.get("oneOf").and_then(Value::as_array) {
        let ok = alts.iter().filter(|a| check(root, a, v, at).is_empty()).count();
        if ok != 1 {
            errs.push(format!("{at}: matches {ok} of the oneOf alternatives, not 1"));
        }
    }
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => panic!("bad type {t}"),
        };
        let is = |ty: &str| match ty {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            "number" => v.is_number(),
            "integer" => v.is_u64() || v.is_i64(),
            _ => panic!("unknown type {ty}"),
        };
        if !types.iter().any(|ty| is(ty)) {
            errs.push(format!("{at}: {v} is not {types:?}"));
            return errs;
        }
    }
    if let Some(allowed) = s.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        errs.push(format!("{at}: {v} is not one of {allowed:?}"));
    }
    if let Some(x) = v.as_f64() {
        if s.get("minimum").and_then(Value::as_f64).is_some_and(|m| x < m) {
            errs.push(format!("{at}: {x} is under the minimum {}", s["minimum"]));
        }
        // Probabilities from f32 arithmetic may overshoot 1 by a rounding step.
        if s.get("maximum").and_then(Value::as_f64).is_some_and(|m| x > m + 1e-6) {
            errs.push(format!("{at}: {x} is over the maximum {}", s["maximum"]));
        }
    }
    if let Some(items) = v.as_array() {
        let n = items.len() as u64;
        if s.get("minItems").and_then(Value::as_u64).is_some_and(|m| n < m) {
            errs.push(format!("{at}: {n} items, fewer than {}", s["minItems"]));
        }
        if s.get("maxItems").and_then(Value::as_u64).is_some_and(|m| n > m) {
            errs.push(format!("{at}: {n} items, more than {}", s["maxItems"]));
        }
        if let Some(item) = s.get("items") {
            for (i, x) in items.iter().enumerate() {
                errs.extend(check(root, item, x, &format!("{at}[{i}]")));
            }
        }
    }
    if let Some(obj) = v.as_object() {
        let props = s.get("properties").and_then(Value::as_object);
        for r in s.get("required").and_then(Value::as_array).into_iter().flatten() {
            let r = r.as_str().unwrap();
            if !obj.contains_key(r) {
                errs.push(format!("{at}: missing field {r:?}"));
            }
        }
        for (k, x) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(ps) => errs.extend(check(root, ps, x, &format!("{at}.{k}"))),
                None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    errs.push(format!("{at}: field {k:?} is not in the schema"))
                }
                None => {}
            }
        }
    }
    errs
}

fn check_as(def: &str, v: &Value) -> Vec<String> {
    let root = schema();
    check(&root, &root["$defs"][def], v, def)
}

/// The ```json examples of docs/json-lines.md.
fn doc_examples() -> Vec<Value> {
    let text = std::fs::read_to_string(repo().join("docs/json-lines.md")).unwrap();
    text.split("```json\n")
        .skip(1)
        .map(|block| {
            let body = block.split("```").next().unwrap();
            serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("json-lines.md example: {e}\n{body}"))
        })
        .collect()
}

#[test]
fn the_documented_examples_match_and_broken_lines_do_not() {
    let root = schema();
    let examples = doc_examples();
    assert!(examples.len() >= 2, "json-lines.md lost its examples");
    for ex in &examples {
        let errs = check(&root, &root, ex, "$");
        assert!(
            errs.is_empty(),
            "json-lines.md example breaks the schema: {errs:?}\n{ex}"
        );
    }
    let frame = examples.iter().find(|e| e.get("frame").is_some()).unwrap().clone();
    assert!(check_as("frame", &frame).is_empty());

    let mut broken = Vec::new();
    let mut f = frame.clone();
    f["faces"][0].as_object_mut().unwrap().remove("label");
    broken.push((f, "missing field \"label\""));
    let mut f = frame.clone();
    f["faces"][0]["mood"] = "ok".into();
    broken.push((f, "field \"mood\" is not in the schema"));
    let mut f = frame.clone();
    f["faces"][0]["p_hat"].as_array_mut().unwrap().pop();
    broken.push((f, "6 items, fewer than 7"));
    let mut f = frame.clone();
    f["detected"] = 1.into();
    broken.push((f, "is not [\"boolean\"]"));
    let mut f = frame.clone();
    f["faces"][0]["label"] = "contempt".into();
    broken.push((f, "is not one of"));
    let mut f = frame;
    f["frame"] = (-1).into();
    broken.push((f, "under the minimum"));
    for (v, says) in broken {
        let errs = check_as("frame", &v);
        assert!(errs.iter().any(|e| e.contains(says)), "wanted {says:?}, got {errs:?}");
    }
}

/// Three copies of the demo photo: a short "video" with a face on every frame.
fn three_frames(dir: &Path) -> PathBuf {
    let frames = dir.join("frames");
    std::fs::create_dir(&frames).unwrap();
    for i in 0..3 {
        std::fs::copy(
            repo().join("models/demo/astronaut.png"),
            frames.join(format!("{i:03}.png")),
        )
        .unwrap();
    }
    frames
}

#[test]
fn real_sitfer_run_output_matches_the_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let frames = three_frames(tmp.path());
    let out = tmp.path().join("out.jsonl");
    // Nothing listens on this port: the summary then carries the MQTT counts too (after the
    // publisher's 5 s drain).
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = common::run_sitfer(|c| {
        c.args(["run", "--detect-every", "2", "--source"])
            .arg(&frames)
            .arg("--json")
            .arg(&out)
            .args(["--mqtt", &format!("mqtt://127.0.0.1:{dead}/schema")])
            .env("RUST_LOG", "warn");
    });
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "sitfer run failed:\n{stderr}");

    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    for l in &lines {
        let errs = check_as("frame", l);
        assert!(errs.is_empty(), "{errs:?}\n{l}");
        assert_eq!(
            l["faces"].as_array().unwrap().len(),
            1,
            "the demo photo has one face: {l}"
        );
    }
    // Detection every 2nd frame, ahead (the default): frame 0 detects at once (no track yet),
    // frame 1 carries the track, and frame 2's detection, started on its own thread, would
    // place the tracks of frame 3 (there is none).
    let detected: Vec<bool> = lines.iter().map(|l| l["detected"].as_bool().unwrap()).collect();
    assert_eq!(detected, [true, false, false]);
    assert!(lines.iter().all(|l| l["faces"][0]["track"] == 1));

    let summary: Value = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap_or_else(|| panic!("no summary line on stderr:\n{stderr}"));
    let errs = check_as("summary", &summary);
    assert!(errs.is_empty(), "{errs:?}\n{summary}");
    assert_eq!(summary["summary"]["processed"], 3);
    assert_eq!(summary["mqtt"]["accepted"], 4, "3 frames and the summary: {summary}");
    assert_eq!(summary["mqtt"]["undelivered"], 4, "{summary}");
}
