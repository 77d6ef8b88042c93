"""Build of the one C extension, heaptrail._core.

Every .c file under src/heaptrail/_core is one concept and is compiled in.
Environment switches:
  HEAPTRAIL_ASAN=1   build with -fsanitize=address,undefined (make asan)
  HEAPTRAIL_DEBUG=1  build with -O0 -g
"""
import glob
import os

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

setup(
    ext_modules=[
        Extension(
            "heaptrail._core",
            sources=sources,
            include_dirs=["src/heaptrail/_core"],
            extra_compile_args=cflags,
            extra_link_args=ldflags,
            libraries=["m"],
        )
    ]
)
