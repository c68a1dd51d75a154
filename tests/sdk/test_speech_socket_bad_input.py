"""The Speech SDK's sockets given bad input by a raw WebSocket client (the `websockets` package, not the SDK): malformed
and out-of-order messages, audio that is not PCM, a client that vanishes mid-turn, more sockets than the server
takes. Each ends with the close code and reason of ../shared/reference/speech-sdk.md section 7 within seconds, and
the server goes on serving."""

import contextlib
import json
import socket
import ssl
import struct
import time
import uuid

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

import byos_support as bs
import cognitive_support as cs
from test_speech_sdk_stt import flite

PATH = "/speech/recognition/conversation/cognitiveservices/v1?language=en-US"


@pytest.fixture(scope="module")
def speech(admin_cognitive, make_rg, boot):
    rg = make_rg("cs-badsock")
    account = cs.create_account(admin_cognitive, boot, rg, "SpeechServices")
    return account.properties.endpoint, admin_cognitive.accounts.list_keys(rg, account.name).key1


def open_socket(endpoint: str, key: str, ca: str, path: str = PATH):
    context = ssl.create_default_context(cafile=ca)
    url = endpoint.replace("https://", "wss://").rstrip("/") + path
    return connect(url, ssl=context, subprotocols=["USP"], open_timeout=10,
                   additional_headers={"Ocp-Apim-Subscription-Key": key, "X-ConnectionId": uuid.uuid4().hex})


def text_message(path: str, request_id: str, body: dict) -> str:
    return f"X-RequestId:{request_id}\r\nPath:{path}\r\nContent-Type:application/json\r\n\r\n{json.dumps(body)}"


def audio_message(request_id: str, body: bytes) -> bytes:
    head = f"Path:audio\r\nX-RequestId:{request_id}\r\nX-StreamId:1\r\n".encode()
    return struct.pack(">H", len(head)) + head + body


def riff_header(rate: int = 16000, channels: int = 1, bits: int = 16, tag: int = 1) -> bytes:
    block = channels * bits // 8
    return (b"RIFF" + struct.pack("<I", 0) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, tag, channels, rate, rate * block,
                                                                      block, bits) + b"data" + struct.pack("<I", 0))


def start_turn(ws) -> str:
    request_id = uuid.uuid4().hex
    ws.send(text_message("speech.context", request_id, {"phraseDetection": {"language": "en-US"}}))
    return request_id


def closed_with(ws, timeout: float = 10) -> tuple[int, str]:
    """The code and reason the server closed with, reading (and dropping) what it sent before."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ws.recv(timeout=deadline - time.monotonic())
    except ConnectionClosed as closed:
        return closed.rcvd.code, closed.rcvd.reason
    except TimeoutError:
        pass
    raise AssertionError("the server did not close the socket")


def paths_until_turn_end(ws, timeout: float = 30) -> list[str]:
    paths, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = ws.recv(timeout=deadline - time.monotonic())
        if isinstance(message, str):
            path = next(line.split(":", 1)[1] for line in message.split("\r\n") if line.startswith("Path:"))
            paths.append(path)
            if path == "turn.end":
                return paths
    raise AssertionError(f"no turn.end: {paths}")


def recognizes(speech, ca, tmp_path) -> list[str]:
    """A whole turn of real speech on a new socket: the paths the server answered."""
    endpoint, key = speech
    wav = tmp_path / "hello.wav"
    flite("hello world", wav)
    pcm = wav.read_bytes()[44:]
    with open_socket(endpoint, key, ca) as ws:
        rid = start_turn(ws)
        ws.send(audio_message(rid, riff_header()))
        for at in range(0, len(pcm), 3200):
            ws.send(audio_message(rid, pcm[at:at + 3200]))
        ws.send(audio_message(rid, b""))
        return paths_until_turn_end(ws)


@pytest.mark.parametrize("case, send, reason", [
    ("malformed header", lambda ws, rid: ws.send(b"\x00\xff" + b"Path:audio\r\n"), "malformed"),
    ("audio before speech.context", lambda ws, rid: ws.send(audio_message("f" * 32, riff_header())), "before speech.context"),
    ("no RIFF header", lambda ws, rid: ws.send(audio_message(rid, b"\x01\x02" * 400)), "RIFF header is missing"),
    ("not PCM", lambda ws, rid: ws.send(audio_message(rid, riff_header(8000, 1, 8, tag=6))), "audio format 6"),
    ("a rate byos cannot take", lambda ws, rid: ws.send(audio_message(rid, riff_header(96000))), "96000 Hz"),
])
def test_bad_audio_closes_with_1007_and_its_reason_at_once(speech, ca, case, send, reason):
    endpoint, key = speech
    started = time.monotonic()
    with open_socket(endpoint, key, ca) as ws:
        rid = start_turn(ws) if case != "audio before speech.context" else None
        send(ws, rid)
        code, why = closed_with(ws)
    assert code == 1007 and reason in why, (case, code, why)
    assert time.monotonic() - started < 10


def test_garbage_text_and_unknown_paths_are_ignored_and_the_turn_still_answers(speech, ca, tmp_path):
    endpoint, key = speech
    with open_socket(endpoint, key, ca) as ws:
        ws.send("no headers at all")
        ws.send(text_message("telemetry", "0" * 32, {"Metrics": []}))
        rid = start_turn(ws)
        ws.send(audio_message(rid, riff_header()))
        ws.send(audio_message(rid, b"\x00\x00" * 8000))
        ws.send(audio_message(rid, b""))
        paths = paths_until_turn_end(ws)
    assert paths[0] == "turn.start" and "speech.phrase" in paths, paths


def test_a_truncated_last_frame_is_counted_in_the_acknowledged_length(speech, ca):
    endpoint, key = speech
    with open_socket(endpoint, key, ca) as ws:
        rid = start_turn(ws)
        ws.send(audio_message(rid, riff_header()))
        ws.send(audio_message(rid, b"\x00\x00" * 16000 + b"\x00"))  # a second and half a sample
        ws.send(audio_message(rid, b""))
        phrases = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = ws.recv(timeout=30)
            if "Path:speech.phrase" in message:
                phrases.append(json.loads(message.split("\r\n\r\n", 1)[1]))
            if "Path:turn.end" in message:
                break
    assert phrases[-1] == {"RecognitionStatus": "EndOfDictation", "Offset": 10_000_000, "Duration": 0}, phrases


def test_a_client_that_vanishes_mid_turn_leaves_the_server_serving(speech, ca, tmp_path, boot):
    endpoint, key = speech
    for _ in range(3):
        with open_socket(endpoint, key, ca) as ws:
            rid = start_turn(ws)
            ws.send(audio_message(rid, riff_header()))
            ws.send(audio_message(rid, b"\x10\x20" * 48000))
            ws.socket.shutdown(socket.SHUT_RDWR)  # gone: no close frame, no end of audio
    with open_socket(endpoint, key, ca):  # connects, then never sends anything
        assert "speech.phrase" in recognizes(speech, ca, tmp_path)


def speech_on_a_server_of_its_own(private_server, env: dict, tag: str):
    """A server started with `env`, and a Speech account on it: (bootstrap, (endpoint, key))."""
    boot = private_server(env=env).boot
    cred = bs.admin_credential(boot)
    rg = bs.create_resource_group(bs.resource_client(boot, cred), boot, tag)
    client = cs.cognitive_client(boot, cred)
    account = cs.create_account(client, boot, rg, "SpeechServices")
    return boot, (account.properties.endpoint, client.accounts.list_keys(rg, account.name).key1)


def test_sockets_beyond_the_session_limit_are_refused_with_429_and_the_rest_work(private_server, tmp_path):
    boot, speech = speech_on_a_server_of_its_own(private_server, {"BYOS_MAX_SPEECH_SESSIONS": "4"}, "limit")
    held, refused = 0, 0
    with contextlib.ExitStack() as sockets:
        for _ in range(12):
            try:
                sockets.enter_context(open_socket(*speech, boot["ca_file"]))
                held += 1
            except InvalidStatus as e:
                assert e.response.status_code == 429 and e.response.headers.get("Retry-After") == "1"
                refused += 1
    assert (held, refused) == (4, 8)
    time.sleep(0.5)
    assert "speech.phrase" in recognizes(speech, boot["ca_file"], tmp_path), "sessions are free again once closed"


def test_oversized_ssml_closes_the_synthesis_socket_with_1007_and_the_limit(speech, ca):
    endpoint, key = speech
    words = "hello " * 20_000
    ssml = f"<speak version='1.0' xml:lang='en-US'><voice name='en-US-RmsFlite'>{words}</voice></speak>"
    with open_socket(endpoint, key, ca, "/cognitiveservices/websocket/v1") as ws:
        ws.send(f"X-RequestId:{'a' * 32}\r\nPath:ssml\r\nContent-Type:application/ssml+xml\r\n\r\n{ssml}")
        code, why = closed_with(ws)
    assert code == 1007 and "at most 64 KiB" in why, (code, why)


def test_regression_an_upgraded_speech_socket_escaped_the_idle_timeout(private_server):
    """A client that never sends audio held its socket (and a session) forever: the listeners stop watching a
    connection once it is upgraded. Now the session closes it with 4000 and the reason."""
    boot, speech = speech_on_a_server_of_its_own(private_server, {"BYOS_IDLE_TIMEOUT_SECONDS": "2"}, "idle")
    for path in (PATH, "/cognitiveservices/websocket/v1"):
        started = time.monotonic()
        with open_socket(*speech, boot["ca_file"], path) as ws:
            start_turn(ws)
            code, why = closed_with(ws, timeout=30)
        assert (code, why) == (4000, "the client sent nothing for 2 s"), (path, code, why)
        assert time.monotonic() - started < 10, "closed by the idle timeout, not left open"
