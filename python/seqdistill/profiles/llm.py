"""LLM backends behind one interface: ``generate(list of message lists) -> list[GenerationResult]``.

- ``TransformersBackend``: a local causal LM folder; batched, left-padded generation; bf16 on GPU,
  float32 on CPU; greedy by default, seeded sampling when ``temperature > 0``.
- ``OpenAIBackend``: an OpenAI-compatible ``/v1/chat/completions`` server (vLLM, llama.cpp
  server, OpenAI); stdlib ``urllib``; bounded concurrency; retries with exponential backoff on
  429, 5xx, connection errors and timeouts. The API key is never sent over plain ``http://`` to
  anything but loopback (unless ``allow_insecure_http=True``), redirects are not followed (they
  would carry the ``Authorization`` header elsewhere), and every error text it returns is passed
  through :func:`redact` (no key, no ``Authorization`` value, no secret query parameter).

A backend returns one result per conversation, in order. A conversation that fails is returned
with ``error`` set (the served backend after its retries); an exception means the whole call failed.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import random
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from seqdistill._checks import check_seed
from seqdistill._config import DictConfig
from seqdistill.errors import ConfigError

Messages = list[dict[str, str]]


@dataclass
class GenerationResult:
    """One generated text and its cost. ``seconds`` is the conversation's share of its batch's time."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    error: str | None = None


@dataclass
class GenerationConfig(DictConfig):
    """Decoding settings: greedy when temperature == 0, else sampling seeded with ``seed``.

    Loop controls (small models such as SmolLM2-135M repeat themselves under greedy decoding):
    ``repetition_penalty`` divides the logit of every token already in the prompt or the output
    (1.0: off; the CTRL rule as transformers implements it), ``no_repeat_ngram_size`` forbids any
    token n-gram from occurring twice in the output and prompt (0: off; local backends only), and
    ``stop`` ends a text at the first of these strings (the string itself is not kept). The
    defaults leave decoding as it was; ``SMALL_MODEL_DECODING`` holds the settings measured for
    SmolLM2 (docs/profiles.md)."""

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    stop: list[str] | None = None

    def __post_init__(self) -> None:
        if not _is_int(self.max_new_tokens) or self.max_new_tokens < 1:
            raise ConfigError(f"GenerationConfig.max_new_tokens: expected an integer >= 1, got {self.max_new_tokens!r}")
        if not _is_number(self.temperature) or not 0 <= self.temperature < math.inf:
            raise ConfigError(f"GenerationConfig.temperature: expected a finite number >= 0, got {self.temperature!r}")
        if not _is_number(self.top_p) or not 0 < self.top_p <= 1:
            raise ConfigError(f"GenerationConfig.top_p: expected a number in (0, 1], got {self.top_p!r}")
        check_seed(self)
        rp = self.repetition_penalty
        if not _is_number(rp) or not 1 <= rp <= 10:
            raise ConfigError(f"GenerationConfig.repetition_penalty: expected a number in [1, 10] (1: off), got {rp!r}")
        if not _is_int(self.no_repeat_ngram_size) or self.no_repeat_ngram_size < 0:
            raise ConfigError(
                f"GenerationConfig.no_repeat_ngram_size: expected an integer >= 0 (0: off), got {self.no_repeat_ngram_size!r}"
            )
        stop = self.stop
        if stop is not None:
            if (
                isinstance(stop, str)
                or not isinstance(stop, (list, tuple))
                or not all(isinstance(x, str) and x for x in stop)
            ):
                raise ConfigError(f"GenerationConfig.stop: expected a list of non-empty strings or None, got {stop!r}")
            self.stop = list(stop) or None

    def cut(self, text: str) -> str:
        """``text`` up to the first stop string (all of it without one), stripped."""
        for s in self.stop or ():
            at = text.find(s)
            if at >= 0:
                text = text[:at]
        return text.strip()


#: Decoding measured for SmolLM2-135M on MovieLens users (docs/profiles.md, "Choosing the defaults").
SMALL_MODEL_DECODING: dict[str, Any] = {"max_new_tokens": 128, "no_repeat_ngram_size": 3}
#: Most recent items in a small model's (compact) prompt (docs/profiles.md).
SMALL_MODEL_ITEMS = 40


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)


# ------------------------------------------------------------------------------ redaction
_SECRET_NAME = (
    r"(?:[\w.-]*(?:key|token|secret|password|passwd|signature|credentials?)|(?:[\w.-]*[_-])?(?:sig|pwd|auth))"
)
_SECRET_PARAM = re.compile(rf"(?i)((?:^|[?&;\s]){_SECRET_NAME}=)[^&#\s\"'<>]*")
_SCHEME_AUTH = re.compile(r"(?i)\b(bearer|basic|token)(\s+)[A-Za-z0-9._~+/=-]+")
_AUTH_FIELD = re.compile(
    r"(?i)\b(authorization|proxy-authorization|api[-_]?key|x-api-key)(\"?\s*[:=]\s*\"?)(?:(?:bearer|basic|token)\s+)?[^\s\",}&#;'<>]+"
)
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")
_KEY_LIKE = re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}")
REDACTED = "[redacted]"


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` without credentials: each of ``secrets`` (4 characters or more), the value of an
    ``Authorization`` / ``api-key`` field or a ``Bearer``/``Basic`` token, the password part of a
    URL, query parameters named like a secret (``api_key=``, ``key=``, ``token=``, ``sig=``...)
    and OpenAI-style ``sk-...`` keys. Used on every error a backend records or raises."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    text = _USERINFO.sub(rf"\1{REDACTED}@", text)
    text = _AUTH_FIELD.sub(rf"\1\2{REDACTED}", text)
    text = _SCHEME_AUTH.sub(rf"\1\2{REDACTED}", text)
    text = _SECRET_PARAM.sub(rf"\1{REDACTED}", text)
    return _KEY_LIKE.sub(REDACTED, text)


def chat_completions_url(base_url: str) -> str:
    """``<base_url>/chat/completions`` with the path extended and the query kept
    (``https://h/openai/v1?api-version=1`` -> ``https://h/openai/v1/chat/completions?api-version=1``)."""
    parts = urllib.parse.urlsplit(base_url.strip())
    path = parts.path.rstrip("/") + "/chat/completions"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def is_loopback(host: str | None) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1 (also written as ::ffff:127.x.y.z)."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Turn a redirect into an HTTPError: following it would send the Authorization header on."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, D102
        return None


class LLMBackend(Protocol):
    """What the profile pipeline needs from an LLM."""

    name: str  # recorded in the profile store as the model
    context_tokens: int  # prompt + completion limit
    config: GenerationConfig

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...

    def prompt_tokens(self, messages: Messages) -> int: ...

    def generate(self, conversations: Sequence[Messages]) -> list[GenerationResult]: ...


def _check_messages(conv: Messages, i: int) -> None:
    if not isinstance(conv, list) or not conv:
        raise TypeError(f"conversation {i}: expected a non-empty list of {{role, content}} dicts")
    for m in conv:
        if not isinstance(m, dict) or set(m) != {"role", "content"} or not isinstance(m["content"], str):
            raise TypeError(f"conversation {i}: bad message {m!r}; expected {{'role': str, 'content': str}}")


class TransformersBackend:
    """A local causal LM (a transformers folder) with batched left-padded generation."""

    def __init__(
        self,
        path: str | os.PathLike,
        config: GenerationConfig | None = None,
        *,
        batch_size: int = 8,
        device: str | None = None,
        dtype: str | None = None,
        context_tokens: int | None = None,
        model: Any = None,
        tokenizer: Any = None,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = config or GenerationConfig()
        self.batch_size = int(batch_size)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype is None:
            dtype = "bfloat16" if self.device.startswith("cuda") else "float32"
        self.dtype = getattr(torch, dtype)
        self.path = str(path)
        self.name = Path(self.path).name if model is None else type(model).__name__
        self.tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(self.path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if getattr(self.tokenizer, "chat_template", None) is None:
            raise ConfigError(f"{self.path}: the tokenizer has no chat template; profiles need one")
        self.model = model if model is not None else AutoModelForCausalLM.from_pretrained(self.path, dtype=self.dtype)
        self.model.to(self.device).eval()
        self.context_tokens = int(context_tokens or getattr(self.model.config, "max_position_embeddings", 2048))

    def render(self, messages: Messages) -> str:
        """The prompt text: the tokenizer's chat template with the assistant turn opened."""
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        enc = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [len(x) for x in enc]

    def prompt_tokens(self, messages: Messages) -> int:
        return self.count_tokens([self.render(messages)])[0]

    def generate(self, conversations: Sequence[Messages]) -> list[GenerationResult]:
        out: list[GenerationResult] = []
        for i, c in enumerate(conversations):
            _check_messages(c, i)
        for s in range(0, len(conversations), self.batch_size):
            out.extend(self._batch([self.render(c) for c in conversations[s : s + self.batch_size]]))
        return out

    def _batch(self, prompts: list[str]) -> list[GenerationResult]:
        import torch

        cfg = self.config
        t0 = time.perf_counter()
        # The chat template already holds the special tokens (e.g. <|im_start|>).
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        kw: dict[str, Any] = dict(max_new_tokens=cfg.max_new_tokens, pad_token_id=self.tokenizer.pad_token_id)
        if cfg.repetition_penalty != 1:
            kw["repetition_penalty"] = float(cfg.repetition_penalty)
        if cfg.no_repeat_ngram_size:
            kw["no_repeat_ngram_size"] = cfg.no_repeat_ngram_size
        if cfg.stop:
            kw.update(stop_strings=list(cfg.stop), tokenizer=self.tokenizer)
        if cfg.temperature > 0:
            torch.manual_seed(cfg.seed)
            kw.update(do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            gen = self.model.generate(**enc, **kw)
        new = gen[:, enc["input_ids"].shape[1] :].cpu()
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) | {self.tokenizer.eos_token_id}
        eos_ids.add(self.tokenizer.pad_token_id)  # rows ended by a stop string are padded
        eos_ids.discard(None)
        share = (time.perf_counter() - t0) / len(prompts)
        results = []
        for row, n_prompt in zip(new.tolist(), enc["attention_mask"].sum(1).tolist()):
            stop = next((j for j, t in enumerate(row) if t in eos_ids), None)
            toks = row if stop is None else row[:stop]
            text = cfg.cut(self.tokenizer.decode(toks, skip_special_tokens=True))
            n_done = len(row) if stop is None else stop + 1
            results.append(GenerationResult(text, int(n_prompt), n_done, share))
        return results


class OpenAIBackend:
    """An OpenAI-compatible chat-completions server, called with bounded concurrency and retries.

    Token counts for budgeting are estimated from characters (``chars_per_token``) since the
    server's tokenizer is not available locally; the store records the server's own usage counts.

    ``api_key`` defaults to ``$OPENAI_API_KEY``. A base URL with ``http://`` is refused when a
    secret would travel in clear text (the key, a password in the URL, a ``key=``-like query
    parameter) unless the host is loopback or ``allow_insecure_http=True`` says the network
    between here and the server is trusted.
    """

    RETRY_STATUS = (408, 409, 429, 500, 502, 503, 504)

    def __init__(
        self,
        base_url: str,
        model: str,
        config: GenerationConfig | None = None,
        *,
        api_key: str | None = None,
        max_concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        context_tokens: int = 8192,
        chars_per_token: float = 4.0,
        allow_insecure_http: bool = False,
    ) -> None:
        for key, value, low in (
            ("max_concurrency", max_concurrency, 1),
            ("max_retries", max_retries, 0),
            ("context_tokens", context_tokens, 1),
        ):
            if not _is_int(value) or value < low:
                raise ConfigError(f"OpenAIBackend {key}: expected an integer >= {low}, got {value!r}")
        for key, value in (
            ("timeout", timeout),
            ("backoff", backoff),
            ("max_backoff", max_backoff),
            ("chars_per_token", chars_per_token),
        ):
            if not _is_number(value) or not 0 < value < math.inf:
                raise ConfigError(f"OpenAIBackend {key}: expected a finite number > 0, got {value!r}")
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.url = self._checked_url(base_url, allow_insecure_http)
        self.name = model
        self.config = config or GenerationConfig()
        if self.config.no_repeat_ngram_size:
            raise ConfigError(
                f"OpenAIBackend: no_repeat_ngram_size={self.config.no_repeat_ngram_size} is not part of the "
                "chat-completions API; use repetition_penalty (vLLM) or stop strings with a served model"
            )
        self.max_concurrency, self.timeout = int(max_concurrency), float(timeout)
        self.max_retries, self.backoff, self.max_backoff = int(max_retries), float(backoff), float(max_backoff)
        self.context_tokens, self.chars_per_token = int(context_tokens), float(chars_per_token)
        self._rng = random.Random(self.config.seed)
        self._lock = threading.Lock()
        self._opener = urllib.request.build_opener(_NoRedirect)

    def _checked_url(self, base_url: str, allow_insecure_http: bool) -> str:
        """The chat-completions URL; refuses other schemes and secrets over plain HTTP."""
        if not isinstance(base_url, str):
            raise ConfigError(f"OpenAIBackend base_url: expected a string, got {type(base_url).__name__}")
        url = chat_completions_url(base_url)
        parts = urllib.parse.urlsplit(url)
        shown = redact(base_url, [self.api_key])
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"OpenAIBackend base_url {shown!r}: expected http://HOST/... or https://HOST/...")
        query_secret = redact(parts.query) != parts.query
        secret = bool(self.api_key) or parts.password is not None or query_secret
        if parts.scheme == "http" and secret and not is_loopback(parts.hostname) and not allow_insecure_http:
            raise ConfigError(
                f"OpenAIBackend base_url {shown!r}: refusing to send the API key over plain http:// to "
                f"{parts.hostname} (not loopback); use https://, or allow_insecure_http=True (--allow-insecure-http) on a trusted network"
            )
        self._secrets = [s for s in (self.api_key, parts.password) if s]
        self.display_url = redact(url, self._secrets)
        return url

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [math.ceil(len(t) / self.chars_per_token) for t in texts]

    def prompt_tokens(self, messages: Messages) -> int:
        # content plus a few tokens of role markup per message
        return sum(self.count_tokens([m["content"] for m in messages])) + 4 * len(messages) + 2

    def generate(self, conversations: Sequence[Messages]) -> list[GenerationResult]:
        for i, c in enumerate(conversations):
            _check_messages(c, i)
        if not conversations:
            return []
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(conversations))) as pool:
            return list(pool.map(self._one, conversations))

    def _payload(self, messages: Messages) -> bytes:
        cfg = self.config
        body: dict[str, Any] = {
            "model": self.name,
            "messages": messages,
            "max_tokens": cfg.max_new_tokens,
            "temperature": cfg.temperature,
            "seed": cfg.seed,
        }
        if cfg.temperature > 0:
            body["top_p"] = cfg.top_p
        if cfg.stop:
            body["stop"] = list(cfg.stop)[:4]  # the OpenAI API takes up to 4; cut() applies them all
        if cfg.repetition_penalty != 1:
            body["repetition_penalty"] = cfg.repetition_penalty  # vLLM's extension of the API
        return json.dumps(body).encode("utf-8")

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), self.max_backoff)
            except ValueError:
                pass
        with self._lock:
            jitter = self._rng.uniform(0.0, 0.25)
        return min(self.backoff * (2**attempt) * (1 + jitter), self.max_backoff)

    def _one(self, messages: Messages) -> GenerationResult:
        data = self._payload(messages)
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        t0 = time.perf_counter()
        last = "no attempt made"
        url = self.display_url
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
                with self._opener.open(req, timeout=self.timeout) as resp:
                    reply = json.loads(resp.read().decode("utf-8"))
                return self._parse(reply, time.perf_counter() - t0)
            except urllib.error.HTTPError as e:
                if 300 <= e.code < 400:
                    where = e.headers.get("Location") if e.headers else None
                    last = f"HTTP {e.code} from {url}: redirect to {where} not followed (it would carry the API key)"
                    break
                detail = " ".join(e.read()[:300].decode("utf-8", "replace").split())
                last = f"HTTP {e.code} from {url}: {detail}"
                if e.code not in self.RETRY_STATUS:
                    break
                retry_after = e.headers.get("Retry-After") if e.headers else None
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                last = f"{type(e).__name__} calling {url}: {e}"
            except (ValueError, KeyError, IndexError, TypeError) as e:
                last = f"bad reply from {url}: {type(e).__name__}: {e}"
                break
            if attempt < self.max_retries:
                time.sleep(self._delay(attempt, retry_after))
        return GenerationResult("", 0, 0, time.perf_counter() - t0, error=redact(last, self._secrets))

    def _parse(self, reply: dict[str, Any], seconds: float) -> GenerationResult:
        text = reply["choices"][0]["message"]["content"]
        if not isinstance(text, str):
            raise TypeError(f"choices[0].message.content is {type(text).__name__}, not str")
        usage = reply.get("usage") or {}
        return GenerationResult(
            self.config.cut(text), int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)), seconds
        )
