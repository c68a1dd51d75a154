"""Speech to text on a BYOS Speech account whose storage is locked down as the seed says (no public access, no shared
key, firewall default Deny with a resource-instance rule for the Speech account and an IP rule for the customer's own
client at 127.0.0.2): batch transcription reads audio already in the customer's storage as the account's identity (no
SAS), writes its results into `customspeech-artifacts/TranscriptionData/`, and hands out user delegation SAS links
(plain URLs with sasValidityInSeconds=0, and in 2024-11-15) that azure-storage-blob reads. Then the chain is broken
(role, firewall rule) and each break fails the job cleanly with InaccessibleCustomerStorage and the explanation. Last,
a server killed in the middle of a job starts it over and finishes it.

The module runs its own server: BYOS needs the subscription feature byoxPreview approved."""

import json
import subprocess
import time
from urllib.parse import urlparse

import pytest
import requests
from azure.mgmt.storage.models import IPRule, NetworkRuleSet, ResourceAccessRule

import byos_support as bs
import cognitive_support as cs

CLIENT_IP = "127.0.0.2"
SENTENCES = ["the quick brown fox jumps over the lazy dog", "please call me tomorrow morning"]


def flite(text: str, tmp_path, voice: str = "slt") -> bytes:
    out = tmp_path / "speech.wav"
    subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(out)], check=True, timeout=60)
    return out.read_bytes()


def overlap(expected: str, heard: str) -> float:
    said, got = expected.lower().split(), set(heard.lower().replace(".", "").split())
    return sum(w in got for w in said) / len(said)


@pytest.fixture(scope="module")
def own(byos_bin, tmp_path_factory):
    yield from bs.module_server(byos_bin, tmp_path_factory.mktemp("byos-stt"))


@pytest.fixture(scope="module")
def world(own, tmp_path_factory):
    """The BYOS Speech account, its locked-down storage with the audio in it, and the clients to look at both."""
    boot = own.boot
    admin = bs.admin_credential(boot)
    features = bs.features_client(boot, admin)
    features.features.register("Microsoft.CognitiveServices", "byoxPreview")
    own.feature_approve("Microsoft.CognitiveServices", "byoxPreview")
    rg = bs.create_resource_group(bs.resource_client(boot, admin), boot, "stt")
    storage_client = bs.storage_client(boot, admin)
    storage = bs.create_storage_account(storage_client, boot, rg, bs.storage_account_name("stt"))
    tmp = tmp_path_factory.mktemp("audio")
    service = bs.blob_service(storage.blob_url, storage.shared_key(), boot["ca_file"])
    audio = service.create_container("audio")
    for i, text in enumerate(SENTENCES):
        audio.upload_blob(f"speech{i}.wav", flite(text, tmp))
    many = service.create_container("many")
    spoken = flite("one two three four five", tmp)
    for i in range(60):
        many.upload_blob(f"n{i:02}.wav", spoken)
    client = cs.cognitive_client(boot, admin)
    account = client.accounts.begin_create(rg, cs.account_name("stt"), cs.account_model(
        boot, "SpeechServices", user_owned_storage=cs.user_owned_storage(storage.id))).result()
    auth = bs.authorization_client(boot, admin)
    sub = boot["subscription_id"]
    role = bs.assign_role(auth, storage.id, bs.STORAGE_BLOB_DATA_CONTRIBUTOR, account.identity.principal_id, sub=sub)
    admin_oid = bs.jwt_claims(admin.get_token("https://storage.azure.com/.default").token)["oid"]
    bs.assign_role(auth, storage.id, bs.STORAGE_BLOB_DATA_READER, admin_oid, sub=sub)
    rules = NetworkRuleSet(default_action="Deny", bypass="None", ip_rules=[IPRule(ip_address_or_range=CLIENT_IP)],
                           resource_access_rules=[ResourceAccessRule(tenant_id=boot["tenant_id"],
                                                                     resource_id=account.id)])
    bs.update_storage_account(storage_client, storage, allow_blob_public_access=False, allow_shared_key_access=False,
                              network_rule_set=rules)
    key = client.accounts.list_keys(rg, account.name).key1
    return {"boot": boot, "admin": admin, "rg": rg, "storage": storage, "storage_client": storage_client,
            "account": account, "api": cs.SpeechRest(account.properties.endpoint, key, boot["ca_file"]),
            "auth": auth, "role": role, "rules": rules, "key": key}


def plain_url(world, container: str, blob: str = "") -> str:
    return f"{world['storage'].blob_url}{container}" + (f"/{blob}" if blob else "")


def customer_blobs(world, prefix: str) -> list[str]:
    """What is in the customer's customspeech-artifacts container, looked at from the customer's own client."""
    service = bs.blob_service(world["storage"].blob_url, world["admin"], world["boot"]["ca_file"], source_ip=CLIENT_IP)
    return [b.name for b in service.get_container_client("customspeech-artifacts").list_blobs(name_starts_with=prefix)]


def submit(api, body: dict) -> dict:
    resp = api.post("transcriptions", json={"displayName": "byos", "locale": "en-US", **body})
    assert resp.status_code == 201, resp.text
    return api.wait(resp.json()["self"])


def read_through_link(world, link: str) -> bytes:
    blob = bs.blob_at(link, None, world["boot"]["ca_file"], source_ip=CLIENT_IP)
    return blob.download_blob().readall()


def test_shared_key_and_anonymous_reads_are_refused_by_the_locked_storage(world):
    boot, storage = world["boot"], world["storage"]
    bs.expect_blob_refusal(lambda: bs.read_blob(bs.blob_service(storage.blob_url, storage.shared_key(), boot["ca_file"],
                                                                source_ip=CLIENT_IP), "audio", "speech0.wav"))
    bs.expect_blob_refusal(lambda: bs.read_blob(bs.blob_service(storage.blob_url, world["admin"], boot["ca_file"]),
                                                "audio", "speech0.wav"))


def test_batch_reads_the_customers_audio_as_the_identity_and_keeps_results_in_the_customers_storage(world):
    api = world["api"]
    urls = [plain_url(world, "audio", f"speech{i}.wav") for i in range(len(SENTENCES))]
    done = submit(api, {"contentUrls": urls})
    assert done["status"] == "Succeeded", done
    job = done["self"].rsplit("/", 1)[1]
    stored = customer_blobs(world, f"TranscriptionData/{job}")
    assert sorted(stored) == sorted([f"TranscriptionData/{job}_0_0.json", f"TranscriptionData/{job}_1_0.json",
                                     f"TranscriptionData/{job}_report.json"]), stored
    files = api.get(done["links"]["files"]).json()["values"]
    results = [f for f in files if f["kind"] == "Transcription"]
    for f in results:
        link = f["links"]["contentUrl"]
        assert "skoid=" in link and "sig=" in link, "a user delegation SAS signed through the account's identity"
        result = json.loads(read_through_link(world, link))
        i = int(result["source"].rsplit("speech", 1)[1].split(".")[0])
        assert overlap(SENTENCES[i], result["combinedRecognizedPhrases"][0]["lexical"]) >= 0.5, result
    plain = api.get(results[0]["self"], params={"sasValidityInSeconds": 0}).json()["links"]["contentUrl"]
    assert "?" not in plain and plain.startswith(world["storage"].blob_url)
    reader = bs.blob_at(plain, world["admin"], world["boot"]["ca_file"], source_ip=CLIENT_IP)
    assert b"recognizedPhrases" in reader.download_blob().readall()
    v2024 = api._call("GET", f"{api.endpoint}speechtotext/transcriptions/{job}/files",
                      params={"api-version": "2024-11-15"}).json()["values"]
    assert all("?" not in f["links"]["contentUrl"] for f in v2024), "2024-11-15 gives BYOS accounts plain URLs"
    assert api.delete(done["self"]).status_code == 204
    assert customer_blobs(world, f"TranscriptionData/{job}") == [], "deleting the job deletes its files in BYOS too"


def test_a_container_of_the_customers_storage_is_listed_as_the_identity(world):
    done = submit(world["api"], {"contentContainerUrl": plain_url(world, "audio")})
    assert done["status"] == "Succeeded", done
    report = next(f for f in world["api"].get(done["links"]["files"]).json()["values"]
                  if f["kind"] == "TranscriptionReport")
    body = json.loads(read_through_link(world, report["links"]["contentUrl"]))
    assert body["successfulTranscriptionsCount"] == len(SENTENCES), body


def _fails_inaccessible(world, fragment: str) -> None:
    done = submit(world["api"], {"contentUrls": [plain_url(world, "audio", "speech0.wav")]})
    assert done["status"] == "Failed", done
    error = done["properties"]["error"]
    assert error["code"] == "InaccessibleCustomerStorage" and fragment in error["message"].lower(), error


def test_without_its_role_the_job_fails_cleanly_and_says_why(world):
    auth, role = world["auth"], world["role"]
    auth.role_assignments.delete(world["storage"].id, role.name)
    try:
        _fails_inaccessible(world, "role")
    finally:
        world["role"] = bs.assign_role(auth, world["storage"].id, bs.STORAGE_BLOB_DATA_CONTRIBUTOR,
                                       world["account"].identity.principal_id, sub=world["boot"]["subscription_id"])
    assert submit(world["api"], {"contentUrls": [plain_url(world, "audio", "speech0.wav")]})["status"] == "Succeeded"


def test_without_its_resource_instance_rule_the_job_fails_cleanly_and_says_why(world):
    only_ip = NetworkRuleSet(default_action="Deny", bypass="None", ip_rules=[IPRule(ip_address_or_range=CLIENT_IP)],
                             resource_access_rules=[])
    bs.update_storage_account(world["storage_client"], world["storage"], network_rule_set=only_ip)
    try:
        _fails_inaccessible(world, "firewall")
    finally:
        bs.update_storage_account(world["storage_client"], world["storage"], network_rule_set=world["rules"])


def test_revoking_the_storage_accounts_customer_managed_key_fails_the_job_cleanly(world):
    from azure.core.exceptions import HttpResponseError
    from azure.mgmt.storage.models import Identity as StorageIdentity

    boot, admin, auth = world["boot"], world["admin"], world["auth"]
    sub = boot["subscription_id"]
    vault = bs.create_vault(bs.keyvault_mgmt_client(boot, admin), boot, world["rg"], bs.vault_name("stt"),
                            enable_rbac_authorization=True, enable_purge_protection=True,
                            soft_delete_retention_in_days=7, access_policies=[])
    bs.assign_role(auth, vault.id, bs.KEY_VAULT_CRYPTO_OFFICER, boot["admin"]["object_id"], sub=sub)
    keys = bs.key_client(vault.uri, admin, boot["ca_file"])
    key = bs.poll(lambda: keys.create_rsa_key(bs.unique("cmk"), size=2048), lambda k: not isinstance(k, Exception),
                  ignore=(HttpResponseError,))
    storage = bs.update_storage_account(world["storage_client"], world["storage"],
                                        identity=StorageIdentity(type="SystemAssigned"))
    grant = bs.assign_role(auth, vault.id, bs.KEY_VAULT_CRYPTO_SERVICE_ENCRYPTION_USER,
                           storage.identity.principal_id, sub=sub)
    bs.enable_cmk(world["storage_client"], world["storage"], vault, key.name)
    source = {"contentUrls": [plain_url(world, "audio", "speech0.wav")]}
    try:
        assert submit(world["api"], source)["status"] == "Succeeded", "the customer's key protects the results"
        auth.role_assignments.delete(vault.id, grant.name)
        time.sleep(1.5)  # the key protector's cache (1 s on test servers)
        _fails_inaccessible(world, "customer-managed key")
    finally:
        bs.assign_role(auth, vault.id, bs.KEY_VAULT_CRYPTO_SERVICE_ENCRYPTION_USER, storage.identity.principal_id,
                       sub=sub)
        time.sleep(1.5)
    assert submit(world["api"], source)["status"] == "Succeeded", "the key given back, the chain works again"


def test_the_identity_of_a_byos_account_cannot_be_taken_away(world):
    client = cs.cognitive_client(world["boot"], world["admin"])
    account = world["account"]
    model = cs.account_model(world["boot"], "SpeechServices", identity="None",
                             user_owned_storage=cs.user_owned_storage(world["storage"].id))
    bs.expect_arm_error(lambda: client.accounts.begin_create(world["rg"], account.name, model).result(), 400,
                        "InvalidIdentity")


def customer_blobs_in(world, container: str, prefix: str = "") -> list[str]:
    service = bs.blob_service(world["storage"].blob_url, world["admin"], world["boot"]["ca_file"], source_ip=CLIENT_IP)
    client = service.get_container_client(container)
    if not client.exists():
        return []
    return [b.name for b in client.list_blobs(name_starts_with=prefix)]


def every_customer_blob(world) -> set[str]:
    service = bs.blob_service(world["storage"].blob_url, world["admin"], world["boot"]["ca_file"], source_ip=CLIENT_IP)
    return {f"{c.name}/{b.name}" for c in service.list_containers()
            for b in service.get_container_client(c.name).list_blobs()}


def recognize(api, audio: bytes, cid: str | None = None):
    params = {"language": "en-US", **({"cid": cid} if cid else {})}
    return requests.post(api.endpoint + "speech/recognition/conversation/cognitiveservices/v1", params=params,
                         data=audio, verify=api.ca, timeout=120,
                         headers={"Ocp-Apim-Subscription-Key": api.key, "Content-Type": "audio/wav"})


def test_endpoint_logs_land_in_the_customers_audiologs_container(world, tmp_path):
    api = world["api"]
    base = api.get(api.url("models/base")).json()["values"][0]["self"]
    endpoint = api.post("endpoints", json={"displayName": "logged", "locale": "en-US", "model": {"self": base},
                                           "properties": {"loggingEnabled": True}}).json()
    cid = endpoint["self"].rsplit("/", 1)[1]
    audio = flite("log this please", tmp_path)
    assert recognize(api, audio, cid).status_code == 200
    folder = cid.replace("-", "") + "/en-US/"
    logged = customer_blobs_in(world, "customspeech-audiologs", folder)
    assert len(logged) == 2 and {n.rsplit(".", 1)[-1] for n in logged} == {"wav", "json"}, logged
    assert all(len(n.split("/")[2]) == 10 and n.split("/")[3][6] == "_" for n in logged), "the seed's layout"
    files = api.get(endpoint["self"] + "/files/logs").json()["values"]
    wav = next(f for f in files if f["kind"] == "Audio")
    assert "skoid=" in wav["links"]["contentUrl"] and read_through_link(world, wav["links"]["contentUrl"]) == audio
    assert api.delete(endpoint["self"]).status_code == 204
    assert customer_blobs_in(world, "customspeech-audiologs", folder) == []


def test_a_custom_model_of_a_byos_account_is_kept_in_customspeech_models(world):
    api = world["api"]
    language = api.wait(api.upload("Language", b"check the datavault logs\nopen the datavault dashboard\n").json()["self"])
    assert language["status"] == "Succeeded", language
    resp = api.post("models", json={"displayName": "byos", "locale": "en-US", "datasets": [{"self": language["self"]}]})
    model = api.wait(resp.json()["self"])
    assert model["status"] == "Succeeded", model
    model_id = model["self"].rsplit("/", 1)[1]
    assert sorted(customer_blobs_in(world, "customspeech-models", model_id)) == \
        [f"{model_id}/model.bin", f"{model_id}/report.json"]
    assert api.delete(model["self"]).status_code == 204
    assert customer_blobs_in(world, "customspeech-models", model_id) == []


def _data_dir_state(root) -> dict[str, str]:
    """{path: sha256} of every stored object (blob store and service-held artifacts) under the data dir."""
    import hashlib
    import os

    state = {}
    for sub in ("objects", "objects-cognitive"):
        for dirpath, _dirs, files in os.walk(root / sub):
            for name in files:
                path = os.path.join(dirpath, name)
                with open(path, "rb") as f:
                    state[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return state


def test_without_logging_or_customisation_nothing_of_the_audio_is_kept_anywhere(own, world, tmp_path):
    """The seeds' promise: a recognition (short audio, fast transcription) with logging off and no custom model keeps
    no customer data: no blob in the customer's storage, no object in byos's, no byte of it in any file byos has."""
    boot = world["boot"]
    client = cs.cognitive_client(boot, world["admin"])
    plain = client.accounts.begin_create(world["rg"], cs.account_name("plain"),
                                         cs.account_model(boot, "SpeechServices")).result()
    plain_api = cs.SpeechRest(plain.properties.endpoint, client.accounts.list_keys(world["rg"], plain.name).key1,
                              boot["ca_file"])
    audio = flite("zebras quietly juggle seven violet umbrellas", tmp_path)
    blobs, objects = every_customer_blob(world), _data_dir_state(own.data_dir)
    heard = []
    for api in (world["api"], plain_api):
        resp = recognize(api, audio)
        assert resp.status_code == 200 and resp.json()["RecognitionStatus"] == "Success", resp.text
        heard.append(resp.json()["DisplayText"])
        fast = api._call("POST", api.endpoint + "speechtotext/transcriptions:transcribe",
                         params={"api-version": "2024-11-15"},
                         files={"audio": ("a.wav", audio, "audio/wav"), "definition": (None, '{"locales":["en-US"]}')})
        assert fast.status_code == 200, fast.text
    assert every_customer_blob(world) == blobs, "nothing was written to the customer's storage"
    assert _data_dir_state(own.data_dir) == objects, "nothing was written to byos's object stores"
    pcm = audio[len(audio) // 2:len(audio) // 2 + 64]
    words = {w.strip(".").lower() for text in heard for w in text.split() if len(w) > 5}
    needles = {"audio": pcm, **{f"word {w}": w.encode() for w in words}}
    found, scanned = bs.scan_files_for(own.data_dir, needles)
    assert scanned > 0 and not any(found.values()), found


PARAGRAPH = ("the weather will be sunny tomorrow. please call me in the morning. "
             "we will meet at the station at noon.")


def sdk_config(world, endpoint_id: str | None = None):
    import azure.cognitiveservices.speech as speechsdk

    endpoint = world["account"].properties.endpoint
    cfg = speechsdk.SpeechConfig(host=endpoint.replace("https://", "wss://").rstrip("/"), subscription=world["key"])
    with open(world["boot"]["ca_file"]) as f:
        cfg.set_property_by_name("OPENSSL_SINGLE_TRUSTED_CERT", f.read())
    if endpoint_id:
        cfg.endpoint_id = endpoint_id
    return cfg


def sdk_continuous(cfg, wav) -> list[str]:
    import threading

    import azure.cognitiveservices.speech as speechsdk

    recognizer = speechsdk.SpeechRecognizer(speech_config=cfg, audio_config=speechsdk.audio.AudioConfig(filename=str(wav)))
    texts, stopped = [], threading.Event()
    recognizer.recognized.connect(
        lambda e: texts.append(e.result.text) if e.result.reason == speechsdk.ResultReason.RecognizedSpeech else None)
    recognizer.session_stopped.connect(lambda e: stopped.set())
    recognizer.canceled.connect(lambda e: stopped.set())
    recognizer.start_continuous_recognition()
    assert stopped.wait(120), "the session stopped"
    recognizer.stop_continuous_recognition()
    return texts


def test_sdk_round_trip_synthesized_then_recognized_and_logged_in_the_customers_storage(own, world, tmp_path):
    """End to end with Microsoft's Speech SDK on the locked-down BYOS account: a paragraph synthesized (socket), then
    recognized continuously with an endpoint that logs; the words come back, and the turn's audio and transcript are
    in the customer's own storage. Without the endpoint, nothing of it is kept anywhere."""
    import azure.cognitiveservices.speech as speechsdk

    cfg = sdk_config(world)
    cfg.speech_synthesis_voice_name = "en-US-RmsFlite"
    wav = tmp_path / "paragraph.wav"
    # The synthesizer must outlive its future: the SDK crashes when it is collected first.
    synthesizer = speechsdk.SpeechSynthesizer(speech_config=cfg,
                                              audio_config=speechsdk.audio.AudioOutputConfig(filename=str(wav)))
    spoken = synthesizer.speak_text_async(PARAGRAPH).get()
    assert spoken.reason == speechsdk.ResultReason.SynthesizingAudioCompleted, spoken.cancellation_details
    del synthesizer  # closes the file

    blobs, objects = every_customer_blob(world), _data_dir_state(own.data_dir)
    heard = " ".join(sdk_continuous(sdk_config(world), wav))
    assert overlap(PARAGRAPH.replace(".", ""), heard) >= 0.6, heard
    assert every_customer_blob(world) == blobs and _data_dir_state(own.data_dir) == objects, "logging off: nothing kept"

    api = world["api"]
    base = api.get(api.url("models/base")).json()["values"][0]["self"]
    endpoint = api.post("endpoints", json={"displayName": "sdk", "locale": "en-US", "model": {"self": base},
                                           "properties": {"loggingEnabled": True}}).json()
    cid = endpoint["self"].rsplit("/", 1)[1]
    logged_heard = " ".join(sdk_continuous(sdk_config(world, cid), wav))
    assert overlap(PARAGRAPH.replace(".", ""), logged_heard) >= 0.6, logged_heard
    logged = customer_blobs_in(world, "customspeech-audiologs", cid.replace("-", "") + "/en-US/")
    transcripts = [n for n in logged if n.endswith(".json")]
    assert transcripts and len(logged) == 2 * len(transcripts), logged
    service = bs.blob_service(world["storage"].blob_url, world["admin"], world["boot"]["ca_file"], source_ip=CLIENT_IP)
    container = service.get_container_client("customspeech-audiologs")
    logged_text = " ".join(container.download_blob(n).readall().decode() for n in transcripts)
    assert overlap("weather sunny morning station", logged_text) >= 0.5, logged_text
    assert api.delete(endpoint["self"]).status_code == 204


# ---- last: kills the module's server ------------------------------------------------------------------------


def test_a_job_interrupted_by_a_crash_starts_over_and_finishes(own, world):
    api = world["api"]
    resp = api.post("transcriptions", json={"displayName": "crash", "locale": "en-US",
                                            "contentContainerUrl": plain_url(world, "many")})
    assert resp.status_code == 201, resp.text
    url = resp.json()["self"]
    running = bs.poll(lambda: api.get(url).json(), lambda t: t["status"] == "Running", interval=0.05)
    assert running["status"] == "Running", running
    # The job's URLs name the blob port: the server comes back on the same ports.
    ports = (urlparse(world["boot"]["resource_manager"]).port, urlparse(world["storage"].blob_url).port)
    own.kill()
    boot = own.start(ports=ports)
    api = cs.SpeechRest(world["account"].properties.endpoint, world["key"], boot["ca_file"])
    deadline = time.monotonic() + 600
    while (status := api.get(url).json()["status"]) not in ("Succeeded", "Failed") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status == "Succeeded", api.get(url).json()["properties"]
    report = next(f for f in api.get(url + "/files").json()["values"] if f["kind"] == "TranscriptionReport")
    body = json.loads(read_through_link({**world, "boot": boot}, report["links"]["contentUrl"]))
    assert (body["successfulTranscriptionsCount"], body["failedTranscriptionsCount"]) == (60, 0), body
