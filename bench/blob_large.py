"""Uploads and downloads one 2 GiB blob to byos through azure-storage-blob, streaming both ways, and
checks the bytes that came back (a running SHA-256 of a deterministic pattern)."""

import hashlib
import io
import json
import sys

from azure.storage.blob import BlobServiceClient

SIZE = 2 * 1024 * 1024 * 1024
PIECE = 4 * 1024 * 1024


class Pattern(io.RawIOBase):
    """A readable stream of SIZE deterministic bytes, never held in memory whole."""

    def __init__(self):
        self.left = SIZE
        self.block = hashlib.sha256(b"byos").digest() * (PIECE // 32)
        self.digest = hashlib.sha256()

    def readable(self):
        return True

    def readinto(self, buffer):
        n = min(len(buffer), self.left, len(self.block))
        buffer[:n] = self.block[:n]
        self.digest.update(self.block[:n])
        self.left -= n
        return n


def main(setup_json):
    setup = json.loads(setup_json)
    service = BlobServiceClient(setup["endpoint"], credential={"account_name": setup["account"], "account_key": setup["key"]},
                                connection_verify=setup["ca"], max_block_size=PIECE, max_single_put_size=PIECE)
    blob = service.get_blob_client("bench", "large-2g")
    source = Pattern()
    blob.upload_blob(source, length=SIZE, overwrite=True, max_concurrency=2)
    back = hashlib.sha256()
    received = 0
    for chunk in blob.download_blob(max_concurrency=2).chunks():
        back.update(chunk)
        received += len(chunk)
    assert received == SIZE, received
    assert back.hexdigest() == source.digest.hexdigest(), "downloaded bytes differ from the uploaded ones"
    print(json.dumps({"bytes": SIZE}))


if __name__ == "__main__":
    main(sys.argv[1])
