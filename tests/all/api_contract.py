#!/usr/bin/env python3
"""Contract fuzzing of a live Switchboard node with schemathesis, one run per role.

api_contract.py SPEC URL OUTDIR EXAMPLES ROLE=TOKEN...

SPEC is the node's /openapi.json saved to a file. For each ROLE=TOKEN, the operations that
role may call (the spec's x-roles; "agent" for /agent/v1) are written to OUTDIR/ROLE.json and
schemathesis sends up to EXAMPLES generated requests per operation (valid and invalid ones)
with `Authorization: Bearer TOKEN`. ROLE "public" (token "-") takes the operations that need
no person: health, pages, the chat, webhooks. Checks: no server error (5xx), every status,
content type and body as the spec says.

Prints, per role and in all: operations tried, requests sent, failures. Exits 1 on any
failure or error.
"""
import copy
import json
import os
import subprocess
import sys

CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
])
METHODS = ("get", "put", "post", "delete", "patch", "head")


def for_role(spec, role):
    """The spec with only the operations `role` may call."""
    mine = copy.deepcopy(spec)
    for path, item in list(mine["paths"].items()):
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            # A server-sent event stream answers for as long as the node runs: no request to
            # it ends, so it is left out (its 200 and errors are in the spec all the same).
            streams = any("text/event-stream" in r.get("content", {})
                          for r in op.get("responses", {}).values())
            roles = op.get("x-roles")
            if role == "public":
                keep = roles is None
            else:
                keep = roles is not None and role in roles
            if streams:
                keep = False
            if not keep:
                del item[method]
        if not any(m in item for m in METHODS):
            del mine["paths"][path]
    return mine


def main():
    spec_path, url, out, examples = sys.argv[1:5]
    spec = json.load(open(spec_path))
    totals = {"operations": 0, "requests": 0, "failures": 0}
    failed = False
    for pair in sys.argv[5:]:
        role, token = pair.split("=", 1)
        mine = for_role(spec, role)
        count = sum(1 for item in mine["paths"].values() for m in METHODS if m in item)
        path = os.path.join(out, f"{role}.json")
        with open(path, "w") as f:
            json.dump(mine, f)
        report = os.path.join(out, f"{role}-report.json")
        command = [
            sys.executable, "-m", "schemathesis.cli", "run", path, "--url", url,
            "--checks", CHECKS,
            "--max-examples", examples,
            "--phases", "examples,coverage,fuzzing",
            "--seed", "1",
            "--workers", "1",
            "--request-timeout", "30",
            "--no-color",
            "--report", "json", "--report-json-path", report,
        ]
        if token != "-":
            command += ["--header", f"Authorization: Bearer {token}"]
        print(f"==> {role}: {count} operations", flush=True)
        if count == 0:
            continue
        # From OUTDIR: schemathesis keeps its cache in .schemathesis/ where it runs.
        run = subprocess.run(command, capture_output=True, text=True, cwd=out)
        try:
            result = json.load(open(report))
        except (OSError, ValueError):
            result = None
        if result is None:
            print(run.stdout[-20000:], run.stderr[-5000:], sep="\n")
            print(f"{role}: schemathesis wrote no report (exit {run.returncode})")
            failed = True
            continue
        tried = result["operations"]["tested"]
        sent = result["test_cases"]["generated"]
        failures = sum(f.get("count", 1) for f in result["failures"])
        errors = len(result["errors"])
        totals["operations"] += tried
        totals["requests"] += sent
        totals["failures"] += failures + errors
        print(f"{role}: operations tried {tried} of {count}, requests sent {sent}, "
              f"failures {failures}, errors {errors}", flush=True)
        if failures or errors or run.returncode != 0 or tried < count:
            print(run.stdout[-30000:], run.stderr[-5000:], sep="\n")
            failed = True
    print(f"all roles: operations tried {totals['operations']}, "
          f"requests sent {totals['requests']}, failures {totals['failures']}", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
