//! Reading the records of one chunk: CSV (RFC 4180), JSON Lines and plain lines, each with its
//! physical line number and raw bytes so a bad record can be reported and skipped exactly.

use serde_json::{Map, Value};

use crate::row::Fields;

/// A record that cannot be read; `raw` is the whole record (line ending excluded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    pub line: u64,
    pub raw: String,
    pub reason: String,
}

/// Where one record sits in the chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSpan {
    /// 1-based physical line where the record starts.
    pub line: u64,
    /// Byte range in the chunk, line ending excluded.
    pub start: usize,
    pub end: usize,
    /// The record contains a quote (its raw bytes are not its fields joined by delimiters).
    pub quoted: bool,
}

/// Splits a chunk into records (line endings `\n` or `\r\n`; CSV newlines inside quotes kept).
/// Empty lines are not records, as in the csv crate and polars. One pass: every newline and
/// quote of the chunk is visited once.
pub struct Splitter<'a> {
    data: &'a [u8],
    pos: usize,
    line: u64,
    hits: Hits<'a>,
}

enum Hits<'a> {
    Newlines(memchr::Memchr<'a>),
    /// CSV: newlines and this quote byte.
    NewlinesAndQuotes(memchr::Memchr2<'a>, u8),
}

impl<'a> Splitter<'a> {
    pub fn new(data: &'a [u8], first_line: u64, csv_quote: Option<u8>) -> Splitter<'a> {
        let hits = match csv_quote {
            Some(q) => Hits::NewlinesAndQuotes(memchr::memchr2_iter(b'\n', q, data), q),
            None => Hits::Newlines(memchr::memchr_iter(b'\n', data)),
        };
        Splitter {
            data,
            pos: 0,
            line: first_line,
            hits,
        }
    }

    /// The end of the record starting at `self.pos` (its newline, or the end of the data),
    /// whether it holds a quote, and how many newlines it crosses inside quotes.
    fn record_end(&mut self) -> (usize, bool, u64) {
        match &mut self.hits {
            Hits::Newlines(it) => (it.next().unwrap_or(self.data.len()), false, 0),
            Hits::NewlinesAndQuotes(it, quote) => {
                let quote = *quote;
                let (mut quoted, mut in_quotes, mut inner) = (false, false, 0);
                for at in it.by_ref() {
                    if self.data[at] == quote {
                        quoted = true;
                        in_quotes = !in_quotes;
                    } else if in_quotes {
                        inner += 1;
                    } else {
                        return (at, quoted, inner);
                    }
                }
                (self.data.len(), quoted, inner)
            }
        }
    }
}

impl Iterator for Splitter<'_> {
    type Item = RecordSpan;

    fn next(&mut self) -> Option<RecordSpan> {
        loop {
            if self.pos >= self.data.len() {
                return None;
            }
            let start = self.pos;
            let line = self.line;
            let (end, quoted, inner) = self.record_end();
            self.line += inner;
            let has_newline = end < self.data.len();
            self.pos = if has_newline { end + 1 } else { end };
            if has_newline {
                self.line += 1;
            }
            let mut body_end = end;
            if body_end > start && self.data[body_end - 1] == b'\r' {
                body_end -= 1;
            }
            if body_end == start {
                continue;
            }
            return Some(RecordSpan {
                line,
                start,
                end: body_end,
                quoted,
            });
        }
    }
}

/// Splits one CSV record into `fields` (unescaped). `text` is the record, already valid UTF-8.
pub fn csv_fields(
    text: &str,
    delimiter: u8,
    quote: u8,
    quoted: bool,
    fields: &mut Fields,
) -> Result<(), String> {
    fields.clear();
    let bytes = text.as_bytes();
    if !quoted {
        let mut start = 0;
        for at in memchr::memchr_iter(delimiter, bytes) {
            fields.push(&text[start..at]);
            start = at + 1;
        }
        fields.push(&text[start..]);
        return Ok(());
    }
    let mut i = 0;
    loop {
        if i < bytes.len() && bytes[i] == quote {
            // Quoted field: runs to the closing quote; `""` is one quote.
            i += 1;
            let mut piece = i;
            loop {
                let Some(off) = memchr::memchr(quote, &bytes[i..]) else {
                    return Err("a quoted field is never closed".into());
                };
                let at = i + off;
                if bytes.get(at + 1) == Some(&quote) {
                    fields.buf.push_str(&text[piece..=at]);
                    i = at + 2;
                    piece = i;
                } else {
                    fields.buf.push_str(&text[piece..at]);
                    i = at + 1;
                    break;
                }
            }
            fields.ends.push(fields.buf.len());
            match bytes.get(i) {
                None => return Ok(()),
                Some(&b) if b == delimiter => i += 1,
                Some(_) => {
                    let col = fields.len();
                    return Err(format!(
                        "field {col}: unexpected text after the closing quote (a quote inside a \
                         quoted field must be doubled)"
                    ));
                }
            }
        } else {
            let end = memchr::memchr(delimiter, &bytes[i..]).map_or(bytes.len(), |o| i + o);
            let field = &text[i..end];
            if memchr::memchr(quote, field.as_bytes()).is_some() {
                let col = fields.len() + 1;
                return Err(format!(
                    "field {col}: a quote inside an unquoted field (quote the whole field and \
                     double the quote)"
                ));
            }
            fields.push(field);
            if end == bytes.len() {
                return Ok(());
            }
            i = end + 1;
        }
        if i == bytes.len() {
            // A delimiter at the very end: one more, empty, field.
            fields.push("");
            return Ok(());
        }
    }
}

/// One JSON Lines record: must be a JSON object.
pub fn json_record(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(format!(
            "expected a JSON object, got {}",
            tessera_core::model::json_type(&other)
        )),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

/// The text of a record, or why it is not UTF-8.
pub fn utf8(raw: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(raw).map_err(|e| {
        format!(
            "invalid UTF-8 at byte {} of the record (is the file in another encoding?)",
            e.valid_up_to() + 1
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(data: &str, quote: Option<u8>) -> Vec<(u64, String)> {
        Splitter::new(data.as_bytes(), 1, quote)
            .map(|r| (r.line, data[r.start..r.end].to_string()))
            .collect()
    }

    fn fields(text: &str) -> Result<Vec<String>, String> {
        let mut f = Fields::default();
        let quoted = text.contains('"');
        csv_fields(text, b',', b'"', quoted, &mut f)?;
        Ok(f.iter().map(str::to_string).collect())
    }

    #[test]
    fn records_keep_their_line_numbers_across_quoted_newlines() {
        let data = "a,b\r\n\"x\ny\",2\n\nlast,3";
        assert_eq!(
            split(data, Some(b'"')),
            vec![
                (1, "a,b".to_string()),
                (2, "\"x\ny\",2".to_string()),
                (5, "last,3".to_string())
            ]
        );
        assert_eq!(
            split("p\nq\n", None),
            vec![(1, "p".into()), (2, "q".into())]
        );
    }

    #[test]
    fn csv_fields_follow_rfc_4180() {
        assert_eq!(fields("a,b,c").unwrap(), ["a", "b", "c"]);
        assert_eq!(fields("a,,").unwrap(), ["a", "", ""]);
        assert_eq!(
            fields("\"a,b\",\"he said \"\"hi\"\"\"").unwrap(),
            ["a,b", "he said \"hi\""]
        );
        assert_eq!(fields("\"\",x").unwrap(), ["", "x"]);
        assert_eq!(fields("x,\"\"").unwrap(), ["x", ""]);
        assert_eq!(fields("\"l1\nl2\",é").unwrap(), ["l1\nl2", "é"]);
        assert_eq!(fields("NA,NULL").unwrap(), ["NA", "NULL"]);
        assert!(
            fields("\"ab\"c,d")
                .unwrap_err()
                .contains("after the closing quote")
        );
        assert!(
            fields("ab\"c,d")
                .unwrap_err()
                .contains("inside an unquoted field")
        );
        assert!(fields("\"abc").unwrap_err().contains("never closed"));
    }

    #[test]
    fn json_records_must_be_objects() {
        assert!(json_record("{\"a\": 1}").is_ok());
        assert!(json_record("[1]").unwrap_err().contains("a list"));
        assert!(
            json_record("{\"a\": ")
                .unwrap_err()
                .contains("invalid JSON")
        );
        assert!(utf8(b"ab\xffc").unwrap_err().contains("byte 3"));
    }
}
