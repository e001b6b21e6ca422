"""LLM backends: local transformers (tiny random Llama and SmolLM2) and an OpenAI-compatible server."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
torch.set_num_threads(1)

from seqdistill.profiles.llm import GenerationConfig, OpenAIBackend, TransformersBackend  # noqa: E402
from seqdistill.profiles.prompts import load_prompts  # noqa: E402


@pytest.fixture(scope="session")
def smollm_dir():
    from seqdistill.profiles.smollm import converted_path, gguf_path

    try:
        gguf_path()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    return converted_path()


@pytest.fixture(scope="session")
def tiny_model(smollm_dir):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(smollm_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      initializer_range=0.3, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    return LlamaForCausalLM(cfg).eval(), tok


def _convs(n):
    p = load_prompts("movies")
    hist = ["- [rated 5/5] Film A; genres: Comedy", "- [rated 1/5] Film B; genres: Horror\n- Film C",
            "- [watched 90%] A very long title " + "and more words " * 12, "- x"]
    return [p.profile_messages(hist[i % len(hist)] * (1 + i // len(hist))) for i in range(n)]


def test_left_padding_does_not_change_greedy_rows(tiny_model):
    model, tok = tiny_model
    cfg = GenerationConfig(max_new_tokens=12)
    batched = TransformersBackend("tiny", cfg, batch_size=5, model=model, tokenizer=tok, device="cpu")
    single = TransformersBackend("tiny", cfg, batch_size=1, model=model, tokenizer=tok, device="cpu")
    convs = _convs(5)
    lengths = {batched.prompt_tokens(c) for c in convs}
    assert len(lengths) == 5  # really different lengths, so rows are padded
    a, b = batched.generate(convs), single.generate(convs)
    assert [r.text for r in a] == [r.text for r in b]
    assert [r.completion_tokens for r in a] == [r.completion_tokens for r in b]
    assert [r.prompt_tokens for r in a] == [batched.prompt_tokens(c) for c in convs]
    assert all(0 < r.completion_tokens <= 12 for r in a)
    # compare with transformers run by hand, unpadded
    ids = tok(batched.render(convs[2]), return_tensors="pt", add_special_tokens=False)
    out = model.generate(**ids, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
    new = out[0, ids["input_ids"].shape[1]:].tolist()
    if tok.eos_token_id in new:
        new = new[: new.index(tok.eos_token_id)]
    assert a[2].text == tok.decode(new, skip_special_tokens=True).strip()


def test_seeded_sampling_is_reproducible(tiny_model):
    model, tok = tiny_model
    mk = lambda seed: TransformersBackend("tiny", GenerationConfig(8, temperature=1.0, seed=seed),  # noqa: E731
                                          batch_size=2, model=model, tokenizer=tok, device="cpu")
    convs = _convs(2)
    assert [r.text for r in mk(3).generate(convs)] == [r.text for r in mk(3).generate(convs)]
    texts = {tuple(r.text for r in mk(s).generate(convs)) for s in range(4)}
    assert len(texts) > 1  # the seed matters


def test_smollm_chat_template_and_generation(smollm_dir):
    backend = TransformersBackend(smollm_dir, GenerationConfig(max_new_tokens=6), batch_size=2, device="cpu")
    convs = _convs(3)
    prompt = backend.render(convs[0])
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    assert "'role'" not in prompt and "Film A" in prompt
    res = backend.generate(convs)
    assert len(res) == 3 and all(r.text and r.error is None for r in res)
    assert all(0 < r.completion_tokens <= 6 and r.prompt_tokens > 50 for r in res)
    assert backend.context_tokens == 8192


class _Server:
    """An OpenAI-compatible /v1/chat/completions on 127.0.0.1 that fails the first calls with 503."""

    def __init__(self, fail_first: int, delay: float = 0.05):
        self.fail_first, self.delay = fail_first, delay
        self.calls = self.active = self.max_active = 0
        self.lock = threading.Lock()
        self.bodies = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.calls += 1
                    n = outer.calls
                    outer.active += 1
                    outer.max_active = max(outer.max_active, outer.active)
                    outer.bodies.append(body)
                try:
                    time.sleep(outer.delay)
                    if self.path != "/v1/chat/completions":
                        return self._send(404, {"error": "no such path"})
                    if body["messages"][-1]["content"] == "BAD":
                        return self._send(400, {"error": "bad request"})
                    if n <= outer.fail_first:
                        return self._send(503, {"error": "busy"})
                    text = "profile: " + body["messages"][-1]["content"][::-1]
                    self._send(200, {"choices": [{"message": {"role": "assistant", "content": text}}],
                                     "usage": {"prompt_tokens": len(body["messages"][-1]["content"]),
                                               "completion_tokens": 7}})
                finally:
                    with outer.lock:
                        outer.active -= 1

            def _send(self, code, obj):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_openai_backend_retries_bounds_concurrency_and_keeps_order():
    server = _Server(fail_first=3)
    try:
        backend = OpenAIBackend(server.url, "served-model", GenerationConfig(max_new_tokens=33, seed=5),
                                max_concurrency=3, backoff=0.01, max_retries=4, timeout=5)
        convs = [[{"role": "system", "content": "sys"}, {"role": "user", "content": f"user {i}"}] for i in range(10)]
        res = backend.generate(convs)
        assert [r.text for r in res] == [f"profile: {f'user {i}'[::-1]}" for i in range(10)]
        assert all(r.error is None and r.completion_tokens == 7 for r in res)
        assert res[4].prompt_tokens == len("user 4")
        assert server.calls == 13  # 3 failures retried
        assert 1 < server.max_active <= 3
        body = server.bodies[-1]
        assert body["model"] == "served-model" and body["max_tokens"] == 33 and body["seed"] == 5
        assert body["messages"][0] == {"role": "system", "content": "sys"}
        # non-retryable error: one call, error recorded, others fine
        before = server.calls
        res = backend.generate([[{"role": "user", "content": "BAD"}], [{"role": "user", "content": "ok"}]])
        assert res[0].error.startswith("HTTP 400") and res[0].text == "" and res[1].error is None
        assert server.calls == before + 2
    finally:
        server.close()


def test_openai_backend_gives_up_after_retries():
    server = _Server(fail_first=100, delay=0.0)
    try:
        backend = OpenAIBackend(server.url, "m", max_concurrency=1, backoff=0.001, max_retries=2, timeout=5)
        res = backend.generate([[{"role": "user", "content": "hi"}]])
        assert "HTTP 503" in res[0].error and server.calls == 3
    finally:
        server.close()
    # connection refused (server gone): retried, then an error result, no exception
    res = OpenAIBackend(server.url, "m", backoff=0.001, max_retries=1, timeout=2).generate(
        [[{"role": "user", "content": "hi"}]])
    assert res[0].error and "calling" in res[0].error


def test_messages_are_checked():
    backend = OpenAIBackend("http://127.0.0.1:9/v1", "m")
    with pytest.raises(TypeError, match="conversation 0"):
        backend.generate([str([{"role": "user", "content": "x"}])])
