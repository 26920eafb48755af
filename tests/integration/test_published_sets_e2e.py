"""Each published preference set trains end to end, its scores carried into pairs.jsonl."""

import json

import pytest

from tests.helpers import cli, compose
from tests.unit.test_published_sets import PROMPTS, SETS

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("schema", sorted(SETS))
def test_each_published_set_trains_end_to_end_with_its_scores_in_pairs_jsonl(schema, tmp_path):
    from notus_lab.train.pipeline import run

    make, strategy, _ = SETS[schema]
    source = tmp_path / f"{schema}.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in make()))
    binarized = cli(
        "notus_lab.binarize",
        f"data={strategy}",
        f"data.source={source}",
        "data.test_size=4",
        f"hydra.run.dir={tmp_path / 'pairs'}",
    )
    assert binarized.returncode == 0, binarized.stderr[-2000:]
    pairs = [json.loads(line) for line in (tmp_path / "pairs" / "pairs.jsonl").read_text().splitlines()]
    assert len(pairs) == len(PROMPTS) and all(
        p["score_chosen"] is not None and p["score_rejected"] is not None for p in pairs
    )
    cfg = compose(
        f"data={strategy}",
        f"data.source={source}",
        "data.test_size=4",
        "train.epochs=3",
        "train.logging_steps=1",
        "judge=none",
        "eval.signals=[]",
        "wandb.mode=disabled",
    )
    metrics = run(cfg, tmp_path / "run")
    assert (
        metrics["train"]["steps"] > 0
        and json.loads((tmp_path / "run" / "data_report.json").read_text())["schema"] == schema
    )
