//! `sample::write_patronymes`: determinism and the format contract of bench/batch's input.

use tessera_batch::sample::{MAX_COUNT, PATRONYMES_HEADER, SampleStats, write_patronymes};

fn generate(rows: u64, seed: u64) -> (Vec<u8>, SampleStats) {
    let mut out = Vec::new();
    let stats = write_patronymes(&mut out, rows, seed).unwrap();
    assert_eq!(stats.rows, rows);
    assert_eq!(stats.bytes, out.len() as u64);
    (out, stats)
}

/// FNV-1a, to pin the bytes without a hashing dependency.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let (a, sa) = generate(50_000, 7);
    let (b, sb) = generate(50_000, 7);
    assert_eq!(a, b);
    assert_eq!(sa, sb);
    let (c, _) = generate(50_000, 8);
    assert_ne!(a, c);
    // A prefix of rows is a prefix of the bytes: rows are drawn one after the other.
    let (d, _) = generate(1_000, 7);
    assert!(a.starts_with(&d));
}

/// The bytes for seed 42 are pinned: same (rows, seed) → same bytes on every platform and across
/// versions. If the generator is changed on purpose, update these values (and regenerate
/// bench/batch/data, whose figures are then not comparable with older ones).
#[test]
fn bytes_are_pinned() {
    let (out, stats) = generate(100_000, 42);
    let text = std::str::from_utf8(&out).unwrap();
    let head: Vec<&str> = text.lines().take(6).collect();
    assert_eq!(head, PINNED_HEAD, "first lines changed");
    assert_eq!(
        (fnv1a(&out), stats.bytes, stats.quoted),
        PINNED,
        "bytes changed"
    );
}

const PINNED_HEAD: [&str; 6] = [
    "patronyme,count",
    "Robert,667",
    "l'Isigny,144",
    "Saint-Giraud,80",
    "Fabre,46",
    "Prévost-Lambert,69",
];
const PINNED: (u64, u64, u64) = (0x0e97_6022_61a1_427d, 1_239_660, 61);

#[test]
fn zero_rows_is_the_header_alone() {
    let (out, stats) = generate(0, 42);
    assert_eq!(out, PATRONYMES_HEADER.as_bytes());
    assert_eq!(out, b"patronyme,count\n");
    assert_eq!(
        stats,
        SampleStats {
            rows: 0,
            bytes: 16,
            quoted: 0
        }
    );
}

#[test]
fn format_contract() {
    const ROWS: u64 = 200_000;
    let (out, stats) = generate(ROWS, 42);
    let text = std::str::from_utf8(&out).expect("UTF-8");
    assert!(!text.starts_with('\u{feff}'), "no BOM");
    assert!(text.ends_with('\n'), "trailing newline");
    assert!(!text.contains('\r'), "\\n line endings only");
    // No combining marks (U+0300..U+036F): accents are precomposed (NFC).
    assert!(
        !text.chars().any(|c| ('\u{300}'..='\u{36f}').contains(&c)),
        "combining mark"
    );
    // No newline inside a field, so lines = rows + header.
    assert_eq!(text.lines().count() as u64, ROWS + 1);

    let mut reader = csv::ReaderBuilder::new().from_reader(out.as_slice());
    assert_eq!(reader.headers().unwrap(), vec!["patronyme", "count"]);
    // Minimal quoting: the csv crate's writer (QuoteStyle::Necessary, `\n`) gives the same bytes.
    let mut rewritten = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    rewritten.write_record(["patronyme", "count"]).unwrap();
    let (mut rows, mut accented, mut hyphen, mut apostrophe, mut space) = (0u64, 0, 0, 0, 0);
    let (mut comma, mut alias, mut inner_quote, mut needs_quotes) = (0u64, 0, 0, 0);
    let mut counts = Vec::with_capacity(ROWS as usize);
    for record in reader.records() {
        let record = record.unwrap();
        assert_eq!(record.len(), 2, "{record:?}");
        let (name, count) = (&record[0], &record[1]);
        assert!(!name.is_empty());
        assert_eq!(name.trim(), name, "no leading or trailing spaces");
        assert!(!name.contains(['\n', '\r']));
        assert!(
            count.bytes().all(|b| b.is_ascii_digit()) && !count.starts_with('0'),
            "{count}"
        );
        let n: u64 = count.parse().unwrap();
        assert!((1..=MAX_COUNT).contains(&n), "{n}");
        counts.push(n);
        rows += 1;
        accented += u64::from(!name.is_ascii());
        hyphen += u64::from(name.contains('-'));
        apostrophe += u64::from(name.contains('\''));
        space += u64::from(name.contains(' '));
        comma += u64::from(name.contains(','));
        alias += u64::from(name.contains(", dit "));
        inner_quote += u64::from(name.contains('"'));
        needs_quotes += u64::from(name.contains([',', '"']));
        rewritten.write_record(&record).unwrap();
    }
    assert_eq!(rows, ROWS);
    assert_eq!(
        rewritten.into_inner().unwrap(),
        out,
        "not minimal RFC 4180 quoting"
    );
    assert_eq!(stats.quoted, needs_quotes);
    assert_eq!(
        text.lines().filter(|line| line.starts_with('"')).count() as u64,
        needs_quotes
    );

    // The mix (expected per row: 1/2000 aliases, 1/50000 inner quotes, ~15 % accented…).
    let pct = |x: u64| x as f64 * 100.0 / ROWS as f64;
    assert!((60..=160).contains(&alias), "aliases: {alias}");
    assert!(inner_quote >= 1, "embedded quotes: {inner_quote}");
    assert!(comma >= alias);
    assert!(pct(accented) > 10.0, "accented: {}", pct(accented));
    assert!(pct(hyphen) > 9.0, "hyphens: {}", pct(hyphen));
    assert!(pct(apostrophe) > 5.0, "apostrophes: {}", pct(apostrophe));
    assert!(pct(space) > 5.0, "particles: {}", pct(space));
    // Long tail: small median, big maximum, the cap reached only rarely.
    counts.sort_unstable();
    let median = counts[counts.len() / 2];
    assert!((50..=1000).contains(&median), "median {median}");
    assert!(counts[counts.len() * 99 / 100] > 10 * median);
    assert!(counts[counts.len() - 1] > 50_000);
    let capped = counts.iter().filter(|&&c| c == MAX_COUNT).count();
    assert!(capped < counts.len() / 1000, "{capped} counts at the cap");
    assert_eq!(counts[0], 1);
}

#[test]
fn a_write_error_is_returned() {
    struct Full;
    impl std::io::Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let err = write_patronymes(Full, 10, 1).unwrap_err();
    assert_eq!(err.to_string(), "disk full");
}
