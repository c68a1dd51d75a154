"""Short-audio recognition (`POST /speech/recognition/conversation/cognitiveservices/v1`) on a Speech account, with the
real engine (PocketSphinx in byos's worker processes) hearing real speech (Flite): simple and detailed formats,
Azure's RecognitionStatus values, WAV at other rates (resampled), and Azure's 400s for bad requests."""

import subprocess

import pytest
import requests

import cognitive_support as cs

PATH = "speech/recognition/conversation/cognitiveservices/v1"


def flite(text: str, tmp_path) -> bytes:
    out = tmp_path / "speech.wav"
    subprocess.run(["flite", "-t", text, "-o", str(out)], check=True, timeout=60)
    return out.read_bytes()


def silence(seconds: float = 1.0) -> bytes:
    return cs.silent_wav(seconds)


@pytest.fixture(scope="module")
def speech(admin_cognitive, make_rg, boot):
    rg = make_rg("cs-rec")
    account = cs.create_account(admin_cognitive, boot, rg, "SpeechServices")
    return account.properties.endpoint, admin_cognitive.accounts.list_keys(rg, account.name).key1


def recognize(speech, ca, audio: bytes, **params) -> requests.Response:
    endpoint, key = speech
    params.setdefault("language", "en-US")
    return requests.post(endpoint + PATH, params=params, data=audio, verify=ca, timeout=120, headers={
        "Ocp-Apim-Subscription-Key": key, "Content-Type": "audio/wav; codecs=audio/pcm; samplerate=16000"})


def test_flite_speech_is_recognized_in_the_simple_format(speech, ca, tmp_path):
    resp = recognize(speech, ca, flite("hello world", tmp_path))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["RecognitionStatus"] == "Success", body
    assert "hello" in body["DisplayText"].lower() or "world" in body["DisplayText"].lower(), body
    assert body["DisplayText"][0].isupper() and body["DisplayText"].endswith(".")
    assert body["Duration"] > 0


def test_the_detailed_format_has_nbest_with_confidence(speech, ca, tmp_path):
    body = recognize(speech, ca, flite("good morning", tmp_path), format="detailed").json()
    assert body["RecognitionStatus"] == "Success", body
    best = body["NBest"][0]
    assert {"Confidence", "Lexical", "ITN", "MaskedITN", "Display"} <= set(best) and 0 <= best["Confidence"] <= 1
    confidences = [n["Confidence"] for n in body["NBest"]]
    assert confidences == sorted(confidences, reverse=True), body["NBest"]
    assert len({n["Lexical"] for n in body["NBest"]}) == len(body["NBest"]), "the alternatives differ"


def test_silence_is_initial_silence_timeout(speech, ca):
    body = recognize(speech, ca, silence()).json()
    assert body["RecognitionStatus"] == "InitialSilenceTimeout", body


@pytest.mark.parametrize("params, fragment", [
    ({"language": "xx-XX"}, "language"),
    ({"format": "verbose"}, "format"),
])
def test_bad_requests_are_400(speech, ca, tmp_path, params, fragment):
    resp = recognize(speech, ca, flite("hello", tmp_path), **params)
    assert resp.status_code == 400 and fragment in resp.json()["message"], resp.text


def test_missing_language_and_bad_audio_are_400(speech, ca):
    endpoint, key = speech
    resp = requests.post(endpoint + PATH, data=silence(), verify=ca, timeout=30, headers={"Ocp-Apim-Subscription-Key": key})
    assert resp.status_code == 400 and "language" in resp.json()["message"]
    assert recognize(speech, ca, b"definitely not audio").status_code == 400


def test_recognition_needs_credentials(speech, ca, tmp_path):
    endpoint, _ = speech
    resp = requests.post(endpoint + PATH, params={"language": "en-US"}, data=silence(), verify=ca, timeout=30)
    assert resp.status_code == 401


def test_audio_longer_than_sixty_seconds_is_400(speech, ca):
    resp = recognize(speech, ca, cs.silent_wav(61.0, rate=48000))
    assert resp.status_code == 400 and "60000 ms" in resp.json()["message"], resp.text


@pytest.mark.parametrize("audio", [b"", b"RIFF\x24\x00\x00\x00WAVEfmt ", b"\x00" * 4096], ids=["empty", "truncated", "zeros"])
def test_empty_truncated_or_headerless_audio_is_400(speech, ca, audio):
    resp = recognize(speech, ca, audio)
    assert resp.status_code == 400 and resp.json()["message"], resp.text


def test_a_chunked_upload_is_recognized(speech, ca, tmp_path):
    audio = flite("hello world", tmp_path)

    def chunks():
        for i in range(0, len(audio), 4096):
            yield audio[i:i + 4096]

    resp = recognize(speech, ca, chunks())
    assert resp.status_code == 200 and resp.json()["RecognitionStatus"] == "Success", resp.text


def test_ogg_vorbis_audio_is_recognized(speech, ca, tmp_path):
    wav = tmp_path / "speech.wav"
    wav.write_bytes(flite("hello world", tmp_path))
    subprocess.run(["oggenc", "-Q", "-o", str(tmp_path / "speech.ogg"), str(wav)], check=True, timeout=60)
    endpoint, key = speech
    resp = requests.post(endpoint + PATH, params={"language": "en-US"}, data=(tmp_path / "speech.ogg").read_bytes(),
                         verify=ca, timeout=120, headers={"Ocp-Apim-Subscription-Key": key, "Content-Type": "audio/ogg"})
    assert resp.status_code == 200 and resp.json()["RecognitionStatus"] == "Success", resp.text


def test_a_wav_in_a_sample_format_byos_cannot_decode_is_400(speech, ca):
    import struct

    data = b"\x00" * 16000
    fmt = struct.pack("<HHIIHH", 0x0011, 1, 16000, 8000, 256, 4) + struct.pack("<HH", 2, 505)  # IMA ADPCM
    wav = b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE" + \
        b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    resp = recognize(speech, ca, wav)
    assert resp.status_code == 400 and "audio" in resp.json()["message"].lower(), resp.text
