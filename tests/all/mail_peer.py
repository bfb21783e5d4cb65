#!/usr/bin/env python3
"""Real SMTP peers for the e-mail feature tests.

relay PORT DIR
    Runs aiosmtpd as the relay Switchboard sends through. Each message it takes is saved as
    DIR/N.eml, then its envelope as DIR/N.json (written last: a .json means a whole message).
    A recipient whose local part is "gone" is refused for good (550 5.1.1), as a relay does
    for a mailbox that does not exist.
    Prints "ready" once listening; stops when stdin closes.
send HOST PORT FROM TO FILE [--starttls]
    Sends FILE (a whole message) with smtplib from the envelope sender FROM ("" for the null
    sender of a bounce) to TO (comma-separated) and prints the outcome as one JSON line:
    {"ok": true} or {"ok": false, "code": 550, "message": "..."}.
"""
import json
import os
import smtplib
import ssl
import sys
import time


def relay(port, directory):
    from aiosmtpd.controller import Controller

    class Saver:
        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            if address.split("@")[0] == "gone":
                return "550 5.1.1 no such mailbox"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server, session, envelope):
            base = os.path.join(directory, str(time.time_ns()))
            with open(base + ".eml", "wb") as f:
                f.write(envelope.original_content or envelope.content)
            with open(base + ".tmp", "w") as f:
                json.dump({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos}, f)
            os.rename(base + ".tmp", base + ".json")
            return "250 2.0.0 OK"

    controller = Controller(Saver(), hostname="127.0.0.1", port=int(port))
    controller.start()
    print("ready", flush=True)
    sys.stdin.read()
    controller.stop()


def send(host, port, mail_from, to, path, starttls=False):
    with open(path, "rb") as f:
        data = f.read()
    try:
        with smtplib.SMTP(host, int(port), timeout=30) as client:
            client.ehlo("peer.example.com")
            if starttls:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                client.starttls(context=context)
                client.ehlo("peer.example.com")
            client.sendmail(mail_from, to.split(","), data)
        print(json.dumps({"ok": True, "tls": starttls}))
    except smtplib.SMTPRecipientsRefused as e:
        code, message = next(iter(e.recipients.values()))
        print(json.dumps({"ok": False, "code": code, "message": message.decode()}))
    except smtplib.SMTPResponseException as e:
        print(json.dumps({"ok": False, "code": e.smtp_code, "message": e.smtp_error.decode()}))


if __name__ == "__main__":
    if sys.argv[1] == "relay":
        relay(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "send":
        send(*sys.argv[2:7], starttls="--starttls" in sys.argv[7:])
    else:
        sys.exit(__doc__)
