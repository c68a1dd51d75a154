"""Speech to text with Microsoft's own Speech SDK (azure-cognitiveservices-speech, unchanged) over its WebSocket
protocol on a Speech account's endpoint, with the real engine: recognize_once from WAV files (16 kHz, and 8 kHz /
44.1 kHz stereo the server resamples and downmixes), the detailed format, silence, continuous recognition of a
multi-sentence file with a clean session_stopped, an endpoint's logging through endpoint_id, and a wrong key reported
at once. The CA is pinned with OPENSSL_SINGLE_TRUSTED_CERT."""

import io
import json
import subprocess
import threading
import time
import wave

import azure.cognitiveservices.speech as speechsdk
import pytest
import requests

import cognitive_support as cs


@pytest.fixture(scope="module")
def speech(admin_cognitive, make_rg, boot, ca):
    rg = make_rg("cs-sdkstt")
    account = cs.create_account(admin_cognitive, boot, rg, "SpeechServices")
    key = admin_cognitive.accounts.list_keys(rg, account.name).key1
    return account.properties.endpoint, key, cs.SpeechRest(account.properties.endpoint, key, ca)


def flite(text: str, path, voice: str = "rms") -> None:
    subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(path)], check=True, timeout=60)


def converted(path, out, rate: int, channels: int) -> None:
    """The WAV at `path` at another rate and channel count (by Python's standard library)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop

    with wave.open(str(path)) as w:
        frames, src_rate = w.readframes(w.getnframes()), w.getframerate()
    frames, _ = audioop.ratecv(frames, 2, 1, src_rate, rate, None)
    if channels == 2:
        frames = audioop.tostereo(frames, 2, 1, 1)
    with wave.open(str(out), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)


def config(speech, ca, key: str | None = None, detailed: bool = False) -> speechsdk.SpeechConfig:
    endpoint, account_key, _ = speech
    cfg = speechsdk.SpeechConfig(host=endpoint.replace("https://", "wss://").rstrip("/"), subscription=key or account_key)
    with open(ca) as f:
        cfg.set_property_by_name("OPENSSL_SINGLE_TRUSTED_CERT", f.read())
    if detailed:
        cfg.output_format = speechsdk.OutputFormat.Detailed
    return cfg


def once(cfg, wav) -> speechsdk.SpeechRecognitionResult:
    recognizer = speechsdk.SpeechRecognizer(speech_config=cfg, audio_config=speechsdk.audio.AudioConfig(filename=str(wav)))
    return recognizer.recognize_once()


@pytest.mark.parametrize("rate, channels", [(16000, 1), (8000, 1), (44100, 2)])
def test_recognize_once_from_a_wav_file(speech, ca, tmp_path, rate, channels):
    source, wav = tmp_path / "source.wav", tmp_path / "speech.wav"
    flite("hello world", source)
    converted(source, wav, rate, channels)
    result = once(config(speech, ca), wav)
    assert result.reason == speechsdk.ResultReason.RecognizedSpeech, (result.reason, result.cancellation_details)
    assert {"hello", "world"} & set(result.text.lower().strip(".").split()), result.text
    assert result.duration > 0


def test_the_detailed_format_has_nbest_and_word_timings(speech, ca, tmp_path):
    wav = tmp_path / "speech.wav"
    flite("good morning", wav)
    result = once(config(speech, ca, detailed=True), wav)
    assert result.reason == speechsdk.ResultReason.RecognizedSpeech
    best = json.loads(result.json)["NBest"][0]
    assert 0 <= best["Confidence"] <= 1 and best["Words"] and all(w["Duration"] > 0 for w in best["Words"])


def test_silence_is_no_match_initial_silence_timeout(speech, ca, tmp_path):
    wav = tmp_path / "silence.wav"
    wav.write_bytes(cs.silent_wav(2.0))
    result = once(config(speech, ca), wav)
    assert result.reason == speechsdk.ResultReason.NoMatch
    assert result.no_match_details.reason == speechsdk.NoMatchReason.InitialSilenceTimeout


def test_continuous_recognition_gives_a_phrase_per_sentence_and_stops_cleanly(speech, ca, tmp_path):
    parts = []
    for i, text in enumerate(["the quick brown fox jumps over the lazy dog", "please call me tomorrow morning"]):
        flite(text, tmp_path / f"p{i}.wav")
        with wave.open(str(tmp_path / f"p{i}.wav")) as w:
            params, frames = w.getparams(), w.readframes(w.getnframes())
        parts.append(frames + b"\x00\x00" * params.framerate)  # a second of silence after each sentence
    with wave.open(str(tmp_path / "both.wav"), "wb") as w:
        w.setparams(params)
        w.writeframes(b"".join(parts))
    recognizer = speechsdk.SpeechRecognizer(speech_config=config(speech, ca),
                                            audio_config=speechsdk.audio.AudioConfig(filename=str(tmp_path / "both.wav")))
    recognized, stopped = [], threading.Event()
    recognizer.recognized.connect(lambda e: recognized.append(e.result))
    recognizer.session_stopped.connect(lambda e: stopped.set())
    recognizer.canceled.connect(lambda e: stopped.set())
    started = time.monotonic()
    recognizer.start_continuous_recognition()
    assert stopped.wait(60), "the session stopped"
    recognizer.stop_continuous_recognition()
    phrases = [r for r in recognized if r.reason == speechsdk.ResultReason.RecognizedSpeech]
    assert len(phrases) == 2, [(r.reason, r.text) for r in recognized]
    assert phrases[0].offset < phrases[1].offset and time.monotonic() - started < 40
    assert "fox" in phrases[0].text.lower() or "dog" in phrases[0].text.lower(), phrases[0].text


def test_an_endpoint_with_logging_logs_each_turn(speech, ca, tmp_path):
    _, _, api = speech
    base = api.get(api.url("models/base")).json()["values"][0]["self"]
    endpoint = api.post("endpoints", json={"displayName": "sdk", "locale": "en-US", "model": {"self": base},
                                           "properties": {"loggingEnabled": True}}).json()
    cfg = config(speech, ca)
    cfg.endpoint_id = endpoint["self"].rsplit("/", 1)[1]
    wav = tmp_path / "speech.wav"
    flite("log this turn", wav)
    result = once(cfg, wav)
    assert result.reason == speechsdk.ResultReason.RecognizedSpeech, result.cancellation_details
    files = api.get(endpoint["self"] + "/files/logs").json()["values"]
    assert sorted(f["kind"] for f in files) == ["Audio", "Transcription"], files


def test_enable_audio_logging_logs_the_base_models_turns(speech, ca, tmp_path):
    _, _, api = speech
    base_logs = api.url("endpoints/base/en-US/files/logs")
    before = len(api.get(base_logs).json()["values"])
    cfg = config(speech, ca)
    cfg.enable_audio_logging()
    wav = tmp_path / "speech.wav"
    flite("log the base model", wav)
    result = once(cfg, wav)
    assert result.reason == speechsdk.ResultReason.RecognizedSpeech, result.cancellation_details
    files = api.get(base_logs).json()["values"]
    assert len(files) == before + 2 and {"Audio", "Transcription"} <= {f["kind"] for f in files}, files
    audio = next(f for f in reversed(files) if f["kind"] == "Audio")
    logged = requests.get(audio["links"]["contentUrl"], verify=ca, timeout=30).content
    with wave.open(io.BytesIO(logged)) as w:
        assert w.getnframes() > 8000, "the turn's audio is logged"


def test_a_wrong_key_is_reported_at_once(speech, ca, tmp_path):
    wav = tmp_path / "speech.wav"
    flite("hello", wav)
    started = time.monotonic()
    result = once(config(speech, ca, key="0" * 32), wav)
    assert result.reason == speechsdk.ResultReason.Canceled
    assert result.cancellation_details.code == speechsdk.CancellationErrorCode.AuthenticationFailure
    assert time.monotonic() - started < 10


def test_an_issued_token_authenticates_the_socket(speech, ca, tmp_path):

    endpoint, key, _ = speech
    token = requests.post(endpoint + "sts/v1.0/issueToken", headers={"Ocp-Apim-Subscription-Key": key},
                          verify=ca, timeout=30).text
    cfg = speechsdk.SpeechConfig(host=endpoint.replace("https://", "wss://").rstrip("/"))
    cfg.authorization_token = token
    with open(ca) as f:
        cfg.set_property_by_name("OPENSSL_SINGLE_TRUSTED_CERT", f.read())
    wav = tmp_path / "speech.wav"
    flite("hello world", wav)
    result = once(cfg, wav)
    assert result.reason == speechsdk.ResultReason.RecognizedSpeech, result.cancellation_details
    cfg.speech_synthesis_voice_name = "en-US-RmsFlite"
    synthesizer = speechsdk.SpeechSynthesizer(speech_config=cfg, audio_config=None)
    spoken = synthesizer.speak_text_async("hello").get()
    assert spoken.reason == speechsdk.ResultReason.SynthesizingAudioCompleted, spoken.cancellation_details
