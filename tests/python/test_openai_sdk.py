"""The official OpenAI Python SDK against a running tollgate.

Environment:
  TOLLGATE_BASE_URL  the gateway, e.g. http://127.0.0.1:4000 (without /v1)
  TOLLGATE_KEY       its master key

The gateway must serve these model names (crates/tollgate/tests/sdk.rs starts one in front of the mock upstream):
  sdk-chat          chat and completions, streaming
  sdk-embed         embeddings
  sdk-rate-limited  an upstream answering 429 with Retry-After: 1
  sdk-upstream-500  an upstream answering 500
"""

import inspect
import json
import os

import httpx
import openai
import pytest

BASE_URL = os.environ["TOLLGATE_BASE_URL"].rstrip("/")
KEY = os.environ["TOLLGATE_KEY"]

CHAT = "sdk-chat"
EMBED = "sdk-embed"
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello to the SDK test."},
]


@pytest.fixture
def client() -> openai.OpenAI:
    # No retries: each error must surface as the typed exception on the first answer.
    c = openai.OpenAI(base_url=f"{BASE_URL}/v1", api_key=KEY, max_retries=0, timeout=30)
    yield c
    c.close()


def test_chat_completion(client):
    raw = client.chat.completions.with_raw_response.create(model=CHAT, messages=MESSAGES, max_tokens=20)
    assert raw.headers.get("x-request-id")
    assert raw.headers.get("x-litellm-model-id")
    resp = raw.parse()
    assert resp.object == "chat.completion"
    assert resp.model == CHAT
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens > 0


def test_streaming_without_usage(client):
    chunks = list(client.chat.completions.create(model=CHAT, messages=MESSAGES, stream=True))
    assert chunks, "no chunks"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert all(c.model == CHAT for c in chunks)
    assert all(c.usage is None for c in chunks), "usage chunk sent to a client that did not ask"
    assert all(c.choices for c in chunks), "a usage-only chunk leaked"
    assert any(c.choices[0].finish_reason == "stop" for c in chunks)


def test_streaming_with_usage(client):
    chunks = list(
        client.chat.completions.create(
            model=CHAT, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    with_usage = [c for c in chunks if c.usage is not None]
    assert len(with_usage) == 1, chunks
    last = chunks[-1]
    assert last.usage is not None and last.choices == []
    assert last.usage.completion_tokens > 0
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_embeddings(client):
    # The SDK asks for base64 by default and decodes it.
    resp = client.embeddings.create(model=EMBED, input=["first text", "second text"])
    assert resp.model == EMBED
    assert [d.index for d in resp.data] == [0, 1]
    assert all(len(d.embedding) > 0 and isinstance(d.embedding[0], float) for d in resp.data)
    assert resp.usage.prompt_tokens > 0
    floats = client.embeddings.create(model=EMBED, input="one", encoding_format="float")
    assert len(floats.data) == 1 and len(floats.data[0].embedding) == len(resp.data[0].embedding)


def test_models_list_and_retrieve(client):
    ids = [m.id for m in client.models.list()]
    for name in (CHAT, EMBED):
        assert name in ids, ids
    m = client.models.retrieve(CHAT)
    assert m.id == CHAT and m.object == "model"
    with pytest.raises(openai.NotFoundError) as e:
        client.models.retrieve("no-such-model-anywhere")
    assert e.value.status_code == 404


def test_completions(client):
    resp = client.completions.create(model=CHAT, prompt="Say hi", max_tokens=10)
    assert resp.object == "text_completion"
    assert resp.model == CHAT
    assert resp.choices[0].text
    assert resp.usage.total_tokens > 0
    stream = list(client.completions.create(model=CHAT, prompt="Say hi", stream=True))
    assert "".join(c.choices[0].text for c in stream if c.choices)


def test_authentication_error():
    bad = openai.OpenAI(base_url=f"{BASE_URL}/v1", api_key="sk-definitely-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.chat.completions.create(model=CHAT, messages=MESSAGES)
    assert e.value.status_code == 401
    assert e.value.body["type"] == "authentication_error"


def test_bad_request_unknown_model(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="no-such-model-anywhere", messages=MESSAGES)
    assert e.value.status_code == 400
    assert e.value.code == "model_not_found"
    assert CHAT in e.value.message


def test_bad_request_malformed(client):
    # A field of the wrong type.
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=CHAT, messages=MESSAGES, extra_body={"stream": "yes"})
    assert e.value.param == "stream"
    # A body that is not JSON at all, through the SDK's own request path (newer SDKs take raw `content`).
    if "content" in inspect.signature(client.post).parameters:
        with pytest.raises(openai.BadRequestError) as e:
            client.post(
                "/chat/completions",
                cast_to=httpx.Response,
                content=b'{"model": "sdk-chat", "messages": [',
                options={"headers": {"Content-Type": "application/json"}},
            )
        assert e.value.code == "invalid_json"


def test_rate_limit_error(client):
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="sdk-rate-limited", messages=MESSAGES)
    assert e.value.status_code == 429
    assert e.value.response.headers.get("retry-after") == "1"


def test_upstream_500_is_502(client):
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="sdk-upstream-500", messages=MESSAGES)
    assert isinstance(e.value, openai.InternalServerError)
    assert e.value.status_code == 502
    body = e.value.response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}, json.dumps(body)
