"""Batch transcription (speech to text v3.2 `/transcriptions` and 2024-11-15 `/transcriptions:submit`) on a Speech
account without BYOS, with the real engine hearing real speech (Flite): audio read through blob SAS URLs or a container
SAS, NotStarted -> Running -> Succeeded, one result file per source in Azure's shape plus report.json (a file that
cannot be read is a failure in the report, not a failed job), results kept in service storage behind links,
destinationContainerUrl, list/get/patch/delete and Azure's 400s. BYOS transcription is in test_speech_byos.py."""

import json
import subprocess

import pytest
import requests
from azure.storage.blob import BlobSasPermissions, ContainerSasPermissions, generate_blob_sas, generate_container_sas

import byos_support as bs
import cognitive_support as cs

SENTENCES = ["the quick brown fox jumps over the lazy dog", "please call me tomorrow morning"]


def flite(text: str, tmp_path, voice: str = "rms") -> bytes:
    out = tmp_path / "speech.wav"
    subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(out)], check=True, timeout=60)
    return out.read_bytes()


def overlap(expected: str, heard: str) -> float:
    said, got = expected.lower().split(), set(heard.lower().replace(".", "").split())
    return sum(w in got for w in said) / len(said)


@pytest.fixture(scope="module")
def speech(admin_cognitive, make_rg, boot):
    rg = make_rg("cs-stt")
    account = cs.create_account(admin_cognitive, boot, rg, "SpeechServices")
    return account, admin_cognitive.accounts.list_keys(rg, account.name).key1


@pytest.fixture(scope="module")
def api(speech, ca):
    account, key = speech
    return cs.SpeechRest(account.properties.endpoint, key, ca)


@pytest.fixture(scope="module")
def audio(shared_account, ca, tmp_path_factory):
    """A container with the sentences spoken and a file that is not audio; SAS URLs for each blob and the container."""
    tmp = tmp_path_factory.mktemp("stt")
    service = bs.blob_service(shared_account.blob_url, shared_account.shared_key(), ca)
    container = bs.new_container(service, "stt")
    for i, text in enumerate(SENTENCES):
        container.upload_blob(f"speech{i}.wav", flite(text, tmp))
    container.upload_blob("notes.wav", b"these are notes, not audio")

    def sas_url(blob: str) -> str:
        sas = generate_blob_sas(shared_account.name, container.container_name, blob,
                                account_key=shared_account.keys["key1"], permission=BlobSasPermissions(read=True),
                                expiry=bs.utc_in(hours=1))
        return f"{container.url}/{blob}?{sas}"

    def container_sas(**permissions) -> str:
        sas = generate_container_sas(shared_account.name, container.container_name,
                                     account_key=shared_account.keys["key1"],
                                     permission=ContainerSasPermissions(**permissions), expiry=bs.utc_in(hours=1))
        return f"{container.url}?{sas}"

    return {"url": sas_url, "container": container_sas, "client": container, "service": service}


def submit(api, body: dict) -> dict:
    resp = api.post("transcriptions", json={"displayName": "batch", "locale": "en-US", **body})
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert resp.headers["Location"] == created["self"] and created["status"] in ("NotStarted", "Running", "Succeeded")
    return api.wait(created["self"])


def files_of(api, done: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for f in api.get(done["links"]["files"]).json()["values"]:
        out.setdefault(f["kind"], []).append(f)
    return out


def read_link(f: dict, ca) -> dict:
    resp = requests.get(f["links"]["contentUrl"], verify=ca, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_speech_is_transcribed_with_a_report_and_results_in_azures_shape(api, audio, ca):
    urls = [audio["url"]("speech0.wav"), audio["url"]("speech1.wav"), audio["url"]("notes.wav"),
            "https://127.0.0.1:1/unreachable.wav?sv=2025-01-05&sig=topsecret"]
    done = submit(api, {"contentUrls": urls, "properties": {"wordLevelTimestampsEnabled": True}})
    assert done["status"] == "Succeeded", done
    assert done["properties"]["wordLevelTimestampsEnabled"] is True and done["properties"]["channels"] == [0, 1]
    files = files_of(api, done)
    assert len(files["Transcription"]) == 2 and len(files["TranscriptionReport"]) == 1, files
    report = read_link(files["TranscriptionReport"][0], ca)
    assert (report["successfulTranscriptionsCount"], report["failedTranscriptionsCount"]) == (2, 2), report
    failed = {d["source"].rsplit("/", 1)[1]: d for d in report["details"] if d["status"] == "Failed"}
    assert failed["notes.wav"]["errorKind"] == "InvalidAudioFormat", report
    assert "unreachable.wav" in failed and all("sig=" not in d["source"] for d in report["details"]), report
    assert "topsecret" not in json.dumps(report), "regression: a fetch error repeated the URL with its SAS"
    results = [read_link(f, ca) for f in files["Transcription"]]
    by_source = {r["source"].rsplit("/", 1)[1]: r for r in results}
    for i, text in enumerate(SENTENCES):
        result = by_source[f"speech{i}.wav"]
        assert result["durationInTicks"] > 0 and result["duration"].startswith("PT")
        combined = result["combinedRecognizedPhrases"][0]
        assert combined["channel"] == 0 and overlap(text, combined["lexical"]) >= 0.5, (text, combined)
        phrase = result["recognizedPhrases"][0]
        assert phrase["recognitionStatus"] == "Success" and phrase["offsetInTicks"] >= 0 and phrase["durationInTicks"] > 0
        best = phrase["nBest"][0]
        assert {"confidence", "lexical", "itn", "maskedITN", "display"} <= set(best) and 0 <= best["confidence"] <= 1
        words = best["words"]
        assert words and all(w["durationInTicks"] > 0 for w in words)
        assert [w["offsetInTicks"] for w in words] == sorted(w["offsetInTicks"] for w in words)


def test_an_expired_sas_is_a_failure_in_the_report(api, audio, shared_account, ca):
    import datetime as dt

    sas = generate_blob_sas(shared_account.name, audio["client"].container_name, "speech0.wav",
                            account_key=shared_account.keys["key1"], permission=BlobSasPermissions(read=True),
                            expiry=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5))
    expired = f"{audio['client'].url}/speech0.wav?{sas}"
    done = submit(api, {"contentUrls": [expired, audio["url"]("speech1.wav")]})
    assert done["status"] == "Succeeded", done
    report = read_link(files_of(api, done)["TranscriptionReport"][0], ca)
    failed = [d for d in report["details"] if d["status"] == "Failed"]
    assert len(failed) == 1 and "403" in failed[0]["errorMessage"], report


def test_a_container_sas_transcribes_every_blob_in_it(api, audio, ca):
    done = submit(api, {"contentContainerUrl": audio["container"](read=True, list=True)})
    assert done["status"] == "Succeeded", done
    files = files_of(api, done)
    report = read_link(files["TranscriptionReport"][0], ca)
    assert (report["successfulTranscriptionsCount"], report["failedTranscriptionsCount"]) == (2, 1), report
    assert "words" not in read_link(files["Transcription"][0], ca)["recognizedPhrases"][0]["nBest"][0]
    first = api.get(done["links"]["files"], params={"top": 1}).json()
    assert len(first["values"]) == 1 and "skip=1" in first["@nextLink"], first
    pages, page = [first], first
    while "@nextLink" in page:
        page = api.get(page["@nextLink"]).json()
        pages.append(page)
    assert [len(p["values"]) for p in pages] == [1, 1, 1], "each page keeps top=1"
    assert {f["self"] for p in pages for f in p["values"]} == {f["self"] for k in files.values() for f in k}


def test_a_container_sas_without_list_permission_fails_the_job(api, audio):
    done = submit(api, {"contentContainerUrl": audio["container"](read=True)})
    assert done["status"] == "Failed" and "listed" in done["properties"]["error"]["message"], done


def test_when_no_file_can_be_transcribed_the_job_fails_with_its_report(api, audio, ca):
    done = submit(api, {"contentUrls": [audio["url"]("notes.wav")]})
    assert done["status"] == "Failed" and done["properties"]["error"]["code"] == "InvalidData", done
    assert len(files_of(api, done)["TranscriptionReport"]) == 1


def test_results_go_to_the_destination_container(api, audio, shared_account, ca):
    destination = bs.new_container(audio["service"], "dest")
    sas = generate_container_sas(shared_account.name, destination.container_name,
                                 account_key=shared_account.keys["key1"],
                                 permission=ContainerSasPermissions(write=True, create=True), expiry=bs.utc_in(hours=1))
    done = submit(api, {"contentUrls": [audio["url"]("speech0.wav")],
                        "properties": {"destinationContainerUrl": f"{destination.url}?{sas}"}})
    assert done["status"] == "Succeeded", done
    written = sorted(b.name for b in destination.list_blobs())
    assert len(written) == 2 and any(n.endswith("_report.json") for n in written), written
    link = files_of(api, done)["Transcription"][0]["links"]["contentUrl"]
    assert link.startswith(destination.url + "/")
    result = destination.download_blob(link.split("?")[0][len(destination.url) + 1:]).readall()
    assert b"combinedRecognizedPhrases" in result


def test_service_held_results_need_the_links_token(api, audio, ca):
    done = submit(api, {"contentUrls": [audio["url"]("speech1.wav")]})
    f = files_of(api, done)["Transcription"][0]
    plain = f["links"]["contentUrl"].split("?")[0]
    assert requests.get(plain, verify=ca, timeout=30).status_code in (401, 403)
    zero = api.get(f["self"], params={"sasValidityInSeconds": 0}).json()["links"]["contentUrl"]
    assert "token=" not in zero


def test_list_get_patch_and_delete(api, audio):
    done = submit(api, {"contentUrls": [audio["url"]("speech0.wav")], "properties": {"timeToLive": "PT12H"}})
    assert done["properties"]["timeToLive"] == "PT12H" and done["model"]["self"].split("/models/base/")[1]
    listed = api.get(api.url("transcriptions"), params={"top": 100}).json()
    assert done["self"] in {t["self"] for t in listed["values"]}
    patched = api.patch(done["self"], json={"displayName": "renamed", "description": "d"}).json()
    assert (patched["displayName"], patched["description"], patched["status"]) == ("renamed", "d", "Succeeded")
    assert api.delete(done["self"]).status_code == 204
    gone = api.get(done["self"])
    assert gone.status_code == 404 and gone.json()["code"] == "NotFound"
    assert api.delete(done["self"]).status_code == 204


def _inner(resp: requests.Response) -> str:
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["code"] == "InvalidRequest", body
    return body["innerError"]["code"]


@pytest.mark.parametrize("body, inner", [
    ({"displayName": "t", "locale": "en-US"}, "InvalidPayload"),
    ({"locale": "en-US", "contentUrls": ["https://h/a.wav"]}, "InvalidPayload"),
    ({"displayName": "t", "locale": "fr-FR", "contentUrls": ["https://h/a.wav"]}, "InvalidLocale"),
    ({"displayName": "t", "locale": "en-US", "contentUrls": [f"https://h/{i}.wav" for i in range(1001)]}, "InvalidPayload"),
    ({"displayName": "t", "locale": "en-US", "contentUrls": ["https://h/a.wav"],
      "model": {"self": "https://h/speechtotext/v3.2/models/00000000-0000-0000-0000-000000000001"}}, "InvalidModel"),
    ({"displayName": "t", "locale": "en-US", "contentUrls": ["https://h/a.wav"], "properties": {"timeToLive": "PT1H"}},
     "InvalidParameterValue"),
    ({"displayName": "t", "locale": "en-US", "contentUrls": ["https://h/a.wav"], "properties": {"channels": [2]}},
     "InvalidParameterValue"),
    ({"displayName": "t", "locale": "en-US", "contentUrls": ["https://h/a.wav"],
      "properties": {"diarizationEnabled": True}}, "InvalidParameterValue"),
])
def test_bad_requests_are_refused_in_the_speech_format_and_create_nothing(api, body, inner):
    before = len(api.get(api.url("transcriptions")).json()["values"])
    assert _inner(api.post("transcriptions", json=body)) == inner
    assert len(api.get(api.url("transcriptions")).json()["values"]) == before


def test_a_body_that_is_not_json_is_invalid_payload(api):
    assert _inner(api.post("transcriptions", data=b"{not json", headers={"Content-Type": "application/json"})) == \
        "InvalidPayload"


def test_the_2024_11_15_api_submits_and_requires_a_time_to_live(api, audio, ca):
    base = api.endpoint + "speechtotext/transcriptions"
    params = {"api-version": "2024-11-15"}
    body = {"displayName": "v2024", "locale": "en-US", "contentUrls": [audio["url"]("speech1.wav")]}
    missing = api._call("POST", base + ":submit", params=params, json=body)
    assert _inner(missing) == "InvalidPayload" and "timeToLiveHours" in missing.json()["message"]
    resp = api._call("POST", base + ":submit", params=params, json={**body, "properties": {"timeToLiveHours": 24}})
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert "api-version=2024-11-15" in created["self"] and created["properties"]["timeToLiveHours"] == 24
    done = api.wait(created["self"])
    assert done["status"] == "Succeeded", done
    result = read_link(files_of(api, done)["Transcription"][0], ca)
    assert overlap(SENTENCES[1], result["combinedRecognizedPhrases"][0]["lexical"]) >= 0.5, result
    assert api._call("GET", base + "/locales", params=params).json() == ["en-US"]


SPEECH_USER = "f2dc8367-1007-4938-bd23-fe263f013447"


def test_transcriptions_need_credentials_and_the_data_actions(api, new_principal, assign, speech, audio, ca):
    account, _ = speech
    assert requests.get(api.url("transcriptions"), verify=ca, timeout=30).status_code == 401

    def bearer(principal):
        token = principal.credential.get_token("https://cognitiveservices.azure.com/.default").token
        return {"Authorization": f"Bearer {token}"}

    nobody = requests.get(api.url("transcriptions"), headers=bearer(new_principal("stt-none")), verify=ca, timeout=30)
    assert nobody.status_code == 401 and nobody.json()["error"]["code"] == "PermissionDenied", nobody.text
    user = new_principal("stt-user")
    assign(account.id, SPEECH_USER, user.object_id)
    body = {"displayName": "entra", "locale": "en-US", "contentUrls": [audio["url"]("speech0.wav")]}
    resp = requests.post(api.url("transcriptions"), json=body, headers=bearer(user), verify=ca, timeout=30)
    assert resp.status_code == 201, "a Speech User may transcribe"


# ---- fast transcription (2024-11-15 transcriptions:transcribe) -------------------------------------------------


def fast(api, audio: bytes | None, definition: dict | str | None, name: str = "audio.wav") -> requests.Response:
    files = {}
    if audio is not None:
        files["audio"] = (name, audio, "audio/wav")
    if definition is not None:
        files["definition"] = (None, definition if isinstance(definition, str) else json.dumps(definition),
                               "application/json")
    return api._call("POST", api.endpoint + "speechtotext/transcriptions:transcribe",
                     params={"api-version": "2024-11-15"}, files=files)


def test_fast_transcription_answers_at_once_in_azures_shape(api, tmp_path):
    resp = fast(api, flite(SENTENCES[0], tmp_path), {"locales": ["en-US"]})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["durationMilliseconds"] > 0 and "channel" not in body["combinedPhrases"][0]
    assert overlap(SENTENCES[0], body["combinedPhrases"][0]["text"]) >= 0.5, body
    phrase = body["phrases"][0]
    assert phrase["locale"] == "en-US" and 0 <= phrase["confidence"] <= 1 and phrase["durationMilliseconds"] > 0
    assert phrase["words"] and all({"text", "offsetMilliseconds", "durationMilliseconds"} <= set(w) for w in phrase["words"])


def test_fast_transcription_of_named_channels_says_which(api, tmp_path):
    body = fast(api, flite(SENTENCES[1], tmp_path), {"locales": ["en-US"], "channels": [0]}).json()
    assert body["combinedPhrases"][0]["channel"] == 0 and all(p["channel"] == 0 for p in body["phrases"]), body


@pytest.mark.parametrize("audio, definition, inner", [
    (None, {"locales": ["en-US"]}, "InvalidPayload"),
    (b"not audio at all", {"locales": ["en-US"]}, "InvalidAudioFormat"),
    (b"RIFF", {"locales": ["fr-FR"]}, "InvalidLocale"),
    (b"RIFF", "{broken", "InvalidPayload"),
    (b"RIFF", {"locales": ["en-US"], "channels": [3]}, "InvalidParameterValue"),
], ids=["no-audio", "not-audio", "locale", "definition", "channels"])
def test_fast_transcription_refuses_bad_requests(api, audio, definition, inner):
    assert _inner(fast(api, audio, definition)) == inner
