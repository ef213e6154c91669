"""moto's server (SQS, KMS, Secrets Manager) served by waitress, which keeps
HTTP/1.1 connections alive as AWS does. `moto_server` runs on werkzeug's
development server, which closes every connection after one answer: each
SQS call then opens a TCP connection, which cost the caller about a quarter
of a millisecond of CPU more per `SendMessage` (870-970 against 630-710 us,
`postback-bench --cpu-per-call`), which no call to SQS in AWS costs and the
service CPU figure of `make bench` would count.

    python moto_keepalive.py HOST PORT
"""

import os
import sys

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from waitress import serve


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    # moto builds queue URLs from it, as `moto_server -p PORT` does.
    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    # Long polls (ReceiveMessage with WaitTimeSeconds) hold a thread each:
    # the local runner's pollers and the tests' stacks run many at once.
    serve(
        app,
        host=host,
        port=port,
        threads=64,
        connection_limit=1000,
        channel_timeout=60,
        ident="moto",
    )


if __name__ == "__main__":
    main()
