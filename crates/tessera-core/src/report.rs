//! Validation reports: every problem of a pipeline at once, each naming its node and field,
//! and the line of the pipeline's text it is on (see [`locate`]).

mod locate;

use std::collections::HashSet;
use std::fmt;

use serde::Serialize;

/// One problem found in a pipeline definition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Issue {
    /// The node the problem is in (`None` for document-level problems).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The field, e.g. `next[1]`, `input.image`, `retry.attempts`.
    pub field: String,
    pub message: String,
    /// The line (1-based) of the pipeline's text the field is on, when found ([`Report::locate`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

impl Issue {
    pub fn node(node: &str, field: impl Into<String>, message: impl Into<String>) -> Issue {
        Issue {
            node: Some(node.to_string()),
            field: field.into(),
            message: message.into(),
            line: None,
        }
    }

    pub fn global(field: impl Into<String>, message: impl Into<String>) -> Issue {
        Issue {
            node: None,
            field: field.into(),
            message: message.into(),
            line: None,
        }
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        match &self.node {
            Some(n) => write!(f, "node `{n}`, field `{}`: {}", self.field, self.message),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

/// All problems of one pipeline, in the order found, each once; empty means valid.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub errors: Vec<Issue>,
    /// The issues in `errors`, so that adding one stays O(1) with 10⁵ problems.
    #[serde(skip)]
    seen: HashSet<Issue>,
}

impl PartialEq for Report {
    fn eq(&self, other: &Report) -> bool {
        self.errors == other.errors
    }
}

impl Eq for Report {}

impl Report {
    pub fn single(issue: Issue) -> Report {
        let mut r = Report::default();
        r.push(issue);
        r
    }

    pub fn push(&mut self, issue: Issue) {
        if self.seen.insert(issue.clone()) {
            self.errors.push(issue);
        }
    }

    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// Says on which line of `text` (the pipeline the report is about) each problem is, where
    /// that can be found. A document on one line (JSON made by a program) gets none: every
    /// problem would be on line 1.
    pub fn locate(&mut self, text: &str) {
        if !text.trim_end().contains('\n') {
            return;
        }
        let mut lines = locate::Lines::new(text);
        for issue in &mut self.errors {
            if issue.line.is_none() && issue.field != "document" {
                issue.line = lines.locate(issue.node.as_deref(), &issue.field);
            }
        }
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
