//! "Did you mean …?" for misspelt field names and words: the closest candidate within a small
//! edit distance.

/// ` (did you mean `x`?)` when one of `candidates` is within an edit distance of 2 of `word`
/// (1 for words of up to 4 letters), else an empty string.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    let limit = if word.chars().count() <= 4 { 1 } else { 2 };
    candidates
        .into_iter()
        .map(|c| (distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

/// Levenshtein distance (insertions, deletions, substitutions), on chars; inputs are short
/// field names, so the quadratic table is small (and bounded: long words are not compared).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len() > 64 || b.len() > 64 {
        return usize::MAX;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// "a" or "an" before `word` (by its first letter: good enough for node type names).
pub(crate) fn article(word: &str) -> &'static str {
    match word.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_words_are_suggested_and_far_ones_not() {
        assert_eq!(
            did_you_mean("nxt", ["next", "ready"]),
            " (did you mean `next`?)"
        );
        assert_eq!(
            did_you_mean("comand", ["command", "cwd"]),
            " (did you mean `command`?)"
        );
        assert_eq!(
            did_you_mean("timout", ["retry", "timeout"]),
            " (did you mean `timeout`?)"
        );
        assert_eq!(did_you_mean("zzz", ["next", "ready"]), "");
        assert_eq!(did_you_mean("ab", ["xy"]), "");
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(article("entry"), "an");
        assert_eq!(article("loop"), "a");
    }
}
