"""Custom Speech endpoints (speech to text v3.2 and 2024-11-15 `/endpoints`) with audio and transcription logging, on a
Speech account without BYOS: create (properties.loggingEnabled), PATCH (properties.contentLoggingEnabled), short-audio
recognition through `cid=`, each recognition's audio and result logged while logging is on and nothing while it is
off, the logs listed, read through their links, deleted one by one, by endDate, and with the endpoint. BYOS logs
(in the customer's customspeech-audiologs container) are in test_speech_byos.py."""

import json
import subprocess

import pytest
import requests

import cognitive_support as cs

RECOGNIZE = "speech/recognition/conversation/cognitiveservices/v1"


def flite(text: str, tmp_path) -> bytes:
    out = tmp_path / "speech.wav"
    subprocess.run(["flite", "-t", text, "-o", str(out)], check=True, timeout=60)
    return out.read_bytes()


@pytest.fixture(scope="module")
def speech(admin_cognitive, make_rg, boot):
    rg = make_rg("cs-ep")
    account = cs.create_account(admin_cognitive, boot, rg, "SpeechServices")
    return account, admin_cognitive.accounts.list_keys(rg, account.name).key1


@pytest.fixture(scope="module")
def api(speech, ca):
    account, key = speech
    return cs.SpeechRest(account.properties.endpoint, key, ca)


def base_model(api) -> str:
    """The base model's self URL, as a transcription names it."""
    resp = api.post("transcriptions", json={"displayName": "m", "locale": "en-US",
                                            "contentUrls": ["https://127.0.0.1:1/x.wav"]})
    return resp.json()["model"]["self"]


def create_endpoint(api, logging: bool) -> dict:
    resp = api.post("endpoints", json={"displayName": "ep", "locale": "en-US", "model": {"self": base_model(api)},
                                       "properties": {"loggingEnabled": logging}})
    assert resp.status_code == 201, resp.text
    endpoint = resp.json()
    assert resp.headers["Location"] == endpoint["self"] and endpoint["status"] == "Succeeded"
    return endpoint


def recognize(api, audio: bytes, cid: str | None, store_audio: bool = False) -> requests.Response:
    params = {"language": "en-US", **({"cid": cid} if cid else {}), **({"storeAudio": "true"} if store_audio else {})}
    return requests.post(api.endpoint + RECOGNIZE, params=params, data=audio, verify=api.ca, timeout=120, headers={
        "Ocp-Apim-Subscription-Key": api.key, "Content-Type": "audio/wav; codecs=audio/pcm; samplerate=16000"})


def logs(api, endpoint: dict) -> list[dict]:
    resp = api.get(endpoint["self"] + "/files/logs")
    assert resp.status_code == 200, resp.text
    return resp.json()["values"]


def test_an_endpoint_with_logging_logs_each_recognitions_audio_and_result(api, tmp_path):
    endpoint = create_endpoint(api, logging=True)
    assert endpoint["properties"]["loggingEnabled"] is True
    cid = endpoint["self"].rsplit("/", 1)[1]
    assert endpoint["links"]["restConversation"].endswith(f"cid={cid}")
    audio = flite("hello world", tmp_path)
    resp = recognize(api, audio, cid)
    assert resp.status_code == 200 and resp.json()["RecognitionStatus"] == "Success", resp.text
    files = logs(api, endpoint)
    assert sorted(f["kind"] for f in files) == ["Audio", "Transcription"], files
    by_kind = {f["kind"]: f for f in files}
    assert requests.get(by_kind["Audio"]["links"]["contentUrl"], verify=api.ca, timeout=30).content == audio
    entry = requests.get(by_kind["Transcription"]["links"]["contentUrl"], verify=api.ca, timeout=30).json()
    assert entry["RecognitionResult"] == resp.json() and entry["AudioFileName"].endswith(".wav")
    one = api.get(by_kind["Audio"]["self"])
    assert one.status_code == 200 and one.json()["name"] == by_kind["Audio"]["name"]


def test_with_logging_off_nothing_is_logged_and_patch_turns_it_on(api, tmp_path):
    endpoint = create_endpoint(api, logging=False)
    cid = endpoint["self"].rsplit("/", 1)[1]
    assert recognize(api, flite("good morning", tmp_path), cid).status_code == 200
    assert logs(api, endpoint) == []
    patched = api.patch(endpoint["self"], json={"properties": {"contentLoggingEnabled": True}, "displayName": "on"})
    assert patched.status_code == 200 and patched.json()["properties"]["loggingEnabled"] is True, patched.text
    assert recognize(api, flite("good morning", tmp_path), cid).status_code == 200
    assert len(logs(api, endpoint)) == 2
    api.patch(endpoint["self"], json={"properties": {"contentLoggingEnabled": False}})
    assert recognize(api, flite("good evening", tmp_path), cid).status_code == 200
    assert len(logs(api, endpoint)) == 2, "logging off again: nothing more is kept"


def test_logs_are_deleted_one_by_one_by_end_date_and_with_their_endpoint(api, tmp_path):
    endpoint = create_endpoint(api, logging=True)
    cid = endpoint["self"].rsplit("/", 1)[1]
    for text in ("one", "two"):
        assert recognize(api, flite(text, tmp_path), cid).status_code == 200
    files = logs(api, endpoint)
    assert len(files) == 4
    assert api.delete(files[0]["self"]).status_code == 204
    assert api.get(files[0]["self"]).status_code == 404
    assert api.delete(endpoint["self"] + "/files/logs", params={"endDate": "2000-01-01"}).status_code == 204
    assert len(logs(api, endpoint)) == 3, "nothing was logged on or before 2000-01-01"
    assert api.delete(endpoint["self"] + "/files/logs", params={"endDate": "9999-12-31"}).status_code == 204
    assert logs(api, endpoint) == []
    assert recognize(api, flite("three", tmp_path), cid).status_code == 200
    audio_link = next(f for f in logs(api, endpoint) if f["kind"] == "Audio")["links"]["contentUrl"]
    assert api.delete(endpoint["self"]).status_code == 204
    assert api.get(endpoint["self"]).status_code == 404
    assert requests.get(audio_link, verify=api.ca, timeout=30).status_code == 404, "the endpoint's logs went with it"


def test_store_audio_logs_a_recognition_under_the_base_model_or_an_endpoint_that_does_not_log(
        admin_cognitive, make_rg, boot, ca, tmp_path):
    rg = make_rg("cs-store")
    account = cs.create_account(admin_cognitive, boot, rg, "SpeechServices")
    api = cs.SpeechRest(account.properties.endpoint, admin_cognitive.accounts.list_keys(rg, account.name).key1, ca)
    base_logs = api.url("endpoints/base/en-US/files/logs")
    assert recognize(api, flite("not kept", tmp_path), None).status_code == 200
    assert api.get(base_logs).json()["values"] == [], "without storeAudio nothing is kept"
    resp = recognize(api, flite("keep this", tmp_path), None, store_audio=True)
    assert resp.status_code == 200, resp.text
    files = api.get(base_logs).json()["values"]
    assert sorted(f["kind"] for f in files) == ["Audio", "Transcription"], files
    entry = next(f for f in files if f["kind"] == "Transcription")
    assert requests.get(entry["links"]["contentUrl"], verify=ca, timeout=30).json()["RecognitionResult"] == resp.json()
    quiet = create_endpoint(api, logging=False)
    cid = quiet["self"].rsplit("/", 1)[1]
    assert recognize(api, flite("asked for", tmp_path), cid, store_audio=True).status_code == 200
    assert len(logs(api, quiet)) == 2, "the session's storeAudio logs under an endpoint that does not log"
    assert len(api.get(base_logs).json()["values"]) == 2, "not under the base model"


def test_an_unknown_or_foreign_cid_is_400(api, admin_cognitive, make_rg, boot, ca, tmp_path):
    audio = flite("hello", tmp_path)
    resp = recognize(api, audio, "00000000-0000-0000-0000-000000000000")
    assert resp.status_code == 400 and "cid" in resp.json()["message"], resp.text
    rg = make_rg("cs-ep2")
    other = cs.create_account(admin_cognitive, boot, rg, "SpeechServices")
    other_api = cs.SpeechRest(other.properties.endpoint, admin_cognitive.accounts.list_keys(rg, other.name).key1, ca)
    foreign = create_endpoint(other_api, logging=True)["self"].rsplit("/", 1)[1]
    assert recognize(api, audio, foreign).status_code == 400


def test_list_get_and_the_2024_11_15_paths(api):
    endpoint = create_endpoint(api, logging=False)
    listed = api.get(api.url("endpoints")).json()["values"]
    assert endpoint["self"] in {e["self"] for e in listed}
    v2024 = api._call("GET", api.endpoint + "speechtotext/endpoints/" + endpoint["self"].rsplit("/", 1)[1],
                      params={"api-version": "2024-11-15"})
    assert v2024.status_code == 200 and "api-version=2024-11-15" in v2024.json()["self"], v2024.text
    base = api.get(api.url("endpoints/base/en-US/files/logs"))
    assert base.status_code == 200 and base.json()["values"] == []
    assert api.get(api.url("endpoints/base/xx-XX/files/logs")).status_code == 400


@pytest.mark.parametrize("body, inner", [
    ({"locale": "en-US", "model": {"self": "https://h/models/base/x"}}, "InvalidPayload"),
    ({"displayName": "e", "locale": "en-US"}, "InvalidPayload"),
    ({"displayName": "e", "locale": "en-US", "model": {"self": "https://h/speechtotext/v3.2/models/1234"}}, "InvalidModel"),
    ({"displayName": "e", "locale": "de-DE", "model": {"self": "https://h/models/base/x"}}, "InvalidLocale"),
])
def test_bad_endpoint_definitions_are_refused(api, body, inner):
    resp = api.post("endpoints", json=body)
    assert resp.status_code == 400 and resp.json()["innerError"]["code"] == inner, resp.text


def test_an_update_that_is_not_a_json_object_is_refused_and_changes_nothing(api):
    endpoint = create_endpoint(api, logging=False)
    for body in (b"not json", b"[1, 2]"):
        resp = api.patch(endpoint["self"], data=body, headers={"Content-Type": "application/json"})
        assert resp.status_code == 400 and resp.json()["innerError"]["code"] == "InvalidPayload", resp.text
    assert api.get(endpoint["self"]).json() == endpoint
    dataset = api.upload("Language", b"hello world\n").json()
    resp = api.patch(dataset["self"], data=b"{", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and resp.json()["innerError"]["code"] == "InvalidPayload", resp.text


def test_a_bad_end_date_is_400(api):
    endpoint = create_endpoint(api, logging=False)
    resp = api.delete(endpoint["self"] + "/files/logs", params={"endDate": "yesterday"})
    assert resp.status_code == 400 and "endDate" in resp.json()["message"]
