"""The bundled world: deterministic UltraFeedback-schema rows with a known ground truth.

Every completion is built from a hidden TRUE quality: the share of its adjectives that are appropriate
for the topic they describe. The text really carries it, so a model can learn it and a judge can read it
back from ANY text (`text_quality`). The four aspect ratings and the critique `overall_score` are noisy
views of it, calibrated to real UltraFeedback rows (50 rows of openbmb/UltraFeedback at revision 40b43656; the
figures are in docs/data.md, "The bundled world"):

- prompts differ in difficulty, so good and bad rows coexist (scores correlate across the data set while
  the ranking WITHIN a row stays noisy);
- the four ratings of one completion share an annotator error (`annotator_correlation`); their observed
  agreement is held at `aspect_agreement` whatever that share is, because real data shows the agreement
  but not how much of it is shared truth and how much shared error;
- the critique is lenient (good answers saturate near 10: ties at the top), on a half-point scale, with
  its own error and optionally a part of the annotators' (`critique_shared_error`);
- the critique carries UltraFeedback's real bug: a critique score of 1 written as 10.

Texts do not depend on the annotation knobs: the same seed gives the same prompts and completions,
annotated differently. Held-out prompts can be labelled by the truth, so a study has a known answer here,
and which signal wins depends on knobs real data cannot pin down: see docs/data.md.
"""

from __future__ import annotations

import math
import random
import re
import statistics
from typing import Iterator

from notus_lab.config.schema import WorldConfig

SOURCES = {  # roughly UltraFeedback's mix; truthful_qa is what decontamination removes
    "evol_instruct": 10,
    "false_qa": 2,
    "flan_v2_niv2": 12,
    "flan_v2_cot": 5,
    "flan_v2_p3": 8,
    "flan_v2_flan2021": 9,
    "sharegpt": 30,
    "truthful_qa": 2,
    "ultrachat": 22,
}


MODELS = {  # name -> mean skill (share of good words); the spread makes pairs informative
    "gpt-4": 0.85,
    "gpt-3.5-turbo": 0.75,
    "wizardlm-70b": 0.65,
    "llama-2-70b-chat": 0.6,
    "ultralm-65b": 0.55,
    "vicuna-33b": 0.5,
    "llama-2-13b-chat": 0.45,
    "mpt-30b-chat": 0.4,
    "starchat": 0.3,
    "falcon-40b-instruct": 0.25,
    "alpaca-7b": 0.2,
    "pythia-12b": 0.1,
}


TOPICS = (
    "river engine garden market planet violin bridge recipe poem storm castle harbor forest rocket "
    "library painting tunnel orchard glacier circuit festival compass lantern meadow volcano museum "
    "canal satellite theater bakery desert island puzzle camera kettle bicycle window ladder mirror "
    "village battery telescope carpet clock falcon tower wagon ribbon anchor basket candle "
    "dolphin fabric helmet jungle magnet needle pepper quartz saddle timber"
).split()


VERBS = ("explain describe compare summarize plan improve review outline design critique teach translate").split()


STYLES = "briefly carefully simply formally kindly clearly quickly fully".split()


GOOD = (
    "clear correct precise careful accurate honest useful complete relevant concise thorough "
    "sound verified specific consistent balanced logical grounded detailed practical safe polite "
    "coherent focused"
).split()


BAD = (
    "wrong vague sloppy false misleading rude confused random invented irrelevant broken lazy "
    "careless contradictory unsafe rambling incorrect garbled evasive biased empty repetitive "
    "unclear shallow"
).split()


PRINCIPLES = ("helpfulness", "honesty", "truthfulness", "verbalized_calibration")


ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")


RESPONSE_SENTENCES = 5  # "the <topic> is <adj> and <adj> ." cycling over the prompt's three topics


PROMPT = re.compile(r"^\w+ the (\w+) , the (\w+) and the (\w+) \w+ \.$")


SENTENCE = re.compile(r"^the (\w+) is (\w+) and (\w+)$")


def vocabulary_text() -> str:
    """Every word the world can emit, for training the tiny tokenizer (independent of knobs)."""
    words = TOPICS + VERBS + STYLES + GOOD + BAD + list(SOURCES) + list(MODELS)
    glue = "the is and . : , for of a an answer response rated because it this".split()
    return " ".join(words + glue)


def _clip(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


ADJECTIVES = GOOD + BAD


def _good_for(topic: str) -> frozenset[str]:
    """Which adjectives are good FOR THIS TOPIC: a quarter of GOOD and of BAD swap sides, chosen by
    the topic. Quality is then a prompt-response interaction a model must learn, not a bag of words."""
    rng = random.Random(f"topic:{topic}")
    swap_good, swap_bad = set(rng.sample(GOOD, len(GOOD) // 4)), set(rng.sample(BAD, len(BAD) // 4))
    return frozenset([w for w in GOOD if w not in swap_good] + sorted(swap_bad))


GOOD_FOR = {t: _good_for(t) for t in TOPICS}


CHOICES = {t: (sorted(GOOD_FOR[t]), sorted(set(ADJECTIVES) - GOOD_FOR[t])) for t in TOPICS}  # (good, bad)


def prompt_topics(instruction: str) -> tuple[str, ...] | None:
    """The three topics of a world prompt, or None for any other text."""
    m = PROMPT.match(instruction.strip()) if isinstance(instruction, str) else None
    return m.groups() if m and all(t in GOOD_FOR for t in m.groups()) else None


def _prompt(rng: random.Random) -> tuple[str, list[str]]:
    topics = rng.sample(TOPICS, 3)
    return (f"{rng.choice(VERBS)} the {topics[0]} , the {topics[1]} and the {topics[2]} {rng.choice(STYLES)} ."), topics


def _response(rng: random.Random, topics: list[str], p_good: float, n_sentences: int) -> tuple[str, float]:
    """A response whose share of topic-appropriate adjectives IS its true quality."""
    sentences, n_good = [], 0
    for i in range(n_sentences):
        topic = topics[i % len(topics)]
        kinds = [CHOICES[topic][0] if rng.random() < p_good else CHOICES[topic][1] for _ in range(2)]
        n_good += sum(k[0] in GOOD_FOR[topic] for k in kinds)
        sentence = None
        while sentence is None or sentence in sentences:  # a repeated sentence says nothing new (text_quality)
            sentence = f"the {topic} is {rng.choice(kinds[0])} and {rng.choice(kinds[1])} ."
        sentences.append(sentence)
    return " ".join(sentences), n_good / (2 * n_sentences)


def text_quality(instruction: str, text: str) -> float:
    """The world's truth applied to ANY answer to a world prompt, in [0, 1].

    The share of adjective slots that are appropriate for their topic, times the share of the prompt's
    topics the answer covers. A sentence outside the grammar, about another topic, or repeating an
    earlier one fills its two slots with nothing appropriate. So a world completion scores exactly its
    true quality, and off-topic, garbled, repetitive or empty output scores 0 or near it."""
    topics = prompt_topics(instruction)
    if topics is None or not isinstance(text, str):
        return 0.0
    good = slots = 0
    covered, seen = set(), set()
    for sentence in (s.strip() for s in text.split(".")):
        if not sentence:
            continue
        slots += 2
        m = SENTENCE.match(sentence)
        if m is None or m.group(1) not in topics or sentence in seen:
            continue
        seen.add(sentence)
        covered.add(m.group(1))
        good += (m.group(2) in GOOD_FOR[m.group(1)]) + (m.group(3) in GOOD_FOR[m.group(1)])
    return good / slots * len(covered) / len(topics) if slots else 0.0


def rating_noise(cfg: WorldConfig, qualities: list[float]) -> float:
    """The std of each aspect rating's error that makes the four aspects agree (Pearson) at
    `aspect_agreement`, given how much of the error they share (`annotator_correlation`).

    With V the variance of 4 x quality (the signal on the 1-5 scale), error sigma, shared share rho and
    the rounding's 1/12: agreement = (V + rho sigma^2) / (V + sigma^2 + 1/12). Clipping at 1 and 5 is
    left out, so the agreement measured on rows comes out a little off (see tests/unit/test_world.py)."""
    v = statistics.pvariance([4 * q for q in qualities]) if len(qualities) > 1 else 0.0
    r, rho = cfg.aspect_agreement, cfg.annotator_correlation
    return math.sqrt(max(v * (1 - r) - r / 12, 0.0) / (r - rho))


def _ratings(rng: random.Random, quality: float, shared: float, sigma: float, cfg: WorldConfig) -> dict:
    rho = cfg.annotator_correlation
    ratings = {}
    for aspect in ASPECTS:
        error = sigma * (math.sqrt(rho) * shared + math.sqrt(1 - rho) * rng.gauss(0.0, 1.0))
        ratings[aspect] = str(int(round(_clip(1 + 4 * quality + cfg.rating_leniency + error, 1, 5))))
    if rng.random() < cfg.na_rate:
        ratings["honesty"] = "N/A"
    return ratings


def _critique(rng: random.Random, quality: float, shared: float, cfg: WorldConfig) -> tuple[float, float]:
    """(overall_score as stored, the critic's real score). Lenient: 1 + 9 (1 - (1 - q)^curve)."""
    kappa = cfg.critique_shared_error
    error = cfg.critique_noise * (math.sqrt(kappa) * shared + math.sqrt(1 - kappa) * rng.gauss(0.0, 1.0))
    raw = _clip(1 + 9 * (1 - (1 - quality) ** cfg.critique_curve) + error, 1, 10)
    critic = round(raw / cfg.critique_step) * cfg.critique_step
    # UltraFeedback's critique script: `score if score > 1 else 10 * score`
    return (10.0 if critic == 1 and rng.random() < cfg.critique_bug_rate else float(critic)), float(critic)


def generate_rows(cfg: WorldConfig, sentences: int = RESPONSE_SENTENCES) -> Iterator[dict]:
    """Yield `cfg.rows` UltraFeedback-schema rows; the same config always yields the same rows.

    Texts come from one random stream per row (seed, row), annotations from another, so changing an
    annotation knob relabels the same completions."""
    sources, source_w = list(SOURCES), list(SOURCES.values())
    texts = []
    for i in range(cfg.rows):
        rng = random.Random(f"{cfg.seed}:{i}:text")
        instruction, topics = _prompt(rng)
        difficulty = rng.gauss(0.0, cfg.difficulty_spread)  # shared by the row's four completions
        completions = []
        for model in rng.sample(list(MODELS), 4):
            p_good = _clip(MODELS[model] + difficulty + rng.gauss(0.0, 0.2), 0.0, 1.0)
            completions.append((model, *_response(rng, topics, p_good, sentences)))
        texts.append((rng.choices(sources, source_w)[0], instruction, topics, completions))
    sigma = rating_noise(cfg, [q for *_, comps in texts for _, _, q in comps])
    for i, (source, instruction, topics, comps) in enumerate(texts):
        rng = random.Random(f"{cfg.seed}:{i}:annotations")
        completions = []
        for model, response, quality in comps:
            shared = rng.gauss(0.0, 1.0)  # this completion's annotator error, common to its four ratings
            ratings = _ratings(rng, quality, shared, sigma, cfg)
            overall, critic = _critique(rng, quality, shared, cfg)
            numeric = [int(r) for r in ratings.values() if r != "N/A"]
            tone = "good" if critic >= 6 else "poor"
            completions.append(
                {
                    "model": model,
                    "principle": rng.choice(PRINCIPLES),
                    "custom_system_prompt": "",
                    "response": response,
                    "annotations": {
                        "helpfulness": {
                            "Rating": ratings["helpfulness"],
                            "Rationale": f"the response is {tone} .",
                            "Rationale For Rating": f"rated {ratings['helpfulness']} .",
                            "Type": ["1"],
                        },
                        "honesty": {"Rating": ratings["honesty"], "Rationale": f"it is {tone} ."},
                        "instruction_following": {
                            "Rating": ratings["instruction_following"],
                            "Rationale": f"it follows the {topics[0]} .",
                        },
                        "truthfulness": {
                            "Rating": ratings["truthfulness"],
                            "Rationale": f"it is {tone} .",
                            "Rationale For Rating": f"rated {ratings['truthfulness']} .",
                            "Type": ["0"],
                        },
                    },
                    "critique": f"the answer is {tone} because it is {rng.choice(ADJECTIVES)} .",
                    "overall_score": overall,
                    "fine-grained_score": sum(numeric) / len(numeric),
                    "true_quality": quality,  # not in UltraFeedback: the world's ground truth
                }
            )
        yield {
            "source": source,
            "instruction": instruction,
            "models": [c["model"] for c in completions],
            "completions": completions,
            "correct_answers": [],
            "incorrect_answers": [],
        }
