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
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        initializer_range=0.3,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return LlamaForCausalLM(cfg).eval(), tok


def _convs(n):
    p = load_prompts("movies")
    hist = [
        "- [rated 5/5] Film A; genres: Comedy",
        "- [rated 1/5] Film B; genres: Horror\n- Film C",
        "- [watched 90%] A very long title " + "and more words " * 12,
        "- x",
    ]
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
    new = out[0, ids["input_ids"].shape[1] :].tolist()
    if tok.eos_token_id in new:
        new = new[: new.index(tok.eos_token_id)]
    assert a[2].text == tok.decode(new, skip_special_tokens=True).strip()


def test_seeded_sampling_is_reproducible(tiny_model):
    model, tok = tiny_model
    mk = lambda seed: TransformersBackend(  # noqa: E731
        "tiny",
        GenerationConfig(8, temperature=1.0, seed=seed),
        batch_size=2,
        model=model,
        tokenizer=tok,
        device="cpu",
    )
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
    """An OpenAI-compatible /v1/chat/completions on 127.0.0.1 that fails the first calls with 503.

    A message starting with "ECHO" gets a 401 whose body repeats the Authorization header and the
    request path (as careless servers do); "REDIRECT" gets a 307 to ``redirect_to``."""

    def __init__(self, fail_first: int, delay: float = 0.05, redirect_to: str | None = None):
        self.fail_first, self.delay, self.redirect_to = fail_first, delay, redirect_to
        self.calls = self.active = self.max_active = 0
        self.lock = threading.Lock()
        self.bodies, self.paths, self.auth = [], [], []
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
                    outer.paths.append(self.path)
                    outer.auth.append(self.headers.get("Authorization"))
                try:
                    time.sleep(outer.delay)
                    if self.path.split("?")[0] != "/v1/chat/completions":
                        return self._send(404, {"error": "no such path"})
                    content = body["messages"][-1]["content"]
                    if content == "BAD":
                        return self._send(400, {"error": "bad request"})
                    if content.startswith("ECHO"):
                        return self._send(
                            401, {"error": f"invalid {self.headers.get('Authorization')}", "url": self.path}
                        )
                    if content == "REDIRECT":
                        return self._send(307, {}, {"Location": outer.redirect_to})
                    if n <= outer.fail_first:
                        return self._send(503, {"error": "busy"})
                    text = "profile: " + body["messages"][-1]["content"][::-1]
                    self._send(
                        200,
                        {
                            "choices": [{"message": {"role": "assistant", "content": text}}],
                            "usage": {"prompt_tokens": len(body["messages"][-1]["content"]), "completion_tokens": 7},
                        },
                    )
                finally:
                    with outer.lock:
                        outer.active -= 1

            def _send(self, code, obj, headers=None):
                data = json.dumps(obj).encode()
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
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
        backend = OpenAIBackend(
            server.url,
            "served-model",
            GenerationConfig(max_new_tokens=33, seed=5),
            max_concurrency=3,
            backoff=0.01,
            max_retries=4,
            timeout=5,
        )
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
        [[{"role": "user", "content": "hi"}]]
    )
    assert res[0].error and "calling" in res[0].error


def test_messages_are_checked():
    backend = OpenAIBackend("http://127.0.0.1:9/v1", "m")
    with pytest.raises(TypeError, match="conversation 0"):
        backend.generate([str([{"role": "user", "content": "x"}])])


# ------------------------------------------------------------------------------ HTTP safety
KEY = "sk-live-0123456789abcdefXYZ"


def test_chat_url_keeps_the_query_and_extends_the_path():
    from seqdistill.profiles.llm import chat_completions_url

    assert chat_completions_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1/chat/completions"
    assert chat_completions_url("http://127.0.0.1:8000/v1/") == "http://127.0.0.1:8000/v1/chat/completions"
    assert chat_completions_url("http://localhost:8000") == "http://localhost:8000/chat/completions"
    assert (
        chat_completions_url("https://r.openai.azure.com/openai/deployments/d/?api-version=2024-06-01#x")
        == "https://r.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-06-01"
    )


def test_base_url_with_a_query_reaches_the_server_with_it():
    server = _Server(fail_first=0, delay=0.0)
    try:
        backend = OpenAIBackend(server.url + "?api-version=2024-06-01", "m", api_key=KEY, timeout=5)
        res = backend.generate([[{"role": "user", "content": "hi"}]])
        assert res[0].error is None and res[0].text == "profile: ih"
        assert server.paths == ["/v1/chat/completions?api-version=2024-06-01"]
        assert server.auth == [f"Bearer {KEY}"]  # loopback over http: the key is sent
    finally:
        server.close()


def test_api_key_is_never_sent_over_plain_http_except_to_loopback(monkeypatch):
    from seqdistill.errors import ConfigError

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    refused = [
        ("http://10.1.2.3:8000/v1", KEY),
        ("http://example.com/v1", None),
        ("http://example.com/v1?api_key=QSECRET", None),
        ("http://user:QSECRET@example.com/v1", None),
        ("http://127.0.0.1.example.com/v1", KEY),
    ]
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # a key from the environment counts too
    for url, key in refused:
        with pytest.raises(ConfigError, match="refusing to send the API key over plain http://") as err:
            OpenAIBackend(url, "m", api_key=key)
        assert KEY not in str(err.value) and "QSECRET" not in str(err.value)
    for url in (
        "https://example.com/v1",
        "http://127.0.0.1:8000/v1",
        "http://127.9.9.9/v1",
        "http://localhost:1/v1",
        "http://[::1]:8000/v1",
        "http://[::ffff:127.0.0.1]:8000/v1",
    ):
        assert OpenAIBackend(url, "m").api_key == KEY
    assert (
        OpenAIBackend("http://10.1.2.3/v1", "m", allow_insecure_http=True).url == "http://10.1.2.3/v1/chat/completions"
    )
    monkeypatch.delenv("OPENAI_API_KEY")
    OpenAIBackend("http://10.1.2.3/v1", "m")  # no secret to leak
    for bad in ("ftp://example.com/v1", "127.0.0.1:8000/v1", "http:///v1"):
        with pytest.raises(ConfigError, match="expected http://HOST"):
            OpenAIBackend(bad, "m")


def test_redact_hand_written_cases():
    from seqdistill.profiles.llm import redact

    cases = {
        "Authorization: Bearer abc.DEF-123": "Authorization: [redacted]",
        '{"Authorization": "Bearer abc"}': '{"Authorization": "[redacted]"}',
        "token abcdef": "token [redacted]",
        "https://h/v1/chat/completions?api-version=1&api_key=s3&key=s4&x=2": "https://h/v1/chat/completions?api-version=1&api_key=[redacted]&key=[redacted]&x=2",
        "http://u:pw@h/p?access_token=t&sig=z": "http://[redacted]@h/p?access_token=[redacted]&sig=[redacted]",
        "invalid key sk-abcdefghijklmnopqrstu given": "invalid key [redacted] given",
        "x-api-key=abcd1234 design=3": "x-api-key=[redacted] design=3",
    }
    for text, want in cases.items():
        assert redact(text) == want, text
    assert redact("the key MYKEY1234 again MYKEY1234", ["MYKEY1234"]) == "the key [redacted] again [redacted]"


def test_error_bodies_and_urls_are_redacted_in_results_and_the_store(tmp_path):
    import polars as pl
    from test_profiles_toy import movie_dataset

    from seqdistill.profiles.pipeline import generate_profiles

    server = _Server(fail_first=0, delay=0.0)
    try:
        base = server.url + "?api-version=1&api_key=QSECRET123"
        backend = OpenAIBackend(base, "m", api_key=KEY, timeout=5, max_retries=0)
        res = backend.generate([[{"role": "user", "content": "ECHO"}]])[0]
        assert res.error.startswith("HTTP 401 from http://127.0.0.1:") and "api-version=1" in res.error
        assert server.auth[-1] == f"Bearer {KEY}" and "QSECRET123" in server.paths[-1]  # the server did see them
        for secret in (KEY, "0123456789abcdef", "QSECRET123"):
            assert secret not in res.error
        prompts = tmp_path / "prompts"
        prompts.mkdir()
        (prompts / "movies.txt").write_text("### user\nECHO\n{history}\n")
        store = generate_profiles(
            movie_dataset(n_users=2), backend, tmp_path / "store", prompt_dir=prompts, progress=False
        )
        t = store.table()
        assert (t["status"] == "error").all() and t["error"].str.contains("HTTP 401").all()
        texts = [json.dumps(store.meta)] + [str(v) for c in store.rows().columns for v in store.rows()[c].to_list()]
        assert not [x for x in texts if KEY in x or "QSECRET123" in x or "0123456789abcdef" in x]
        assert pl.read_parquet(store.parts()[0])["error"].str.contains("redacted").all()
    finally:
        server.close()
    res = OpenAIBackend("http://127.0.0.1:9/v1?token=QSECRET123", "m", api_key=KEY, max_retries=0, timeout=2).generate(
        [[{"role": "user", "content": "hi"}]]
    )[0]
    assert "calling http://127.0.0.1:9/v1/chat/completions?token=[redacted]" in res.error
    assert "QSECRET123" not in res.error


def test_redirects_are_not_followed():
    other = _Server(fail_first=0, delay=0.0)
    server = _Server(fail_first=0, delay=0.0, redirect_to=other.url + "/chat/completions")
    try:
        backend = OpenAIBackend(server.url, "m", api_key=KEY, timeout=5, backoff=0.001)
        res = backend.generate([[{"role": "user", "content": "REDIRECT"}]])[0]
        assert res.error.startswith("HTTP 307") and "not followed" in res.error
        assert server.calls == 1 and other.calls == 0  # not retried, and the key went nowhere else
    finally:
        server.close()
        other.close()
