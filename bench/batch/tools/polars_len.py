"""polars streaming: scan_csv -> len_chars -> sink_csv.  usage: polars_len.py IN OUT"""
import sys

import polars as pl

src, dst = sys.argv[1], sys.argv[2]
(
    pl.scan_csv(src, schema_overrides={"patronyme": pl.String})
    .with_columns(pl.col("patronyme").str.len_chars().alias("length"))
    .sink_csv(dst, line_terminator="\n", quote_style="necessary", engine="streaming")
)
