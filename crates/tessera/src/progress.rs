//! Live progress on stderr: node counts, and a bar per loop. On a terminal it redraws in place;
//! otherwise (logs, tests) it prints a line when the counts change, at most once a second.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tessera_core::scheduler::Progress;

pub struct ProgressView {
    tty: bool,
    multi: MultiProgress,
    summary: ProgressBar,
    loops: HashMap<String, ProgressBar>,
    batches: HashMap<String, ProgressBar>,
    last_line: Option<(String, Instant)>,
}

fn summary_text(p: &Progress) -> String {
    let mut s = format!("nodes: {} done, {} running", p.finished, p.running);
    if p.failed > 0 {
        s.push_str(&format!(", {} failed", p.failed));
    }
    if p.skipped > 0 {
        s.push_str(&format!(", {} skipped", p.skipped));
    }
    s
}

impl ProgressView {
    pub fn new() -> ProgressView {
        let tty = std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(if tty {
            ProgressDrawTarget::stderr_with_hz(10)
        } else {
            ProgressDrawTarget::hidden()
        });
        let summary = multi.add(ProgressBar::new_spinner());
        summary.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .expect("valid template"),
        );
        if tty {
            summary.enable_steady_tick(Duration::from_millis(120));
        }
        ProgressView {
            tty,
            multi,
            summary,
            loops: HashMap::new(),
            batches: HashMap::new(),
            last_line: None,
        }
    }

    pub fn update(&mut self, p: &Progress) {
        let text = summary_text(p);
        self.summary.set_message(text.clone());
        for l in &p.loops {
            let bar = self.loops.entry(l.key.clone()).or_insert_with(|| {
                let b = self.multi.add(ProgressBar::new(l.total as u64));
                b.set_style(
                    ProgressStyle::with_template(
                        "  loop {prefix} [{bar:30}] {pos}/{len} items ({per_sec}, eta {eta})",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                b.set_prefix(l.key.clone());
                b
            });
            bar.set_position(l.done as u64);
        }
        for b in &p.batches {
            let bar = self.batches.entry(b.key.clone()).or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new(b.rows_total));
                bar.set_style(
                    ProgressStyle::with_template(
                        "  batch {prefix} [{bar:30}] {human_pos}/{human_len} rows, {msg} ({per_sec}, eta {eta})",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                bar.set_prefix(b.key.clone());
                bar
            });
            bar.set_length(b.rows_total);
            bar.set_position(b.rows_done);
            bar.set_message(format!("chunks {}/{}", b.chunks_done, b.chunks_total));
        }
        if !self.tty {
            let loops: Vec<String> = p
                .loops
                .iter()
                .map(|l| format!("{} {}/{}", l.key, l.done, l.total))
                .collect();
            let batches: Vec<String> = p
                .batches
                .iter()
                .map(|b| {
                    format!(
                        "{} rows {}/{} chunks {}/{}",
                        b.key, b.rows_done, b.rows_total, b.chunks_done, b.chunks_total
                    )
                })
                .collect();
            let mut line = text;
            if !loops.is_empty() {
                line = format!("{line}; loops: {}", loops.join(", "));
            }
            if !batches.is_empty() {
                line = format!("{line}; batch: {}", batches.join(", "));
            }
            let due = match &self.last_line {
                Some((last, at)) => *last != line && at.elapsed() >= Duration::from_secs(1),
                None => true,
            };
            if due {
                errln!("progress: {line}");
                self.last_line = Some((line, Instant::now()));
            }
        }
    }

    pub fn finish(&mut self, p: &Progress) {
        self.update(p);
        for bar in self.loops.values().chain(self.batches.values()) {
            bar.finish();
        }
        self.summary.finish_and_clear();
        let _ = self.multi.clear();
        errln!("{}", summary_text(p));
        for b in &p.batches {
            errln!(
                "batch {}: {}/{} rows, {}/{} chunks",
                b.key,
                b.rows_done,
                b.rows_total,
                b.chunks_done,
                b.chunks_total
            );
        }
    }
}
