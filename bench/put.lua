-- wrk: a durable 1 MiB Put Blob to the same SAS URL, over and over.
wrk.method = "PUT"
wrk.headers["x-ms-blob-type"] = "BlockBlob"
wrk.headers["x-ms-version"] = "2025-01-05"
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.body = string.rep("b", 1048576)
