"""JSON-RPC 2.0 framing: what is a request, and the exact bytes of answers."""

from __future__ import annotations

import pytest

from tidings.api.rpc import (
    INVALID_REQUEST,
    PARSE_ERROR,
    ApiError,
    Request,
    error_line,
    notification_line,
    parse_request,
    result_line,
)


def test_a_request_and_a_notification() -> None:
    line = b'{"jsonrpc": "2.0", "id": 7, "method": "send", "params": {"to": "bob"}}\n'
    assert parse_request(line) == Request("send", {"to": "bob"}, 7, False)
    assert parse_request(b'{"jsonrpc":"2.0","method":"status"}') == Request(
        "status", {}, None, True
    )
    assert parse_request(b'{"jsonrpc":"2.0","id":"a","method":"x"}').id == "a"


@pytest.mark.parametrize(
    ("line", "code", "rid"),
    [
        (b"{not json", PARSE_ERROR, None),
        (b"\xff\xfe", PARSE_ERROR, None),
        (b"[]", INVALID_REQUEST, None),
        (b'[{"jsonrpc":"2.0","id":1,"method":"status"}]', INVALID_REQUEST, None),
        (b'{"id":1,"method":"status"}', INVALID_REQUEST, 1),
        (b'{"jsonrpc":"1.0","id":1,"method":"status"}', INVALID_REQUEST, 1),
        (b'{"jsonrpc":"2.0","id":2,"method":""}', INVALID_REQUEST, 2),
        (b'{"jsonrpc":"2.0","id":3,"method":"send","params":["bob"]}', INVALID_REQUEST, 3),
        (b'{"jsonrpc":"2.0","id":true,"method":"status"}', INVALID_REQUEST, None),
        (b'{"jsonrpc":"2.0","id":1.5,"method":"status"}', INVALID_REQUEST, None),
    ],
)
def test_what_is_not_a_request(line: bytes, code: int, rid: object) -> None:
    with pytest.raises(ApiError) as raised:
        parse_request(line)
    assert raised.value.code == code
    assert raised.value.request_id == rid


def test_answers_are_one_line_each_golden() -> None:
    assert result_line(7, {"message_id": "ab"}) == (
        b'{"jsonrpc":"2.0","id":7,"result":{"message_id":"ab"}}\n'
    )
    assert error_line(None, ApiError(PARSE_ERROR, "not JSON")) == (
        b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"not JSON"}}\n'
    )
    assert error_line("x", ApiError(-32005, "ambiguous", {"candidates": ["ab"]})) == (
        b'{"jsonrpc":"2.0","id":"x","error":{"code":-32005,"message":"ambiguous",'
        b'"data":{"candidates":["ab"]}}}\n'
    )
    assert (
        notification_line("event", {"event": "message", "body": "ü\n"})
        == (
            '{"jsonrpc":"2.0","method":"event","params":{"event":"message","body":"ü\\n"}}\n'
        ).encode()
    )
