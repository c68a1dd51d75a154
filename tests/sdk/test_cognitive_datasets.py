"""Custom Speech datasets (speech to text v3.2) on an AI-services account without BYOS: upload (multipart) and
create from a contentUrl (a blob SAS URL), real validation (Language text, Acoustic zip of WAV files with trans.txt),
NotStarted -> Running -> Succeeded/Failed with a report, list/get/patch/delete, files, and the Speech error format.
Datasets of BYOS accounts, written into the customer's storage, are in test_cognitive_byos.py."""

import io
import zipfile

import pytest
import requests

import byos_support as bs
import cognitive_support as cs


@pytest.fixture(scope="module")
def speech(admin_cognitive, make_rg, boot):
    rg = make_rg("cs-ds")
    account = cs.create_account(admin_cognitive, boot, rg, "SpeechServices")
    return account, admin_cognitive.accounts.list_keys(rg, account.name).key1


@pytest.fixture(scope="module")
def api(speech, ca):
    account, key = speech
    return cs.SpeechRest(account.properties.endpoint, key, ca)


def wav_bytes(seconds: float = 1.0, rate: int = 16000) -> bytes:
    return cs.silent_wav(seconds, rate)


def acoustic_zip(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return out.getvalue()


def test_upload_a_language_dataset_and_it_succeeds(api):
    resp = api.upload("Language", b"hello world\nbring your own storage\n", display_name="lang")
    assert resp.status_code == 201, resp.text
    dataset = resp.json()
    assert resp.headers["Location"] == dataset["self"] and dataset["status"] in ("NotStarted", "Running", "Succeeded")
    done = api.wait(dataset["self"])
    assert done["status"] == "Succeeded", done
    assert (done["properties"]["acceptedLineCount"], done["properties"]["rejectedLineCount"]) == (2, 0)
    files = api.get(done["links"]["files"]).json()["values"]
    assert {f["kind"] for f in files} == {"LanguageData", "DatasetReport"}


def test_acoustic_dataset_checks_each_transcribed_file(api):
    data = acoustic_zip({"a.wav": wav_bytes(2.0), "b.wav": wav_bytes(1.5), "trans.txt": b"a.wav\thello\nb.wav\tworld\nc.wav\tmissing\n"})
    done = api.wait(api.upload("Acoustic", data, display_name="audio").json()["self"])
    assert done["status"] == "Succeeded", done
    assert (done["properties"]["acceptedLineCount"], done["properties"]["rejectedLineCount"]) == (2, 1)
    assert done["properties"]["duration"] == "PT3.5S"


def test_an_acoustic_dataset_without_transcript_fails_with_its_reason(api):
    done = api.wait(api.upload("Acoustic", acoustic_zip({"a.wav": wav_bytes()}), display_name="bad").json()["self"])
    assert done["status"] == "Failed"
    assert "trans.txt" in done["properties"]["error"]["message"]


def test_text_that_is_not_utf8_fails(api):
    done = api.wait(api.upload("Language", b"\xff\xfe\x00bad", display_name="binary").json()["self"])
    assert done["status"] == "Failed" and "UTF-8" in done["properties"]["error"]["message"]


def test_create_from_a_blob_sas_url(api, shared_account, ca):
    from azure.storage.blob import BlobSasPermissions, generate_blob_sas

    service = bs.blob_service(shared_account.blob_url, shared_account.shared_key(), ca)
    container = bs.new_container(service, "ds")
    container.upload_blob("corpus.txt", b"one line\nanother line\nthird\n")
    sas = generate_blob_sas(shared_account.name, container.container_name, "corpus.txt",
                            account_key=shared_account.keys["key1"], permission=BlobSasPermissions(read=True),
                            expiry=bs.utc_in(hours=1))
    url = f"{shared_account.blob_url}{container.container_name}/corpus.txt?{sas}"
    resp = api.post("datasets", json={"kind": "Language", "locale": "en-US", "displayName": "from url", "contentUrl": url})
    assert resp.status_code == 201, resp.text
    done = api.wait(resp.json()["self"])
    assert done["status"] == "Succeeded" and done["properties"]["acceptedLineCount"] == 3, done


def test_an_unreachable_content_url_fails_the_dataset(api, shared_account):
    url = f"{shared_account.blob_url}nosuchcontainer/nothing.txt"
    resp = api.post("datasets", json={"kind": "Language", "locale": "en-US", "displayName": "gone", "contentUrl": url})
    done = api.wait(resp.json()["self"])
    assert done["status"] == "Failed" and "contentUrl" in done["properties"]["error"]["message"]


@pytest.mark.parametrize("body, fragment", [
    ({"kind": "Emotion", "locale": "en-US", "displayName": "x", "contentUrl": "https://h/x"}, "kind"),
    ({"kind": "Language", "locale": "xx-XX", "displayName": "x", "contentUrl": "https://h/x"}, "locale"),
    ({"kind": "Language", "locale": "en-US", "contentUrl": "https://h/x"}, "displayName"),
])
def test_bad_definitions_are_invalid_argument_in_the_speech_format(api, body, fragment):
    resp = api.post("datasets", json=body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["code"] == "InvalidArgument" and fragment in resp.json()["message"]


def test_list_get_patch_and_delete(api):
    dataset = api.wait(api.upload("Language", b"a line\n", display_name="crud").json()["self"])
    assert dataset["self"] in {d["self"] for d in api.get(api.url("datasets")).json()["values"]}
    patched = api.patch(dataset["self"], json={"displayName": "renamed", "description": "d"})
    assert patched.status_code == 200 and patched.json()["displayName"] == "renamed", patched.text
    assert api.delete(dataset["self"]).status_code == 204
    missing = api.get(dataset["self"])
    assert missing.status_code == 404 and missing.json()["code"] == "NotFound"
    assert api.delete(dataset["self"]).status_code == 204


def test_datasets_need_credentials_and_a_speech_account(api, admin_cognitive, make_rg, boot, ca):
    assert requests.get(api.url("datasets"), verify=ca, timeout=30).status_code == 401
    rg = make_rg("cs-ds-fr")
    fr = cs.create_account(admin_cognitive, boot, rg, "FormRecognizer")
    other = cs.SpeechRest(fr.properties.endpoint, admin_cognitive.accounts.list_keys(rg, fr.name).key1, ca)
    assert other.get(other.url("datasets")).status_code == 404


def test_locales(api):
    assert api.get(api.url("datasets/locales")).json()["Acoustic"] == ["en-US"]


SPEECH_USER = "f2dc8367-1007-4938-bd23-fe263f013447"
SPEECH_CONTRIBUTOR = "0e75ca1e-0464-4b4d-8b93-68208a576181"
COGNITIVE_SCOPE = "https://cognitiveservices.azure.com/.default"


def _bearer(api, credential):
    token = credential.get_token(COGNITIVE_SCOPE).token
    return lambda method, path, **kw: requests.request(method, api.url(path), headers={"Authorization": f"Bearer {token}"},
                                                       verify=api.ca, timeout=30, **kw)


def test_entra_principals_need_the_speech_data_actions(api, speech, new_principal, assign):
    account, _ = speech
    nobody = new_principal("ds-none")
    call = _bearer(api, nobody.credential)
    denied = call("GET", "datasets")
    assert denied.status_code == 401 and denied.json()["error"]["code"] == "PermissionDenied", denied.text
    user = new_principal("ds-user")
    assign(account.id, SPEECH_USER, user.object_id)
    reader = _bearer(api, user.credential)
    assert reader("GET", "datasets").status_code == 200
    body = {"kind": "Language", "locale": "en-US", "displayName": "x", "contentUrl": "https://127.0.0.1:1/x"}
    assert reader("POST", "datasets", json=body).status_code == 401, "a Speech User may read but not write datasets"
    contributor = new_principal("ds-contrib")
    assign(account.id, SPEECH_CONTRIBUTOR, contributor.object_id)
    assert _bearer(api, contributor.credential)("POST", "datasets", json=body).status_code == 201


def test_file_links_of_service_held_datasets(api, ca):
    done = api.wait(api.upload("Language", b"linked content\n", display_name="links").json()["self"])
    files = api.get(done["links"]["files"]).json()["values"]
    data = next(f for f in files if f["kind"] == "LanguageData")
    link = data["links"]["contentUrl"]
    assert link.startswith(api.endpoint + "artifacts/customspeech-artifacts/") and "token=" in link, link
    assert requests.get(link, verify=ca, timeout=30).content == b"linked content\n", "the link alone reads the file"
    forged = link[:-6] + ("AAAAAA" if not link.endswith("AAAAAA") else "BBBBBB")
    assert requests.get(forged, verify=ca, timeout=30).status_code == 401
    report = next(f for f in files if f["kind"] == "DatasetReport")
    other_path = report["links"]["contentUrl"].split("?")[0]
    token = link.split("token=")[1]
    assert requests.get(f"{other_path}?token={token}", verify=ca, timeout=30).status_code == 401, "one file's token"
    plain = api.get(data["self"], params={"sasValidityInSeconds": 0}).json()["links"]["contentUrl"]
    assert "?" not in plain
    assert requests.get(plain, verify=ca, timeout=30).status_code == 401
    assert api.get(plain).content == b"linked content\n"


def test_regression_purged_account_datasets_do_not_reappear_on_a_new_account_of_the_same_name(
    admin_cognitive, make_rg, boot, ca
):
    rg = make_rg("cs-ds-purge")
    account = cs.create_account(admin_cognitive, boot, rg, "SpeechServices")
    api = cs.SpeechRest(account.properties.endpoint, admin_cognitive.accounts.list_keys(rg, account.name).key1, ca)
    api.wait(api.upload("Language", b"old data\n", display_name="old").json()["self"])
    admin_cognitive.accounts.begin_delete(rg, account.name).result()
    admin_cognitive.deleted_accounts.begin_purge(boot["location"], rg, account.name).result()
    again = cs.create_account(admin_cognitive, boot, rg, "SpeechServices", name=account.name)
    fresh = cs.SpeechRest(again.properties.endpoint, admin_cognitive.accounts.list_keys(rg, again.name).key1, ca)
    assert fresh.get(fresh.url("datasets")).json()["values"] == []


def test_a_dataset_uploaded_in_blocks_is_imported_on_commit(api):
    import base64

    resp = api.post("datasets", json={"kind": "Language", "locale": "en-US", "displayName": "blocks"})
    assert resp.status_code == 201, resp.text
    dataset = resp.json()
    assert dataset["status"] == "NotStarted" and dataset["links"]["commitBlocks"].endswith("/blocks:commit")
    ids = [base64.b64encode(f"block-{i:03}".encode()).decode() for i in range(3)]
    parts = [b"first line\n", b"second ", b"line\n"]
    for block_id, part in zip(ids, parts):
        put = api._call("PUT", dataset["links"]["listBlocks"], params={"blockid": block_id}, data=part)
        assert put.status_code == 201, put.text
    listed = api.get(dataset["links"]["listBlocks"]).json()
    assert [b["name"] for b in listed["uncommittedBlocks"]] == ids
    missing = api._call("POST", dataset["links"]["commitBlocks"], json=[{"kind": "Latest", "id": "bm9wZQ=="}])
    assert missing.status_code == 400 and missing.json()["code"] == "InvalidArgument"
    commit = api._call("POST", dataset["links"]["commitBlocks"], json=[{"kind": "Latest", "id": i} for i in ids])
    assert commit.status_code == 200, commit.text
    done = api.wait(dataset["self"])
    assert done["status"] == "Succeeded" and done["properties"]["acceptedLineCount"] == 2, done
    again = api._call("PUT", dataset["links"]["listBlocks"], params={"blockid": ids[0]}, data=b"late")
    assert again.status_code == 409, "a committed dataset takes no more blocks"


V2024 = {"api-version": "2024-11-15"}


def test_the_2024_11_15_paths_serve_the_same_datasets(api, speech, ca):
    import base64

    account, key = speech
    base = account.properties.endpoint + "speechtotext/"
    call = lambda method, url, **kw: requests.request(method, url, headers={"Ocp-Apim-Subscription-Key": key},
                                                      verify=ca, timeout=30, **kw)
    body = {"kind": "Language", "locale": "en-US", "displayName": "2024"}
    resp = call("POST", base + "datasets", params=V2024, json=body)
    assert resp.status_code == 201, resp.text
    dataset = resp.json()
    assert dataset["self"].endswith("?api-version=2024-11-15") and "/speechtotext/datasets/" in dataset["self"]
    commit_url = dataset["links"]["commitBlocks"]
    assert commit_url.split("?")[0].endswith(":commitBlocks"), commit_url
    block = base64.b64encode(b"only").decode()
    blocks_url = dataset["links"]["listBlocks"]
    assert call("PUT", blocks_url, params={"blockid": block}, data=b"one line\n").status_code == 201
    assert call("POST", commit_url, json=[{"kind": "Latest", "id": block}]).status_code == 200
    done = bs.poll(lambda: call("GET", dataset["self"]).json(), lambda d: d.get("status") in ("Succeeded", "Failed"))
    assert done["status"] == "Succeeded", done
    listed = call("GET", base + "datasets", params=V2024).json()["values"]
    assert dataset["self"] in {d["self"] for d in listed}
    # The same dataset through v3.2.
    v32 = api.get(api.url(f"datasets/{dataset['self'].split('/')[-1].split('?')[0]}"))
    assert v32.status_code == 200 and v32.json()["displayName"] == "2024"
    missing_version = call("GET", base + "datasets")
    assert missing_version.status_code == 400 and "api-version" in missing_version.json()["message"]
    assert call("POST", dataset["self"]).status_code == 405
