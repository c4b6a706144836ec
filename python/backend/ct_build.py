# SPDX-License-Identifier: MIT
"""The build backend of the cancel_token package (PEP 517), in the tree and
with no dependencies but the interpreter and a C compiler, so that

    pip install ./python        (from a checkout)
    pip install cancel_token-VERSION.tar.gz

work offline with any CPython 3.9+ and any pip, with or without build
isolation, setuptools or wheel being installed or not (pyenv's 3.12 and
3.13 have neither).  It compiles the extension cancel_token._core with the
compiler the interpreter was built with (sysconfig's CC, or $CC), writes
the wheel (a zip file with the dist-info of the wheel format) and the
sdist (a tar.gz) itself.

Design notes:

- One module for every CPython 3.9+: the sources use the stable ABI
  (python/src/ct_py.h), so the wheel is tagged cp39-abi3-PLATFORM and its
  module is _core.abi3.so.
- Where the C sources come from.  In a checkout: ../src/*.c (the core),
  ../src/remote/*.c (the token server and client), ../include.  In an
  sdist: the copies build_sdist put under _c/ (same layout), so an sdist
  is self-contained.  The version is ../VERSION (or the sdist's VERSION),
  checked against include/canceltoken.h, and baked into the module.
- The cross-process part (src/remote, needs OpenSSL's libcrypto) is built
  when <openssl/hmac.h> is found; CANCEL_TOKEN_NET=0 leaves it out, =1
  makes its absence an error.  The same for the ZooKeeper backend
  (src/zk, needs libzookeeper_mt) and CANCEL_TOKEN_ZK.
- Objects are compiled two at a time (CANCEL_TOKEN_JOBS to change) into a
  temporary directory; nothing is written into the source tree.
"""

import base64
import concurrent.futures
import hashlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent  # python/, or the sdist root
NAME = "cancel_token"
DIST = "cancel-token"


def _c_root():
    """The directory holding include/ and src/: the sdist's _c/ or the
    checkout's top."""
    for root in (HERE / "_c", HERE.parent):
        if (root / "include" / "canceltoken.h").is_file() and \
                (root / "src").is_dir():
            return root
    raise SystemExit(
        "cancel_token: libcanceltoken's C sources (include/canceltoken.h, "
        "src/*.c) are missing: build from a full checkout of the "
        "repository or from the sdist")


def _version():
    for path in (HERE / "VERSION", HERE.parent / "VERSION"):
        if path.is_file():
            text = path.read_text().strip()
            break
    else:
        raise SystemExit("cancel_token: the VERSION file is missing")
    m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", text)
    if not m:
        raise SystemExit(f"cancel_token: VERSION must be MAJOR.MINOR.PATCH, "
                         f"not {text!r}")
    header = (_c_root() / "include" / "canceltoken.h").read_text()
    for part, want in zip(("MAJOR", "MINOR", "PATCH"), m.groups()):
        got = re.search(rf"^#define CT_VERSION_{part} (\d+)$", header, re.M)
        if not got or got.group(1) != want:
            raise SystemExit(
                f"cancel_token: include/canceltoken.h's CT_VERSION_{part} "
                f"does not match VERSION ({text})")
    return text


def _metadata(version):
    readme = (HERE / "README.md").read_text(encoding="utf-8")
    return (
        "Metadata-Version: 2.1\n"
        f"Name: {DIST}\n"
        f"Version: {version}\n"
        "Summary: Cancel tokens for asyncio, trio and anyio, built on "
        "libcanceltoken (C)\n"
        "License: MIT\n"
        "Requires-Python: >=3.9\n"
        "Classifier: Framework :: AsyncIO\n"
        "Classifier: Framework :: Trio\n"
        "Classifier: License :: OSI Approved :: MIT License\n"
        "Classifier: Operating System :: POSIX :: Linux\n"
        "Classifier: Programming Language :: C\n"
        "Classifier: Programming Language :: Python :: 3\n"
        "Classifier: Typing :: Typed\n"
        "Description-Content-Type: text/markdown\n"
        "\n" + readme)


def _have_header(name, include_dirs):
    dirs = list(include_dirs) + ["/usr/include", "/usr/local/include"]
    return any(os.path.exists(os.path.join(d, name)) for d in dirs)


def _have_openssl(include_dirs):
    return _have_header(os.path.join("openssl", "hmac.h"), include_dirs)


def _have_lib(name):
    """Is lib<name>.so where the linker looks by default?"""
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    dirs = ["/usr/lib", "/usr/local/lib", "/lib",
            os.path.join("/usr/lib", multiarch)]
    return any(os.path.exists(os.path.join(d, f"lib{name}.so"))
               for d in dirs)


def _compile(version, out_dir):
    """Build _core.abi3.so into out_dir; returns its path."""
    root = _c_root()
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC")
                     or "cc")
    py_include = sysconfig.get_paths()["include"]
    if not (Path(py_include) / "Python.h").is_file():
        raise SystemExit(
            f"cancel_token: Python.h not found in {py_include}: install the "
            "interpreter's development files (Debian: apt-get install "
            "python3-dev)")
    sources = [HERE / "src" / n for n in
               ("module.c", "token.c", "names.c", "notify.c", "handle.c")]
    sources += sorted((root / "src").glob("*.c"))
    defines = ["-D_GNU_SOURCE", f'-DCT_PY_VERSION="{version}"']
    includes = ["-I" + str(root / "include"), "-I" + str(HERE / "src"),
                "-I" + py_include]
    libs = ["-lpthread"]
    want_net = os.environ.get("CANCEL_TOKEN_NET")
    net_sources = sorted((root / "src" / "remote").glob("*.c"))
    use_net = bool(net_sources) and want_net != "0" and \
        _have_openssl([py_include])
    if want_net == "1" and not use_net:
        raise SystemExit(
            "cancel_token: CANCEL_TOKEN_NET=1 but the token server and "
            "client cannot be built (src/remote missing, or OpenSSL's "
            "headers: apt-get install libssl-dev)")
    if use_net:
        sources += [HERE / "src" / "net.c"] + net_sources
        includes.append("-I" + str(root / "src" / "remote"))
        defines.append("-DCT_PY_NET")
        libs.insert(0, "-lcrypto")
    # The ZooKeeper backend (src/zk, over the shared proxy layer and the
    # address parser of src/remote) when the ZooKeeper C client is there.
    want_zk = os.environ.get("CANCEL_TOKEN_ZK")
    zk_sources = sorted((root / "src" / "zk").glob("*.c"))
    use_zk = bool(zk_sources) and want_zk != "0" and \
        _have_header("zookeeper/zookeeper.h", [py_include]) and \
        _have_lib("zookeeper_mt")
    if want_zk == "1" and not use_zk:
        raise SystemExit(
            "cancel_token: CANCEL_TOKEN_ZK=1 but the ZooKeeper backend "
            "cannot be built (src/zk missing, or the ZooKeeper C client: "
            "apt-get install libzookeeper-mt-dev)")
    if use_zk:
        sources += [HERE / "src" / "zk.c"] + zk_sources
        if not use_net:  # what src/zk shares with src/remote
            sources += [root / "src" / "remote" / n
                        for n in ("proxy.c", "address.c", "alloc.c", "text.c")]
            includes.append("-I" + str(root / "src" / "remote"))
        defines.append("-DCT_PY_ZK")
        libs.insert(0, "-lzookeeper_mt")
    # A function missing from the limited API of the interpreter's headers
    # must stop the build, not be declared implicitly.
    flags = ["-std=gnu11", "-O2", "-fPIC", "-fvisibility=hidden", "-Wall",
             "-Werror=implicit-function-declaration",
             "-Werror=int-conversion"] + defines + includes
    objs_dir = Path(tempfile.mkdtemp(prefix="ct-build-"))

    def one(i_src):
        i, src = i_src
        obj = objs_dir / f"{i:02d}_{src.stem}.o"
        cmd = cc + flags + ["-c", str(src), "-o", str(obj)]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True)
        except FileNotFoundError:
            raise SystemExit(
                f"cancel_token: no C compiler {cc[0]!r}: install one "
                "(Debian: apt-get install gcc) or set CC") from None
        if r.returncode != 0:
            raise SystemExit(f"cancel_token: compiling {src} failed:\n"
                             f"{' '.join(cmd)}\n{r.stdout}{r.stderr}")
        return obj
    try:
        jobs = int(os.environ.get("CANCEL_TOKEN_JOBS", "2"))
        with concurrent.futures.ThreadPoolExecutor(jobs) as ex:
            objs = list(ex.map(one, enumerate(sources)))
        target = Path(out_dir) / "_core.abi3.so"
        cmd = cc + ["-shared", "-o", str(target)] + [str(o) for o in objs] \
            + libs
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"cancel_token: linking failed:\n"
                             f"{' '.join(cmd)}\n{r.stdout}{r.stderr}")
    finally:
        shutil.rmtree(objs_dir, ignore_errors=True)
    print(f"cancel_token: built _core.abi3.so ({len(sources)} C files, "
          f"token server and client: {'yes' if use_net else 'no'}, "
          f"ZooKeeper: {'yes' if use_zk else 'no'})", file=sys.stderr)
    return target


def _package_files():
    pkg = HERE / NAME
    return sorted(p for p in pkg.iterdir()
                  if p.suffix in (".py", ".pyi") or p.name == "py.typed")


def _wheel_tag():
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return f"cp39-abi3-{plat}"


def _record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest())
    return f"{name},sha256={digest.rstrip(b'=').decode()},{len(data)}"


# -- PEP 517 hooks ------------------------------------------------------------

def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None,
                metadata_directory=None):
    version = _version()
    tag = _wheel_tag()
    dist_info = f"{NAME}-{version}.dist-info"
    filename = f"{NAME}-{version}-{tag}.whl"
    build_dir = Path(tempfile.mkdtemp(prefix="ct-wheel-"))
    try:
        module = _compile(version, build_dir)
        entries = [(f"{NAME}/{p.name}", p.read_bytes())
                   for p in _package_files()]
        entries.append((f"{NAME}/_core.abi3.so", module.read_bytes()))
        entries.append((f"{dist_info}/METADATA",
                        _metadata(version).encode()))
        entries.append((f"{dist_info}/WHEEL", (
            "Wheel-Version: 1.0\n"
            "Generator: cancel_token backend/ct_build.py\n"
            "Root-Is-Purelib: false\n"
            f"Tag: {tag}\n").encode()))
        license_file = _c_root() / "LICENSE"
        if license_file.is_file():
            entries.append((f"{dist_info}/LICENSE",
                            license_file.read_bytes()))
        record = [_record_line(n, d) for n, d in entries]
        record.append(f"{dist_info}/RECORD,,")
        entries.append((f"{dist_info}/RECORD",
                        ("\n".join(record) + "\n").encode()))
        path = Path(wheel_directory) / filename
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in entries:
                info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
                info.external_attr = (0o755 if name.endswith(".so")
                                      else 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, data)
    finally:
        shutil.rmtree(build_dir, ignore_errors=True)
    return filename


def build_sdist(sdist_directory, config_settings=None):
    """A self-contained source archive: this directory's package, build
    backend, C sources of the module and tests, plus libcanceltoken's C
    sources and headers under _c/, VERSION and LICENSE."""
    version = _version()
    root = _c_root()
    base = f"{NAME}-{version}"
    files = []  # (path in the archive, path on disk)
    for rel in ("pyproject.toml", "README.md"):
        files.append((rel, HERE / rel))
    for sub, pattern in (("backend", "*.py"), ("src", "*.[ch]"),
                         (NAME, "*"), ("tests", "*.py"),
                         ("tests", "pytest.ini"), ("tests", "*.c"),
                         ("tests/minipytest", "*.py"), ("bench", "*.py")):
        for p in sorted((HERE / sub).glob(pattern)):
            if p.is_file() and "__pycache__" not in p.parts and \
                    p.suffix not in (".so", ".pyc"):
                files.append((f"{sub}/{p.name}", p))
    for sub, pattern in (("include", "*.h"), ("src", "*.[ch]"),
                         ("src/remote", "*.[ch]"), ("src/zk", "*.[ch]")):
        for p in sorted((root / sub).glob(pattern)):
            files.append((f"_c/{sub}/{p.name}", p))
    for extra in ("VERSION", "LICENSE"):
        for p in (HERE / extra, HERE.parent / extra):
            if p.is_file():
                files.append((extra, p))
                break
    docs = [HERE / "docs" / "python.rst", HERE.parent / "docs" / "python.rst"]
    for p in docs:
        if p.is_file():
            files.append(("docs/python.rst", p))
            break
    filename = f"{base}.tar.gz"
    path = Path(sdist_directory) / filename
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tf:
        def add(name, data, mode=0o644):
            info = tarfile.TarInfo(f"{base}/{name}")
            info.size = len(data)
            info.mtime = int(time.time())
            info.mode = mode
            tf.addfile(info, io.BytesIO(data))
        seen = set()
        for name, p in files:
            if name not in seen:
                seen.add(name)
                add(name, p.read_bytes())
        add("PKG-INFO", _metadata(version).encode())
    return filename


def main(argv):
    """python3 backend/ct_build.py sdist|wheel OUTDIR: the hooks, for
    making an sdist without any frontend (pip cannot make one)."""
    if len(argv) != 3 or argv[1] not in ("sdist", "wheel"):
        print("usage: ct_build.py sdist|wheel OUTDIR", file=sys.stderr)
        return 2
    os.makedirs(argv[2], exist_ok=True)
    hook = build_sdist if argv[1] == "sdist" else build_wheel
    print(os.path.join(argv[2], hook(argv[2])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
