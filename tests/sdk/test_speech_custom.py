"""Custom Speech that really changes recognition, on a Speech account without BYOS: a model adapted from a Language
dataset (domain sentences) and a Pronunciation dataset (product names), trained by byos (`POST /models`), scored
against the base model by an evaluation (`POST /evaluations` on an Acoustic dataset of held-out domain sentences
spoken by Flite: word error rates, counts, EvaluationDetails), and used by batch transcription (`model.self`) and by an
endpoint (`cid=`); then Azure's refusals (acoustic adaptation, foreign datasets and models, a model in use) and
copyTo. BYOS models (kept in customspeech-models of the customer's storage) are in test_speech_byos.py."""

import io
import json
import subprocess
import zipfile

import pytest
import requests

import cognitive_support as cs

PRONUNCIATIONS = "nimbleflow\tnimble flow\ndatavault\tdata vault\nbyos\tbee oh ess\n"
LANGUAGE = """open the nimbleflow dashboard
restart the nimbleflow cluster
deploy the datavault service to region west
the datavault backup finished at noon
scale the nimbleflow workers to nine
check the byos server logs
upgrade the byos server tonight
rotate the datavault keys every week
restart the byos server in region east
open the datavault dashboard
scale the byos workers to five
the nimbleflow backup finished at midnight
deploy the nimbleflow service to region east
check the datavault server logs
rotate the byos keys tonight
"""
HELD_OUT = ["restart the datavault service in region west", "open the byos server dashboard",
            "scale the datavault workers to nine", "rotate the nimbleflow keys every week",
            "check the nimbleflow cluster logs"]


def spoken(sentence: str) -> str:
    return sentence.replace("nimbleflow", "nimble flow").replace("datavault", "data vault").replace("byos", "bee oh ess")


def flite(text: str, tmp_path) -> bytes:
    out = tmp_path / "speech.wav"
    subprocess.run(["flite", "-voice", "rms", "-t", text, "-o", str(out)], check=True, timeout=60)
    return out.read_bytes()


def acoustic_zip(tmp_path) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        lines = []
        for i, sentence in enumerate(HELD_OUT):
            z.writestr(f"s{i}.wav", flite(spoken(sentence), tmp_path))
            lines.append(f"s{i}.wav\t{sentence}")
        z.writestr("trans.txt", "\n".join(lines) + "\n")
    return out.getvalue()


def new_speech(admin_cognitive, make_rg, boot, ca, tag):
    rg = make_rg(tag)
    account = cs.create_account(admin_cognitive, boot, rg, "SpeechServices")
    key = admin_cognitive.accounts.list_keys(rg, account.name).key1
    return cs.SpeechRest(account.properties.endpoint, key, ca)


@pytest.fixture(scope="module")
def api(admin_cognitive, make_rg, boot, ca):
    return new_speech(admin_cognitive, make_rg, boot, ca, "cs-custom")


def dataset(api, kind: str, data: bytes) -> dict:
    done = api.wait(api.upload(kind, data, display_name=kind).json()["self"])
    assert done["status"] == "Succeeded", done
    return done


@pytest.fixture(scope="module")
def trained(api, tmp_path_factory):
    language = dataset(api, "Language", LANGUAGE.encode())
    pronunciation = dataset(api, "Pronunciation", PRONUNCIATIONS.encode())
    resp = api.post("models", json={"displayName": "domain", "locale": "en-US",
                                    "datasets": [{"self": language["self"]}, {"self": pronunciation["self"]}]})
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert resp.headers["Location"] == created["self"] and created["status"] in ("NotStarted", "Running", "Succeeded")
    model = api.wait(created["self"])
    assert model["status"] == "Succeeded", model
    acoustic = dataset(api, "Acoustic", acoustic_zip(tmp_path_factory.mktemp("acoustic")))
    return {"model": model, "language": language, "acoustic": acoustic}


def base_model(api) -> str:
    return api.get(api.url("models/base")).json()["values"][0]["self"]


def test_a_trained_model_reports_what_it_learned(api, trained, ca):
    model = trained["model"]
    assert model["baseModel"]["self"] == base_model(api)
    assert model["properties"]["features"]["supportsTranscriptions"] is True
    files = api.get(model["links"]["files"]).json()["values"]
    assert [f["kind"] for f in files] == ["ModelReport"]
    report = requests.get(files[0]["links"]["contentUrl"], verify=ca, timeout=30).json()["training"]
    assert (report["sentences"], report["pronunciations"], report["unknown_occurrences"]) == (15, 3, 0), report
    assert model["self"] in {m["self"] for m in api.get(api.url("models")).json()["values"]}


def test_an_evaluation_shows_the_custom_model_hears_domain_speech_better(api, trained, ca):
    resp = api.post("evaluations", json={"displayName": "eval", "locale": "en-US",
                                         "dataset": {"self": trained["acoustic"]["self"]},
                                         "model1": {"self": base_model(api)},
                                         "model2": {"self": trained["model"]["self"]}})
    assert resp.status_code == 201, resp.text
    done = api.wait(resp.json()["self"])
    assert done["status"] == "Succeeded", done
    p = done["properties"]
    words = sum(len(s.split()) for s in HELD_OUT)
    assert p["sentenceCount1"] == p["sentenceCount2"] == len(HELD_OUT) and p["wordCount1"] == p["wordCount2"] == words
    for n in (1, 2):
        errors = p[f"wordSubstitutionCount{n}"] + p[f"wordDeletionCount{n}"] + p[f"wordInsertionCount{n}"]
        assert p[f"wordErrorRate{n}"] == pytest.approx(100 * errors / words, abs=0.01), p
    print(f"word error rate: base {p['wordErrorRate1']}%, custom {p['wordErrorRate2']}%")
    assert p["wordErrorRate2"] < p["wordErrorRate1"], p
    files = api.get(done["links"]["files"]).json()["values"]
    assert [f["kind"] for f in files] == ["EvaluationDetails"]
    details = requests.get(files[0]["links"]["contentUrl"], verify=ca, timeout=30).json()["audioFiles"]
    assert [d["reference"] for d in details] == HELD_OUT
    assert all({"hypothesis", "wordErrorRate"} <= set(d["model2"]) for d in details)


def test_batch_transcription_with_the_custom_model_hears_the_product_names(api, trained, shared_account, ca, tmp_path):
    from azure.storage.blob import BlobSasPermissions, generate_blob_sas

    import byos_support as bs

    service = bs.blob_service(shared_account.blob_url, shared_account.shared_key(), ca)
    container = bs.new_container(service, "custom")
    container.upload_blob("domain.wav", flite(spoken(HELD_OUT[0]), tmp_path))
    sas = generate_blob_sas(shared_account.name, container.container_name, "domain.wav",
                            account_key=shared_account.keys["key1"], permission=BlobSasPermissions(read=True),
                            expiry=bs.utc_in(hours=1))
    resp = api.post("transcriptions", json={"displayName": "custom", "locale": "en-US",
                                            "model": {"self": trained["model"]["self"]},
                                            "contentUrls": [f"{container.url}/domain.wav?{sas}"]})
    assert resp.status_code == 201, resp.text
    assert resp.json()["model"]["self"] == trained["model"]["self"]
    done = api.wait(resp.json()["self"])
    assert done["status"] == "Succeeded", done
    result = next(f for f in api.get(done["links"]["files"]).json()["values"] if f["kind"] == "Transcription")
    heard = requests.get(result["links"]["contentUrl"], verify=ca, timeout=30).json()
    assert "datavault" in heard["combinedRecognizedPhrases"][0]["lexical"], heard


def test_an_endpoint_serves_the_custom_model(api, trained, tmp_path):
    resp = api.post("endpoints", json={"displayName": "custom", "locale": "en-US",
                                       "model": {"self": trained["model"]["self"]}})
    assert resp.status_code == 201, resp.text
    endpoint = resp.json()
    cid = endpoint["self"].rsplit("/", 1)[1]
    heard = requests.post(api.endpoint + "speech/recognition/conversation/cognitiveservices/v1",
                          params={"language": "en-US", "cid": cid}, data=flite(spoken(HELD_OUT[2]), tmp_path),
                          verify=api.ca, timeout=120, headers={"Ocp-Apim-Subscription-Key": api.key,
                                                               "Content-Type": "audio/wav"})
    assert heard.status_code == 200 and "datavault" in heard.json()["DisplayText"].lower(), heard.text
    by_endpoint = api.post("transcriptions", json={"displayName": "via endpoint", "locale": "en-US",
                                                   "model": {"self": endpoint["self"]},
                                                   "contentUrls": ["https://127.0.0.1:1/a.wav"]})
    assert by_endpoint.status_code == 201 and by_endpoint.json()["model"]["self"] == trained["model"]["self"], \
        "a transcription through an endpoint uses the endpoint's model"
    in_use = api.delete(trained["model"]["self"])
    assert in_use.status_code == 409 and in_use.json()["code"] == "Conflict", in_use.text
    assert api.delete(endpoint["self"]).status_code == 204


def _inner(resp) -> str:
    assert resp.status_code == 400, resp.text
    return resp.json()["innerError"]["code"]


def test_models_are_adapted_from_language_data_only(api, trained):
    resp = api.post("models", json={"displayName": "acoustic", "locale": "en-US",
                                    "datasets": [{"self": trained["acoustic"]["self"]}]})
    assert _inner(resp) == "InvalidDataset" and "acoustic" in resp.json()["message"].lower()
    assert _inner(api.post("models", json={"displayName": "none", "locale": "en-US", "datasets": []})) == "InvalidDataset"
    missing = api.url("datasets/00000000-0000-0000-0000-000000000000")
    assert _inner(api.post("models", json={"displayName": "gone", "locale": "en-US",
                                           "datasets": [{"self": missing}]})) == "InvalidDataset"


def test_models_and_datasets_of_another_account_are_refused(api, trained, admin_cognitive, make_rg, boot, ca):
    other = new_speech(admin_cognitive, make_rg, boot, ca, "cs-custom2")
    foreign = other.post("models", json={"displayName": "x", "locale": "en-US",
                                         "datasets": [{"self": trained["language"]["self"]}]})
    assert _inner(foreign) == "InvalidDataset"
    body = {"displayName": "x", "locale": "en-US", "model": {"self": trained["model"]["self"]},
            "contentUrls": ["https://127.0.0.1:1/a.wav"]}
    assert _inner(other.post("transcriptions", json=body)) == "InvalidModel"


def test_copy_to_another_account_by_its_key(api, trained, admin_cognitive, make_rg, boot, ca):
    other = new_speech(admin_cognitive, make_rg, boot, ca, "cs-copy")
    resp = api.post(f"models/{trained['model']['self'].rsplit('/', 1)[1]}:copyto",
                    json={"targetSubscriptionKey": other.key})
    assert resp.status_code == 202, resp.text
    copy = other.get(resp.headers["Location"])
    assert copy.status_code == 200 and copy.json()["status"] == "Succeeded", copy.text
    assert copy.json()["self"].startswith(other.endpoint)
    bad_key = api.post(f"models/{trained['model']['self'].rsplit('/', 1)[1]}:copyto",
                       json={"targetSubscriptionKey": "0" * 32})
    assert bad_key.status_code == 401
