"""The bundled world: deterministic UltraFeedback-schema rows with a known ground truth.

Every completion is built from a hidden TRUE quality: the share of "good" words in its text. The
text really carries it (a model can learn it), the four aspect ratings and the critique
`overall_score` are noisy views of it, and the critique carries UltraFeedback's real bug: a critique
score of 1 written as 10 (`score if score > 1 else 10 * score`), for a configurable share of them.
Held-out prompts can then be labelled by the truth, so "which binarization trains the better model"
has a known answer here.
"""

from __future__ import annotations

import random
from typing import Iterator

from notus_lab.config import WorldConfig

SOURCES = {  # roughly UltraFeedback's mix; truthful_qa is what decontamination removes
    "evol_instruct": 10, "false_qa": 2, "flan_v2_niv2": 12, "flan_v2_cot": 5, "flan_v2_p3": 8,
    "flan_v2_flan2021": 9, "sharegpt": 30, "truthful_qa": 2, "ultrachat": 22,
}
MODELS = {  # name -> mean skill (share of good words); the spread makes pairs informative
    "gpt-4": 0.85, "gpt-3.5-turbo": 0.75, "wizardlm-70b": 0.65, "llama-2-70b-chat": 0.6,
    "ultralm-65b": 0.55, "vicuna-33b": 0.5, "llama-2-13b-chat": 0.45, "mpt-30b-chat": 0.4,
    "starchat": 0.3, "falcon-40b-instruct": 0.25, "alpaca-7b": 0.2, "pythia-12b": 0.1,
}
TOPICS = (
    "river engine garden market planet violin bridge recipe poem storm castle harbor forest rocket "
    "library painting tunnel orchard glacier circuit festival compass lantern meadow volcano museum "
    "canal satellite theater bakery desert island puzzle camera kettle bicycle window ladder mirror "
    "village battery telescope carpet clock falcon garden tower wagon ribbon anchor basket candle "
    "dolphin fabric helmet jungle magnet needle pepper quartz saddle timber"
).split()
VERBS = ("explain describe compare summarize plan improve review outline design critique teach "
         "translate").split()
STYLES = "briefly carefully simply formally kindly clearly quickly fully".split()
GOOD = ("clear correct precise careful accurate honest useful complete relevant concise thorough "
        "sound verified specific consistent balanced logical grounded detailed practical safe polite "
        "coherent focused").split()
BAD = ("wrong vague sloppy false misleading rude confused random invented irrelevant broken lazy "
       "careless contradictory unsafe rambling incorrect garbled evasive biased empty repetitive "
       "unclear shallow").split()
PRINCIPLES = ("helpfulness", "honesty", "truthfulness", "verbalized_calibration")


def vocabulary_text() -> str:
    """Every word the world can emit, for training the tiny tokenizer (independent of knobs)."""
    words = TOPICS + VERBS + STYLES + GOOD + BAD + list(SOURCES) + list(MODELS)
    glue = "the is and . : , for of a an answer response rated because it this".split()
    return " ".join(words + glue)


def _clip(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


ADJECTIVES = GOOD + BAD


def _good_for(topic: str) -> tuple[list[str], list[str]]:
    """Which adjectives are good FOR THIS TOPIC: a quarter of GOOD and of BAD swap sides, chosen by
    the topic. Quality is then a prompt-response interaction a model must learn, not a bag of words."""
    rng = random.Random(f"topic:{topic}")
    swap_good, swap_bad = set(rng.sample(GOOD, len(GOOD) // 4)), set(rng.sample(BAD, len(BAD) // 4))
    good = [w for w in GOOD if w not in swap_good] + sorted(swap_bad)
    bad = [w for w in BAD if w not in swap_bad] + sorted(swap_good)
    return good, bad


GOOD_FOR = {t: _good_for(t) for t in TOPICS}


def _response(rng: random.Random, topics: list[str], skill: float, n_words: int) -> tuple[str, float]:
    """A response whose share of topic-appropriate words IS its true quality."""
    p_good = _clip(skill + rng.gauss(0.0, 0.2), 0.0, 1.0)
    sentences, n_good = [], 0
    for i in range(0, n_words - 1, 2):
        topic = topics[(i // 2) % len(topics)]
        good, bad = GOOD_FOR[topic]
        pair = []
        for _ in range(2):
            is_good = rng.random() < p_good
            n_good += is_good
            pair.append(rng.choice(good if is_good else bad))
        sentences.append(f"the {topic} is {pair[0]} and {pair[1]} .")
    return " ".join(sentences), n_good / (2 * len(sentences))


def _rating(rng: random.Random, quality: float, noise: float) -> str:
    return str(int(round(_clip(1 + 4 * quality + rng.gauss(0.0, noise), 1, 5))))


def generate_rows(cfg: WorldConfig, response_words: int = 10) -> Iterator[dict]:
    """Yield `cfg.rows` UltraFeedback-schema rows; the same config always yields the same rows."""
    rng = random.Random(cfg.seed)
    sources, source_w = list(SOURCES), list(SOURCES.values())
    models = list(MODELS)
    for _ in range(cfg.rows):
        topics = rng.sample(TOPICS, 3)
        instruction = (f"{rng.choice(VERBS)} the {topics[0]} , the {topics[1]} and the {topics[2]} "
                       f"{rng.choice(STYLES)} .")
        completions = []
        for model in rng.sample(models, 4):
            response, quality = _response(rng, topics, MODELS[model], response_words)
            ratings = {a: _rating(rng, quality, cfg.rating_noise)
                       for a in ("helpfulness", "honesty", "instruction_following", "truthfulness")}
            if rng.random() < cfg.na_rate:
                ratings["honesty"] = "N/A"
            critic = int(round(_clip(1 + 9 * quality + rng.gauss(0.0, cfg.critique_noise), 1, 10)))
            # UltraFeedback's critique script: `score if score > 1 else 10 * score`
            overall = 10.0 if critic == 1 and rng.random() < cfg.critique_bug_rate else float(critic)
            numeric = [int(r) for r in ratings.values() if r != "N/A"]
            tone = "good" if critic >= 6 else "poor"
            completions.append({
                "model": model,
                "principle": rng.choice(PRINCIPLES),
                "custom_system_prompt": "",
                "response": response,
                "annotations": {
                    "helpfulness": {"Rating": ratings["helpfulness"], "Rationale": f"the response is {tone} .",
                                    "Rationale For Rating": f"rated {ratings['helpfulness']} .", "Type": ["1"]},
                    "honesty": {"Rating": ratings["honesty"], "Rationale": f"it is {tone} ."},
                    "instruction_following": {"Rating": ratings["instruction_following"],
                                              "Rationale": f"it follows the {topics[0]} ."},
                    "truthfulness": {"Rating": ratings["truthfulness"], "Rationale": f"it is {tone} .",
                                     "Rationale For Rating": f"rated {ratings['truthfulness']} .", "Type": ["0"]},
                },
                "critique": f"the answer is {tone} because it is {rng.choice(ADJECTIVES)} .",
                "overall_score": overall,
                "fine-grained_score": sum(numeric) / len(numeric),
                "true_quality": quality,  # not in UltraFeedback: the world's ground truth
            })
        yield {
            "source": rng.choices(sources, source_w)[0],
            "instruction": instruction,
            "models": [c["model"] for c in completions],
            "completions": completions,
            "correct_answers": [],
            "incorrect_answers": [],
        }
