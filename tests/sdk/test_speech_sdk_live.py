"""Live recognition with Microsoft's Speech SDK (unchanged): partial results (`recognizing`) while the audio streams,
a push stream written at real time recognized phrase by phrase before it ends, a phrase list that steers the engine,
the single shot's initial silence timeout, and Entra tokens over the socket (`token_credential`, and the SDK's
`aad#resourceId#token` form)."""

import threading
import time
import wave

import azure.cognitiveservices.speech as speechsdk
import pytest

import cognitive_support as cs
from test_speech_sdk_stt import config, flite, once

SPEECH_USER = "f2dc8367-1007-4938-bd23-fe263f013447"


@pytest.fixture(scope="module")
def speech(admin_cognitive, make_rg, boot, ca):
    rg = make_rg("cs-sdklive")
    account = cs.create_account(admin_cognitive, boot, rg, "SpeechServices")
    key = admin_cognitive.accounts.list_keys(rg, account.name).key1
    return account.properties.endpoint, key, account


def pcm_of(path) -> tuple[int, bytes]:
    with wave.open(str(path)) as w:
        return w.getframerate(), w.readframes(w.getnframes())


def two_sentences(tmp_path) -> tuple[int, bytes]:
    """Two Flite sentences, each followed by a second of silence, as 16-bit PCM."""
    parts = []
    for i, text in enumerate(["the quick brown fox jumps over the lazy dog", "please call me tomorrow morning"]):
        flite(text, tmp_path / f"p{i}.wav")
        rate, frames = pcm_of(tmp_path / f"p{i}.wav")
        parts.append(frames + b"\x00\x00" * rate)
    return rate, b"".join(parts)


class Events:
    """What a recognizer reported, and when (monotonic seconds)."""

    def __init__(self, recognizer):
        self.recognizing, self.recognized, self.started = [], [], []
        self.stopped = threading.Event()
        recognizer.recognizing.connect(lambda e: self.recognizing.append((time.monotonic(), e.result)))
        recognizer.recognized.connect(lambda e: self.recognized.append((time.monotonic(), e.result)))
        recognizer.speech_start_detected.connect(lambda e: self.started.append(e.offset))
        recognizer.session_stopped.connect(lambda e: self.stopped.set())
        recognizer.canceled.connect(lambda e: self.stopped.set())

    def phrases(self):
        return [(t, r) for t, r in self.recognized if r.reason == speechsdk.ResultReason.RecognizedSpeech]


def test_partial_results_come_while_the_audio_streams(speech, ca, tmp_path):
    wav = tmp_path / "long.wav"
    flite("the weather will be sunny and warm across the whole region for the rest of the week", wav)
    recognizer = speechsdk.SpeechRecognizer(speech_config=config(speech, ca),
                                            audio_config=speechsdk.audio.AudioConfig(filename=str(wav)))
    events = Events(recognizer)
    recognizer.start_continuous_recognition()
    assert events.stopped.wait(60)
    recognizer.stop_continuous_recognition()
    phrases = events.phrases()
    assert phrases, events.recognized
    partials = [(t, r) for t, r in events.recognizing if r.text]
    assert partials, "speech.hypothesis results were sent"
    assert partials[0][0] <= phrases[0][0], "a partial result came before its phrase"
    assert all(r.reason == speechsdk.ResultReason.RecognizingSpeech for _, r in partials)
    assert events.started, "speech.startDetected was sent"


def test_a_push_stream_is_recognized_phrase_by_phrase_while_it_is_written(speech, ca, tmp_path):
    rate, pcm = two_sentences(tmp_path)
    stream = speechsdk.audio.PushAudioInputStream(speechsdk.audio.AudioStreamFormat(samples_per_second=rate))
    recognizer = speechsdk.SpeechRecognizer(speech_config=config(speech, ca),
                                            audio_config=speechsdk.audio.AudioConfig(stream=stream))
    events = Events(recognizer)
    recognizer.start_continuous_recognition()
    chunk = rate // 10 * 2  # 100 ms, written at real time as a microphone would
    for at in range(0, len(pcm), chunk):
        stream.write(pcm[at:at + chunk])
        time.sleep(0.1)
    written = time.monotonic()
    stream.close()
    assert events.stopped.wait(60), "the session stopped after the stream closed"
    recognizer.stop_continuous_recognition()
    phrases = events.phrases()
    assert len(phrases) == 2, [(r.reason, r.text) for _, r in events.recognized]
    assert phrases[0][0] < written - 1.0, "the first phrase came while the second was still being written"
    assert phrases[0][1].offset < phrases[1][1].offset
    assert "fox" in phrases[0][1].text.lower() or "dog" in phrases[0][1].text.lower(), phrases[0][1].text
    assert any(r.text for _, r in events.recognizing), "partial results while writing"


def test_a_phrase_list_steers_the_engine_towards_its_phrases(speech, ca, tmp_path):
    wav = tmp_path / "speech.wav"
    flite("meet me at the ziggurat", wav)
    plain = once(config(speech, ca), wav)
    assert plain.reason == speechsdk.ResultReason.RecognizedSpeech
    assert "ziggurat" not in plain.text.lower(), f"the base model alone hears {plain.text!r}: pick a harder word"
    recognizer = speechsdk.SpeechRecognizer(speech_config=config(speech, ca),
                                            audio_config=speechsdk.audio.AudioConfig(filename=str(wav)))
    grammar = speechsdk.PhraseListGrammar.from_recognizer(recognizer)
    grammar.addPhrase("ziggurat")
    grammar.addPhrase("capybara")  # a word the engine cannot pronounce is left out, not an error
    hinted = recognizer.recognize_once()
    assert hinted.reason == speechsdk.ResultReason.RecognizedSpeech, hinted.cancellation_details
    assert "ziggurat" in hinted.text.lower(), hinted.text


def test_a_single_shot_with_long_silence_ends_at_its_initial_silence_timeout(speech, ca, tmp_path):
    wav = tmp_path / "late.wav"
    flite("hello world", tmp_path / "hello.wav")
    rate, speech_pcm = pcm_of(tmp_path / "hello.wav")
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * rate * 12 + speech_pcm)
    result = once(config(speech, ca), wav)
    assert result.reason == speechsdk.ResultReason.NoMatch, result.reason
    assert result.no_match_details.reason == speechsdk.NoMatchReason.InitialSilenceTimeout
    assert 50_000_000 <= result.duration <= 70_000_000, "ended at about 5 s of silence, not at the end of the file"


def entra_config(speech, ca, **credentials) -> speechsdk.SpeechConfig:
    endpoint, _, _ = speech
    cfg = speechsdk.SpeechConfig(endpoint=endpoint.replace("https://", "wss://"), **credentials)
    with open(ca) as f:
        cfg.set_property_by_name("OPENSSL_SINGLE_TRUSTED_CERT", f.read())
    return cfg


def test_entra_tokens_authenticate_the_socket_for_a_speech_user(speech, ca, tmp_path, new_principal, assign):
    _, _, account = speech
    wav = tmp_path / "speech.wav"
    flite("hello world", wav)
    nobody = new_principal("sdk-nobody")
    refused = once(entra_config(speech, ca, token_credential=nobody.credential), wav)
    assert refused.reason == speechsdk.ResultReason.Canceled
    assert refused.cancellation_details.code == speechsdk.CancellationErrorCode.AuthenticationFailure
    user = new_principal("sdk-user")
    assign(account.id, SPEECH_USER, user.object_id)
    result = once(entra_config(speech, ca, token_credential=user.credential), wav)
    assert result.reason == speechsdk.ResultReason.RecognizedSpeech, result.cancellation_details
    token = user.credential.get_token("https://cognitiveservices.azure.com/.default").token
    aad = entra_config(speech, ca)
    aad.authorization_token = f"aad#{account.id}#{token}"
    assert once(aad, wav).reason == speechsdk.ResultReason.RecognizedSpeech
    other = entra_config(speech, ca)
    other.authorization_token = f"aad#{account.id}x#{token}"
    wrong = once(other, wav)
    assert wrong.cancellation_details.code == speechsdk.CancellationErrorCode.AuthenticationFailure


def timed_once(cfg, wav, **recognizer_args) -> tuple[speechsdk.SpeechRecognitionResult, float]:
    recognizer = speechsdk.SpeechRecognizer(speech_config=cfg, audio_config=speechsdk.audio.AudioConfig(filename=str(wav)),
                                            **recognizer_args)
    started = time.monotonic()
    result = recognizer.recognize_once()
    return result, time.monotonic() - started


@pytest.mark.parametrize("case", ["unsupported language", "unknown endpoint id", "not PCM"])
def test_each_refusal_is_reported_by_the_sdk_within_seconds(speech, ca, tmp_path, case):
    wav = tmp_path / "speech.wav"
    flite("hello world", wav)
    cfg = config(speech, ca)
    if case == "unsupported language":  # refused at the upgrade (400), not retried
        cfg.speech_recognition_language = "xx-XX"
    elif case == "unknown endpoint id":
        cfg.endpoint_id = "00000000-0000-0000-0000-000000000000"
    else:
        # A WAV of 8-bit A-law: the SDK passes its header through, byos refuses it with 1007.
        rate, pcm = pcm_of(wav)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import audioop  # the standard library's G.711 encoder, deprecated

        with open(wav, "wb") as f:
            alaw = audioop.lin2alaw(pcm, 2)
            f.write(b"RIFF" + (36 + len(alaw)).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
                    + (6).to_bytes(2, "little") + (1).to_bytes(2, "little") + rate.to_bytes(4, "little")
                    + rate.to_bytes(4, "little") + (1).to_bytes(2, "little") + (8).to_bytes(2, "little")
                    + b"data" + len(alaw).to_bytes(4, "little") + alaw)
    result, took = timed_once(cfg, wav)
    assert result.reason == speechsdk.ResultReason.Canceled, (case, result.reason)
    details = result.cancellation_details
    assert details.code == speechsdk.CancellationErrorCode.BadRequest, (case, details.code, details.error_details)
    assert took < 10, (case, took, details.error_details)
    expected = {"not PCM": "1007. Error details: the audio format is not supported: audio format 6"}.get(case, "(400)")
    assert expected in details.error_details, details.error_details
