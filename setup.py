"""Build hook: everything else about the package is in pyproject.toml.

``HOTPATH_COMPILE=1 pip install .`` compiles the modules listed in hotpath/compiled.py
with mypyc (a C compiler and the Python headers needed); without it they install as
plain Python. pip installs mypy into the isolated build environment on its own: the
first run of this file, without mypy, only declares it as a build requirement.
"""

import runpy
import sys
from pathlib import Path

from setuptools import setup

compiled = runpy.run_path(str(Path(__file__).parent / "hotpath" / "compiled.py"))
ext_modules = []
setup_requires = []
if compiled["requested"]():
    setup_requires = ["mypy>=1.13"]
    try:
        from mypyc.build import mypycify
    except ImportError:
        # pip first asks for the build requirements (egg_info) and then calls again with
        # mypy installed; a build without it (--no-build-isolation) cannot compile.
        if any(cmd in sys.argv for cmd in ("bdist_wheel", "build_ext", "editable_wheel")):
            sys.exit("HOTPATH_COMPILE=1 needs mypy in the build environment: pip install "
                     "mypy, or build without --no-build-isolation")
    else:
        ext_modules = mypycify(compiled["sources"](), opt_level="3")

setup(ext_modules=ext_modules, setup_requires=setup_requires)
