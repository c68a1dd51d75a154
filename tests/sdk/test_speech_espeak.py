"""Text to speech in the languages other than English, spoken by eSpeak NG (byos's second engine, in the same
`tts-worker` processes as Flite): its voices in the voices list in Azure's shape (REST and the Speech SDK's
get_voices_async), REST synthesis with a German voice in another output format, and the Speech SDK's
speak_text_async with an eSpeak voice writing a WAV file and reporting word boundaries. English stays Flite's."""

import array
import io
import time
import wave

import azure.cognitiveservices.speech as speechsdk
import pytest
import requests

import cognitive_support as cs

SSML = ("<speak version='1.0' xmlns='http://www.w3.org/2001/10/synthesis' xml:lang='{lang}'>"
        "<voice name='{voice}'>{text}</voice></speak>")
GERMAN = "Der schnelle braune Fuchs springt über den faulen Hund"
# A voice of each engine's kind byos offers for these locales, both genders.
ESPEAK_VOICES = [f"{locale}-{gender}EspeakNg" for locale in ("de-DE", "fr-FR", "es-MX", "pt-BR", "ru-RU", "hi-IN")
                 for gender in ("Male", "Female")]


@pytest.fixture(scope="module")
def speech(admin_cognitive, make_rg, boot):
    rg = make_rg("cs-espeak")
    account = cs.create_account(admin_cognitive, boot, rg, "SpeechServices")
    return account.properties.endpoint, admin_cognitive.accounts.list_keys(rg, account.name).key1


def synthesize(speech, ca, voice: str, text: str, fmt: str, lang: str = "de-DE") -> requests.Response:
    endpoint, key = speech
    headers = {"Ocp-Apim-Subscription-Key": key, "Content-Type": "application/ssml+xml",
               "X-Microsoft-OutputFormat": fmt}
    body = SSML.format(lang=lang, voice=voice, text=text).encode()
    return requests.post(endpoint + "cognitiveservices/v1", data=body, headers=headers, verify=ca, timeout=120)


def samples(w: wave.Wave_read) -> array.array:
    frames = array.array("h")
    frames.frombytes(w.readframes(w.getnframes()))
    return frames


def config(speech, ca, voice: str) -> speechsdk.SpeechConfig:
    endpoint, key = speech
    cfg = speechsdk.SpeechConfig(host=endpoint.replace("https://", "wss://").rstrip("/"), subscription=key)
    with open(ca) as f:
        cfg.set_property_by_name("OPENSSL_SINGLE_TRUSTED_CERT", f.read())
    cfg.speech_synthesis_voice_name = voice
    return cfg


def test_the_voices_list_has_the_espeak_voices_in_azures_shape(speech, ca):
    endpoint, key = speech
    resp = requests.get(endpoint + "cognitiveservices/voices/list", headers={"Ocp-Apim-Subscription-Key": key},
                        verify=ca, timeout=30)
    assert resp.status_code == 200, resp.text
    voices = {v["ShortName"]: v for v in resp.json()}
    assert set(ESPEAK_VOICES) <= set(voices)
    german = voices["de-DE-FemaleEspeakNg"]
    assert german == {
        "Name": "Microsoft Server Speech Text to Speech Voice (de-DE, FemaleEspeakNg)",
        "DisplayName": "Female (eSpeak NG)", "LocalName": "Female (eSpeak NG)", "ShortName": "de-DE-FemaleEspeakNg",
        "Gender": "Female", "Locale": "de-DE", "LocaleName": "German (Germany)", "SampleRateHertz": "22050",
        "VoiceType": "Standard", "Status": "GA", "WordsPerMinute": "175",
    }
    espeak = [v for v in voices.values() if "eSpeak NG" in v["DisplayName"]]
    assert all(v["ShortName"].endswith("EspeakNg") and v["Locale"] != "en-US" for v in espeak), "English is Flite's"
    assert {v["Gender"] for v in espeak} == {"Male", "Female"}
    assert all(v["ShortName"] == f"{v['Locale']}-{v['Name'].split(', ')[1].rstrip(')')}" for v in espeak)


def test_the_sdk_lists_the_espeak_voices_and_filters_them_by_locale(speech, ca):
    synthesizer = speechsdk.SpeechSynthesizer(speech_config=config(speech, ca, "de-DE-MaleEspeakNg"),
                                              audio_config=None)
    result = synthesizer.get_voices_async().get()
    assert result.reason == speechsdk.ResultReason.VoicesListRetrieved, result.error_details
    assert set(ESPEAK_VOICES) <= {v.short_name for v in result.voices}
    german = synthesizer.get_voices_async("de-DE").get()
    assert german.reason == speechsdk.ResultReason.VoicesListRetrieved, german.error_details
    assert {(v.short_name, v.gender) for v in german.voices} == {
        ("de-DE-MaleEspeakNg", speechsdk.SynthesisVoiceGender.Male),
        ("de-DE-FemaleEspeakNg", speechsdk.SynthesisVoiceGender.Female)}
    assert all(v.locale == "de-DE" for v in german.voices)


def test_rest_synthesis_in_german_is_a_non_silent_wav_at_24khz(speech, ca):
    resp = synthesize(speech, ca, "de-DE-MaleEspeakNg", GERMAN, "riff-24khz-16bit-mono-pcm")
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "audio/wav", resp.text
    with wave.open(io.BytesIO(resp.content)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)
        seconds = w.getnframes() / 24000
        # Nine words at eSpeak's 175 words a minute: about three seconds.
        assert 2 < seconds < 5, seconds
        loudest = max(abs(s) for s in samples(w))
    assert loudest > 2000, loudest


@pytest.mark.parametrize("voice", ESPEAK_VOICES)
def test_each_listed_voice_speaks(speech, ca, voice):
    resp = synthesize(speech, ca, voice, "1 2 3", "riff-22050hz-16bit-mono-pcm", lang=voice[:5])
    assert resp.status_code == 200, resp.text
    with wave.open(io.BytesIO(resp.content)) as w:
        assert w.getframerate() == 22050 and w.getnframes() > 22050 // 2, (voice, w.getnframes())
        assert max(abs(s) for s in samples(w)) > 2000, voice


def test_a_slower_rate_is_longer(speech, ca):
    def seconds(rate: str) -> float:
        text = f"<prosody rate='{rate}'>{GERMAN}</prosody>"
        with wave.open(io.BytesIO(synthesize(speech, ca, "de-DE-FemaleEspeakNg", text,
                                             "riff-16khz-16bit-mono-pcm").content)) as w:
            return w.getnframes() / w.getframerate()

    assert seconds("50%") > 1.5 * seconds("150%")


@pytest.mark.parametrize("voice", ["de-DE-KatjaNeural", "en-US-MaleEspeakNg", "ja-JP-MaleEspeakNg"])
def test_a_voice_byos_lacks_is_refused_by_name(speech, ca, voice):
    resp = synthesize(speech, ca, voice, "Hallo", "riff-24khz-16bit-mono-pcm")
    assert resp.status_code == 400 and voice in resp.json()["error"]["message"], resp.text


def test_the_sdk_speaks_german_to_a_file_with_word_boundaries(speech, ca, tmp_path):
    out = tmp_path / "deutsch.wav"
    synthesizer = speechsdk.SpeechSynthesizer(speech_config=config(speech, ca, "de-DE-FemaleEspeakNg"),
                                              audio_config=speechsdk.audio.AudioOutputConfig(filename=str(out)))
    words = []
    synthesizer.synthesis_word_boundary.connect(
        lambda e: words.append((e.text, e.audio_offset, e.duration.total_seconds())))
    result = synthesizer.speak_text_async(GERMAN).get()
    assert result.reason == speechsdk.ResultReason.SynthesizingAudioCompleted, result.cancellation_details
    with wave.open(str(out)) as w:
        assert w.getnchannels() == 1 and 2 < w.getnframes() / w.getframerate() < 5
        assert max(abs(s) for s in samples(w)) > 2000
    # The SDK may still be delivering word events on its own thread when the result is ready.
    deadline = time.monotonic() + 5
    while len(words) < len(GERMAN.split()) and time.monotonic() < deadline:
        time.sleep(0.05)
    del synthesizer
    assert [t for t, _, _ in words] == GERMAN.split(), words
    offsets = [o for _, o, _ in words]
    assert offsets == sorted(set(offsets)), words
    assert all(d > 0 for _, _, d in words), words


def test_one_request_mixes_flite_english_and_espeak_french(speech, ca):
    ssml = ("<speak version='1.0' xmlns='http://www.w3.org/2001/10/synthesis' xml:lang='en-US'>"
            "<voice name='en-US-SltFlite'>hello world</voice>"
            "<voice name='fr-FR-MaleEspeakNg'>bonjour tout le monde</voice></speak>")
    endpoint, key = speech
    resp = requests.post(endpoint + "cognitiveservices/v1", data=ssml.encode(), verify=ca, timeout=120,
                         headers={"Ocp-Apim-Subscription-Key": key, "Content-Type": "application/ssml+xml",
                                  "X-Microsoft-OutputFormat": "riff-16khz-16bit-mono-pcm"})
    assert resp.status_code == 200, resp.text
    with wave.open(io.BytesIO(resp.content)) as w:
        assert 1.5 < w.getnframes() / 16000 < 6
