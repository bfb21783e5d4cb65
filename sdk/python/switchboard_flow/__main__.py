"""``python -m switchboard_flow build app.py [-o flow.wasm]``: builds a flow component with
componentize-py against the contract this SDK ships (``switchboard_flow/wit``)."""

import argparse
import os
import shutil
import subprocess
import sys
import time

COMPONENTIZE_PY = "componentize-py==0.25.1"


def build(app: str, output: str) -> int:
    tool = shutil.which("componentize-py")
    if tool is None:
        print(f"componentize-py not found: pip install {COMPONENTIZE_PY}", file=sys.stderr)
        return 2
    app_dir, app_file = os.path.split(os.path.abspath(app))
    module, ext = os.path.splitext(app_file)
    if ext != ".py" or not os.path.exists(app):
        print(f"{app}: expected the flow's Python file (such as app.py)", file=sys.stderr)
        return 2
    sdk_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    wit = os.path.join(sdk_root, "switchboard_flow", "wit")
    command = [
        tool, "-d", wit, "-w", "flow", "componentize", module,
        "-p", app_dir, "-p", sdk_root, "-o", output,
    ]
    print(f"building {output} from {app} with componentize-py (about 15 s)...", file=sys.stderr, flush=True)
    started = time.time()
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        print(result.stdout, file=sys.stderr)
        print(f"build failed: {app} did not componentize (see above); does it assign WitWorld = export(YourFlow)?", file=sys.stderr)
        return 1
    size = os.path.getsize(output) / 1e6
    print(f"built {output} ({size:.1f} MB) in {time.time() - started:.1f} s", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m switchboard_flow")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build a flow component")
    b.add_argument("app", help="the flow's Python file")
    b.add_argument("-o", "--output", default="flow.wasm")
    args = parser.parse_args(argv)
    return build(args.app, args.output)


if __name__ == "__main__":
    sys.exit(main())
