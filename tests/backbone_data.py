"""Real sentences for backbone tests, read in place from the shared offline datasets."""

import csv
import os
from typing import List

DATASETS = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                                         "datasets"))


def sst2_dev_sentences(count: int) -> List[str]:
    """Return the first `count` sentences of SST-2 dev (TSV with header `label<TAB>content`)."""
    with open(os.path.join(DATASETS, "sst2", "dev.tsv"), encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(rows)
        return [row[1] for _, row in zip(range(count), rows)]


def chnsenticorp_reviews(count: int) -> List[str]:
    """Return the first `count` non-empty ChnSentiCorp reviews (CSV `label,review`, no header)."""
    path = os.path.join(DATASETS, "chnsenticorp", "ChnSentiCorp_htl_all.csv")
    reviews = []
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.reader(f):
            if len(reviews) == count:
                break
            if len(row) == 2 and row[1].strip():
                reviews.append(row[1])
    return reviews
