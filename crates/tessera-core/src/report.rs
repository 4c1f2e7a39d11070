//! Validation reports: every problem of a pipeline at once, each naming its node and field.

use std::fmt;

use serde::Serialize;

/// One problem found in a pipeline definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    /// The node the problem is in (`None` for document-level problems).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The field, e.g. `next[1]`, `input.image`, `retry.attempts`.
    pub field: String,
    pub message: String,
}

impl Issue {
    pub fn node(node: &str, field: impl Into<String>, message: impl Into<String>) -> Issue {
        Issue {
            node: Some(node.to_string()),
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn global(field: impl Into<String>, message: impl Into<String>) -> Issue {
        Issue {
            node: None,
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.node {
            Some(n) => write!(f, "node `{n}`, field `{}`: {}", self.field, self.message),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

/// All problems of one pipeline; empty means valid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub errors: Vec<Issue>,
}

impl Report {
    pub fn single(issue: Issue) -> Report {
        Report {
            errors: vec![issue],
        }
    }

    pub fn push(&mut self, issue: Issue) {
        if !self.errors.contains(&issue) {
            self.errors.push(issue);
        }
    }

    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Report {}
