# SPDX-License-Identifier: MIT
"""Runs the examples of docs/python.rst as doctests.

Imported by test_docs.py for the in-process part, and run as a script for
each side of the cross-process part:

    python doc_examples.py server|client PATH-TO-python.rst PORT

    python doc_examples.py server PATH-TO-python.rst 0

The document marks its cross-process parts with ".. doctest-process: NAME"
comment lines (server, client, end); the text before the first marker is
the in-process part.  The server side says "READY PORT" on stdout just
before it runs ``server.serve_forever()`` (its socket is listening by
then; PORT is the one it got, which is the one asked for unless that was
0), and ends when that call returns (on SIGINT).  Exit status: 0 if every
example passed.
"""

import doctest
import os
import re
import sys

MARKER = re.compile(r"^\.\. doctest-process: (\w+)[ \t]*$", re.M)
# The port the document's server example binds; the test substitutes a
# free one.
DOC_ADDRESS = "('', 5001)"
FLAGS = doctest.ELLIPSIS


def sections(text):
    """{'local': ..., 'server': ..., 'client': ...}: each part of the text,
    preceded by as many newlines as lines before it, so that doctest's line
    numbers are those of the file."""
    parts = {}
    marks = list(MARKER.finditer(text))
    starts = [(None, 0)] + [(m.group(1), m.end()) for m in marks]
    ends = [m.start() for m in marks] + [len(text)]
    for (name, start), end in zip(starts, ends):
        padding = "\n" * text.count("\n", 0, start)
        parts[name or "local"] = padding + text[start:end]
    return parts


def run(text, name, filename, globs, runner=None, out=None):
    """Run the examples of text; returns (failures, attempts)."""
    test = doctest.DocTestParser().get_doctest(text, globs, name, filename, 0)
    runner = runner or doctest.DocTestRunner(optionflags=FLAGS)
    result = runner.run(test, out=out)
    return result.failed, result.attempted


class _ServerRunner(doctest.DocTestRunner):
    def report_start(self, out, test, example):
        if example.source.startswith("server.serve_forever()"):
            port = test.globs["server"].address[1]
            os.write(1, f"READY {port}\n".encode())
        super().report_start(out, test, example)


def main(argv):
    role, path, port = argv[1], argv[2], int(argv[3])
    with open(path, encoding="utf-8") as f:
        text = sections(f.read())[role]
    globs = {"__name__": f"python_rst_{role}"}
    runner = None
    if role == "server":
        if DOC_ADDRESS not in text:
            print(f"{path}: the server example no longer binds {DOC_ADDRESS}",
                  file=sys.stderr)
            return 2
        text = text.replace(DOC_ADDRESS, f"('', {port})")
        runner = _ServerRunner(optionflags=FLAGS)
    else:
        globs["manager_address"] = ("", port)
    failed, attempted = run(text, f"python.rst[{role}]", path, globs, runner,
                            out=sys.stderr.write)
    print(f"{role}: {attempted - failed} passed, {failed} failed",
          file=sys.stderr)
    return 1 if failed or not attempted else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
