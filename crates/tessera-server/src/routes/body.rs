//! A JSON request body checked by `tessera_core::input` (one streaming pass, never a tree: the
//! same check as `tessera run --input`), its refusals as API errors.

use serde_json::{Value, json};
use tessera_core::Data;
use tessera_core::input::{InputError, check_input};

use crate::error::ApiError;

/// Checks a JSON body for pipeline `route`: an object, no references, fields as in `example`
/// (an object example; anything else checks nothing). Returns the task's input.
pub(crate) fn check_json_body(
    bytes: &[u8],
    example: Option<&Value>,
    route: &str,
) -> Result<Data, ApiError> {
    check_input(bytes, example).map_err(|e| match e {
        InputError::NotUtf8 => ApiError::bad_request("the body is not UTF-8 text"),
        InputError::Malformed {
            line,
            column,
            message,
        } => ApiError::BadRequest {
            message: format!("malformed JSON at line {line} column {column}: {message}"),
            details: Value::Null,
        },
        InputError::NotAnObject => ApiError::bad_request("the body must be a JSON object"),
        InputError::Reference { field, key } => super::reference_error("the body", field, key),
        InputError::Mismatch { problems, more } => {
            let count = problems.len() + more;
            let mut details = serde_json::to_value(problems).unwrap_or(Value::Null);
            if more > 0
                && let Value::Array(items) = &mut details
            {
                items.push(json!({"field": "", "message": format!("and {more} more")}));
            }
            ApiError::Invalid {
                message: format!(
                    "the body does not match pipeline `{route}`: {count} problem(s), listed in `details`"
                ),
                details,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_keep_their_api_shape() {
        let ex = json!({"n": 1, "name": "x"});
        let Err(ApiError::Invalid { message, details }) =
            check_json_body(br#"{"n": 1.5, "name": 3}"#, Some(&ex), "r")
        else {
            panic!("expected problems")
        };
        assert!(message.contains("pipeline `r`: 2 problem(s)"), "{message}");
        assert_eq!(
            details[0],
            json!({"field": "n", "message": "expected an integer"})
        );
        let Err(ApiError::BadRequest { details, .. }) =
            check_json_body(br#"{"a": [0, {"b": {"$object": "x"}}]}"#, Some(&ex), "r")
        else {
            panic!("a reference is refused")
        };
        assert_eq!(details[0]["field"], "a.1.b");
        assert!(matches!(
            check_json_body(b"[1]", None, "r"),
            Err(ApiError::BadRequest { .. })
        ));
    }
}
