#!/usr/bin/env python3
"""Send one Standard Webhooks-signed lead event to leadlink (standard library only).

usage: send_event.py URL SECRET RECORD_ID LINKEDIN_URL [ACCOUNT_ID] [--type TYPE] [--first-name NAME]
"""
import argparse
import base64
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
import uuid

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("url", help="e.g. http://127.0.0.1:8080/webhooks/events")
parser.add_argument("secret", help="whsec_... as in sources.events.secrets")
parser.add_argument("record_id")
parser.add_argument("linkedin_url")
parser.add_argument("account_id", nargs="?")
parser.add_argument("--type", default="lead.qualified")
parser.add_argument("--first-name")
parser.add_argument("--message")
parser.add_argument("--webhook-id", default=None, help="reuse one to see idempotency")
args = parser.parse_args()

body = json.dumps({
    "type": args.type,
    "data": {
        "recordId": args.record_id,
        "linkedinUrl": args.linkedin_url,
        "accountId": args.account_id,
        "firstName": args.first_name,
        "message": args.message,
    },
}).encode()
msg_id = args.webhook_id or f"msg_{uuid.uuid4().hex}"
timestamp = str(int(time.time()))
key = base64.b64decode(args.secret.removeprefix("whsec_"))
signature = base64.b64encode(
    hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
).decode()
request = urllib.request.Request(args.url, data=body, method="POST", headers={
    "content-type": "application/json",
    "webhook-id": msg_id,
    "webhook-timestamp": timestamp,
    "webhook-signature": f"v1,{signature}",
})
try:
    with urllib.request.urlopen(request) as response:
        print(response.status, response.read().decode())
except urllib.error.HTTPError as error:
    print(error.code, error.read().decode())
    raise SystemExit(1)
