"""Python csv module, one row at a time.  usage: csv_len.py IN OUT"""
import csv
import sys

src, dst = sys.argv[1], sys.argv[2]
with open(src, newline="", encoding="utf-8") as fi, \
        open(dst, "w", newline="", encoding="utf-8") as fo:
    r = csv.reader(fi)
    w = csv.writer(fo, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    header = next(r)
    col = header.index("patronyme")
    w.writerow(header + ["length"])
    w.writerows(row + [len(row[col])] for row in r)
