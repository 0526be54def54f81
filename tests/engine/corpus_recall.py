"""Question recall of compressed corpus outputs, scored the way ``score.py`` scores a mirror."""

from __future__ import annotations

import importlib.util
import json
from functools import cache
from pathlib import Path
from types import ModuleType


@cache
def score_module(corpus: Path) -> ModuleType:
    """The corpus's own ``score.py``, for its loose normalisation."""
    spec = importlib.util.spec_from_file_location("corpus_score", corpus / "score.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def question_recall(corpus: Path, kind: str, outputs: dict[str, str]) -> float:
    """Mean credit over the questions of ``outputs/<kind>``: ``outputs`` maps file name -> compressed text.

    An "any" question scores 1 when one answer is found, an "all" question the share found
    (loose matching: case-folded, punctuation and whitespace insensitive).
    """
    score = score_module(corpus)
    norm = {name: score.norm_loose(text) for name, text in outputs.items()}
    credit = []
    for line in (corpus / "outputs" / kind / "questions.jsonl").read_text().splitlines():
        q = json.loads(line)
        answers = [score.norm_loose(a) for a in q["answers"]]
        found = [a for a in answers if a and a in norm[q["file"]]]
        credit.append(float(bool(found)) if q["match"] == "any" else len(found) / len(answers))
    return sum(credit) / len(credit)
