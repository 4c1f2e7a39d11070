//! Chunk planning: one sequential pass over the input finds where every `chunk_size`-th record
//! starts, never inside a quoted CSV field, so chunks can then be processed in parallel and
//! restarted one by one. The pass only looks for quotes and newlines (memchr), so it runs at
//! memory speed and holds one buffer, whatever the file size.

use std::io::Read;

/// How records are delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// RFC 4180: a newline inside a quoted field does not end the record.
    Csv { quote: u8 },
    /// One record per line (JSON Lines, plain lines).
    Lines,
}

#[derive(Debug, Clone, Copy)]
pub struct PlanOptions {
    pub format: Format,
    /// Records per chunk (at least 1).
    pub chunk_size: u64,
    /// The first record is a header, not data.
    pub header: bool,
}

/// A contiguous range of whole records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub index: usize,
    /// Byte range in the input, `start..end`.
    pub start: u64,
    pub end: u64,
    /// Physical line (1-based) where the chunk's first record starts, for error messages.
    pub first_line: u64,
    pub records: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The header record's bytes (line ending included), when there is one.
    pub header: Option<Vec<u8>>,
    pub chunks: Vec<Chunk>,
    pub records: u64,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("reading the input: {0}")]
    Io(#[from] std::io::Error),
    #[error("line {line}: a quoted field is never closed (it runs to the end of the input)")]
    UnclosedQuote { line: u64 },
}

const BUFFER: usize = 1 << 20;

/// Plans the chunks of `input`.
pub fn plan_chunks<R: Read>(mut input: R, opts: PlanOptions) -> Result<Plan, PlanError> {
    let chunk_size = opts.chunk_size.max(1);
    let mut scan = Scanner::new(opts.format);
    let mut buf = vec![0u8; BUFFER];
    let mut offset = 0u64;
    let mut header: Option<Vec<u8>> = None;
    let mut want_header = opts.header;
    let mut chunks: Vec<Chunk> = Vec::new();
    // The record being read starts here (offset, line).
    let mut record_start = (0u64, 1u64);
    let mut open: Option<Chunk> = None;
    let mut records = 0u64;
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let data = &buf[..n];
        let mut consumed = 0usize;
        while let Some(end) = scan.next_record_end(&data[consumed..]) {
            let end_in_buf = consumed + end;
            let end_offset = offset + end_in_buf as u64;
            if want_header {
                let mut h = scan.take_partial();
                h.extend_from_slice(&data[consumed..end_in_buf]);
                header = Some(h);
                want_header = false;
            } else {
                add_record(&mut open, &mut chunks, record_start, end_offset, chunk_size);
                records += 1;
            }
            scan.clear_partial();
            record_start = (end_offset, scan.line);
            consumed = end_in_buf;
        }
        if want_header {
            scan.keep_partial(&data[consumed..]);
        }
        offset += n as u64;
    }
    if scan.in_quotes {
        return Err(PlanError::UnclosedQuote {
            line: record_start.1,
        });
    }
    // A last record without a final newline.
    if offset > record_start.0 {
        if want_header {
            header = Some(scan.take_partial());
        } else {
            add_record(&mut open, &mut chunks, record_start, offset, chunk_size);
            records += 1;
        }
    }
    chunks.extend(open);
    Ok(Plan {
        header,
        chunks,
        records,
        bytes: offset,
    })
}

fn add_record(
    open: &mut Option<Chunk>,
    chunks: &mut Vec<Chunk>,
    start: (u64, u64),
    end: u64,
    size: u64,
) {
    let chunk = open.get_or_insert_with(|| Chunk {
        index: chunks.len(),
        start: start.0,
        end: start.0,
        first_line: start.1,
        records: 0,
    });
    chunk.end = end;
    chunk.records += 1;
    if chunk.records == size {
        chunks.push(open.take().expect("chunk just filled"));
    }
}

/// Finds record ends across buffer boundaries, tracking quotes and physical lines.
struct Scanner {
    format: Format,
    in_quotes: bool,
    /// Physical line number at the scan position (1-based).
    line: u64,
    /// Bytes of a header record split across buffers.
    partial: Vec<u8>,
}

impl Scanner {
    fn new(format: Format) -> Scanner {
        Scanner {
            format,
            in_quotes: false,
            line: 1,
            partial: Vec::new(),
        }
    }

    /// The offset just after the next record's newline in `data`, if it ends in `data`.
    fn next_record_end(&mut self, data: &[u8]) -> Option<usize> {
        match self.format {
            Format::Lines => {
                let i = memchr::memchr(b'\n', data)?;
                self.line += 1;
                Some(i + 1)
            }
            Format::Csv { quote } => {
                for i in memchr::memchr2_iter(quote, b'\n', data) {
                    if data[i] == quote {
                        // An escaped quote ("") toggles twice: the state comes out right.
                        self.in_quotes = !self.in_quotes;
                    } else {
                        self.line += 1;
                        if !self.in_quotes {
                            return Some(i + 1);
                        }
                    }
                }
                None
            }
        }
    }

    fn keep_partial(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
    }

    fn take_partial(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.partial)
    }

    fn clear_partial(&mut self) {
        self.partial.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(chunk_size: u64, header: bool) -> PlanOptions {
        PlanOptions {
            format: Format::Csv { quote: b'"' },
            chunk_size,
            header,
        }
    }

    #[test]
    fn chunks_fall_on_record_boundaries_never_inside_quotes() {
        let text = b"name,n\nA,1\n\"B,\nb\",2\nC,3\n\"D \"\"x\"\"\",4\n";
        let plan = plan_chunks(&text[..], csv(2, true)).unwrap();
        assert_eq!(plan.header.as_deref(), Some(&b"name,n\n"[..]));
        assert_eq!(plan.records, 4);
        let parts: Vec<&[u8]> = plan
            .chunks
            .iter()
            .map(|c| &text[c.start as usize..c.end as usize])
            .collect();
        assert_eq!(
            parts,
            [&b"A,1\n\"B,\nb\",2\n"[..], &b"C,3\n\"D \"\"x\"\"\",4\n"[..]]
        );
        assert_eq!(plan.chunks[0].first_line, 2);
        assert_eq!(
            plan.chunks[1].first_line, 5,
            "the quoted newline counts as a physical line"
        );
    }

    #[test]
    fn header_only_empty_and_no_final_newline() {
        let plan = plan_chunks(&b"a,b\n"[..], csv(10, true)).unwrap();
        assert_eq!((plan.records, plan.chunks.len()), (0, 0));
        let plan = plan_chunks(&b""[..], csv(10, true)).unwrap();
        assert_eq!((plan.header, plan.records), (None, 0));
        let plan = plan_chunks(&b"h\nx\ny"[..], csv(1, true)).unwrap();
        assert_eq!(plan.records, 2);
        assert_eq!((plan.chunks[1].start, plan.chunks[1].end), (4, 5));
        let plan = plan_chunks(&b"only header"[..], csv(1, true)).unwrap();
        assert_eq!(plan.header.as_deref(), Some(&b"only header"[..]));
    }

    #[test]
    fn an_unclosed_quote_names_its_line() {
        let err = plan_chunks(&b"h\nok\n\"never\nclosed\n"[..], csv(10, true)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 3: a quoted field is never closed (it runs to the end of the input)"
        );
    }

    #[test]
    fn lines_ignore_quotes() {
        let opts = PlanOptions {
            format: Format::Lines,
            chunk_size: 2,
            header: false,
        };
        let plan = plan_chunks(&b"{\"a\": \"x\n1\n2\n"[..], opts).unwrap();
        assert_eq!(plan.records, 3);
        assert_eq!(plan.chunks.len(), 2);
    }
}
