"""lm-eval's per-document hook for world_truth: the bundled world's truth of the generated answer."""

from notus_lab.data.world import text_quality


def process_results(doc, results):
    return {"truth": text_quality(doc["prompt"], results[0])}
