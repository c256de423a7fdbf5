"""lit-llm as an lm-evaluation-harness model type, ``lit-llm``: the harness scores a lit-llm checkpoint on
lit-llm's own model and KV cache, no export needed.

lm-eval finds model types only in its own registry and has no plug-in discovery, so its ``lm_eval``
command cannot know ``lit-llm`` unless this module is imported first. ``python -m
lit_llm.evaluation.harness ARGS`` is that command with the model registered (and lit-llm's shipped tasks
on the include path); ``lit-llm evaluate --tasks`` calls the harness from Python.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    # lm-eval fills its registry with its own model types (hf, vllm, ...) only while the registry is empty:
    # import them before registering lit-llm, or every other model type would become unknown.
    import lm_eval.models  # noqa: F401
    from lm_eval.api.model import TemplateLM
    from lm_eval.api.registry import register_model
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
except ImportError:
    raise ImportError(
        'lm-evaluation-harness is not installed; install the eval extra: pip install "lit-llm[eval]"'
    ) from None
import torch
from tqdm import tqdm

from lit_llm.checkpoint.load import load_checkpoint
from lit_llm.evaluation.loglikelihood import continuation_logprobs
from lit_llm.evaluation.multiple_choice import read_questions
from lit_llm.model.model import GPT
from lit_llm.model.sampling import generate_batch
from lit_llm.model.tokenizer import Tokenizer
from lit_llm.planning.hardware import resolve_device, resolve_dtype

TASKS_DIR = Path(__file__).resolve().parents[1] / "tasks"  # the small local tasks that ship with lit-llm
DEFAULT_BATCH_SIZE = 16


@register_model("lit-llm")
class LitLLMEval(TemplateLM):
    """``--model lit-llm --model_args checkpoint=CKPT[,dtype=float32|bfloat16|auto]``.

    ``checkpoint``: a .ckpt file, a run folder or a Hugging Face folder, as for every lit-llm command.
    ``dtype=auto`` (the default) is bfloat16 on a GPU that supports it, float32 elsewhere.
    """

    def __init__(
        self,
        checkpoint: str,
        batch_size: int | str | None = DEFAULT_BATCH_SIZE,
        device: str | None = None,
        dtype: str = "auto",
        **unused,
    ) -> None:
        super().__init__()
        device = resolve_device(device or "auto")
        model, tokenizer = load_checkpoint(checkpoint, device)
        self.use(model.to(resolve_dtype(dtype, device)), tokenizer, batch_size, checkpoint)

    @classmethod
    def from_model(cls, model: GPT, tokenizer: Tokenizer, batch_size: int, name: str) -> LitLLMEval:
        """An adapter around a model already loaded (by `lit-llm evaluate`)."""
        lm = cls.__new__(cls)
        TemplateLM.__init__(lm)
        lm.use(model, tokenizer, batch_size, name)
        return lm

    def use(self, model: GPT, tokenizer: Tokenizer, batch_size: int | str | None, name: str) -> None:
        self.model, self.tokenizer_, self.checkpoint = model.eval(), tokenizer, name
        # lm-eval passes --batch_size as a string; "auto" (probing memory) is not supported: use the default.
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else DEFAULT_BATCH_SIZE

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer_.eot_id

    @property
    def max_length(self) -> int:
        return self.model.config.block_size

    @property
    def device(self) -> torch.device:
        return self.model.wte.weight.device

    @property
    def tokenizer_name(self) -> str:
        return str(self.checkpoint)

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        return self.tokenizer_.encode(string)  # lit-llm tokenizers add no special tokens

    def tok_decode(self, ids: list[int]) -> str:
        return self.tokenizer_.decode(ids)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        pairs = [(context, continuation) for _, context, continuation in requests]
        results = []
        chunk = self.batch_size * 8  # a progress bar that moves; each chunk still sorts its own batches
        for start in tqdm(range(0, len(pairs), chunk), disable=disable_tqdm, desc="lit-llm loglikelihood"):
            results += continuation_logprobs(self.model, pairs[start : start + chunk], self.batch_size)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Disjoint windows of the model's context, the first conditioned on end-of-text (lm-eval's rule)."""
        windows, owners = [], []
        for index, request in enumerate(requests):
            (text,) = request.args
            for window in get_rolling_token_windows(self.tok_encode(text), self.eot_token_id, self.max_length, 1):
                windows.append((None, *make_disjoint_window(window)))
                owners.append(index)
        totals = [0.0] * len(requests)
        for owner, (logprob, _) in zip(owners, self._loglikelihood_tokens(windows, disable_tqdm)):
            totals[owner] += logprob
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy (or, with ``do_sample``, sampled) continuations cut at the first ``until`` string; requests
        with the same settings go through ``generate_batch`` together (it batches prompts of one length)."""
        groups: dict[tuple, list[int]] = {}
        for index, request in enumerate(requests):
            _, options = request.args
            until = options.get("until") or []
            stop = (until,) if isinstance(until, str) else tuple(until)
            temperature = float(options.get("temperature", 0.0)) if options.get("do_sample") else 0.0
            groups.setdefault((stop, int(options.get("max_gen_toks", 256)), temperature), []).append(index)
        outputs: list[str] = [""] * len(requests)
        for (stop, max_new_tokens, temperature), members in tqdm(
            groups.items(), disable=disable_tqdm, desc="lit-llm generate_until"
        ):
            prompts = [requests[i].args[0] for i in members]
            sample = {"max_new_tokens": max_new_tokens, "temperature": temperature}
            for i, text in zip(members, generate_batch(self.model, self.tokenizer_, prompts, list(stop), sample)):
                outputs[i] = text
        return outputs


def choice_task(path: str) -> dict:
    """An lm-eval task config for a HellaSwag-format JSON Lines file, checked first (one-line errors), scored
    as lit_llm.evaluation.multiple_choice scores it during training."""
    read_questions(path)
    return {
        "task": Path(path).stem,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(Path(path).expanduser().resolve())}},
        "output_type": "multiple_choice",
        "test_split": "test",
        "doc_to_text": "ctx",
        "doc_to_choice": "endings",
        "doc_to_target": "{{label}}",
        "target_delimiter": " ",
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in ("acc", "acc_norm")],
    }


def task_manager(paths: list[str], specs: list):
    """lm-eval's task index of ``paths``, and of lm-eval's own tasks only when a named task is not in
    ``paths``: indexing lm-eval's thousands of task YAMLs takes ~10 s."""
    from lm_eval.tasks import TaskManager

    local = TaskManager(include_path=paths, include_defaults=False)
    names = [s for s in specs if isinstance(s, str)]
    return local if all(name in local.all_tasks for name in names) else TaskManager(include_path=paths)


def evaluate_tasks(lm: LitLLMEval, tasks: list[str], limit: int | None, include_path: str | None) -> dict:
    """lm-eval's results per task (``{task: {metric: value}}``) for task names (lit-llm's shipped tasks, tasks
    under ``include_path``, or lm-eval's own where their data is in the local Hugging Face cache) and
    HellaSwag-format ``.jsonl`` files."""
    import lm_eval

    specs = [choice_task(t) if t.endswith(".jsonl") else t for t in tasks]
    manager = task_manager([str(TASKS_DIR)] + ([include_path] if include_path else []), specs)
    unknown = [t for t in specs if isinstance(t, str) and t not in manager.all_tasks]
    if unknown:
        raise ValueError(
            f"unknown task(s) {', '.join(unknown)}; pass lm-eval task names (`lm_eval ls tasks`), lit-llm's "
            f"({', '.join(sorted(p.stem for p in TASKS_DIR.glob('*.yaml')))}), a folder of task YAMLs with "
            f"--include_path, or HellaSwag-format .jsonl files"
        )
    output = lm_eval.simple_evaluate(lm, tasks=specs, task_manager=manager, limit=limit, bootstrap_iters=0)
    return {
        task: {k.split(",")[0]: v for k, v in metrics.items() if "," in k and "stderr" not in k}
        for task, metrics in output["results"].items()
    }


def main(argv: list[str] | None = None) -> None:
    """lm-eval's own command line, with ``--model lit-llm`` known and lit-llm's tasks on the include path."""
    from lm_eval.__main__ import cli_evaluate

    argv = sys.argv[1:] if argv is None else argv
    if "--include_path" not in argv:
        argv = [*argv, "--include_path", str(TASKS_DIR)]
    sys.argv = ["lm_eval", *argv]
    cli_evaluate()


if __name__ == "__main__":
    main()
