"""Text to speech with Microsoft's own Speech SDK (azure-cognitiveservices-speech, unchanged) over its WebSocket
protocol on a Speech account's endpoint: speak_text_async / speak_ssml_async to memory and to a file, output formats,
word boundary events, the voices list, and the refusals the SDK must report (not hang on): a format byos cannot make,
an Azure voice byos does not have, a wrong key. The CA is pinned with OPENSSL_SINGLE_TRUSTED_CERT."""

import io
import time
import wave

import azure.cognitiveservices.speech as speechsdk
import pytest
import requests

import cognitive_support as cs


@pytest.fixture(scope="module")
def speech(admin_cognitive, make_rg, boot):
    rg = make_rg("cs-sdktts")
    account = cs.create_account(admin_cognitive, boot, rg, "SpeechServices")
    return account.properties.endpoint, admin_cognitive.accounts.list_keys(rg, account.name).key1


def config(speech, ca, key: str | None = None, voice: str = "en-US-SltFlite") -> speechsdk.SpeechConfig:
    endpoint, account_key = speech
    cfg = speechsdk.SpeechConfig(host=endpoint.replace("https://", "wss://").rstrip("/"), subscription=key or account_key)
    with open(ca) as f:
        cfg.set_property_by_name("OPENSSL_SINGLE_TRUSTED_CERT", f.read())
    cfg.speech_synthesis_voice_name = voice
    return cfg


def heard(speech, ca, wav: bytes) -> str:
    endpoint, key = speech
    resp = requests.post(endpoint + "speech/recognition/conversation/cognitiveservices/v1", params={"language": "en-US"},
                         data=wav, verify=ca, timeout=120, headers={"Ocp-Apim-Subscription-Key": key,
                                                                    "Content-Type": "audio/wav"})
    return resp.json().get("DisplayText", "").lower()


def test_speak_text_to_a_file_and_hear_it_back(speech, ca, tmp_path):
    out = tmp_path / "spoken.wav"
    synthesizer = speechsdk.SpeechSynthesizer(speech_config=config(speech, ca),
                                              audio_config=speechsdk.audio.AudioOutputConfig(filename=str(out)))
    result = synthesizer.speak_text_async("hello world").get()
    assert result.reason == speechsdk.ResultReason.SynthesizingAudioCompleted, result.cancellation_details
    del synthesizer
    with wave.open(str(out)) as w:
        assert (w.getframerate(), w.getnchannels()) == (16000, 1) and w.getnframes() > 8000
    assert {"hello", "world"} & set(heard(speech, ca, out.read_bytes()).strip(".").split())


def test_ssml_in_another_format_with_word_boundaries(speech, ca):
    cfg = config(speech, ca)
    cfg.set_speech_synthesis_output_format(speechsdk.SpeechSynthesisOutputFormat.Riff24Khz16BitMonoPcm)
    synthesizer = speechsdk.SpeechSynthesizer(speech_config=cfg, audio_config=None)
    offsets = []
    synthesizer.synthesis_word_boundary.connect(lambda e: offsets.append((e.text, e.audio_offset)))
    ssml = ("<speak version='1.0' xmlns='http://www.w3.org/2001/10/synthesis' xml:lang='en-US'>"
            "<voice name='en-US-AwbFlite'>one two three</voice></speak>")
    result = synthesizer.speak_ssml_async(ssml).get()
    assert result.reason == speechsdk.ResultReason.SynthesizingAudioCompleted, result.cancellation_details
    with wave.open(io.BytesIO(result.audio_data)) as w:
        assert w.getframerate() == 24000 and w.getnframes() > 12000
    # The SDK may raise the last events on its own thread after .get() returns.
    deadline = time.monotonic() + 5
    while len(offsets) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [t for t, _ in offsets] == ["one", "two", "three"], offsets
    assert [o for _, o in offsets] == sorted(o for _, o in offsets)


def test_sentence_boundaries_when_asked(speech, ca):
    cfg = config(speech, ca)
    cfg.set_property(speechsdk.PropertyId.SpeechServiceResponse_RequestSentenceBoundary, "true")
    synthesizer = speechsdk.SpeechSynthesizer(speech_config=cfg, audio_config=None)
    events = []
    synthesizer.synthesis_word_boundary.connect(lambda e: events.append((e.boundary_type, e.text, e.audio_offset)))
    result = synthesizer.speak_text_async("Good morning everyone. See you soon.").get()
    assert result.reason == speechsdk.ResultReason.SynthesizingAudioCompleted, result.cancellation_details
    deadline = time.monotonic() + 5
    while len(events) < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    sentences = [(text, offset) for kind, text, offset in events if kind == speechsdk.SpeechSynthesisBoundaryType.Sentence]
    assert [text for text, _ in sentences] == ["Good morning everyone.", "See you soon."], events
    assert sentences[0][1] < sentences[1][1]
    words = [text for kind, text, _ in events if kind == speechsdk.SpeechSynthesisBoundaryType.Word]
    assert words[:3] == ["Good", "morning", "everyone"], f"the text's own words: {events}"


def test_two_requests_on_one_synthesizer(speech, ca):
    synthesizer = speechsdk.SpeechSynthesizer(speech_config=config(speech, ca), audio_config=None)
    for text in ("first request", "second request"):
        result = synthesizer.speak_text_async(text).get()
        assert result.reason == speechsdk.ResultReason.SynthesizingAudioCompleted, result.cancellation_details
        assert len(result.audio_data) > 16000


def _canceled(cfg, text="hello") -> tuple[speechsdk.CancellationDetails, float]:
    started = time.monotonic()
    # The synthesizer must outlive the request: a temporary one is disposed while the SDK's background thread
    # starts, and that thread then opened no connection until the SDK's 40 s first-audio timeout (SDK log).
    synthesizer = speechsdk.SpeechSynthesizer(speech_config=cfg, audio_config=None)
    result = synthesizer.speak_text_async(text).get()
    assert result.reason == speechsdk.ResultReason.Canceled, result.reason
    return result.cancellation_details, time.monotonic() - started


def test_a_format_byos_cannot_make_is_reported_with_its_reason(speech, ca):
    cfg = config(speech, ca)
    cfg.set_speech_synthesis_output_format(speechsdk.SpeechSynthesisOutputFormat.Audio16Khz32KBitRateMonoMp3)
    details, took = _canceled(cfg)
    assert "mp3" in details.error_details and took < 10, (details.error_details, took)


def test_an_azure_voice_byos_does_not_have_is_reported_by_name(speech, ca):
    details, took = _canceled(config(speech, ca, voice="en-US-AvaMultilingualNeural"))
    assert "en-US-AvaMultilingualNeural" in details.error_details and took < 10, (details.error_details, took)


def test_a_wrong_key_is_an_authentication_failure(speech, ca):
    details, took = _canceled(config(speech, ca, key="0" * 32))
    assert details.error_code == speechsdk.CancellationErrorCode.AuthenticationFailure and took < 10, \
        (details.error_code, details.error_details, took)


def test_the_sdk_lists_byos_voices(speech, ca):
    synthesizer = speechsdk.SpeechSynthesizer(speech_config=config(speech, ca), audio_config=None)
    result = synthesizer.get_voices_async().get()
    assert result.reason == speechsdk.ResultReason.VoicesListRetrieved, result.error_details
    assert {"en-US-RmsFlite", "en-US-SltFlite"} <= {v.short_name for v in result.voices}


F = speechsdk.SpeechSynthesisOutputFormat


@pytest.mark.parametrize("fmt, rate, width, tag", [
    (F.Riff8Khz16BitMonoPcm, 8000, 2, 1), (F.Riff16Khz16BitMonoPcm, 16000, 2, 1),
    (F.Riff22050Hz16BitMonoPcm, 22050, 2, 1), (F.Riff24Khz16BitMonoPcm, 24000, 2, 1),
    (F.Riff44100Hz16BitMonoPcm, 44100, 2, 1), (F.Riff48Khz16BitMonoPcm, 48000, 2, 1),
    (F.Raw8Khz16BitMonoPcm, 8000, 2, None), (F.Raw22050Hz16BitMonoPcm, 22050, 2, None),
    (F.Raw48Khz16BitMonoPcm, 48000, 2, None), (F.Riff8Khz8BitMonoMULaw, 8000, 1, 7),
    (F.Raw8Khz8BitMonoMULaw, 8000, 1, None), (F.Riff8Khz8BitMonoALaw, 8000, 1, 6),
    (F.Raw8Khz8BitMonoALaw, 8000, 1, None),
])
def test_every_pcm_and_g711_format_comes_out_at_its_rate(speech, ca, fmt, rate, width, tag):
    """`tag`: the WAV format tag the SDK's header names (1 PCM, 6 A-law, 7 mu-law); None: headerless."""
    cfg = config(speech, ca)
    cfg.set_speech_synthesis_output_format(fmt)
    synthesizer = speechsdk.SpeechSynthesizer(speech_config=cfg, audio_config=None)
    result = synthesizer.speak_text_async("one two three four").get()
    assert result.reason == speechsdk.ResultReason.SynthesizingAudioCompleted, result.cancellation_details
    audio = result.audio_data
    if tag is not None:
        assert audio[:4] == b"RIFF" and audio[8:12] == b"WAVE"
        at = audio.index(b"fmt ") + 8
        header = (int.from_bytes(audio[at:at + 2], "little"), audio[at + 2], int.from_bytes(audio[at + 4:at + 8], "little"))
        assert header == (tag, 1, rate), header
        audio = audio[audio.index(b"data") + 8:]
    else:
        assert audio[:4] != b"RIFF"
    seconds = len(audio) / (rate * width)
    assert 0.8 < seconds < 4.0, f"{seconds:.2f} s of audio for four words"
    assert len(set(audio[: rate * width // 2])) > 8, "not silence"
    assert abs(result.audio_duration.total_seconds() - seconds) < 0.1


def test_speak_to_a_pull_stream_reads_the_whole_audio(speech, ca):
    stream = speechsdk.audio.PullAudioOutputStream()
    synthesizer = speechsdk.SpeechSynthesizer(speech_config=config(speech, ca),
                                              audio_config=speechsdk.audio.AudioOutputConfig(stream=stream))
    result = synthesizer.speak_text_async("reading from a pull stream").get()
    assert result.reason == speechsdk.ResultReason.SynthesizingAudioCompleted, result.cancellation_details
    del synthesizer
    pulled, buffer = b"", bytes(3200)
    while (n := stream.read(buffer)) > 0:
        pulled += buffer[:n]
    assert len(pulled) > 16000 and len(set(pulled[:4000])) > 8
    assert abs(len(pulled) / 32000 - result.audio_duration.total_seconds()) < 0.1
