"""A real SMTP server (aiosmtpd) for the delivery tests, on 127.0.0.1 only.

    smtp_sink.py FOLDER [--port N] [--auth USER:PASSWORD]
                        [--tls-cert PEM --tls-key PEM [--implicit-tls]]

Prints the port it listens on as the first line of stdout, then serves until
killed. Every accepted message becomes one JSON file in FOLDER: the envelope,
the raw data, and the message parsed by Python's `email` package, so the test
checks what a mail client would see whatever transfer encoding the sender chose.

RCPT TO an address containing "bounce" is refused with 550 and one containing
"busy" with 451. With --auth, every transaction needs AUTH with exactly that
user and password; auth_require_tls is off because this only ever listens on
loopback. With a certificate the sink requires STARTTLS, or with
--implicit-tls speaks TLS from the first byte (SMTPS).
"""

import argparse
import asyncio
import email
import email.policy
import itertools
import json
import logging
import os
import ssl
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Sink:
    def __init__(self, folder):
        self.folder = folder
        self.counter = itertools.count(1)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if "bounce" in address:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if "busy" in address:
            return f"451 4.2.1 <{address}>: Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        n = next(self.counter)
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        parts = []
        for part in msg.walk():
            entry = {
                "content_type": part.get_content_type(),
                "filename": part.get_filename(),
                "disposition": part.get_content_disposition(),
            }
            if not part.is_multipart():
                entry["content"] = part.get_payload(decode=True).decode("utf-8", "replace")
            parts.append(entry)
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "headers": {k: str(v) for k, v in msg.items()},
            "parts": parts,
            "data": raw.decode("utf-8", "replace"),
        }
        # Written under a temporary name and renamed so that a reader polling
        # the folder never sees half a file.
        tmp = os.path.join(self.folder, f".{n}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.replace(tmp, os.path.join(self.folder, f"{n}.json"))
        return f"250 2.0.0 Ok: queued as SINK{n}"


def authenticator(user, password):
    expected = LoginPassword(user.encode(), password.encode())

    def check(server, session, envelope, mechanism, auth_data):
        # handled=False: let aiosmtpd answer 535 itself; with the default
        # (handled=True) it would send nothing and the client would hang.
        return AuthResult(success=auth_data == expected, handled=False)

    return check


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--auth", help="USER:PASSWORD required from every client")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--implicit-tls", action="store_true")
    args = ap.parse_args()
    # aiosmtpd warns about AUTH without TLS, logs every session and prints a
    # traceback for each handshake a client aborts (the untrusted-CA case): noise
    # here. A failing handler still shows, as the reply the test asserts on.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    logging.getLogger("mail.log").setLevel(logging.CRITICAL)

    loop = asyncio.get_running_loop()
    handler = Sink(args.folder)
    options = {}
    if args.auth:
        user, _, password = args.auth.partition(":")
        options = dict(
            authenticator=authenticator(user, password),
            auth_required=True,
            auth_require_tls=False,
        )
    context = None
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        if not args.implicit_tls:
            options.update(tls_context=context, require_starttls=True)
    # A plain asyncio server rather than aiosmtpd's Controller: the Controller
    # cannot report the port the system picked for port 0, this can.
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.test", loop=loop, **options),
        host="127.0.0.1",
        port=args.port,
        ssl=context if args.implicit_tls else None,
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
