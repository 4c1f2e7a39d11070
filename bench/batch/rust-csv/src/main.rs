//! Baseline for bench/batch: single-threaded `csv` crate program.
//! usage: rust-csv-len IN.csv OUT.csv
//! Adds `length` = number of Unicode scalar values of column `patronyme` (the first column),
//! writes CSV with minimal (RFC 4180 "necessary") quoting and `\n` line endings.
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: {} IN.csv OUT.csv", args[0]);
        std::process::exit(2);
    }
    let input = BufReader::with_capacity(1 << 20, File::open(&args[1])?);
    let mut rdr = csv::ReaderBuilder::new().has_headers(true).from_reader(input);
    let out = BufWriter::with_capacity(1 << 20, File::create(&args[2])?);
    let mut wtr = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .quote_style(csv::QuoteStyle::Necessary)
        .from_writer(out);

    let headers = rdr.byte_headers()?.clone();
    let col = headers
        .iter()
        .position(|h| h == b"patronyme")
        .ok_or("no `patronyme` column")?;
    let mut h = headers.clone();
    h.push_field(b"length");
    wtr.write_byte_record(&h)?;

    let mut rec = csv::ByteRecord::new();
    let mut buf = itoa_buf();
    while rdr.read_byte_record(&mut rec)? {
        let field = &rec[col];
        let s = std::str::from_utf8(field).map_err(|e| {
            format!("line {}: invalid UTF-8: {e}", rec.position().map_or(0, |p| p.line()))
        })?;
        let n = s.chars().count();
        let len = fmt_usize(&mut buf, n);
        rec.push_field(len);
        wtr.write_byte_record(&rec)?;
    }
    let mut out = wtr.into_inner().map_err(|e| e.to_string())?;
    out.flush()?;
    Ok(())
}

fn itoa_buf() -> [u8; 20] {
    [0u8; 20]
}

fn fmt_usize(buf: &mut [u8; 20], mut n: usize) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}
