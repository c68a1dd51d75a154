"""Document Intelligence analyze with Microsoft's Python clients, unchanged: `DocumentIntelligenceClient` (1.0.2,
2024-11-30) and `DocumentAnalysisClient` (3.3.3, 2023-07-31), `prebuilt-read` and `prebuilt-layout`, on documents
rendered from known text (PNG, JPEG, multi-page TIFF, a scanned PDF) read by Tesseract: the words come back (the
character accuracy is printed), with polygons and spans into `content`. Sources: raw bytes, base64, a SAS URL, and
a plain URL into a locked-down storage account read as the account's managed identity; then each link of that chain
broken gives its explained error. Bad input gets Azure's codes."""

import base64
import difflib
import io
import time

import pytest
from azure.ai.documentintelligence import DocumentIntelligenceClient
from azure.ai.documentintelligence.models import AnalyzeDocumentRequest
from azure.ai.formrecognizer import DocumentAnalysisClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.storage.models import IPRule, NetworkRuleSet, ResourceAccessRule
from PIL import Image, ImageDraw, ImageFont

import byos_support as bs
import cognitive_support as cs

LINES = ["INVOICE NUMBER 2024-117", "Customer: Ada Lovelace", "Total due: 1234.50 EUR"]
CLIENT_IP = "127.0.0.2"


def rendered(lines=LINES, size=(1400, 420), font_size=44) -> Image.Image:
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=font_size)
    for i, line in enumerate(lines):
        draw.text((60, 50 + i * (font_size + 40)), line, fill=0, font=font)
    return image


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kwargs)
    return out.getvalue()


def accuracy(expected: str, got: str) -> float:
    return difflib.SequenceMatcher(None, " ".join(expected.split()), " ".join(got.split())).ratio()


@pytest.fixture(scope="module")
def world(admin_cognitive, make_rg, boot, admin_cred, make_account, assign):
    rg = make_rg("docintel")
    account = cs.create_account(admin_cognitive, boot, rg, "FormRecognizer", identity="SystemAssigned")
    key = admin_cognitive.accounts.list_keys(rg, account.name).key1
    endpoint = account.properties.endpoint
    kwargs = {"connection_verify": boot["ca_file"]}
    return {"account": account, "key": key, "endpoint": endpoint, "rg": rg, "ca": boot["ca_file"],
            "di": DocumentIntelligenceClient(endpoint, AzureKeyCredential(key), **kwargs),
            "fr": DocumentAnalysisClient(endpoint, AzureKeyCredential(key), **kwargs)}


def analyze_v4(world, model: str, document: bytes, **kwargs):
    poller = world["di"].begin_analyze_document(model, body=document, polling_interval=0.2, **kwargs)
    return poller.result(timeout=120)


def test_v4_read_of_a_png_gives_the_words_with_polygons_and_spans(world):
    image = rendered()
    result = analyze_v4(world, "prebuilt-read", encoded(image, "PNG"))
    score = accuracy("\n".join(LINES), result.content)
    print(f"\nprebuilt-read PNG character accuracy: {score:.3f}")
    assert score >= 0.9, result.content
    page = result.pages[0]
    assert (page.page_number, page.unit, page.width, page.height) == (1, "pixel", image.width, image.height)
    assert len(page.lines) == 3 and "Lovelace" in page.lines[1].content
    for word in page.words:
        assert result.content[word.span.offset:word.span.offset + word.span.length] == word.content
        xs, ys = word.polygon[0::2], word.polygon[1::2]
        assert 0 <= min(xs) < max(xs) <= image.width and 0 <= min(ys) < max(ys) <= image.height
        assert 0 <= word.confidence <= 1
    total = next(w for w in page.words if "1234" in w.content)
    assert total.polygon[1] > page.words[0].polygon[1], "the third line is below the first"


@pytest.mark.parametrize("fmt", ["JPEG", "BMP"])
def test_other_image_formats_are_read(world, fmt):
    result = analyze_v4(world, "prebuilt-read", encoded(rendered(), fmt))
    assert accuracy("\n".join(LINES), result.content) >= 0.85, result.content


def test_a_multi_page_tiff_and_the_pages_parameter(world):
    first, second = rendered(["first page says hello"]), rendered(["second page says goodbye"])
    tiff = encoded(first, "TIFF", save_all=True, append_images=[second])
    both = analyze_v4(world, "prebuilt-read", tiff)
    assert [p.page_number for p in both.pages] == [1, 2] and "goodbye" in both.content, both.content
    only = analyze_v4(world, "prebuilt-read", tiff, pages="2")
    assert [p.page_number for p in only.pages] == [2] and "hello" not in only.content, only.content


def test_a_scanned_pdf_is_read_in_inches(world):
    pdf = encoded(rendered(), "PDF", resolution=200.0)
    result = analyze_v4(world, "prebuilt-read", pdf)
    page = result.pages[0]
    assert page.unit == "inch" and abs(page.width - 1400 / 200) < 0.05, (page.unit, page.width)
    assert accuracy("\n".join(LINES), result.content) >= 0.85, result.content


def text_pdf(lines, drawn: str = "") -> bytes:
    """A one-page text PDF (US Letter, Helvetica 24 pt) written by hand: its text is embedded, not an image;
    `drawn` is more of the page's content (paths, placed text)."""
    stream = "BT /F1 24 Tf " + " ".join(f"72 {720 - 40 * i} Td ({line}) Tj -72 {-(720 - 40 * i)} Td"
                                        for i, line in enumerate(lines)) + " ET " + drawn
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               "/Resources << /Font << /F1 5 0 R >> >> >>",
               f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream",
               "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = b"%PDF-1.4\n", []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


def test_a_text_pdf_gives_its_own_words_in_inches(world):
    result = analyze_v4(world, "prebuilt-read", text_pdf(LINES))
    page = result.pages[0]
    assert (page.unit, round(page.width, 2), round(page.height, 2)) == ("inch", 8.5, 11.0), page
    assert accuracy("\n".join(LINES), result.content) >= 0.98, result.content
    first = page.words[0]
    assert abs(first.polygon[0] - 1.0) < 0.1, first.polygon  # drawn at 72 pt = 1 inch from the left


def many_page_pdf(pages: int) -> bytes:
    """A PDF of `pages` pages that share one content stream (small however many pages it has)."""
    stream = "BT /F1 24 Tf 72 720 Td (page) Tj ET"
    kids = " ".join(f"{5 + i} 0 R" for i in range(pages))
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>",
               f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream",
               "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    objects += ["<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R "
                "/Resources << /Font << /F1 4 0 R >> >> >>"] * pages
    out, offsets = b"%PDF-1.4\n", []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


@pytest.mark.parametrize("case, document, inner", [
    ("a 10,000-page PDF", many_page_pdf(10_000), "InvalidContent"),
    ("a truncated PDF", text_pdf(["cut short"])[:150], "InvalidContent"),
])
def test_pdfs_byos_cannot_analyze_fail_quickly_with_the_code(world, case, document, inner):
    started = time.monotonic()
    resp = raw(world, "POST", "documentintelligence/documentModels/prebuilt-read:analyze", params=V4, data=document,
               headers={"Content-Type": "application/octet-stream"})
    done = poll(world, resp.headers["Operation-Location"])
    assert done["status"] == "failed" and done["error"]["innererror"]["code"] == inner, (case, done)
    assert time.monotonic() - started < 30, case


def test_the_pages_of_a_multi_page_pdf_can_be_chosen(world):
    result = analyze_v4(world, "prebuilt-read", many_page_pdf(5), pages="2,4-5")
    assert [p.page_number for p in result.pages] == [2, 4, 5]


def test_an_encrypted_pdf_fails_with_invalid_content(world, tmp_path):
    import subprocess

    plain, locked = tmp_path / "plain.pdf", tmp_path / "locked.pdf"
    plain.write_bytes(text_pdf(["secret text"]))
    subprocess.run(["qpdf", "--encrypt", "user", "owner", "256", "--", str(plain), str(locked)], check=True)
    resp = raw(world, "POST", "documentintelligence/documentModels/prebuilt-read:analyze", params=V4,
               data=locked.read_bytes(), headers={"Content-Type": "application/octet-stream"})
    done = poll(world, resp.headers["Operation-Location"])
    assert done["status"] == "failed" and done["error"]["innererror"]["code"] == "InvalidContent", done
    assert "encrypted" in done["error"]["message"], done


def test_v4_layout_as_markdown_and_base64(world):
    request = AnalyzeDocumentRequest(bytes_source=encoded(rendered(), "PNG"))
    poller = world["di"].begin_analyze_document("prebuilt-layout", request, output_content_format="markdown",
                                                polling_interval=0.2)
    result = poller.result(timeout=120)
    assert result.content_format == "markdown" and result.paragraphs, result
    assert "Lovelace" in result.content


TABLE = [["Item", "Qty", "Price"], ["Apples", "3", "2.40"], ["Bread", "1", "3.10"]]


def ruled_table() -> bytes:
    """A page with a ruled 3 x 3 table (rules drawn as lines) and a heading above it."""
    image = Image.new("L", (1400, 700), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=40)
    draw.text((100, 40), "Shopping list", fill=0, font=font)
    x0, y0, cell_w, cell_h = 100, 150, 380, 120
    for r in range(len(TABLE) + 1):
        draw.line([(x0, y0 + r * cell_h), (x0 + 3 * cell_w, y0 + r * cell_h)], fill=0, width=3)
    for c in range(4):
        draw.line([(x0 + c * cell_w, y0), (x0 + c * cell_w, y0 + 3 * cell_h)], fill=0, width=3)
    for r, row in enumerate(TABLE):
        for c, text in enumerate(row):
            draw.text((x0 + c * cell_w + 30, y0 + r * cell_h + 35), text, fill=0, font=font)
    return encoded(image, "PNG")


def test_layout_finds_a_ruled_table_and_read_does_not(world):
    result = analyze_v4(world, "prebuilt-layout", ruled_table())
    assert len(result.tables) == 1, result.tables
    table = result.tables[0]
    assert (table.row_count, table.column_count) == (3, 3)
    cells = {(c.row_index, c.column_index): c.content for c in table.cells}
    assert cells == {(r, c): text for r, row in enumerate(TABLE) for c, text in enumerate(row)}, cells
    for cell in table.cells:
        span = cell.spans[0]
        assert result.content[span.offset:span.offset + span.length] == cell.content
    read = analyze_v4(world, "prebuilt-read", ruled_table())
    assert not read.tables, "prebuilt-read gives no tables"
    plain = analyze_v4(world, "prebuilt-layout", encoded(rendered(), "PNG"))
    assert not plain.tables, "text without rules is no table"


def test_layout_finds_the_ruled_table_and_check_boxes_drawn_on_a_text_pdf(world):
    x0, top, cell_w, cell_h = 72, 640, 144, 36
    rules = [f"{x0} {top - 3 * cell_h} {3 * cell_w} {3 * cell_h} re S"]
    rules += [f"{x0 + c * cell_w} {top - 3 * cell_h} m {x0 + c * cell_w} {top} l S" for c in (1, 2)]
    rules += [f"{x0} {top - r * cell_h} m {x0 + 3 * cell_w} {top - r * cell_h} l S" for r in (1, 2)]
    cells = [f"BT /F1 14 Tf {x0 + c * cell_w + 10} {top - (r + 1) * cell_h + 12} Td ({text}) Tj ET"
             for r, row in enumerate(TABLE) for c, text in enumerate(row)]
    boxes = "540 600 14 14 re S 540 560 14 14 re S 543 563 m 551 571 l 543 571 m 551 563 l S"
    pdf = text_pdf(["Shopping list"], " ".join(["1 w", *rules, *cells, boxes]))
    result = analyze_v4(world, "prebuilt-layout", pdf)
    assert result.pages[0].unit == "inch" and len(result.tables) == 1, result.tables
    table = result.tables[0]
    assert (table.row_count, table.column_count) == (3, 3)
    got = {(c.row_index, c.column_index): c.content for c in table.cells}
    assert got == {(r, c): text for r, row in enumerate(TABLE) for c, text in enumerate(row)}, got
    assert abs(table.bounding_regions[0].polygon[0] - 1.0) < 0.05, "the table in the page's inches"
    marks = sorted(result.pages[0].selection_marks, key=lambda m: m.polygon[1])
    assert [m.state for m in marks] == ["unselected", "selected"], marks


def test_layout_finds_check_boxes_and_whether_they_are_ticked(world):
    image = Image.new("L", (1200, 400), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=40)
    for i, (label, ticked) in enumerate([("Invoice paid", True), ("Send reminder", False)]):
        x, y = 80, 80 + i * 140
        draw.rectangle([x, y, x + 44, y + 44], outline=0, width=3)
        if ticked:
            draw.line([(x + 8, y + 8), (x + 36, y + 36)], fill=0, width=4)
            draw.line([(x + 36, y + 8), (x + 8, y + 36)], fill=0, width=4)
        draw.text((x + 80, y), label, fill=0, font=font)
    result = analyze_v4(world, "prebuilt-layout", encoded(image, "PNG"))
    marks = sorted(result.pages[0].selection_marks, key=lambda m: m.polygon[1])
    assert [m.state for m in marks] == ["selected", "unselected"], marks
    assert ":selected:" in result.content and "Invoice paid" in result.content, result.content
    assert "Send reminder" in result.content


def test_v3_document_analysis_client_reads_layout(world):
    poller = world["fr"].begin_analyze_document("prebuilt-layout", encoded(rendered(), "PNG"), polling_interval=0.2)
    result = poller.result(timeout=120)
    assert result.model_id == "prebuilt-layout" and result.api_version == "2023-07-31"
    assert accuracy("\n".join(LINES), result.content) >= 0.9, result.content
    word = result.pages[0].words[0]
    assert result.content[word.span.offset:word.span.offset + word.span.length] == word.content


def test_v2_1_form_recognizer_client_recognizes_content(world):
    from azure.ai.formrecognizer import FormRecognizerClient

    client = FormRecognizerClient(world["endpoint"], AzureKeyCredential(world["key"]), api_version="2.1",
                                  connection_verify=world["ca"])
    pages = client.begin_recognize_content(encoded(rendered(), "PNG"), polling_interval=0.2).result(timeout=120)
    text = "\n".join(line.text for line in pages[0].lines)
    assert (pages[0].page_number, pages[0].unit) == (1, "pixel") and accuracy("\n".join(LINES), text) >= 0.9, text
    assert pages[0].lines[0].words[0].bounding_box and pages[0].tables == []
    with pytest.raises(HttpResponseError) as refused:
        client.begin_recognize_content(encoded(rendered(), "PNG")[:300]).result(timeout=60)
    assert "InvalidImage" in str(refused.value), refused.value


def raw(world, method: str, path: str, **kwargs):
    import requests

    headers = {"Ocp-Apim-Subscription-Key": world["key"], **kwargs.pop("headers", {})}
    return requests.request(method, world["endpoint"] + path, headers=headers, verify=world["ca"], timeout=60, **kwargs)


def poll(world, location: str) -> dict:
    import requests

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        body = requests.get(location, headers={"Ocp-Apim-Subscription-Key": world["key"]}, verify=world["ca"],
                            timeout=60).json()
        if body["status"] not in ("notStarted", "running"):
            return body
        time.sleep(0.2)
    raise AssertionError("the analysis did not finish")


V4 = {"api-version": "2024-11-30"}


def test_a_result_can_be_deleted_in_v4(world):
    resp = raw(world, "POST", "documentintelligence/documentModels/prebuilt-read:analyze", params=V4,
               data=encoded(rendered(), "PNG"), headers={"Content-Type": "application/octet-stream"})
    assert resp.status_code == 202 and resp.headers["Retry-After"] == "1", resp.text
    location = resp.headers["Operation-Location"]
    assert location.startswith(world["endpoint"] + "documentintelligence/documentModels/prebuilt-read/analyzeResults/")
    assert poll(world, location)["status"] == "succeeded"
    path = location.removeprefix(world["endpoint"]).split("?")[0]
    assert raw(world, "DELETE", path, params=V4).status_code == 204
    gone = raw(world, "GET", path, params=V4)
    assert gone.status_code == 404 and gone.json()["error"]["innererror"]["code"] == "OperationNotFound", gone.text


# ---- bad input --------------------------------------------------------------------------------------------------


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` (and whose data is far too short for it)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("case, body, status, inner", [
    ("not a document", b"just some text, not a document", 400, "UnsupportedContent"),
    ("no bytes", b"", 400, "InvalidContentLength"),
])
def test_what_is_not_a_document_is_refused_at_once(world, case, body, status, inner):
    resp = raw(world, "POST", "documentintelligence/documentModels/prebuilt-read:analyze", params=V4, data=body,
               headers={"Content-Type": "application/octet-stream"})
    assert resp.status_code == status and resp.json()["error"]["innererror"]["code"] == inner, (case, resp.text)


@pytest.mark.parametrize("case, document, inner", [
    ("100,000 x 100,000 pixels", png_claiming(100_000, 100_000), "InvalidContentDimensions"),
    ("10 x 10 pixels", png_claiming(10, 10), "InvalidContentDimensions"),
    ("a corrupt PNG", encoded(rendered(), "PNG")[:200], "InvalidContent"),
])
def test_documents_that_cannot_be_read_fail_the_operation_with_the_code(world, case, document, inner):
    started = time.monotonic()
    resp = raw(world, "POST", "documentintelligence/documentModels/prebuilt-read:analyze", params=V4, data=document,
               headers={"Content-Type": "application/octet-stream"})
    assert resp.status_code == 202, (case, resp.text)
    done = poll(world, resp.headers["Operation-Location"])
    assert done["status"] == "failed" and done["error"]["innererror"]["code"] == inner, (case, done)
    assert time.monotonic() - started < 30, "never a stuck running"


def test_unknown_models_bad_parameters_and_versions_get_azures_errors(world):
    with pytest.raises(ResourceNotFoundError):
        analyze_v4(world, "prebuilt-nothing", encoded(rendered(), "PNG"))
    with pytest.raises(HttpResponseError) as bad_pages:
        analyze_v4(world, "prebuilt-read", encoded(rendered(), "PNG"), pages="3-1")
    assert bad_pages.value.error.code == "InvalidArgument"
    old = raw(world, "POST", "documentintelligence/documentModels/prebuilt-read:analyze",
              params={"api-version": "2019-01-01"}, data=encoded(rendered(), "PNG"))
    assert old.status_code == 404 and old.json()["error"]["innererror"]["code"] == "NotSupportedApiVersion"
    unsupported = raw(world, "POST", "documentintelligence/documentModels/prebuilt-read:analyze",
                      params={**V4, "features": "barcodes"}, data=encoded(rendered(), "PNG"))
    assert unsupported.status_code == 400 and "barcodes" in unsupported.json()["error"]["message"]


def test_a_speech_account_does_not_serve_documents(world, admin_cognitive, boot):
    speech = cs.create_account(admin_cognitive, boot, world["rg"], "SpeechServices")
    key = admin_cognitive.accounts.list_keys(world["rg"], speech.name).key1
    client = DocumentIntelligenceClient(speech.properties.endpoint, AzureKeyCredential(key),
                                        connection_verify=world["ca"])
    with pytest.raises(ResourceNotFoundError):
        client.begin_analyze_document("prebuilt-read", body=encoded(rendered(), "PNG")).result(timeout=60)


# ---- sources in storage: a SAS URL, and the managed identity through a locked-down account -----------------------


@pytest.fixture(scope="module")
def storage(world, boot, admin_cred, assign):
    """A storage account holding the document, locked down as the seed says: no public access, no shared key,
    firewall default Deny with the trusted-services bypass; the FR account's identity is a Storage Blob Data Reader."""
    admin = bs.admin_credential(boot)
    storage_client = bs.storage_client(boot, admin)
    account = bs.create_storage_account(storage_client, boot, world["rg"], bs.storage_account_name("docs"))
    service = bs.blob_service(account.blob_url, account.shared_key(), boot["ca_file"])
    container = service.create_container("forms")
    container.upload_blob("invoice.png", encoded(rendered(), "PNG"))
    from azure.storage.blob import BlobSasPermissions, generate_blob_sas
    import datetime as dt

    # A second, open account for SAS URLs (a SAS is a credential of its own: no identity involved).
    open_account = bs.create_storage_account(storage_client, boot, world["rg"], bs.storage_account_name("docsas"))
    bs.blob_service(open_account.blob_url, open_account.shared_key(), boot["ca_file"]).create_container("forms") \
        .upload_blob("invoice.png", encoded(rendered(), "PNG"))

    def sas_url(hours: float) -> str:
        sas = generate_blob_sas(open_account.name, "forms", "invoice.png", account_key=open_account.keys["key1"],
                                permission=BlobSasPermissions(read=True),
                                expiry=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=hours))
        return f"{open_account.blob_url}forms/invoice.png?{sas}"
    auth = bs.authorization_client(boot, admin)
    role = bs.assign_role(auth, account.id, bs.STORAGE_BLOB_DATA_READER, world["account"].identity.principal_id,
                          sub=boot["subscription_id"])
    rules = NetworkRuleSet(default_action="Deny", bypass="AzureServices", ip_rules=[IPRule(ip_address_or_range=CLIENT_IP)])
    bs.update_storage_account(storage_client, account, allow_blob_public_access=False, network_rule_set=rules)
    return {"account": account, "client": storage_client, "auth": auth, "role": role, "sas_url": sas_url,
            "plain_url": f"{account.blob_url}forms/invoice.png", "boot": boot}


def analyze_url(world, url: str) -> dict:
    resp = raw(world, "POST", "documentintelligence/documentModels/prebuilt-read:analyze", params=V4,
               json={"urlSource": url})
    assert resp.status_code == 202, resp.text
    return poll(world, resp.headers["Operation-Location"])


def test_a_plain_url_is_read_as_the_accounts_identity_through_the_trusted_services_exception(world, storage):
    result = world["di"].begin_analyze_document("prebuilt-read", AnalyzeDocumentRequest(url_source=storage["plain_url"]),
                                                polling_interval=0.2).result(timeout=120)
    assert accuracy("\n".join(LINES), result.content) >= 0.9, result.content


def test_a_template_model_is_trained_from_a_locked_container_as_the_accounts_identity(world, storage):
    import json

    from azure.ai.documentintelligence.models import AzureBlobContentSource, BuildDocumentModelRequest

    # The customer uploads through a client the firewall admits (127.0.0.2) with an Entra role.
    admin = bs.admin_credential(storage["boot"])
    oid = bs.jwt_claims(admin.get_token("https://storage.azure.com/.default").token)["oid"]
    bs.assign_role(storage["auth"], storage["account"].id, bs.STORAGE_BLOB_DATA_CONTRIBUTOR, oid,
                   sub=storage["boot"]["subscription_id"])
    service = bs.blob_service(storage["account"].blob_url, admin, world["ca"], source_ip=CLIENT_IP)
    container = service.create_container("labeled")
    for i, values in enumerate(FORMS[:5]):
        document, labels = form(values)
        container.upload_blob(f"form{i}.png", document)
        container.upload_blob(f"form{i}.png.labels.json", json.dumps(labels).encode())
    request = BuildDocumentModelRequest(model_id="forms-identity", build_mode="template", azure_blob_source=
                                        AzureBlobContentSource(container_url=f"{storage['account'].blob_url}labeled"))
    admin_client(world).begin_build_document_model(request, polling_interval=0.2).result(timeout=120)
    fields = analyze_v4(world, "forms-identity", form(FORMS[5])[0]).documents[0].fields
    assert fields["Name"].value_string == FORMS[5][0], fields


def test_each_broken_link_of_the_identity_chain_fails_with_its_explanation(world, storage):
    missing = analyze_url(world, storage["plain_url"].replace("invoice.png", "nothing-here.png"))
    assert missing["status"] == "failed" and missing["error"]["innererror"]["code"] == "ContentSourceNotAccessible"

    closed = NetworkRuleSet(default_action="Deny", bypass="None", ip_rules=[IPRule(ip_address_or_range=CLIENT_IP)])
    bs.update_storage_account(storage["client"], storage["account"], network_rule_set=closed)
    walled = analyze_url(world, storage["plain_url"])
    assert walled["status"] == "failed" and walled["error"]["innererror"]["code"] == "ContentSourceNotAccessible"
    assert walled["error"]["innererror"]["byosExplanation"], walled
    instance = NetworkRuleSet(default_action="Deny", bypass="None", ip_rules=[IPRule(ip_address_or_range=CLIENT_IP)],
                              resource_access_rules=[ResourceAccessRule(tenant_id=storage["boot"]["tenant_id"],
                                                                        resource_id=world["account"].id)])
    bs.update_storage_account(storage["client"], storage["account"], network_rule_set=instance)
    assert analyze_url(world, storage["plain_url"])["status"] == "succeeded", "a resource-instance rule admits it"

    storage["auth"].role_assignments.delete_by_id(storage["role"].id)
    unroled = analyze_url(world, storage["plain_url"])
    assert unroled["status"] == "failed" and unroled["error"]["innererror"]["code"] == "ContentSourceNotAccessible"
    assert "Storage Blob Data Reader" in str(unroled["error"]["innererror"]["byosExplanation"]) or \
        "role" in unroled["error"]["message"].lower(), unroled

    client = cs.cognitive_client(storage["boot"], bs.admin_credential(storage["boot"]))
    from azure.mgmt.cognitiveservices.models import Identity

    client.accounts.begin_update(world["rg"], world["account"].name, cs.account_model(
        storage["boot"], "FormRecognizer", identity="None")).result()
    unidentified = analyze_url(world, storage["plain_url"])
    assert unidentified["status"] == "failed", unidentified
    assert "system-assigned identity" in unidentified["error"]["message"], unidentified


def test_a_sas_url_is_fetched_as_given_and_an_expired_one_is_not_accessible(world, storage):
    done = analyze_url(world, storage["sas_url"](1))
    assert done["status"] == "succeeded" and "Lovelace" in done["analyzeResult"]["content"], done
    expired = analyze_url(world, storage["sas_url"](-1))
    assert expired["status"] == "failed" and expired["error"]["innererror"]["code"] == "ContentSourceNotAccessible"
    assert "sig=" not in str(expired), "the SAS is not repeated"


def test_a_url_to_a_host_that_is_not_byos_storage_is_not_accessible(world):
    done = analyze_url(world, "https://example.invalid/form.png")
    assert done["status"] == "failed" and done["error"]["innererror"]["code"] == "ContentSourceNotAccessible"


# ---- custom template models ---------------------------------------------------------------------------------------

FORMS = [("Ada Lovelace", "1843-07-10", "118.20"), ("Alan Turing", "1936-05-28", "42.00"),
         ("Grace Hopper", "1952-03-14", "7.50"), ("Edsger Dijkstra", "1959-11-02", "300.95"),
         ("Barbara Liskov", "1987-10-04", "64.10"), ("Donald Knuth", "1968-01-01", "2.56")]
FIELDS = ["Name", "Date", "Total"]


RECEIPTS = [("Corner Bakery", "12.40"), ("City Books", "31.99"), ("Green Grocer", "8.75"), ("Night Pharmacy", "19.20"),
            ("Harbour Cafe", "4.60"), ("Station Kiosk", "2.30")]
RECEIPT_FIELDS = ["Shop", "Amount"]


def form(values, fields=FIELDS, at=(60, 360, 60)) -> tuple[bytes, dict]:
    """A form of one layout with these values, and its labels file (the labeling tool's format). `at`: the x of the
    keys, the x of the values, the y of the first line."""
    image = Image.new("L", (1200, 420), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=40)
    labels = []
    key_x, value_x, top = at
    for i, (field, value) in enumerate(zip(fields, values)):
        y = top + i * 110
        draw.text((key_x, y), f"{field}:", fill=0, font=font)
        draw.text((value_x, y), value, fill=0, font=font)
        x0, y0, x1, y1 = draw.textbbox((value_x, y), value, font=font)
        box = [x0 / 1200, y0 / 420, x1 / 1200, y0 / 420, x1 / 1200, y1 / 420, x0 / 1200, y1 / 420]
        labels.append({"label": field, "key": None, "value": [{"page": 1, "text": value, "boundingBoxes": [box]}]})
    return encoded(image, "PNG"), {"document": "form.png", "labels": labels}


def form_ocr(values, fields=FIELDS, at=(60, 360, 60)) -> dict:
    """The labeling tool's layout result (v2.1 shape) for `form(values, fields, at)`: its keys and values as words."""
    draw = ImageDraw.Draw(Image.new("L", (1200, 420), 255))
    font = ImageFont.load_default(size=40)
    key_x, value_x, top = at
    words = []
    for i, (field, value) in enumerate(zip(fields, values)):
        y = top + i * 110
        for text, x in ((f"{field}:", key_x), (value, value_x)):
            x0, y0, x1, y1 = draw.textbbox((x, y), text, font=font)
            words.append({"text": text, "boundingBox": [x0, y0, x1, y0, x1, y1, x0, y1], "confidence": 1})
    lines = [{"text": w["text"], "boundingBox": w["boundingBox"], "words": [w]} for w in words]
    return {"status": "succeeded", "analyzeResult": {"version": "2.1.0", "readResults": [
        {"page": 1, "angle": 0, "width": 1200, "height": 420, "unit": "pixel", "lines": lines}]}}


def receipt(values) -> tuple[bytes, dict]:
    return form(values, RECEIPT_FIELDS, at=(500, 760, 200))


@pytest.fixture(scope="module")
def training(world, boot, admin_cred):
    """Five labeled forms in a container of an open storage account, and its SAS container URL."""
    import datetime as dt
    import json

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    admin = bs.admin_credential(boot)
    storage_client = bs.storage_client(boot, admin)
    account = bs.create_storage_account(storage_client, boot, world["rg"], bs.storage_account_name("train"))
    container = bs.blob_service(account.blob_url, account.shared_key(), boot["ca_file"]).create_container("train")
    for i, values in enumerate(FORMS[:5]):
        document, labels = form(values)
        labels["document"] = f"form{i}.png"
        container.upload_blob(f"forms/form{i}.png", document)
        container.upload_blob(f"forms/form{i}.png.labels.json", json.dumps(labels).encode())
        if i < 2:  # the others' words come from reading them
            container.upload_blob(f"forms/form{i}.png.ocr.json", json.dumps(form_ocr(values)).encode())
    for i, values in enumerate(RECEIPTS[:5]):
        document, labels = receipt(values)
        container.upload_blob(f"receipts/r{i}.png", document)
        container.upload_blob(f"receipts/r{i}.png.labels.json", json.dumps(labels).encode())
    document, labels = form(FORMS[0])
    container.upload_blob("broken-ocr/form.png", document)
    container.upload_blob("broken-ocr/form.png.labels.json", json.dumps(labels).encode())
    container.upload_blob("broken-ocr/form.png.ocr.json", b'{"analyzeResult": {"readResults": "none"}}')
    container.upload_blob("forms/fields.json", json.dumps({"fields": [{"fieldKey": f, "fieldType": "string"} for f in FIELDS]}).encode())
    sas = generate_container_sas(account.name, "train", account_key=account.keys["key1"],
                                 permission=ContainerSasPermissions(read=True, list=True),
                                 expiry=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2))
    return {"url": f"{account.blob_url}train?{sas}"}


def admin_client(world):
    from azure.ai.documentintelligence import DocumentIntelligenceAdministrationClient

    return DocumentIntelligenceAdministrationClient(world["endpoint"], AzureKeyCredential(world["key"]),
                                                    connection_verify=world["ca"])


def test_a_template_model_learned_from_five_labeled_forms_extracts_the_fields_of_a_sixth(world, training):
    from azure.ai.documentintelligence.models import AzureBlobContentSource, BuildDocumentModelRequest

    admin = admin_client(world)
    request = BuildDocumentModelRequest(model_id="forms-template", build_mode="template", description="five forms",
                                        azure_blob_source=AzureBlobContentSource(container_url=training["url"],
                                                                                 prefix="forms/"))
    model = admin.begin_build_document_model(request, polling_interval=0.2).result(timeout=120)
    assert model.model_id == "forms-template" and model.description == "five forms"
    assert set(model.doc_types["forms-template"].field_schema) == set(FIELDS)
    assert "forms-template" in [m.model_id for m in admin.list_models()]
    assert admin.get_model("forms-template").model_id == "forms-template"

    sixth, _ = form(FORMS[5])
    result = analyze_v4(world, "forms-template", sixth)
    fields = result.documents[0].fields
    got = {name: fields[name].value_string for name in FIELDS}
    assert got == dict(zip(FIELDS, FORMS[5])), got
    assert all(0 < fields[name].confidence <= 1 and fields[name].bounding_regions for name in FIELDS)

    with pytest.raises(HttpResponseError) as exists:
        admin.begin_build_document_model(request).result(timeout=60)
    assert exists.value.status_code == 409
    admin.delete_model("forms-template")
    with pytest.raises(ResourceNotFoundError):
        analyze_v4(world, "forms-template", sixth)


def test_a_template_model_reads_the_fields_of_a_form_printed_with_an_offset(world, training):
    """The model places its fields relative to the words every training form shares (its anchors: the keys), so a
    form printed 100 px to the right and 60 px lower than the training forms is still read."""
    from azure.ai.documentintelligence.models import AzureBlobContentSource, BuildDocumentModelRequest

    request = BuildDocumentModelRequest(model_id="forms-anchored", build_mode="template",
                                        azure_blob_source=AzureBlobContentSource(container_url=training["url"],
                                                                                 prefix="forms/"))
    admin_client(world).begin_build_document_model(request, polling_interval=0.2).result(timeout=120)
    shifted, _ = form(FORMS[5], at=(160, 460, 120))
    fields = analyze_v4(world, "forms-anchored", shifted).documents[0].fields
    assert {name: fields[name].value_string for name in FIELDS} == dict(zip(FIELDS, FORMS[5])), fields
    polygon = fields["Name"].bounding_regions[0].polygon
    assert polygon[0] > 440, polygon  # where the value is on this form, not where it was on the training forms


def test_a_broken_ocr_file_fails_the_build_with_invalid_content(world, training):
    from azure.ai.documentintelligence.models import AzureBlobContentSource, BuildDocumentModelRequest

    request = BuildDocumentModelRequest(model_id="broken-ocr", build_mode="template",
                                        azure_blob_source=AzureBlobContentSource(container_url=training["url"],
                                                                                 prefix="broken-ocr/"))
    with pytest.raises(HttpResponseError) as failed:
        admin_client(world).begin_build_document_model(request, polling_interval=0.2).result(timeout=120)
    assert failed.value.error.code == "InvalidRequest", failed.value
    inner = failed.value.error.innererror
    assert inner["code"] == "InvalidContent" and "broken-ocr/form.png.ocr.json is invalid" in inner["message"], inner


def test_a_model_is_copied_to_another_account_with_its_authorization(world, training, admin_cognitive, boot):
    from azure.ai.documentintelligence import DocumentIntelligenceAdministrationClient
    from azure.ai.documentintelligence.models import (AuthorizeCopyRequest, AzureBlobContentSource,
                                                      BuildDocumentModelRequest)

    source = admin_client(world)
    source.begin_build_document_model(BuildDocumentModelRequest(
        model_id="forms-to-copy", build_mode="template",
        azure_blob_source=AzureBlobContentSource(container_url=training["url"], prefix="forms/")),
        polling_interval=0.2).result(timeout=120)
    other = cs.create_account(admin_cognitive, boot, world["rg"], "FormRecognizer")
    other_key = admin_cognitive.accounts.list_keys(world["rg"], other.name).key1
    target = DocumentIntelligenceAdministrationClient(other.properties.endpoint, AzureKeyCredential(other_key),
                                                      connection_verify=world["ca"])
    authorization = target.authorize_model_copy(AuthorizeCopyRequest(model_id="copied-forms"))
    assert authorization.target_resource_id == other.id
    source.begin_copy_model_to("forms-to-copy", authorization, polling_interval=0.2).result(timeout=120)
    assert target.get_model("copied-forms").model_id == "copied-forms"
    client = DocumentIntelligenceClient(other.properties.endpoint, AzureKeyCredential(other_key),
                                        connection_verify=world["ca"])
    result = client.begin_analyze_document("copied-forms", body=form(FORMS[5])[0], polling_interval=0.2).result(timeout=120)
    assert result.documents[0].fields["Name"].value_string == FORMS[5][0]
    with pytest.raises(HttpResponseError) as reused:
        source.begin_copy_model_to("forms-to-copy", authorization).result(timeout=60)
    assert reused.value.status_code == 401, "an authorization is used once"


def test_a_composed_model_picks_the_component_whose_fields_the_document_fills(world, training):
    from azure.ai.formrecognizer import DocumentModelAdministrationClient

    admin = DocumentModelAdministrationClient(world["endpoint"], AzureKeyCredential(world["key"]),
                                              connection_verify=world["ca"])
    for model_id, prefix in (("compose-forms", "forms/"), ("compose-receipts", "receipts/")):
        admin.begin_build_document_model("template", blob_container_url=training["url"], prefix=prefix,
                                         model_id=model_id, polling_interval=0.2).result(timeout=120)
    composed = admin.begin_compose_document_model(["compose-forms", "compose-receipts"], model_id="composed",
                                                  polling_interval=0.2).result(timeout=120)
    assert set(composed.doc_types) == {"compose-forms", "compose-receipts"}, composed.doc_types
    analyzer = world["fr"]
    on_receipt = analyzer.begin_analyze_document("composed", receipt(RECEIPTS[5])[0], polling_interval=0.2).result(timeout=120)
    assert on_receipt.documents[0].doc_type == "compose-receipts", on_receipt.documents[0].doc_type
    assert on_receipt.documents[0].fields["Shop"].value == RECEIPTS[5][0]
    on_form = analyzer.begin_analyze_document("composed", form(FORMS[5])[0], polling_interval=0.2).result(timeout=120)
    assert on_form.documents[0].doc_type == "compose-forms" and on_form.documents[0].fields["Name"].value == FORMS[5][0]


def test_builds_byos_cannot_do_are_refused(world, training):
    from azure.ai.documentintelligence.models import AzureBlobContentSource, BuildDocumentModelRequest

    admin = admin_client(world)
    neural = BuildDocumentModelRequest(model_id="forms-neural", build_mode="neural",
                                       azure_blob_source=AzureBlobContentSource(container_url=training["url"]))
    with pytest.raises(HttpResponseError) as refused:
        admin.begin_build_document_model(neural).result(timeout=60)
    assert refused.value.status_code == 400 and "template" in str(refused.value)
    empty = BuildDocumentModelRequest(model_id="forms-empty", build_mode="template",
                                      azure_blob_source=AzureBlobContentSource(container_url=training["url"],
                                                                               prefix="nothing/"))
    with pytest.raises(HttpResponseError) as missing:
        admin.begin_build_document_model(empty, polling_interval=0.2).result(timeout=60)
    assert "TrainingContentMissing" in str(missing.value), missing.value


def v2_clients(world):
    from azure.ai.formrecognizer import FormRecognizerClient, FormTrainingClient

    args = (world["endpoint"], AzureKeyCredential(world["key"]))
    kwargs = {"api_version": "2.1", "connection_verify": world["ca"]}
    return FormTrainingClient(*args, **kwargs), FormRecognizerClient(*args, **kwargs)


def test_v2_1_labeled_training_and_custom_analysis(world, training):
    trainer, recognizer = v2_clients(world)
    model = trainer.begin_training(training["url"], use_training_labels=True, prefix="forms/", model_name="labeled",
                                   polling_interval=0.2).result(timeout=120)
    assert model.status == "ready" and model.model_name == "labeled", model
    assert {f.name for f in model.submodels[0].fields.values()} >= set(FIELDS), model.submodels
    assert len(model.training_documents) == 5
    forms = recognizer.begin_recognize_custom_forms(model.model_id, form(FORMS[5])[0],
                                                   polling_interval=0.2).result(timeout=120)
    assert {name: forms[0].fields[name].value for name in FIELDS} == dict(zip(FIELDS, FORMS[5])), forms[0].fields
    assert model.model_id in [m.model_id for m in trainer.list_custom_models()]
    assert trainer.get_account_properties().custom_model_count >= 1
    trainer.delete_model(model.model_id)
    with pytest.raises(ResourceNotFoundError):
        trainer.get_custom_model(model.model_id)


def test_v2_1_unlabeled_training_finds_the_keys_and_their_values(world, training):
    trainer, recognizer = v2_clients(world)
    model = trainer.begin_training(training["url"], use_training_labels=False, prefix="forms/",
                                   polling_interval=0.2).result(timeout=180)
    keys = [f.label for f in model.submodels[0].fields.values()]
    assert keys == ["Name:", "Date:", "Total:"], keys
    forms = recognizer.begin_recognize_custom_forms(model.model_id, form(FORMS[5])[0],
                                                   polling_interval=0.2).result(timeout=120)
    pairs = {f.label_data.text: f.value for f in forms[0].fields.values()}
    assert pairs == {"Name:": FORMS[5][0], "Date:": FORMS[5][1], "Total:": FORMS[5][2]}, pairs


def test_v2_1_training_on_a_container_with_nothing_usable_is_invalid(world, training):
    trainer, _ = v2_clients(world)
    with pytest.raises(HttpResponseError) as invalid:
        trainer.begin_training(training["url"], use_training_labels=False, prefix="nothing/",
                               polling_interval=0.2).result(timeout=60)
    assert "2014" in str(invalid.value), invalid.value


def test_a_model_under_a_revoked_customer_key_is_unusable_until_the_key_returns(world, training, admin_cognitive, boot,
                                                                                make_vault, key_client, admin_cred,
                                                                                assign):
    from azure.ai.documentintelligence.models import AzureBlobContentSource, BuildDocumentModelRequest
    from azure.mgmt.cognitiveservices.models import Account, AccountProperties, Encryption, KeyVaultProperties

    vault = make_vault(rg=world["rg"], tag="dicmk", rbac=True, purge_protection=True)
    keys = key_client(vault.uri, admin_cred)
    key = keys.create_rsa_key(bs.unique("di"), size=2048)
    account = cs.create_account(admin_cognitive, boot, world["rg"], "FormRecognizer", identity="SystemAssigned")
    assign(vault.id, bs.KEY_VAULT_CRYPTO_SERVICE_ENCRYPTION_USER, account.identity.principal_id)
    encryption = Encryption(key_source="Microsoft.KeyVault", key_vault_properties=KeyVaultProperties(
        key_name=key.name, key_version=key.properties.version, key_vault_uri=vault.uri))
    admin_cognitive.accounts.begin_update(world["rg"], account.name,
                                          Account(properties=AccountProperties(encryption=encryption))).result()
    account_key = admin_cognitive.accounts.list_keys(world["rg"], account.name).key1
    cmk_world = {**world, "endpoint": account.properties.endpoint, "key": account_key,
                 "di": DocumentIntelligenceClient(account.properties.endpoint, AzureKeyCredential(account_key),
                                                  connection_verify=world["ca"])}
    admin = admin_client(cmk_world)
    admin.begin_build_document_model(BuildDocumentModelRequest(
        model_id="under-cmk", build_mode="template",
        azure_blob_source=AzureBlobContentSource(container_url=training["url"], prefix="forms/")),
        polling_interval=0.2).result(timeout=120)
    sixth = form(FORMS[5])[0]
    assert analyze_v4(cmk_world, "under-cmk", sixth).documents[0].fields["Name"].value_string == FORMS[5][0]

    keys.update_key_properties(key.name, enabled=False)
    time.sleep(2)  # the test servers cache an unwrapped account key for 1 s
    with pytest.raises(HttpResponseError) as revoked:
        analyze_v4(cmk_world, "under-cmk", sixth)
    assert revoked.value.status_code == 403 and "InvalidDataProtectionKey" in str(revoked.value), revoked.value

    keys.update_key_properties(key.name, enabled=True)
    time.sleep(2)
    assert analyze_v4(cmk_world, "under-cmk", sixth).documents[0].fields["Name"].value_string == FORMS[5][0]


def test_the_free_tier_analyzes_two_pages_and_takes_at_most_4_mb(private_server):
    boot = private_server().boot
    cred = bs.admin_credential(boot)
    rg = bs.create_resource_group(bs.resource_client(boot, cred), boot, "free")
    client = cs.cognitive_client(boot, cred)
    account = cs.create_account(client, boot, rg, "FormRecognizer", sku="F0")
    key = client.accounts.list_keys(rg, account.name).key1
    free = {"endpoint": account.properties.endpoint, "key": key, "ca": boot["ca_file"],
            "di": DocumentIntelligenceClient(account.properties.endpoint, AzureKeyCredential(key),
                                             connection_verify=boot["ca_file"])}
    assert [p.page_number for p in analyze_v4(free, "prebuilt-read", many_page_pdf(5)).pages] == [1, 2]
    big = encoded(Image.effect_noise((2600, 2600), 100).convert("L"), "PNG")
    assert len(big) > 4 << 20, len(big)
    resp = raw(free, "POST", "documentintelligence/documentModels/prebuilt-read:analyze", params=V4, data=big,
               headers={"Content-Type": "application/octet-stream"})
    done = poll(free, resp.headers["Operation-Location"])
    assert done["status"] == "failed" and done["error"]["innererror"]["code"] == "InvalidContentLength", done


def test_v2_1_compose_and_copy(world, training, admin_cognitive, boot):
    trainer, recognizer = v2_clients(world)
    forms = trainer.begin_training(training["url"], use_training_labels=True, prefix="forms/",
                                   polling_interval=0.2).result(timeout=120)
    receipts = trainer.begin_training(training["url"], use_training_labels=True, prefix="receipts/",
                                      polling_interval=0.2).result(timeout=120)
    composed = trainer.begin_create_composed_model([forms.model_id, receipts.model_id], model_name="both",
                                                   polling_interval=0.2).result(timeout=120)
    assert composed.properties.is_composed_model and len(composed.submodels) == 2, composed
    found = recognizer.begin_recognize_custom_forms(composed.model_id, receipt(RECEIPTS[5])[0],
                                                   polling_interval=0.2).result(timeout=120)
    assert found[0].form_type == f"custom:{receipts.model_id}" and found[0].fields["Shop"].value == RECEIPTS[5][0]

    from azure.ai.formrecognizer import FormTrainingClient

    other = cs.create_account(admin_cognitive, boot, world["rg"], "FormRecognizer")
    other_key = admin_cognitive.accounts.list_keys(world["rg"], other.name).key1
    target = FormTrainingClient(other.properties.endpoint, AzureKeyCredential(other_key), api_version="2.1",
                                connection_verify=world["ca"])
    authorization = target.get_copy_authorization(other.id, other.location)
    copied = trainer.begin_copy_model(forms.model_id, authorization, polling_interval=0.2).result(timeout=120)
    assert copied.model_id == authorization["modelId"] and copied.status == "ready", copied
    assert target.get_custom_model(copied.model_id).model_id == copied.model_id


def test_a_source_in_storage_whose_customer_key_is_revoked_is_not_accessible(world, boot, admin_keyvault, make_vault,
                                                                             key_client, admin_cred, assign):
    """The last link of the chain: the storage account's own customer-managed key. The account's identity may read,
    the firewall admits it, but with the key disabled the blob cannot be decrypted for anyone."""
    from azure.mgmt.storage.models import Identity as StorageIdentity

    admin = bs.admin_credential(boot)
    storage_client = bs.storage_client(boot, admin)
    account = bs.create_storage_account(storage_client, boot, world["rg"], bs.storage_account_name("docmk"),
                                        identity=StorageIdentity(type="SystemAssigned"))
    vault = make_vault(rg=world["rg"], tag="docmk", purge_protection=True)
    key = key_client(vault.uri, admin_cred).create_rsa_key(bs.unique("st"), size=2048)
    bs.update_access_policy(admin_keyvault, vault, "add", boot["tenant_id"], account.resource.identity.principal_id,
                            bs.CMK_KEY_PERMISSIONS)
    bs.enable_cmk(storage_client, account, vault, key.name)
    bs.blob_service(account.blob_url, account.shared_key(), boot["ca_file"]).create_container("forms") \
        .upload_blob("invoice.png", encoded(rendered(), "PNG"))
    # An account of its own: an earlier test takes the module account's identity away.
    reader = cs.create_account(cs.cognitive_client(boot, admin), boot, world["rg"], "FormRecognizer",
                               identity="SystemAssigned")
    reader_key = cs.cognitive_client(boot, admin).accounts.list_keys(world["rg"], reader.name).key1
    own = {**world, "endpoint": reader.properties.endpoint, "key": reader_key}
    auth = bs.authorization_client(boot, admin)
    bs.assign_role(auth, account.id, bs.STORAGE_BLOB_DATA_READER, reader.identity.principal_id,
                   sub=boot["subscription_id"])
    url = f"{account.blob_url}forms/invoice.png"
    assert analyze_url(own, url)["status"] == "succeeded"
    key_client(vault.uri, admin_cred).update_key_properties(key.name, enabled=False)
    time.sleep(2)  # the test servers cache an unwrapped storage key for 1 s
    revoked = analyze_url(own, url)
    assert revoked["status"] == "failed" and revoked["error"]["innererror"]["code"] == "ContentSourceNotAccessible"
    assert "customer-managed key" in revoked["error"]["message"], revoked


def test_an_account_with_only_a_user_assigned_identity_reads_as_that_identity(world, boot, admin_cognitive,
                                                                              make_identity):
    """The seed's other case: a user-assigned identity, which several resources may share."""
    from azure.mgmt.cognitiveservices.models import Identity, UserAssignedIdentity

    shared = make_identity(world["rg"])
    model = cs.account_model(boot, "FormRecognizer")
    model.identity = Identity(type="UserAssigned", user_assigned_identities={shared.id: UserAssignedIdentity()})
    account = admin_cognitive.accounts.begin_create(world["rg"], cs.account_name("uami"), model).result()
    key = admin_cognitive.accounts.list_keys(world["rg"], account.name).key1
    admin = bs.admin_credential(boot)
    storage_client = bs.storage_client(boot, admin)
    storage = bs.create_storage_account(storage_client, boot, world["rg"], bs.storage_account_name("douami"))
    bs.blob_service(storage.blob_url, storage.shared_key(), boot["ca_file"]).create_container("forms") \
        .upload_blob("invoice.png", encoded(rendered(), "PNG"))
    bs.update_storage_account(storage_client, storage, allow_blob_public_access=False,
                              network_rule_set=NetworkRuleSet(default_action="Deny", bypass="AzureServices"))
    own = {**world, "endpoint": account.properties.endpoint, "key": key}
    url = f"{storage.blob_url}forms/invoice.png"
    denied = analyze_url(own, url)
    assert denied["status"] == "failed" and denied["error"]["innererror"]["code"] == "ContentSourceNotAccessible"
    bs.assign_role(bs.authorization_client(boot, admin), storage.id, bs.STORAGE_BLOB_DATA_READER, shared.principal_id,
                   sub=boot["subscription_id"])
    done = analyze_url(own, url)
    assert done["status"] == "succeeded" and "Lovelace" in done["analyzeResult"]["content"], done


def test_v2_1_unlabeled_training_clusters_the_forms_by_layout(world, training):
    trainer, recognizer = v2_clients(world)
    model = trainer.begin_training(training["url"], use_training_labels=False, include_subfolders=True,
                                   polling_interval=0.2).result(timeout=240)
    layouts = sorted(sorted(f.label for f in sub.fields.values()) for sub in model.submodels)
    assert layouts == [sorted(f"{k}:" for k in RECEIPT_FIELDS), sorted(f"{k}:" for k in FIELDS)], layouts
    on_receipt = recognizer.begin_recognize_custom_forms(model.model_id, receipt(RECEIPTS[5])[0],
                                                        polling_interval=0.2).result(timeout=120)[0]
    on_form = recognizer.begin_recognize_custom_forms(model.model_id, form(FORMS[5])[0],
                                                     polling_interval=0.2).result(timeout=120)[0]
    assert on_receipt.form_type != on_form.form_type, (on_receipt.form_type, on_form.form_type)
    assert {f.label_data.text: f.value for f in on_receipt.fields.values()} == {"Shop:": RECEIPTS[5][0],
                                                                                "Amount:": RECEIPTS[5][1]}
    assert {f.label_data.text for f in on_form.fields.values()} == {"Name:", "Date:", "Total:"}
