"""`lit-llm export`: a checkpoint as a Hugging Face transformers model folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Literal

from lit_llm.checkpoint.files import replace_atomically
from lit_llm.checkpoint.load import load_checkpoint
from lit_llm.hf.convert import EXPORT_FILES, HF_CONFIG, family_of, require_safetensors, write_hf_folder
from lit_llm.outputs import check_replaceable, output_folder


def export(
    checkpoint: str,
    output_dir: str,
    dtype: Literal["float32", "bfloat16", "float16"] = "float32",
    overwrite: bool = False,
) -> Path:
    """Write a checkpoint as a Hugging Face transformers model folder (GPT2LMHeadModel or LlamaForCausalLM).

    The folder holds config.json, model.safetensors, generation_config.json and the tokenizer files;
    AutoModelForCausalLM and AutoTokenizer load it offline.

    Args:
        checkpoint: a .ckpt file, a run folder (uses its checkpoints/last.ckpt), a sharded FSDP2 checkpoint folder, or
            a Hugging Face model folder.
        output_dir: the folder to write (written beside it under a temporary name, then renamed).
        dtype: precision of the saved weights.
        overwrite: replace output_dir if it holds an earlier export (config.json and only the files export writes).
    """
    folder = output_folder(output_dir)
    if overwrite:
        check_replaceable(folder, HF_CONFIG, EXPORT_FILES, [Path(checkpoint).expanduser().resolve()])
    elif folder.exists() and any(folder.iterdir()):
        raise FileExistsError(
            f"output folder {folder} already exists and is not empty; choose another --output_dir or pass --overwrite"
        )
    target = folder.resolve()  # a symlink to an empty folder is written through, never replaced
    require_safetensors()  # before loading the checkpoint, which can take a while
    model, tokenizer = load_checkpoint(checkpoint)
    family = family_of(model.config, checkpoint)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True)
    try:
        write_hf_folder(model, tokenizer, family, dtype, tmp)
        replace_atomically(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(
        f"wrote {target}: {family.architecture} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, "
        f"{dtype})"
    )
    return target


CLI = {
    "name": "export",
    "summary": "write a checkpoint as a Hugging Face transformers model folder",
    "function": "export",
}
