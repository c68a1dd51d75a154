"""Text to speech REST on a Speech account (`POST /cognitiveservices/v1`, `GET /cognitiveservices/voices/list`), with
the real engine (Flite in byos's `tts-worker` processes): SSML in, audio in the asked output format out (RIFF and raw
PCM at 8-48 kHz, mu-law, A-law), byos's voices honestly named, and Azure's refusals (unknown voice, invalid SSML,
formats byos cannot make). The round trip: what byos says, byos's recognizer hears."""

import io
import wave

import pytest
import requests

import cognitive_support as cs

SSML = ("<speak version='1.0' xmlns='http://www.w3.org/2001/10/synthesis' xml:lang='en-US'>"
        "<voice name='{voice}'>{text}</voice></speak>")


@pytest.fixture(scope="module")
def speech(admin_cognitive, make_rg, boot):
    rg = make_rg("cs-tts")
    account = cs.create_account(admin_cognitive, boot, rg, "SpeechServices")
    return account.properties.endpoint, admin_cognitive.accounts.list_keys(rg, account.name).key1


def synthesize(speech, ca, text: str = "hello world", voice: str = "en-US-RmsFlite",
               fmt: str | None = "riff-16khz-16bit-mono-pcm", ssml: str | None = None) -> requests.Response:
    endpoint, key = speech
    headers = {"Ocp-Apim-Subscription-Key": key, "Content-Type": "application/ssml+xml"}
    if fmt:
        headers["X-Microsoft-OutputFormat"] = fmt
    body = ssml if ssml is not None else SSML.format(voice=voice, text=text)
    return requests.post(endpoint + "cognitiveservices/v1", data=body.encode(), headers=headers, verify=ca, timeout=120)


def test_the_voices_list_names_byos_voices_in_azures_shape(speech, ca):
    endpoint, key = speech
    # The Speech SDK sends an empty bearer beside the key: it counts as absent.
    resp = requests.get(endpoint + "cognitiveservices/voices/list", verify=ca, timeout=30,
                        headers={"Ocp-Apim-Subscription-Key": key, "Authorization": "Bearer "})
    assert resp.status_code == 200, resp.text
    voices = resp.json()
    short = {v["ShortName"] for v in voices}
    assert {"en-US-RmsFlite", "en-US-SltFlite", "en-US-AwbFlite", "en-US-Kal16Flite"} <= short
    assert all({"Name", "DisplayName", "Gender", "Locale", "SampleRateHertz", "VoiceType"} <= set(v) for v in voices)
    assert all("(Flite)" in v["DisplayName"] or "(eSpeak NG)" in v["DisplayName"] for v in voices), "honestly named"
    tts = requests.get(endpoint + "tts/cognitiveservices/voices/list", headers={"Ocp-Apim-Subscription-Key": key},
                       verify=ca, timeout=30)
    assert tts.status_code == 200 and tts.json() == voices


@pytest.mark.parametrize("voice", ["en-US-RmsFlite", "en-US-SltFlite", "en-US-AwbFlite", "en-US-Kal16Flite"])
def test_each_voice_speaks_what_the_recognizer_hears(speech, ca, voice):
    resp = synthesize(speech, ca, "hello world", voice)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("audio/"), resp.text
    with wave.open(io.BytesIO(resp.content)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        assert 0.4 < w.getnframes() / 16000 < 5
    endpoint, key = speech
    heard = requests.post(endpoint + "speech/recognition/conversation/cognitiveservices/v1",
                          params={"language": "en-US"}, data=resp.content, verify=ca, timeout=120,
                          headers={"Ocp-Apim-Subscription-Key": key, "Content-Type": "audio/wav"}).json()
    assert heard["RecognitionStatus"] == "Success", heard
    assert {"hello", "world"} & set(heard["DisplayText"].lower().strip(".").split()), (voice, heard)


@pytest.mark.parametrize("fmt, rate, width", [
    ("raw-8khz-16bit-mono-pcm", 8000, 2), ("raw-22050hz-16bit-mono-pcm", 22050, 2),
    ("raw-24khz-16bit-mono-pcm", 24000, 2), ("raw-48khz-16bit-mono-pcm", 48000, 2),
    ("raw-8khz-8bit-mono-mulaw", 8000, 1), ("raw-8khz-8bit-mono-alaw", 8000, 1),
])
def test_raw_formats_are_headerless_at_their_rate(speech, ca, fmt, rate, width):
    reference = synthesize(speech, ca, "one two three", fmt="riff-16khz-16bit-mono-pcm")
    with wave.open(io.BytesIO(reference.content)) as w:
        seconds = w.getnframes() / w.getframerate()
    resp = synthesize(speech, ca, "one two three", fmt=fmt)
    assert resp.status_code == 200 and not resp.content.startswith(b"RIFF"), resp.text
    assert len(resp.content) / (rate * width) == pytest.approx(seconds, rel=0.05)


def test_a_request_without_a_format_gets_riff_16khz(speech, ca):
    resp = synthesize(speech, ca, fmt=None)
    assert resp.status_code == 200 and resp.content.startswith(b"RIFF")


@pytest.mark.parametrize("kwargs, fragment", [
    ({"voice": "en-US-AvaMultilingualNeural"}, "en-US-AvaMultilingualNeural"),
    ({"ssml": "<speak><voice name='en-US-RmsFlite'>unclosed"}, "SSML"),
    ({"ssml": "just text, not SSML"}, "SSML"),
    ({"fmt": "audio-16khz-32kbitrate-mono-mp3"}, "audio-16khz-32kbitrate-mono-mp3"),
], ids=["azure-voice", "broken-xml", "not-ssml", "mp3"])
def test_what_byos_cannot_say_is_a_400_that_says_why(speech, ca, kwargs, fragment):
    resp = synthesize(speech, ca, **kwargs)
    assert resp.status_code == 400 and fragment in resp.json()["error"]["message"], resp.text


def test_prosody_rate_changes_the_length(speech, ca):
    def seconds(rate: str) -> float:
        ssml = SSML.format(voice="en-US-SltFlite", text=f"<prosody rate='{rate}'>the quick brown fox jumps</prosody>")
        with wave.open(io.BytesIO(synthesize(speech, ca, ssml=ssml).content)) as w:
            return w.getnframes() / w.getframerate()

    assert seconds("50%") > 1.5 * seconds("150%")


def test_synthesis_needs_credentials(speech, ca):
    endpoint, _ = speech
    resp = requests.post(endpoint + "cognitiveservices/v1", data=SSML.format(voice="en-US-RmsFlite", text="hi"),
                         verify=ca, timeout=30)
    assert resp.status_code == 401
