//! PatchObject (RFC 8620 §5.3): a map from JSON Pointer (without the leading `/`) to a new value,
//! `null` meaning "reset to default / remove".

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

/// Why a patch was refused (`invalidPatch`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("{0:?} is not a valid path")]
    BadPath(String),
    #[error("{0:?} and {1:?} overlap: one is a prefix of the other")]
    Overlap(String, String),
    #[error("{0:?}: a parent of the patched member does not exist or is not an object")]
    MissingParent(String),
}

/// Splits a patch key into unescaped path segments (`~1` is `/`, `~0` is `~`).
pub fn parse_path(key: &str) -> Result<Vec<String>, PatchError> {
    if key.is_empty() || key.starts_with('/') {
        return Err(PatchError::BadPath(key.to_owned()));
    }
    key.split('/')
        .map(|seg| {
            let mut out = String::with_capacity(seg.len());
            let mut chars = seg.chars();
            while let Some(c) = chars.next() {
                match c {
                    '~' => match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => return Err(PatchError::BadPath(key.to_owned())),
                    },
                    c => out.push(c),
                }
            }
            Ok(out)
        })
        .collect()
}

/// Applies `patch` to `object`. Arrays are replaced whole, never patched inside (SET-13).
/// Returns the top-level properties the patch touched.
pub fn apply_patch(
    object: &mut Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<Vec<String>, PatchError> {
    let mut paths: Vec<(Vec<String>, &String, &Value)> = Vec::with_capacity(patch.len());
    for (key, value) in patch {
        paths.push((parse_path(key)?, key, value));
    }
    // Two paths overlap when one is a prefix of the other (keys are distinct, and so are their
    // unescaped paths). Every path's proper prefixes are looked up: linear in the patch's size,
    // where comparing every pair made a large patch cost seconds of a dispatcher thread.
    let by_path: HashMap<&[String], &String> = paths
        .iter()
        .map(|(path, key, _)| (path.as_slice(), *key))
        .collect();
    for (path, key, _) in &paths {
        for n in 1..path.len() {
            if let Some(prefix) = by_path.get(&path[..n]) {
                return Err(PatchError::Overlap((*prefix).clone(), (*key).clone()));
            }
        }
    }
    let mut touched = Vec::new();
    let mut seen = HashSet::new();
    for (path, key, value) in paths {
        #[allow(
            clippy::expect_used,
            reason = "paths come from parse_path, which never yields an empty one"
        )]
        let (last, parents) = path.split_last().expect("a path has at least one segment");
        let mut target = &mut *object;
        for seg in parents {
            target = match target.get_mut(seg) {
                Some(Value::Object(inner)) => inner,
                _ => return Err(PatchError::MissingParent(key.clone())),
            };
        }
        if value.is_null() {
            target.remove(last);
        } else {
            target.insert(last.clone(), value.clone());
        }
        if seen.insert(path[0].clone()) {
            touched.push(path[0].clone());
        }
    }
    Ok(touched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_patch_sets_and_removes_members_by_path() {
        let mut o = obj(json!({"name": "a", "keywords": {"$seen": true}}));
        let touched = apply_patch(
            &mut o,
            &obj(json!({"keywords/$flagged": true, "keywords/$seen": null, "name": "b"})),
        )
        .unwrap();
        assert_eq!(o, obj(json!({"name": "b", "keywords": {"$flagged": true}})));
        assert_eq!(touched.len(), 2);
    }

    #[test]
    fn escaped_slashes_address_members_whose_names_contain_them() {
        let mut o = obj(json!({"keywords": {}}));
        apply_patch(&mut o, &obj(json!({"keywords/a~1b~0c": true}))).unwrap();
        assert_eq!(o["keywords"], json!({"a/b~c": true}));
    }

    #[test]
    fn overlapping_paths_missing_parents_and_paths_into_arrays_are_invalid() {
        let mut o = obj(json!({"a": {"b": 1}, "list": [1]}));
        assert!(matches!(
            apply_patch(&mut o, &obj(json!({"a": {}, "a/b": 2}))),
            Err(PatchError::Overlap(..))
        ));
        assert!(matches!(
            apply_patch(&mut o, &obj(json!({"x/y": 1}))),
            Err(PatchError::MissingParent(_))
        ));
        assert!(matches!(
            apply_patch(&mut o, &obj(json!({"list/0": 2}))),
            Err(PatchError::MissingParent(_))
        ));
        assert!(matches!(
            apply_patch(&mut o, &obj(json!({"a/~2": 2}))),
            Err(PatchError::BadPath(_))
        ));
    }

    #[test]
    fn only_a_path_and_its_own_parents_overlap() {
        let mut o = obj(json!({"a": {"b": {"c": 1}}}));
        let overlap = apply_patch(&mut o, &obj(json!({"a/b/c": 2, "a": {}})));
        assert_eq!(
            overlap,
            Err(PatchError::Overlap("a".into(), "a/b/c".into()))
        );
        let mut o = obj(json!({"a": {}}));
        apply_patch(&mut o, &obj(json!({"a/b": 1, "a/bc": 2, "a/b~1c": 3}))).unwrap();
        assert_eq!(o["a"], json!({"b": 1, "bc": 2, "b/c": 3}));
    }

    #[test]
    fn a_patch_of_a_hundred_thousand_paths_is_checked_path_by_path() {
        // Comparing every pair of 100,000 paths is 5·10⁹ comparisons; this test would not end.
        let mut patch: Map<String, Value> = (0..100_000)
            .map(|i| (format!("p{i}/x"), json!(1)))
            .collect();
        patch.insert("p99999".into(), json!({}));
        let overlap = apply_patch(&mut Map::new(), &patch);
        assert_eq!(
            overlap,
            Err(PatchError::Overlap("p99999".into(), "p99999/x".into()))
        );
    }

    #[test]
    fn removing_an_absent_member_is_not_an_error() {
        let mut o = obj(json!({"keywords": {}}));
        apply_patch(&mut o, &obj(json!({"keywords/$seen": null}))).unwrap();
        assert_eq!(o, obj(json!({"keywords": {}})));
    }
}
