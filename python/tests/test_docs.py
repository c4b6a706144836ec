# SPDX-License-Identifier: MIT
"""docs/python.rst is a test: every example in it runs as a doctest.

The in-process examples run here, with a fresh event loop set as the
current one (the document calls asyncio.get_event_loop() at top level).
The cross-process examples run in two real processes: a server process
running the serving example up to and including serve_forever(), and a
client process running the client examples against it over TCP.
"""

import asyncio
import io
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import doc_examples
from cancel_token import _core

HERE = Path(__file__).resolve().parent
# docs/ is at the top of the checkout (python/tests/../..) or of the
# sdist (tests/..).
DOC = next(d / "docs" / "python.rst" for d in (HERE.parent.parent,
                                               HERE.parent)
           if (d / "docs" / "python.rst").is_file())


def test_in_process_examples():
    text = doc_examples.sections(DOC.read_text(encoding="utf-8"))["local"]
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    out = io.StringIO()
    try:
        failed, attempted = doc_examples.run(
            text, "python.rst", str(DOC), {"__name__": "python_rst"},
            out=out.write)
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    assert attempted > 20
    assert failed == 0, out.getvalue()


@pytest.mark.skipif(not _core.HAVE_NET,
                    reason='built without canceltoken_net')
def test_cross_process_examples():
    # Port 0: the server takes a free port and says which.  (A port found
    # free here and bound there later could be taken in between by any
    # process on a busy machine.)
    script = str(HERE / "doc_examples.py")
    server = subprocess.Popen(
        [sys.executable, script, "server", str(DOC), "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = server.stdout.readline()
        assert ready.startswith("READY "), server.stderr.read()
        port = int(ready.split()[1])
        assert port > 0
        client = subprocess.run(
            [sys.executable, script, "client", str(DOC), str(port)],
            capture_output=True, text=True, timeout=120)
        assert client.returncode == 0, client.stderr
        # Ctrl-C ends serve_forever(); the server's examples then finish.
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=60)
        assert server.returncode == 0, err
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
