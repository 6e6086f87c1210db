#!/usr/bin/env python3
"""Receive leadlink's signed status callbacks and print them (standard library only).

usage: callback_receiver.py PORT SECRET [--host HOST]

Each POST is checked against the Standard Webhooks signature made with SECRET (the
`whsec_...` of writeback.callback.secret): HMAC-SHA256 over
"{webhook-id}.{webhook-timestamp}.{body}", keyed with the base64-decoded part after
"whsec_", compared with each "v1,<base64>" entry of the space-separated `webhook-signature`
header. A good one is printed and answered 204; a bad one gets 401.

A change whose `sequence` is not newer than the last one seen for its job is printed as
"older, ignored": that is how a receiver keeps a retried old state from overwriting a newer one.
"""
import argparse
import base64
import binascii
import hashlib
import hmac
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Lock

TOLERANCE_SECONDS = 5 * 60

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("port", type=int, help="e.g. 9200")
parser.add_argument("secret", help="whsec_... as in writeback.callback.secret")
parser.add_argument("--host", default="127.0.0.1")
args = parser.parse_args()

if not args.secret.startswith("whsec_"):
    sys.exit("the secret must start with whsec_")
try:
    KEY = base64.b64decode(args.secret[len("whsec_"):], validate=True)
except binascii.Error:
    sys.exit("the part after whsec_ is not valid base64")

latest_sequence = {}  # jobId -> highest sequence seen
lock = Lock()


def signature_problem(headers, body):
    """None when the signature is good, else why not."""
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not msg_id or not timestamp or not signatures:
        return "missing webhook-id, webhook-timestamp or webhook-signature"
    try:
        signed_at = int(timestamp)
    except ValueError:
        return "malformed webhook-timestamp"
    if abs(time.time() - signed_at) > TOLERANCE_SECONDS:
        return "webhook-timestamp too far from now"
    expected = base64.b64encode(
        hmac.new(KEY, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    ).decode()
    for entry in signatures.split():
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return None
    return "no signature matches"


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        problem = signature_problem(self.headers, body)
        if problem:
            print(f"401 rejected: {problem}", flush=True)
            self.send_response(401)
            self.end_headers()
            return
        try:
            data = json.loads(body)["data"]
        except (ValueError, KeyError, TypeError):
            print("400 body is not a lead.connect.status event", flush=True)
            self.send_response(400)
            self.end_headers()
            return
        job, sequence = data.get("jobId"), data.get("sequence")
        with lock:
            older = sequence is not None and sequence <= latest_sequence.get(job, 0)
            if not older and sequence is not None:
                latest_sequence[job] = sequence
        line = (
            f"status={data.get('status')} jobId={job} sequence={sequence} "
            f"recordId={data.get('recordId')}"
        )
        for field in ("profileUrn", "retryAt", "holdUntil", "error"):
            if data.get(field) is not None:
                line += f" {field}={data[field]}"
        if older:
            line += " (older, ignored)"
        print(line, flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_):
        pass  # one line per callback is printed above


print(f"listening on http://{args.host}:{args.port}/", flush=True)
ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()
