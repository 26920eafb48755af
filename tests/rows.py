"""Hand-built UltraFeedback rows for the binarization tests."""


def completion(response, ratings=("5", "5", "5", "5"), overall=8.0, **extra):
    h, o, i, t = ratings
    c = {
        "model": "m",
        "response": response,
        "overall_score": overall,
        "critique": "",
        "annotations": {
            "helpfulness": {"Rating": h},
            "honesty": {"Rating": o},
            "instruction_following": {"Rating": i},
            "truthfulness": {"Rating": t},
        },
    }
    c.update(extra)
    return c


def row(*completions, instruction="say hi", source="sharegpt"):
    return {
        "source": source,
        "instruction": instruction,
        "models": ["m"] * len(completions),
        "completions": list(completions),
    }
