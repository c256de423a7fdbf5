"""benchmarks/prepare_engines.py at toy size: the three engines tokenize the same corpus into the same number of
tokens (so the rates compare like with like), and the dedup figures come out (speed itself is not tested)."""

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytest.importorskip("datatrove")


@pytest.mark.slow
def test_engines_make_the_same_tokens_at_toy_size():
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.prepare_engines", "--mb", "1", "--vocab_size", "300",
         "--tokenizer_sample_mb", "0.2", "--skip", "dedup"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    rows = re.findall(
        r"^\| (lit-llm prepare|datatrove DocumentTokenizer|litdata optimize) \| ([\d,]+) \|", result.stdout, re.M
    )
    tokens = {engine: int(count.replace(",", "")) for engine, count in rows}
    assert len(tokens) == 3, result.stdout
    # prepare encodes long documents in pieces cut where the pre-tokenizer cuts anyway: the same tokens
    assert max(tokens.values()) - min(tokens.values()) <= 0.001 * max(tokens.values()), tokens
