"""Text to speech batch synthesis (`/texttospeech/batchsyntheses`, api-version 2024-04-01) with the real engine (Flite
in byos's tts-worker processes): PUT with PlainText and SSML inputs (201 + Operation-Location), NotStarted -> Running ->
Succeeded, outputs.result a link to results.zip holding 0001.wav... in the asked format, summary.json and word/sentence
boundaries in Azure's documented shapes; concatenateResult; outputs kept in service storage, in the customer's storage
for a BYOS account (storage set up as the seed's text to speech section says: shared key and public access off, the
firewall open, user delegation SAS links), or in the client's destinationContainerUrl (decompressOutputFiles,
destinationPath); list/get/delete; the spec's 400s in its ErrorResponse shape; timeToLiveInHours 0 expiring at the
retention watch's next round (it runs every minute).

The module runs its own server: BYOS needs the subscription feature byoxPreview approved."""

import array
import io
import json
import time
import uuid
import wave
import zipfile
from urllib.parse import urlparse

import pytest
import requests
from azure.mgmt.storage.models import IPRule, NetworkRuleSet, ResourceAccessRule
from azure.storage.blob import ContainerSasPermissions, generate_container_sas

import byos_support as bs
import cognitive_support as cs

API = {"api-version": "2024-04-01"}
SPEECH_USER = "f2dc8367-1007-4938-bd23-fe263f013447"
SSML = "<speak version='1.0' xml:lang='en-US'><voice name='{voice}'>{text}</voice></speak>"
RAINBOW = "The rainbow has seven colors. It arches over the hills."


class Tts:
    """Batch synthesis on an account's endpoint, with one of its keys."""

    def __init__(self, endpoint: str, key: str, ca: str):
        self.endpoint, self.key, self.ca = endpoint, key, ca

    def url(self, path: str) -> str:
        return f"{self.endpoint}texttospeech/{path}"

    def call(self, method: str, url: str, **kwargs) -> requests.Response:
        headers = {"Ocp-Apim-Subscription-Key": self.key, **kwargs.pop("headers", {})}
        params = {} if "api-version=" in url else {**API, **kwargs.pop("params", {})}
        return requests.request(method, url, headers=headers, params=params, verify=self.ca, timeout=60, **kwargs)

    def put(self, job_id: str, body: dict, **kwargs) -> requests.Response:
        return self.call("PUT", self.url(f"batchsyntheses/{job_id}"), json=body, **kwargs)

    def get(self, job_id: str) -> requests.Response:
        return self.call("GET", self.url(f"batchsyntheses/{job_id}"))

    def delete(self, job_id: str) -> requests.Response:
        return self.call("DELETE", self.url(f"batchsyntheses/{job_id}"))

    def wait(self, job_id: str, timeout: float = 180.0) -> dict:
        return bs.poll(lambda: self.get(job_id).json(), lambda d: d.get("status") in ("Succeeded", "Failed"),
                       timeout=timeout, interval=0.5)

    def run(self, body: dict, job_id: str | None = None) -> dict:
        job_id = job_id or f"job-{uuid.uuid4().hex[:12]}"
        resp = self.put(job_id, body)
        assert resp.status_code == 201, resp.text
        created = resp.json()
        assert created["id"] == job_id and created["status"] in ("NotStarted", "Running", "Succeeded"), created
        done = self.wait(job_id)
        assert done["status"] == "Succeeded", done
        return done


@pytest.fixture(scope="module")
def own(byos_bin, tmp_path_factory):
    yield from bs.module_server(byos_bin, tmp_path_factory.mktemp("byos-tts-batch"))


@pytest.fixture(scope="module")
def world(own):
    """A Speech account, a BYOS Speech account with its storage set up for text to speech, and a storage account
    for destination containers."""
    boot = own.boot
    admin = bs.admin_credential(boot)
    bs.features_client(boot, admin).features.register("Microsoft.CognitiveServices", "byoxPreview")
    own.feature_approve("Microsoft.CognitiveServices", "byoxPreview")
    rg = bs.create_resource_group(bs.resource_client(boot, admin), boot, "ttsbatch")
    storage_client = bs.storage_client(boot, admin)
    client = cs.cognitive_client(boot, admin)
    plain = cs.create_account(client, boot, rg, "SpeechServices")
    customer = bs.create_storage_account(storage_client, boot, rg, bs.storage_account_name("ttsbyos"))
    byos = client.accounts.begin_create(rg, cs.account_name("ttsbyos"), cs.account_model(
        boot, "SpeechServices", user_owned_storage=cs.user_owned_storage(customer.id))).result()
    auth = bs.authorization_client(boot, admin)
    sub = boot["subscription_id"]
    bs.assign_role(auth, customer.id, bs.STORAGE_BLOB_DATA_CONTRIBUTOR, byos.identity.principal_id, sub=sub)
    admin_oid = bs.jwt_claims(admin.get_token("https://storage.azure.com/.default").token)["oid"]
    bs.assign_role(auth, customer.id, bs.STORAGE_BLOB_DATA_READER, admin_oid, sub=sub)
    # The seed's text to speech settings: no shared key, no public access, the firewall open (user delegation SAS).
    bs.update_storage_account(storage_client, customer, allow_blob_public_access=False, allow_shared_key_access=False)
    destination = bs.create_storage_account(storage_client, boot, rg, bs.storage_account_name("ttsdest"))
    ca = boot["ca_file"]

    def key(account) -> str:
        return client.accounts.list_keys(rg, account.name).key1

    return {"own": own, "boot": boot, "admin": admin, "auth": auth, "plain": plain, "byos_account": byos, "ca": ca,
            "customer": customer, "storage_client": storage_client, "destination": destination,
            "api": Tts(plain.properties.endpoint, key(plain), ca), "byos": Tts(byos.properties.endpoint, key(byos), ca)}


def download_zip(url: str, ca: str) -> zipfile.ZipFile:
    resp = requests.get(url, verify=ca, timeout=60)
    assert resp.status_code == 200, resp.text
    return zipfile.ZipFile(io.BytesIO(resp.content))


def check_wav(data: bytes, rate: int) -> float:
    """A valid mono 16-bit WAV at `rate` with speech in it (not silence); returns its seconds."""
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (rate, 1, 2)
        frames = w.readframes(w.getnframes())
        seconds = w.getnframes() / rate
    samples = array.array("h", frames)
    assert seconds > 0.3 and max(abs(s) for s in samples) > 1000, "speech, not silence"
    return seconds


def test_plain_text_is_spoken_into_numbered_wavs_with_a_summary_and_boundaries(world):
    api, ca = world["api"], world["ca"]
    body = {"inputKind": "PlainText", "synthesisConfig": {"voice": "en-US-SltFlite"},
            "inputs": [{"content": RAINBOW}, {"content": "Hello world."}],
            "properties": {"wordBoundaryEnabled": True, "sentenceBoundaryEnabled": True}}
    job_id = f"plain-{uuid.uuid4().hex[:8]}"
    resp = api.put(job_id, body, headers={"Operation-Id": f"op-{job_id}"})
    assert resp.status_code == 201, resp.text
    location = resp.headers["Operation-Location"]
    assert location == f"{api.endpoint}texttospeech/operations/op-{job_id}?api-version=2024-04-01"
    created = resp.json()
    assert created["properties"]["timeToLiveInHours"] == 744
    assert created["properties"]["outputFormat"] == "riff-24khz-16bit-mono-pcm", "Azure's default"
    done = api.wait(job_id)
    assert done["status"] == "Succeeded", done
    props = done["properties"]
    assert (props["succeededAudioCount"], props["failedAudioCount"]) == (2, 0), props
    assert props["durationInMilliseconds"] > 1000 and props["sizeInBytes"] > 0, props
    assert api.call("GET", location).json() == {"id": f"op-{job_id}", "status": "Succeeded"}
    assert "token=" in done["outputs"]["result"], "service storage: a link carrying a token for that one artifact"
    archive = download_zip(done["outputs"]["result"], ca)
    names = set(archive.namelist())
    assert {"0001.wav", "0002.wav", "0001.word.json", "0001.sentence.json", "summary.json"} <= names, names
    first = check_wav(archive.read("0001.wav"), 24000)
    second = check_wav(archive.read("0002.wav"), 24000)
    assert first > second, "the longer text takes longer"
    words = json.loads(archive.read("0001.word.json"))
    assert all(set(w) == {"Text", "AudioOffset", "Duration"} for w in words), words
    assert "rainbow" in [w["Text"].lower() for w in words], words
    assert [w["AudioOffset"] for w in words] == sorted(w["AudioOffset"] for w in words)
    sentences = json.loads(archive.read("0001.sentence.json"))
    assert [s["Text"] for s in sentences] == ["The rainbow has seven colors.", "It arches over the hills."], sentences
    summary = json.loads(archive.read("summary.json"))
    assert summary["jobID"] == job_id and summary["status"] == "Succeeded"
    assert [r["audioFileName"] for r in summary["results"]] == ["0001.wav", "0002.wav"]
    assert summary["results"][0]["contents"] == [RAINBOW] and summary["results"][0]["status"] == "Succeeded"
    assert int(summary["results"][0]["properties"]["sizeInBytes"]) == len(archive.read("0001.wav"))


def test_ssml_inputs_in_another_format_and_concatenated(world):
    api, ca = world["api"], world["ca"]
    inputs = [{"content": SSML.format(voice="en-US-RmsFlite", text="one two three")},
              {"content": SSML.format(voice="en-US-AwbFlite", text="four five six")}]
    separate = api.run({"inputKind": "SSML", "inputs": inputs,
                        "properties": {"outputFormat": "riff-16khz-16bit-mono-pcm"}})
    archive = download_zip(separate["outputs"]["result"], ca)
    lengths = [check_wav(archive.read(n), 16000) for n in ("0001.wav", "0002.wav")]
    assert "0001.word.json" not in archive.namelist(), "boundaries only when asked for"
    joined = api.run({"inputKind": "SSML", "inputs": inputs,
                      "properties": {"outputFormat": "riff-16khz-16bit-mono-pcm", "concatenateResult": True,
                                     "wordBoundaryEnabled": True}})
    archive = download_zip(joined["outputs"]["result"], ca)
    assert sorted(archive.namelist()) == ["0001.wav", "0001.word.json", "summary.json"], archive.namelist()
    together = check_wav(archive.read("0001.wav"), 16000)
    assert together == pytest.approx(sum(lengths), abs=0.05)
    words = [w["Text"].lower() for w in json.loads(archive.read("0001.word.json"))]
    assert words[:3] == ["one", "two", "three"] and "six" in words, words
    assert joined["properties"]["succeededAudioCount"] == 2


def test_list_get_and_delete(world):
    api, ca = world["api"], world["ca"]
    body = {"inputKind": "PlainText", "synthesisConfig": {"voice": "en-US-RmsFlite"}, "inputs": [{"content": "hi"}],
            "description": "listed"}
    ids = [f"list-{i}-{uuid.uuid4().hex[:6]}" for i in range(2)]
    jobs = [api.run(body, job_id) for job_id in ids]
    assert all(j["description"] == "listed" for j in jobs)
    first = api.call("GET", api.url("batchsyntheses"), params={"maxpagesize": 1}).json()
    assert len(first["value"]) == 1 and "skip=1" in first["nextLink"], first
    assert first["value"][0]["id"] == ids[1], "newest first"
    seen, page = [first["value"][0]["id"]], first
    while "nextLink" in page:
        page = api.call("GET", page["nextLink"]).json()
        seen.extend(j["id"] for j in page["value"])
    assert set(ids) <= set(seen) and len(seen) == len(set(seen)), seen
    link = jobs[0]["outputs"]["result"]
    assert requests.get(link, verify=ca, timeout=30).status_code == 200
    assert api.delete(ids[0]).status_code == 204
    gone = api.get(ids[0])
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "NotFound", gone.text
    assert requests.get(link, verify=ca, timeout=30).status_code == 404, "its outputs went with it"
    assert api.delete(ids[0]).status_code == 204, "deleting what is gone is no error"


def test_byos_outputs_are_in_the_customers_storage_behind_user_delegation_sas(world):
    byos, ca, customer = world["byos"], world["ca"], world["customer"]
    service = bs.blob_service(customer.blob_url, world["admin"], ca)
    container = service.get_container_client("batchsynthesis-output")
    body = {"inputKind": "PlainText", "synthesisConfig": {"voice": "en-US-Kal16Flite"},
            "inputs": [{"content": "stored in my own account"}]}
    done = byos.run(body)
    link = done["outputs"]["result"]
    assert link.startswith(f"{customer.blob_url}batchsynthesis-output/{done['id']}/results.zip?"), link
    assert "skoid=" in link and "sig=" in link, "a user delegation SAS signed through the account's identity"
    assert [b.name for b in container.list_blobs(name_starts_with=done["id"])] == [f"{done['id']}/results.zip"]
    check_wav(download_zip(link, ca).read("0001.wav"), 24000)
    unpacked = byos.run({**body, "properties": {"decompressOutputFiles": True}})
    names = sorted(b.name for b in container.list_blobs(name_starts_with=unpacked["id"]))
    assert names == [f"{unpacked['id']}/0001.wav", f"{unpacked['id']}/summary.json"], names
    summary = requests.get(unpacked["outputs"]["summary"], verify=ca, timeout=30)
    assert summary.status_code == 200 and summary.json()["jobID"] == unpacked["id"], summary.text
    for job in (done, unpacked):
        assert byos.delete(job["id"]).status_code == 204
        assert list(container.list_blobs(name_starts_with=job["id"])) == [], "deleting removes them from BYOS too"


PARAGRAPH = "the weather will be sunny tomorrow. please call me in the morning. we will meet at the station at noon."


def test_round_trip_batch_synthesis_in_byos_then_the_speech_sdk_recognizes_it(world, tmp_path):
    """End to end on the seed's text to speech setup: a paragraph synthesized by a batch job into the customer's
    storage, read back through its user delegation SAS link, and recognized by Microsoft's Speech SDK (continuous):
    the words come back."""
    import threading

    import azure.cognitiveservices.speech as speechsdk

    done = world["byos"].run({"inputKind": "PlainText", "synthesisConfig": {"voice": "en-US-RmsFlite"},
                              "inputs": [{"content": PARAGRAPH}],
                              "properties": {"outputFormat": "riff-16khz-16bit-mono-pcm"}})
    assert done["status"] == "Succeeded", done
    wav = tmp_path / "paragraph.wav"
    wav.write_bytes(download_zip(done["outputs"]["result"], world["ca"]).read("0001.wav"))
    endpoint = world["plain"].properties.endpoint
    cfg = speechsdk.SpeechConfig(host=endpoint.replace("https://", "wss://").rstrip("/"), subscription=world["api"].key)
    with open(world["ca"]) as f:
        cfg.set_property_by_name("OPENSSL_SINGLE_TRUSTED_CERT", f.read())
    recognizer = speechsdk.SpeechRecognizer(speech_config=cfg, audio_config=speechsdk.audio.AudioConfig(filename=str(wav)))
    texts, stopped = [], threading.Event()
    recognizer.recognized.connect(lambda e: texts.append(e.result.text))
    recognizer.session_stopped.connect(lambda e: stopped.set())
    recognizer.canceled.connect(lambda e: stopped.set())
    recognizer.start_continuous_recognition()
    assert stopped.wait(120)
    recognizer.stop_continuous_recognition()
    said = PARAGRAPH.replace(".", "").split()
    heard = set(" ".join(texts).lower().replace(".", "").replace(",", "").split())
    assert sum(w in heard for w in said) / len(said) >= 0.6, texts
    assert world["byos"].delete(done["id"]).status_code == 204


def test_a_closed_firewall_lets_the_account_write_but_refuses_the_links_reader(world):
    """Why the seed opens the firewall for text to speech: the account still writes its outputs as its identity
    (a resource-instance rule), but the user delegation SAS link is read over the network, which the firewall
    refuses from anywhere it does not allow."""
    byos, ca, boot = world["byos"], world["ca"], world["boot"]
    client_ip = "127.0.0.2"
    closed = NetworkRuleSet(default_action="Deny", bypass="None", ip_rules=[IPRule(ip_address_or_range=client_ip)],
                            resource_access_rules=[ResourceAccessRule(tenant_id=boot["tenant_id"],
                                                                      resource_id=world["byos_account"].id)])
    bs.update_storage_account(world["storage_client"], world["customer"], network_rule_set=closed)
    try:
        done = byos.run({"inputKind": "PlainText", "synthesisConfig": VOICE, "inputs": [{"content": "behind a wall"}]})
        link = done["outputs"]["result"]
        bs.expect_blob_refusal(lambda: bs.blob_at(link, None, ca).download_blob().readall(), statuses=(403,))
        allowed = bs.blob_at(link, None, ca, source_ip=client_ip).download_blob().readall()
        assert "0001.wav" in zipfile.ZipFile(io.BytesIO(allowed)).namelist()
    finally:
        bs.update_storage_account(world["storage_client"], world["customer"],
                                  network_rule_set=NetworkRuleSet(default_action="Allow"))


def test_outputs_go_to_the_destination_container(world):
    api, ca, dest = world["api"], world["ca"], world["destination"]
    service = bs.blob_service(dest.blob_url, dest.shared_key(), ca)
    container = bs.new_container(service, "tts")
    sas = generate_container_sas(dest.name, container.container_name, account_key=dest.keys["key1"],
                                 permission=ContainerSasPermissions(write=True, create=True), expiry=bs.utc_in(hours=1))
    url = f"{container.url}?{sas}"
    body = {"inputKind": "SSML", "inputs": [{"content": SSML.format(voice="en-US-SltFlite", text="to your container")}]}
    zipped = api.run({**body, "properties": {"destinationContainerUrl": url}})
    assert zipped["outputs"] == {"result": f"{zipped['id']}/results.zip"}, "a path in the container, as Azure gives"
    assert "destinationContainerUrl" not in zipped["properties"], "the SAS is never repeated"
    archive = zipfile.ZipFile(io.BytesIO(container.download_blob(zipped["outputs"]["result"]).readall()))
    check_wav(archive.read("0001.wav"), 24000)
    unpacked = api.run({**body, "properties": {"destinationContainerUrl": url, "destinationPath": "batch/out",
                                               "decompressOutputFiles": True}})
    folder = f"batch/out/{unpacked['id']}"
    assert unpacked["outputs"] == {"result": folder, "summary": f"{folder}/summary.json"}, unpacked["outputs"]
    names = sorted(b.name for b in container.list_blobs(name_starts_with=folder))
    assert names == [f"{folder}/0001.wav", f"{folder}/summary.json"], names
    check_wav(container.download_blob(f"{folder}/0001.wav").readall(), 24000)
    assert api.delete(unpacked["id"]).status_code == 204
    assert len(list(container.list_blobs(name_starts_with=folder))) == 2, "the client's container is left alone"


def test_a_destination_that_refuses_fails_the_job(world):
    api, dest, ca = world["api"], world["destination"], world["ca"]
    container = bs.new_container(bs.blob_service(dest.blob_url, dest.shared_key(), ca), "ro")
    sas = generate_container_sas(dest.name, container.container_name, account_key=dest.keys["key1"],
                                 permission=ContainerSasPermissions(read=True), expiry=bs.utc_in(hours=1))
    job_id = f"ro-{uuid.uuid4().hex[:8]}"
    body = {"inputKind": "PlainText", "synthesisConfig": {"voice": "en-US-RmsFlite"}, "inputs": [{"content": "no"}],
            "properties": {"destinationContainerUrl": f"{container.url}?{sas}"}}
    assert api.put(job_id, body).status_code == 201
    done = api.wait(job_id)
    assert done["status"] == "Failed" and "destinationContainerUrl" in done["properties"]["error"]["message"], done
    assert "sig=" not in json.dumps(done), "the SAS is never repeated"


VOICE = {"voice": "en-US-RmsFlite"}


@pytest.mark.parametrize("job_id, body, says", [
    ("unknown-voice", {"inputKind": "PlainText", "synthesisConfig": {"voice": "en-US-JennyNeural"},
                       "inputs": [{"content": "hi"}]}, "en-US-SltFlite"),
    ("bad-ssml", {"inputKind": "SSML", "inputs": [{"content": "<speak><voice name='en-US-RmsFlite'>hi"}]},
     "Input 1 cannot be synthesized"),
    ("ssml-voice", {"inputKind": "SSML", "inputs": [{"content": SSML.format(voice="en-US-AvaNeural", text="hi")}]},
     "en-US-AvaNeural"),
    ("bad-format", {"inputKind": "PlainText", "synthesisConfig": VOICE, "inputs": [{"content": "hi"}],
                    "properties": {"outputFormat": "audio-24khz-48kbitrate-mono-mp3"}}, "outputFormat"),
    ("no-inputs", {"inputKind": "SSML"}, "inputs is required"),
    ("no-voice", {"inputKind": "PlainText", "inputs": [{"content": "hi"}]}, "synthesisConfig.voice"),
    ("long-ttl", {"inputKind": "PlainText", "synthesisConfig": VOICE, "inputs": [{"content": "hi"}],
                  "properties": {"timeToLiveInHours": 745}}, "timeToLiveInHours"),
    ("-bad-id", {"inputKind": "PlainText", "synthesisConfig": VOICE, "inputs": [{"content": "hi"}]}, "is not valid"),
])
def test_bad_requests_are_refused_in_the_specs_error_shape_and_create_nothing(world, job_id, body, says):
    api = world["api"]
    resp = api.put(job_id, body)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["code"] == "BadRequest" and says in error["message"], error
    assert resp.headers["x-ms-error-code"] == "BadRequest"
    assert api.get(job_id).status_code == 404


def test_a_duplicate_id_and_a_missing_api_version_are_refused(world):
    api = world["api"]
    body = {"inputKind": "PlainText", "synthesisConfig": VOICE, "inputs": [{"content": "once"}]}
    job_id = f"dup-{uuid.uuid4().hex[:8]}"
    assert api.put(job_id, body).status_code == 201
    again = api.put(job_id, body)
    assert again.status_code == 400 and "already exists" in again.json()["error"]["message"], again.text
    api.wait(job_id)
    bare = requests.get(api.url(f"batchsyntheses/{job_id}"), headers={"Ocp-Apim-Subscription-Key": api.key},
                        verify=api.ca, timeout=30)
    assert bare.status_code == 400 and "api-version" in bare.json()["error"]["message"], bare.text
    stranger = requests.get(api.url(f"batchsyntheses/{job_id}"), params=API, verify=api.ca, timeout=30,
                            headers={"Ocp-Apim-Subscription-Key": "0" * 32})
    assert stranger.status_code == 401


def test_a_job_past_its_time_to_live_is_deleted_with_its_outputs(world):
    byos, ca = world["byos"], world["ca"]
    container = bs.blob_service(world["customer"].blob_url, world["admin"], ca).get_container_client(
        "batchsynthesis-output")
    body = {"inputKind": "PlainText", "synthesisConfig": VOICE, "inputs": [{"content": "short lived"}]}
    kept = byos.run({**body, "properties": {"timeToLiveInHours": 1}})
    done = byos.run({**body, "properties": {"timeToLiveInHours": 0}})
    assert done["properties"]["timeToLiveInHours"] == 0
    # The retention watch runs every minute: the job goes at its next round.
    deadline = time.monotonic() + 90
    while byos.get(done["id"]).status_code == 200 and time.monotonic() < deadline:
        time.sleep(2)
    assert byos.get(done["id"]).status_code == 404, "expired"
    assert list(container.list_blobs(name_starts_with=done["id"])) == [], "its outputs in BYOS storage went too"
    assert byos.get(kept["id"]).status_code == 200, "a job within its time to live is kept"
    assert [b.name for b in container.list_blobs(name_starts_with=kept["id"])] == [f"{kept['id']}/results.zip"]


def test_a_job_deleted_while_it_runs_stops_and_its_id_can_be_used_again(world):
    api, ca = world["api"], world["ca"]
    job_id = f"again-{uuid.uuid4().hex[:8]}"
    long = {"inputKind": "PlainText", "synthesisConfig": VOICE,
            "inputs": [{"content": f"sentence number {i} of a long batch"} for i in range(40)]}
    assert api.put(job_id, long).status_code == 201
    assert api.delete(job_id).status_code == 204
    short = {"inputKind": "PlainText", "synthesisConfig": VOICE, "inputs": [{"content": "the second job"}]}
    done = api.run(short, job_id)
    assert done["properties"]["succeededAudioCount"] == 1, done
    summary = json.loads(download_zip(done["outputs"]["result"], ca).read("summary.json"))
    assert [r["contents"] for r in summary["results"]] == [["the second job"]], summary
    time.sleep(3)  # the first job, had it gone on, would have finished over the second by now
    again = api.get(job_id).json()
    assert again["createdDateTime"] == done["createdDateTime"] and again["properties"]["succeededAudioCount"] == 1
    assert requests.get(again["outputs"]["result"], verify=ca, timeout=30).status_code == 200


def test_batch_synthesis_needs_the_batch_text_to_speech_data_actions(world):
    """An Entra principal is admitted by its roles: none refuses, Cognitive Services Speech User (BatchTextToSpeech/*)
    admits; no credential at all is 401."""
    api, boot, own = world["api"], world["boot"], world["own"]
    url = api.url("batchsyntheses")
    assert requests.get(url, params=API, verify=api.ca, timeout=30).status_code == 401

    def principal(name: str) -> dict:
        info = own.create_principal(bs.unique(f"byos-test-{name}"))
        credential = bs.client_secret_credential(boot, info["client_id"], info["client_secret"])
        token = credential.get_token("https://cognitiveservices.azure.com/.default").token
        return {"object_id": info["object_id"], "headers": {"Authorization": f"Bearer {token}"}}

    nobody = principal("tts-none")
    refused = requests.get(url, params=API, headers=nobody["headers"], verify=api.ca, timeout=30)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "PermissionDenied", refused.text
    assert "BatchTextToSpeech/batchsyntheses/read" in refused.json()["error"]["message"]
    user = principal("tts-user")
    bs.assign_role(world["auth"], world["plain"].id, SPEECH_USER, user["object_id"], sub=boot["subscription_id"])
    body = {"inputKind": "PlainText", "synthesisConfig": VOICE, "inputs": [{"content": "by role"}]}
    job_id = f"entra-{uuid.uuid4().hex[:8]}"
    created = requests.put(f"{url}/{job_id}", params=API, json=body, headers=user["headers"], verify=api.ca,
                           timeout=30)
    assert created.status_code == 201, created.text
    assert api.wait(job_id)["status"] == "Succeeded"


def test_a_job_a_restart_interrupts_starts_over_and_finishes(world):
    """Last in the module: it restarts the server."""
    own, byos = world["own"], world["byos"]
    job_id = f"crash-{uuid.uuid4().hex[:8]}"
    body = {"inputKind": "PlainText", "synthesisConfig": VOICE,
            "inputs": [{"content": f"this is input number {i}"} for i in range(30)]}
    assert byos.put(job_id, body).status_code == 201
    running = bs.poll(lambda: byos.get(job_id).json(), lambda j: j["status"] == "Running", interval=0.05)
    assert running["status"] == "Running", running
    ports = (urlparse(world["boot"]["resource_manager"]).port, urlparse(world["customer"].blob_url).port)
    own.kill()
    boot = own.start(ports=ports)
    byos = Tts(byos.endpoint, byos.key, boot["ca_file"])
    done = byos.wait(job_id, timeout=600)
    assert done["status"] == "Succeeded" and done["properties"]["succeededAudioCount"] == 30, done
    names = download_zip(done["outputs"]["result"], boot["ca_file"]).namelist()
    assert sorted(n for n in names if n.endswith(".wav")) == [f"{i:04}.wav" for i in range(1, 31)], names
