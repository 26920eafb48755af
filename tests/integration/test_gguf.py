"""GGUF files for real: llama.cpp's converter (from the installed llama-cpp-python's sdist, fetched by pip) and its
quantizer, on the tiny base, on a full run trained with export.gguf through the entrypoint, and on a LoRA run
through python -m notus_lab.export; read back with the gguf package and loaded by llama-cpp-python."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from notus_lab.core.errors import ConfigError
from tests.helpers import QUICK, cli, compose

pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")
pytestmark = pytest.mark.slow

FEW = ("generation.max_prompts=20",)  # the quality table on 20 of the 30 held-out prompts x 2 samples


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """A full fine-tune that makes its GGUF files at the end, as a user asks for them: export.gguf=[...]."""
    run_dir = tmp_path_factory.mktemp("gguf") / "full"
    done = cli("notus_lab", *QUICK, *FEW, "export.gguf=[q8_0,q4_k_m]", f"hydra.run.dir={run_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir, done.stdout


def test_the_tiny_base_converts_and_quantizes_with_its_tokenizer_and_chat_template(tmp_path):
    from gguf import GGUFReader
    from transformers import AutoTokenizer

    from notus_lab.core.keys import cache_root
    from notus_lab.models import gguf
    from notus_lab.models.loading import base_path

    cfg = compose(*QUICK)
    base = Path(base_path(cfg.base))
    f16 = gguf.convert(base, tmp_path / "tiny.F16.gguf", cache_root(cfg.base.cache_dir))
    q4 = gguf.quantize(f16, tmp_path / "tiny.Q4_0.gguf", "q4_0", 1)
    tokenizer = AutoTokenizer.from_pretrained(base)
    reader = GGUFReader(str(q4))
    assert reader.fields["tokenizer.chat_template"].contents() == tokenizer.chat_template
    assert reader.fields["tokenizer.ggml.pre"].contents() == "gpt-2"
    # norms stay f32; the embedding's q6_K needs rows of 256 and falls back to q8_0 at width 128
    assert {t.tensor_type.name for t in reader.tensors} == {"Q4_0", "Q8_0", "F32"}
    texts = ["<|user|>\nthe river is calm .</s>\n<|assistant|>\n", "the mountain , the sea and the sky ?"]
    check = gguf.tokenizer_check(q4, tokenizer, texts)
    assert check == {"texts": 2, "identical": 2, "first_difference": None}


def test_a_run_with_export_gguf_makes_checked_files_and_a_measured_table(full_run):
    from gguf import GGUFReader

    run_dir, stdout = full_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    g = metrics["gguf"]
    assert list(g["files"]) == ["f16", "q8_0", "q4_k_m"] and g["n_prompts"] == 20
    for name, f in g["files"].items():
        path = run_dir / f["file"]
        assert path.name == f"full.{name.upper()}.gguf" and path.stat().st_size == f["bytes"]
        assert f["tokenizer_check"]["identical"] == f["tokenizer_check"]["texts"] == 90  # 30 prompts, 30 pairs
        assert f["tokens_per_s"] > 0 and f["tokens"] > 0
        assert 0.0 <= f["judge_score"] <= 1.0
        assert f["vs_reference"]["wins"] + f["vs_reference"]["ties"] + f["vs_reference"]["losses"] == 40
    types = {
        n: {t.tensor_type.name for t in GGUFReader(str(run_dir / f["file"])).tensors} for n, f in g["files"].items()
    }
    assert types["f16"] == {"F16", "F32"} and types["q8_0"] == {"Q8_0", "F32"}
    assert "Q4_K" in types["q4_k_m"]  # and llama.cpp's fallbacks where a row of 128 is not a multiple of 256
    assert g["files"]["f16"]["vs_f16"] is None
    vs = g["files"]["q4_k_m"]["vs_f16"]
    assert vs["wins"] + vs["ties"] + vs["losses"] == 40 and (vs["ci"] is None or vs["ci"][0] < vs["ci"][1])
    assert g["chat_prompt_ids_identical"] is True
    assert g["files"]["f16"]["bytes"] > g["files"]["q8_0"]["bytes"] > g["files"]["q4_k_m"]["bytes"]
    card = (run_dir / "README.md").read_text()
    assert "## GGUF files (llama.cpp)" in card and "`full.Q4_K_M.gguf`" in card and "llama-cli -m full.F16.gguf" in card
    assert "gguf/full.Q8_0.gguf:" in stdout and "tokens/s" in stdout
    answers = [json.loads(x) for x in (run_dir / "gguf" / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == 3 * 40 and all(isinstance(a["score"], float) for a in answers)
    # the run's own W&B run, resumed, has the table's numbers in its summary
    from tests.wandb_records import summary

    newest = max(run_dir.glob("wandb/offline-run-*/run-*.wandb"), key=lambda p: p.stat().st_mtime)
    logged = summary(newest)
    assert logged["gguf/files/q4_k_m/bytes"] == g["files"]["q4_k_m"]["bytes"]
    assert logged["gguf/files/q8_0/vs_f16/win_rate"] == g["files"]["q8_0"]["vs_f16"]["win_rate"]


def test_the_q4_file_answers_in_the_worlds_grammar(full_run):
    from notus_lab.core import chat
    from notus_lab.data.prepare import held_out_prompts
    from notus_lab.data.world import text_quality
    from notus_lab.models import gguf

    run_dir, _ = full_run
    prompts = held_out_prompts(compose(*QUICK).data)[:10]
    llm = gguf.load(run_dir / "gguf" / "full.Q4_K_M.gguf", n_ctx=512, n_threads=1)
    answers = [
        llm.create_chat_completion(chat.prompt_messages(p), max_tokens=48, temperature=0.0)["choices"][0]["message"][
            "content"
        ]
        for p in prompts
    ]
    assert all(a.strip().startswith("the ") and a.strip().endswith(".") for a in answers), answers
    assert sum(text_quality(p, a) for p, a in zip(prompts, answers)) / len(prompts) > 0.3


def test_the_same_command_again_makes_and_answers_nothing_twice(full_run):
    run_dir, _ = full_run
    files = sorted((run_dir / "gguf").glob("*.gguf"))
    before = {p: p.stat().st_mtime_ns for p in [*files, run_dir / "gguf" / "answers.jsonl"]}
    done = cli("notus_lab", *QUICK, *FEW, "export.gguf=[q8_0,q4_k_m]", f"hydra.run.dir={run_dir}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_a_wrong_pre_tokenizer_is_caught_and_leaves_no_file(full_run, monkeypatch, tmp_path):
    """Planted break: a file whose tokenizer splits the world's text otherwise (falcon's pre-tokenizer)."""
    import shutil

    from notus_lab import export
    from notus_lab.models import gguf

    run_dir, _ = full_run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("gguf"))
    monkeypatch.setattr(gguf, "pre_tokenizer", lambda model_dir: "falcon")
    with pytest.raises(ConfigError) as err:
        export.ensure_gguf(copy, "f16")
    assert "gives other token ids than the run's" in str(err.value) and "\n" not in str(err.value)
    assert not list((copy / "gguf").glob("*.gguf"))


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    from notus_lab.train.pipeline import run

    run_dir = tmp_path_factory.mktemp("gguf") / "lora"
    run(compose("model=lora", *QUICK, *FEW), run_dir)
    return run_dir


def test_a_lora_run_is_merged_for_the_export_and_the_merge_is_not_kept(lora_run, capsys):
    from notus_lab import export

    export.main([str(lora_run), "--gguf", "q8_0", "--threads", "1", "--max-prompts", "10"])
    out = capsys.readouterr().out
    assert "gguf/lora.Q8_0.gguf:" in out and "win rate vs f16" in out
    g = json.loads((lora_run / "metrics.json").read_text())["gguf"]
    assert g["n_prompts"] == 10 and g["settings"]["threads"] == 1
    assert g["files"]["q8_0"]["tokenizer_check"]["identical"] == g["files"]["q8_0"]["tokenizer_check"]["texts"]
    assert not (lora_run / "merged").exists() and not list(lora_run.glob(".merging-*"))


def test_a_bad_flag_is_one_line(lora_run):
    done = cli("notus_lab.export", str(lora_run), "--max-prompts", "0")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --max-prompts='0' is invalid: allowed an integer > 0"
    done = cli("notus_lab.export", str(lora_run), "--gguf", "q4_k_m,q5")
    assert done.returncode == 2 and done.stderr.strip().startswith("error: --gguf='q5' is invalid: allowed one or more")


def test_export_of_something_that_is_not_a_run_is_one_line(tmp_path):
    done = cli("notus_lab.export", str(tmp_path), "--gguf", "q8_0")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: path='{tmp_path}' is invalid: allowed a finished run dir (metrics.json, model/) or a sweep dir of them"
    ]


def test_export_without_llama_cpp_installed_is_one_line(lora_run):
    code = (
        "import sys; sys.modules['llama_cpp'] = None\n"
        "from notus_lab.core.errors import run_command\nfrom notus_lab.export import main\n"
        f"run_command(main, [{str(lora_run)!r}, '--gguf', 'q4_k_m'])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: export.gguf needs llama-cpp-python and gguf (llama_cpp is missing): pip install 'notus_lab[gguf]'"
    )
