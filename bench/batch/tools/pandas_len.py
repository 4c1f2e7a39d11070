"""pandas, read_csv(chunksize=160000) -> str.len() -> to_csv appended.  usage: pandas_len.py IN OUT
Every column is read as text (dtype=str, no NA detection) so values are written back verbatim
("NA", "NULL", "0012" stay as they are)."""
import csv
import sys

import pandas as pd

src, dst = sys.argv[1], sys.argv[2]
with open(dst, "w", newline="", encoding="utf-8") as fo:
    first = True
    for chunk in pd.read_csv(src, chunksize=160_000, dtype=str, keep_default_na=False,
                             na_filter=False, encoding="utf-8"):
        chunk["length"] = chunk["patronyme"].str.len()
        chunk.to_csv(fo, header=first, index=False, lineterminator="\n",
                     quoting=csv.QUOTE_MINIMAL)
        first = False
