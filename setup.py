"""Build of the one C extension, heaptrail._core.

Every .c file under src/heaptrail/_core is one concept and is compiled in.
Environment switches:
  HEAPTRAIL_ASAN=1   build with -fsanitize=address,undefined (make asan)
  HEAPTRAIL_DEBUG=1  build with -O0 -g
  HEAPTRAIL_NO_ZLIB=1  no capture compression even when zlib.h is there
"""
import glob
import os
import shutil
import subprocess
import sysconfig
import tempfile

from setuptools import Extension, setup

sources = sorted(glob.glob("src/heaptrail/_core/*.c"))
cflags = ["-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter",
          "-Wno-missing-field-initializers", "-fvisibility=hidden"]
ldflags = []
if os.environ.get("HEAPTRAIL_ASAN"):
    cflags += ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
               "-fno-sanitize-recover=undefined"]
    ldflags += ["-fsanitize=address,undefined"]
elif os.environ.get("HEAPTRAIL_DEBUG"):
    cflags += ["-O0", "-g"]
else:
    cflags += ["-O2"]



def _have_zlib():
    """Capture blocks are zlib-compressed when zlib's header and library are
    on the build machine; never required (HEAPTRAIL_NO_ZLIB=1 turns it off)."""
    if os.environ.get("HEAPTRAIL_NO_ZLIB"):
        return False
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    d = tempfile.mkdtemp()
    try:
        src = os.path.join(d, "t.c")
        with open(src, "w") as f:
            f.write("#include <zlib.h>\nint main(void) { return deflateBound(0, 1) == 0; }\n")
        r = subprocess.run(cc + [src, "-o", os.path.join(d, "t"), "-lz"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return r.returncode == 0
    except OSError:
        return False
    finally:
        shutil.rmtree(d, ignore_errors=True)


libraries = ["m"]
macros = []
if _have_zlib():
    libraries.append("z")
    macros.append(("HT_HAVE_ZLIB", "1"))

# A sanitizer or debug build keeps its own build directory: in the shared
# one setuptools took the normal build for up to date and skipped building,
# so `make asan` after `make test` ran the suite on an uninstrumented
# extension.
variant = "asan" if os.environ.get("HEAPTRAIL_ASAN") else "debug" if os.environ.get("HEAPTRAIL_DEBUG") else None
options = {"build": {"build_base": os.path.join("build", variant)}} if variant else {}

setup(
    options=options,
    ext_modules=[
        Extension(
            "heaptrail._core",
            sources=sources,
            depends=sorted(glob.glob("src/heaptrail/_core/*.h")),  # a header change rebuilds
            include_dirs=["src/heaptrail/_core"],
            extra_compile_args=cflags,
            extra_link_args=ldflags,
            libraries=libraries,
            define_macros=macros,
        )
    ]
)
