# SPDX-License-Identifier: MIT
"""Builds the cancel_token package with setuptools, for ``pip install`` from
a checkout.  The extension cancel_token._core is compiled together with
libcanceltoken's own C sources (../src/*.c and, when OpenSSL's headers are
there, the token server and client in ../src/remote/), so nothing needs to be
built or installed first, and no network is needed:

    /usr/bin/python3 -m venv --system-site-packages /tmp/venv
    /tmp/venv/bin/pip install --no-build-isolation ./python

(--no-build-isolation uses Debian's python3-setuptools instead of fetching
one.)  Set CANCEL_TOKEN_NET=0 to leave out the cross-process part, or =1 to
insist on it.  The CMake build (python/CMakeLists.txt) is the other way to
build the same module.
"""

import glob
import os
import sysconfig

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def rel(path):
    """setuptools wants paths relative to this file's directory."""
    return os.path.relpath(path, HERE)


def have_openssl():
    dirs = [sysconfig.get_paths()["include"], "/usr/include",
            "/usr/local/include"]
    return any(os.path.exists(os.path.join(d, "openssl", "hmac.h"))
               for d in dirs)


core_sources = sorted(glob.glob(os.path.join(ROOT, "src", "*.c")))
if not core_sources:
    raise SystemExit("setup.py: libcanceltoken's sources (../src) not found; "
                     "build from a full checkout")
net_sources = sorted(glob.glob(os.path.join(ROOT, "src", "net", "*.c")))

want_net = os.environ.get("CANCEL_TOKEN_NET")
if want_net == "1" and not net_sources:
    raise SystemExit("setup.py: CANCEL_TOKEN_NET=1 but ../src/remote is missing")
use_net = bool(net_sources) and (
    want_net == "1" or (want_net != "0" and have_openssl()))

sources = [rel(os.path.join(HERE, "src", "_core.c"))]
sources += [rel(p) for p in core_sources]
define_macros = [("_GNU_SOURCE", None)]
include_dirs = [rel(os.path.join(ROOT, "include")), rel(os.path.join(HERE, "src"))]
libraries = []
if use_net:
    sources += [rel(p) for p in net_sources]
    include_dirs.append(rel(os.path.join(ROOT, "src", "net")))
    define_macros.append(("CT_PY_NET", None))
    libraries.append("crypto")

setup(
    ext_modules=[
        Extension(
            "cancel_token._core",
            sources=sources,
            include_dirs=include_dirs,
            define_macros=define_macros,
            libraries=libraries + ["pthread"],
            # Only PyInit__core is exported: the library's symbols stay
            # private to the module.
            extra_compile_args=["-std=c11", "-fvisibility=hidden"],
        )
    ],
)
