//! Chunk plans against the csv crate: for any data (quoted commas, escaped quotes, newlines in
//! fields, multibyte text), any chunk size and any read-buffer split, parsing the chunks one by
//! one gives exactly the records of parsing the whole input.

use std::io::Read;

use proptest::prelude::*;
use tessera_batch::{Format, PlanOptions, plan_chunks};

/// A reader returning at most `step` bytes per read, to put buffer boundaries anywhere.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn records(data: &[u8]) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(data)
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

fn field() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zA-Z0-9 éèçÉôï'-]{0,12}", "[a-z,\"\n é]{1,10}",]
}

fn to_csv(rows: &[Vec<String>]) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    for r in rows {
        w.write_record(r).unwrap();
    }
    w.into_inner().unwrap()
}

proptest! {
    #[test]
    fn chunks_reassemble_to_the_same_records(
        rows in proptest::collection::vec(proptest::collection::vec(field(), 2), 1..60),
        chunk_size in 1u64..9,
        step in 1usize..40,
    ) {
        let mut all = vec![vec!["name".to_string(), "count".to_string()]];
        all.extend(rows.iter().cloned());
        let data = to_csv(&all);
        let opts = PlanOptions { format: Format::Csv { quote: b'"' }, chunk_size, header: true };
        let plan = plan_chunks(Trickle { data: &data, step }, opts).unwrap();
        prop_assert_eq!(plan.header.as_deref(), Some(&to_csv(&all[..1])[..]));
        prop_assert_eq!(plan.records as usize, rows.len());
        prop_assert_eq!(plan.bytes as usize, data.len());
        let mut expected_start = plan.chunks.first().map(|c| c.start).unwrap_or(0);
        let mut from_chunks = Vec::new();
        for (i, c) in plan.chunks.iter().enumerate() {
            prop_assert_eq!(c.index, i);
            prop_assert_eq!(c.start, expected_start, "chunks are contiguous");
            if i + 1 < plan.chunks.len() {
                prop_assert_eq!(c.records, chunk_size);
            }
            let part = records(&data[c.start as usize..c.end as usize]);
            prop_assert_eq!(part.len() as u64, c.records);
            from_chunks.extend(part);
            expected_start = c.end;
        }
        prop_assert_eq!(expected_start as usize, data.len(), "the chunks cover the input to its end");
        prop_assert_eq!(from_chunks, rows);
    }
}

#[test]
fn a_big_file_is_planned_in_one_bounded_pass() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.csv");
    let mut data = b"patronyme,count\n".to_vec();
    for i in 0..200_000 {
        data.extend_from_slice(format!("\"Dupont, n°{i}\",{i}\n").as_bytes());
    }
    std::fs::write(&path, &data).unwrap();
    let opts = PlanOptions {
        format: Format::Csv { quote: b'"' },
        chunk_size: 40_000,
        header: true,
    };
    let plan = plan_chunks(std::fs::File::open(&path).unwrap(), opts).unwrap();
    assert_eq!(plan.records, 200_000);
    assert_eq!(plan.chunks.len(), 5);
    assert_eq!(plan.chunks[4].end as usize, data.len());
    assert_eq!(plan.chunks[1].first_line, 40_002);
}

proptest! {
    /// Our record reader (Splitter + csv_fields) reads what the csv crate reads, line numbers
    /// included, and our writer writes what the csv crate writes (minimal quoting).
    #[test]
    fn records_and_fields_match_the_csv_crate(
        rows in proptest::collection::vec(proptest::collection::vec(field(), 3), 0..40),
    ) {
        let data = to_csv(&rows);
        let mut fields = tessera_batch::Fields::default();
        let mut got = Vec::new();
        let mut lines = Vec::new();
        for span in tessera_batch::records::Splitter::new(&data, 1, Some(b'"')) {
            let text = std::str::from_utf8(&data[span.start..span.end]).unwrap();
            tessera_batch::records::csv_fields(text, b',', b'"', span.quoted, &mut fields).unwrap();
            got.push(fields.iter().map(str::to_string).collect::<Vec<_>>());
            lines.push(span.line);
        }
        // Empty records (one empty field) are written `""` by the csv crate and read back.
        prop_assert_eq!(&got, &records(&data));
        let mut rdr = csv::ReaderBuilder::new().has_headers(false).from_reader(&data[..]);
        let want_lines: Vec<u64> = rdr
            .records()
            .map(|r| r.unwrap().position().unwrap().line())
            .collect();
        prop_assert_eq!(lines, want_lines);
        let mut ours = Vec::new();
        for row in &rows {
            tessera_batch::chunk::write_csv_record(&mut ours, row.iter().map(String::as_str), b',');
        }
        prop_assert_eq!(ours, data);
    }
}
