"""The official Anthropic Python SDK against a running tollgate's `/v1/messages`.

Environment:
  TOLLGATE_BASE_URL  the gateway, e.g. http://127.0.0.1:4000 (without /v1)
  TOLLGATE_KEY       its master key

The gateway must serve these model names (crates/tollgate/tests/sdk.rs starts one in front of the mock upstream):
  sdk-claude        an Anthropic deployment (native Messages API pass-through)
  sdk-chat          an OpenAI deployment (Messages API translated to chat completions and back)
  sdk-claude-tools  an Anthropic deployment whose upstream always calls the first tool
"""

import os

import anthropic
import pytest

BASE_URL = os.environ["TOLLGATE_BASE_URL"].rstrip("/")
KEY = os.environ["TOLLGATE_KEY"]

MESSAGES = [{"role": "user", "content": "Say hello to the SDK test."}]
WEATHER = {
    "name": "get_weather",
    "description": "The weather of a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def client() -> anthropic.Anthropic:
    # The SDK sends the key as `x-api-key` and an `anthropic-version` header.
    c = anthropic.Anthropic(base_url=BASE_URL, api_key=KEY, max_retries=0, timeout=30)
    yield c
    c.close()


@pytest.mark.parametrize("model", ["sdk-claude", "sdk-chat"])
def test_message(client, model):
    msg = client.messages.create(model=model, max_tokens=64, system="You are terse.", messages=MESSAGES)
    assert msg.type == "message"
    assert msg.role == "assistant"
    assert msg.model == model
    assert msg.content[0].type == "text"
    assert msg.content[0].text
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0
    assert msg.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["sdk-claude", "sdk-chat"])
def test_stream(client, model):
    with client.messages.stream(model=model, max_tokens=64, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


def test_tool_use(client):
    msg = client.messages.create(
        model="sdk-claude-tools",
        max_tokens=64,
        tools=[WEATHER],
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    assert msg.stop_reason == "tool_use"
    block = next(b for b in msg.content if b.type == "tool_use")
    assert block.name == "get_weather"
    assert block.id
    # The tool result goes back in the next turn.
    follow = client.messages.create(
        model="sdk-claude",
        max_tokens=64,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": msg.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "sunny"}]},
        ],
    )
    assert follow.content[0].type == "text"


@pytest.mark.parametrize("model", ["sdk-claude", "sdk-chat"])
def test_count_tokens(client, model):
    count = client.messages.count_tokens(model=model, messages=MESSAGES)
    assert count.input_tokens > 0


def test_bad_key_is_an_authentication_error():
    bad = anthropic.Anthropic(base_url=BASE_URL, api_key="sk-not-a-key", max_retries=0, timeout=30)
    with pytest.raises(anthropic.AuthenticationError) as e:
        bad.messages.create(model="sdk-claude", max_tokens=16, messages=MESSAGES)
    assert e.value.status_code == 401
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "authentication_error"


def test_unknown_model_is_a_bad_request(client):
    with pytest.raises(anthropic.BadRequestError) as e:
        client.messages.create(model="no-such-model", max_tokens=16, messages=MESSAGES)
    assert e.value.body["error"]["type"] == "invalid_request_error"
