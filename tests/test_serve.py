"""`lit-llm serve` driven by the official `openai` client: a real server process on a free port.

The served model is test_generate's hand-built cycle model (its next token is a fixed function of the current
byte: "a" -> "bc.XYZ\\n" again and again, "p" -> "q" -> end-of-text), given FIM tokens, and taught that
<fim_middle> is followed by "p": an infill request answers "pq" and stops. Every answer is known in advance.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
import torch

from lit_llm.model.tokenizer import byte_tokenizer, with_fim_tokens
from tests.conftest import REPO
from tests.test_export import save_checkpoint
from tests.test_generate import cycle_model

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")


def infilling_cycle_model():
    model, tokenizer = cycle_model(), with_fim_tokens(byte_tokenizer())
    _, _, fim_middle = tokenizer.fim_ids
    with torch.no_grad():
        model.lm_head.weight[ord("p")] = 10 * model.wte.weight[fim_middle]
    return model, tokenizer


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(checkpoint, *extra: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "lit_llm.cli", "serve", str(checkpoint), "--port", str(port), *extra]
    process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited: {process.communicate()}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).raise_for_status()
            return process, port
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError("the server did not answer within 60 s")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    model, tokenizer = infilling_cycle_model()
    checkpoint = save_checkpoint(model, tokenizer, tmp_path_factory.mktemp("serve") / "cycle.ckpt")
    process, port = start_server(checkpoint, "--model_name", "cycle")
    yield port
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture
def client(served):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{served}/v1", api_key="unused", max_retries=0)


def test_models_lists_the_served_model(client):
    assert [m.id for m in client.models.list()] == ["cycle"]


def test_completion_continues_the_prompt_and_cuts_at_a_stop_sequence(client):
    done = client.completions.create(model="cycle", prompt="a", max_tokens=12, temperature=0)
    assert done.choices[0].text == "bc.XYZ\nabc.X"
    assert done.choices[0].finish_reason == "length"
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (2, 12)  # end-of-text + "a"
    stopped = client.completions.create(model="any-name", prompt="a", max_tokens=40, temperature=0, stop=["Z\n"])
    assert stopped.choices[0].text == "bc.XY"
    assert stopped.choices[0].finish_reason == "stop"


def test_end_of_text_ends_a_completion(client):
    done = client.completions.create(model="cycle", prompt="p", max_tokens=40, temperature=0)
    assert (done.choices[0].text, done.choices[0].finish_reason) == ("q", "stop")


def test_streaming_sends_the_same_text_in_pieces(client):
    whole = client.completions.create(model="cycle", prompt="a", max_tokens=30, temperature=0, stop="Z\n")
    events = list(
        client.completions.create(model="cycle", prompt="a", max_tokens=30, temperature=0, stop="Z\n", stream=True)
    )
    texts = [e.choices[0].text for e in events]
    assert "".join(texts) == whole.choices[0].text == "bc.XY"
    assert len([t for t in texts if t]) > 1  # several pieces, not one at the end
    assert events[-1].choices[0].finish_reason == "stop"


def test_sampling_with_a_seed_repeats_and_a_list_of_prompts_answers_each(client):
    settings = {"model": "cycle", "max_tokens": 8, "temperature": 1.5, "top_p": 0.95, "seed": 3}
    first = client.completions.create(prompt="a", **settings).choices[0].text
    assert client.completions.create(prompt="a", **settings).choices[0].text == first
    both = client.completions.create(model="cycle", prompt=["a", "p"], max_tokens=5, temperature=0)
    assert [c.text for c in both.choices] == ["bc.XY", "q"]
    assert [c.index for c in both.choices] == [0, 1]


def test_suffix_asks_for_an_infill(client):
    done = client.completions.create(model="cycle", prompt="def f(", suffix=")\n", max_tokens=10, temperature=0)
    assert (done.choices[0].text, done.choices[0].finish_reason) == ("pq", "stop")
    # the prompt is a new document: end-of-text, <fim_prefix> "def f(" <fim_suffix> ")\n" <fim_middle>
    assert done.usage.prompt_tokens == 1 + 1 + 6 + 1 + 2 + 1


def test_a_prompt_in_the_fim_template_is_an_infill_too(client):
    # what editors such as Continue send: the sentinels as text, which the tokenizer reads as the special tokens
    prompt = "<fim_prefix>def f(<fim_suffix>)\n<fim_middle>"
    done = client.completions.create(model="cycle", prompt=prompt, max_tokens=10, temperature=0)
    assert (done.choices[0].text, done.usage.prompt_tokens) == ("pq", 12)


def test_long_prompts_keep_their_end_and_infills_keep_their_sentinels():
    import threading

    from lit_llm.serve.app import Server

    model, tokenizer = infilling_cycle_model()  # a context of 64 tokens
    server = Server(model, tokenizer, "cycle", threading.Lock())
    pre, suf, mid = tokenizer.fim_ids
    plain = server.prompt_ids("x" * 100 + "end", None, max_tokens=10)
    assert len(plain) == 54 and tokenizer.decode(plain).endswith("xxend")
    for ids in (
        server.prompt_ids("<fim_prefix>" + "x" * 100 + "<fim_suffix>" + "y" * 100 + "<fim_middle>", None, 10),
        server.prompt_ids("x" * 100, "y" * 100, max_tokens=10),
    ):
        assert len(ids) == 54 and ids[:2] == [tokenizer.eot_id, pre] and ids[-1] == mid
        assert tokenizer.decode(ids[2:-1]) == "x" * 25 + "<fim_suffix>" + "y" * 25  # the room split in halves


@pytest.mark.parametrize(
    "request_fields, param",
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 2}, "n"),
        ({"logprobs": 3}, "logprobs"),  # not implemented: refused, not silently ignored
        ({"prompt": [1, 2, 3]}, "prompt"),
        ({"prompt": "a", "suffix": "b", "max_tokens": 60}, "max_tokens"),  # no room in a 64-token context
    ],
)
def test_bad_requests_get_a_json_400_and_the_server_keeps_serving(client, request_fields, param):
    fields = {"model": "cycle", "prompt": "a", **request_fields}
    with pytest.raises(openai.BadRequestError) as raised:
        client.completions.create(**fields)
    assert raised.value.status_code == 400
    assert raised.value.body["type"] == "invalid_request_error"
    assert param in raised.value.body["param"]
    assert client.completions.create(model="cycle", prompt="p", max_tokens=3, temperature=0).choices[0].text == "q"


def test_malformed_json_and_unknown_routes_are_4xx_json(served):
    response = httpx.post(f"http://127.0.0.1:{served}/v1/completions", content=b"{not json", timeout=10)
    assert response.status_code == 400 and "error" in response.json()
    assert httpx.get(f"http://127.0.0.1:{served}/v1/models/other", timeout=10).status_code == 404


def test_infilling_without_fim_tokens_is_refused(tmp_path):
    checkpoint = save_checkpoint(cycle_model(), byte_tokenizer(), tmp_path / "plain.ckpt")
    process, port = start_server(checkpoint)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        assert [m.id for m in client.models.list()] == ["plain"]
        with pytest.raises(openai.BadRequestError, match="fill-in-the-middle"):
            client.completions.create(model="plain", prompt="a", suffix="b", max_tokens=4)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_default_model_name_is_the_run_folders(tmp_path):
    from lit_llm.commands.serve import default_model_name

    run = tmp_path / "checkpoints" / "my-run"  # a run folder that itself lies in a folder named checkpoints
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert default_model_name(str(run)) == "my-run"
    assert default_model_name(str(run / "checkpoints" / "last.ckpt")) == "my-run"
    (tmp_path / "model.ckpt").write_bytes(b"")
    assert default_model_name(str(tmp_path / "model.ckpt")) == "model"
