#!/usr/bin/env python3
"""A demo REST CRM for the walkthrough, standard library only.

Serves the customers of a CSV file (id,name,phone,email,tier,...) the way the sample connector
(connectors/rest-crm) asks for them:

    GET /api/customers?phone=%2B15551230004   -> [ {customer} ] or []
    GET /api/customers?email=kj%40example.com -> [ {customer} ] or []
    GET /api/customers/c-2001                 -> {customer} or 404

and prints every request it answers.

Usage: python3 examples/rest_crm.py [PORT] [CSV]   (defaults: 8089, examples/crm-customers.csv)
"""

import csv
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 8089
FILE = sys.argv[2] if len(sys.argv) > 2 else "examples/crm-customers.csv"

with open(FILE, newline="") as f:
    CUSTOMERS = [{k: v for k, v in row.items() if v} for row in csv.DictReader(f)]


class Crm(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if url.path == "/api/customers":
            found = [
                c for c in CUSTOMERS
                if any(c.get(field) == values[0] for field, values in query.items())
            ]
            self.answer(200, found[:1])
        elif url.path.startswith("/api/customers/"):
            wanted = unquote(url.path.rsplit("/", 1)[1])
            found = [c for c in CUSTOMERS if c.get("id") == wanted]
            self.answer(200, found[0]) if found else self.answer(404, {"error": "no such customer"})
        else:
            self.answer(404, {"error": "try /api/customers?phone=..."})

    def answer(self, status, value):
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print(f"crm: {self.command} {self.path} -> {args[1] if len(args) > 1 else ''}", flush=True)


print(f"demo CRM with {len(CUSTOMERS)} customers on http://127.0.0.1:{PORT}/api", flush=True)
ThreadingHTTPServer(("127.0.0.1", PORT), Crm).serve_forever()
