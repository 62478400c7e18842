//! Filters of the listed types (RFC 8620 §5.5): the FilterOperator tree is the same for every
//! type; a type supplies only how one FilterCondition matches one record.

use serde_json::{Map, Value};

use crate::jmap::error::MethodError;

/// Whether `filter` (a FilterOperator or a FilterCondition) matches, with `condition` deciding
/// each FilterCondition.
pub fn filter_matches<F>(filter: &Value, condition: &F) -> Result<bool, MethodError>
where
    F: Fn(&Map<String, Value>) -> Result<bool, MethodError>,
{
    let Value::Object(f) = filter else {
        return Err(MethodError::InvalidArguments(
            "a filter is an object".into(),
        ));
    };
    let Some(op) = f.get("operator") else {
        return condition(f);
    };
    let conditions = f
        .get("conditions")
        .and_then(Value::as_array)
        .ok_or_else(|| MethodError::InvalidArguments("a FilterOperator needs conditions".into()))?;
    if f.len() != 2 {
        return Err(MethodError::InvalidArguments(
            "a FilterOperator has only operator and conditions".into(),
        ));
    }
    let results = conditions
        .iter()
        .map(|c| filter_matches(c, condition))
        .collect::<Result<Vec<_>, _>>()?;
    match op.as_str() {
        Some("AND") => Ok(results.iter().all(|r| *r)),
        Some("OR") => Ok(results.iter().any(|r| *r)),
        Some("NOT") => Ok(!results.iter().any(|r| *r)),
        _ => Err(MethodError::InvalidArguments(format!(
            "unknown operator {op}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn has_a(c: &Map<String, Value>) -> Result<bool, MethodError> {
        Ok(c.get("a") == Some(&json!(true)))
    }

    #[test]
    fn operators_combine_the_conditions_results() {
        let t = json!({"a": true});
        let f = json!({"a": false});
        let op = |o: &str, cs: Vec<&Value>| json!({"operator": o, "conditions": cs});
        assert!(filter_matches(&op("AND", vec![&t, &t]), &has_a).unwrap());
        assert!(!filter_matches(&op("AND", vec![&t, &f]), &has_a).unwrap());
        assert!(filter_matches(&op("OR", vec![&f, &t]), &has_a).unwrap());
        assert!(filter_matches(&op("NOT", vec![&f, &f]), &has_a).unwrap());
        assert!(!filter_matches(&op("NOT", vec![&f, &t]), &has_a).unwrap());
    }

    #[test]
    fn a_malformed_operator_is_invalid_arguments() {
        for bad in [
            json!({"operator": "XOR", "conditions": []}),
            json!({"operator": "AND"}),
            json!({"operator": "AND", "conditions": [], "a": true}),
            json!([]),
        ] {
            assert!(matches!(
                filter_matches(&bad, &has_a),
                Err(MethodError::InvalidArguments(_))
            ));
        }
    }
}
