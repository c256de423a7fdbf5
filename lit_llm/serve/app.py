"""The OpenAI-compatible HTTP API: ``POST /v1/completions`` (with ``suffix`` for infilling, ``stream`` for
server-sent events) and ``GET /v1/models``, on one model and its KV cache.

One generation runs at a time (the model holds one KV cache); concurrent requests wait their turn. Every
error reaches the client as OpenAI's JSON error body with a 4xx status (bad input) or 500 (a bug), never as
a dropped connection: the server keeps serving.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from lit_llm.data.fim import infill_prompt
from lit_llm.model.model import GPT
from lit_llm.model.sampling import Continuation, generate
from lit_llm.model.tokenizer import Tokenizer


class CompletionRequest(BaseModel):
    """The fields of OpenAI's legacy completions API that lit-llm honours; others are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None  # any name is accepted: the server holds one model (editors send their own names)
    prompt: str | list[str] = ""
    suffix: str | None = None
    max_tokens: int = Field(16, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    stream: bool = False
    seed: int | None = None
    n: int = Field(1, ge=1, le=1)  # one choice per prompt
    user: str | None = None  # accepted for compatibility, unused
    stream_options: dict | None = None  # accepted for compatibility (usage is always in the last chunk)


class BadRequest(ValueError):
    """A request the model cannot serve as asked: 400 with the message."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def error_response(status: int, message: str, param: str | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": None}}, status)


@dataclass
class Server:
    """The loaded model with what a request needs: its tokenizer, its name, a lock around its KV cache."""

    model: GPT
    tokenizer: Tokenizer
    name: str
    lock: threading.Lock

    @property
    def device(self) -> torch.device:
        return self.model.wte.weight.device

    def prompt_ids(self, prompt: str, suffix: str | None, max_tokens: int) -> list[int]:
        """The prompt as a new document (after end-of-text, as training saw files start), kept within the
        context. A prompt written in the FIM template (``<fim_prefix>A<fim_suffix>B<fim_middle>``, as editors
        send it) is an infill like ``prompt=A, suffix=B``."""
        ids = self.tokenizer.encode(prompt)
        fim = self.tokenizer.fim_ids
        if suffix is None and fim is not None and templated(ids, fim):
            before, _, rest = partition(ids[1:], fim[1])
            return self.infill_ids(before, rest[:-1], max_tokens)
        if suffix is None:
            # keep the end: the sampler slides past block_size anyway, but a cut prompt keeps the KV cache useful
            return [self.tokenizer.eot_id, *ids][-max(1, self.model.config.block_size - max_tokens) :]
        if fim is None:
            raise BadRequest(
                "suffix (infilling) needs a model trained with fill-in-the-middle: this checkpoint's tokenizer has "
                "no <fim_prefix> <fim_suffix> <fim_middle> tokens; send the prompt alone", "suffix"
            )  # fmt: skip
        return self.infill_ids(ids, self.tokenizer.encode(suffix), max_tokens)

    def infill_ids(self, before: list[int], after: list[int], max_tokens: int) -> list[int]:
        """The PSM prompt keeping the end of the prefix and the start of the suffix: they and the whole answer
        must fit in the context, since the sentinels may not slide out of view."""
        block_size = self.model.config.block_size
        room = block_size - max_tokens - 4  # end-of-text and the three sentinels
        if room < 2:
            raise BadRequest(
                f"max_tokens {max_tokens} leaves no room for the prompt and suffix in the model's context of "
                f"{block_size} tokens; ask for at most {block_size - 6}", "max_tokens"
            )  # fmt: skip
        # the suffix gets what the prefix leaves, and at least half the room when both are long
        kept_after = min(len(after), max(room // 2, room - len(before)))
        kept_before = min(len(before), room - kept_after)
        return infill_prompt(self.tokenizer, before[len(before) - kept_before :], after[:kept_after])

    def complete(self, request: CompletionRequest, prompt: str, emit=None) -> tuple[str, str, int, int]:
        """Sample one completion; ``emit(text)`` is called with each newly settled piece (streaming).
        Returns (text, finish_reason, prompt tokens, completion tokens)."""
        ids = self.prompt_ids(prompt, request.suffix, request.max_tokens)
        stops = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
        row = Continuation(self.tokenizer, stops)
        generator = torch.Generator(device=self.device)
        generator.manual_seed(request.seed if request.seed is not None else torch.seed())
        sent, produced = 0, 0

        def on_token(next_id: torch.Tensor) -> bool:
            nonlocal sent, produced
            produced += 1
            row.add(int(next_id[0, 0]))
            if emit is not None:
                settled = row.settled()
                if len(settled) > sent and emit(settled[sent:]) is False:
                    return True  # the client went away: stop sampling for it
                sent = len(settled)
            return row.done

        with self.lock:
            generate(
                self.model,
                torch.tensor([ids], device=self.device),
                request.max_tokens,
                temperature=request.temperature,
                top_p=request.top_p,
                generator=generator,
                on_token=on_token,
            )
        if emit is not None and len(row.text) > sent:
            emit(row.text[sent:])  # held-back characters once nothing can follow them
        return row.text, "stop" if row.done else "length", len(ids), produced


def build_app(model: GPT, tokenizer: Tokenizer, name: str) -> FastAPI:
    server = Server(model, tokenizer, name, threading.Lock())
    app = FastAPI(title="lit-llm", description=f"OpenAI-compatible completions from {name}")
    created = int(time.time())

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        return error_response(400, f"{where}: {first.get('msg', 'invalid request')}", where or None)

    @app.exception_handler(BadRequest)
    async def bad_request(_: Request, err: BadRequest) -> JSONResponse:
        return error_response(400, str(err), err.param)

    @app.exception_handler(Exception)
    async def server_error(_: Request, err: Exception) -> JSONResponse:
        return error_response(500, f"{type(err).__name__}: {err}")

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [model_card(name, created)]}

    @app.get("/v1/models/{model_id:path}")
    def one_model(model_id: str):
        if model_id != name:
            return error_response(404, f"model {model_id!r} is not served here; this server serves {name!r}", "model")
        return model_card(name, created)

    @app.post("/v1/completions")
    def completions(request: CompletionRequest):
        prompts = [request.prompt] if isinstance(request.prompt, str) else request.prompt
        if not prompts:
            raise BadRequest("prompt is an empty list; send a string or a list of strings", "prompt")
        if request.stream and len(prompts) > 1:
            raise BadRequest("stream needs a single prompt; send one string", "prompt")
        for prompt in prompts:  # refuse a bad prompt before any sampling (and before a stream's 200)
            server.prompt_ids(prompt, request.suffix, request.max_tokens)
        head = {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": name,
        }
        if request.stream:
            return StreamingResponse(stream_events(server, request, prompts[0], head), media_type="text/event-stream")
        choices, prompt_tokens, completion_tokens = [], 0, 0
        for index, prompt in enumerate(prompts):
            text, finish, used, produced = server.complete(request, prompt)
            choices.append({"text": text, "index": index, "logprobs": None, "finish_reason": finish})
            prompt_tokens, completion_tokens = prompt_tokens + used, completion_tokens + produced
        return {**head, "choices": choices, "usage": usage(prompt_tokens, completion_tokens)}

    return app


def templated(ids: list[int], fim: tuple[int, int, int]) -> bool:
    """Whether ``ids`` read <fim_prefix> ... <fim_suffix> ... <fim_middle>, each sentinel once."""
    prefix, suffix, middle = fim
    once = all(ids.count(token) == 1 for token in fim)
    return once and ids[0] == prefix and ids[-1] == middle and ids.index(suffix) < len(ids) - 1


def partition(ids: list[int], token: int) -> tuple[list[int], int, list[int]]:
    at = ids.index(token)
    return ids[:at], token, ids[at + 1 :]


def model_card(name: str, created: int) -> dict:
    return {"id": name, "object": "model", "created": created, "owned_by": "lit-llm"}


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def stream_events(server: Server, request: CompletionRequest, prompt: str, head: dict) -> Iterator[str]:
    """Server-sent events, one per settled piece of text, then the finish reason and usage, then ``[DONE]``.

    Sampling runs in its own thread and hands pieces over a queue; Starlette iterates this generator in its
    thread pool. When the client disconnects the generator is closed, and the sampler stops at its next token.
    """
    pieces: queue.Queue = queue.Queue()
    gone = threading.Event()

    def emit(text: str) -> bool:
        pieces.put(("text", text))
        return not gone.is_set()

    def run() -> None:
        try:
            pieces.put(("done", server.complete(request, prompt, emit)))
        except Exception as err:  # after the 200 went out: the error travels as an event
            pieces.put(("error", f"{type(err).__name__}: {err}"))

    threading.Thread(target=run, daemon=True).start()
    try:
        while True:
            kind, value = pieces.get()
            if kind == "text":
                yield event({**head, "choices": [choice(value, None)]})
            elif kind == "error":
                yield event({"error": {"message": value, "type": "server_error", "param": None, "code": None}})
                break
            else:
                _, finish, used, produced = value
                yield event({**head, "choices": [choice("", finish)], "usage": usage(used, produced)})
                break
        yield "data: [DONE]\n\n"
    finally:
        gone.set()


def choice(text: str, finish_reason: str | None) -> dict:
    return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}


def event(payload: dict) -> str:
    return f"data: {json.dumps(payload)}\n\n"
