"""Runs llama.cpp's convert_hf_to_gguf.py in a process of its own:

    python -m notus_lab.models.gguf_convert <converter dir> <pre-tokenizer | -> <the converter's own arguments>

The converter runs as llama.cpp ships it. One thing is added: a name for the BPE pre-tokenizer of a tokenizer
whose fingerprint llama.cpp's table does not know, where the converter would stop. notus_lab/models/gguf.py
(pre_tokenizer) derives that name from the tokenizer's own tokenizer.json, and its tokenizer_check proves it.
"""

from __future__ import annotations

import os
import runpy
import sys


def main(argv: list[str]) -> None:
    converter, pre, *args = argv
    script = os.path.join(converter, "convert_hf_to_gguf.py")
    # as the script itself does: its own gguf-py (the version its writer expects), before any installed gguf
    sys.path[:0] = [converter, os.path.join(converter, "gguf-py")]
    if pre != "-":
        from conversion import base

        known = base.TextModel.get_vocab_base_pre

        def get_vocab_base_pre(self, tokenizer) -> str:
            try:
                return known(self, tokenizer)
            except NotImplementedError:  # "BPE pre-tokenizer was not recognized"
                return pre

        base.TextModel.get_vocab_base_pre = get_vocab_base_pre
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
