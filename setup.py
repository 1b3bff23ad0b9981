"""Packaging for scipion-em-deepalign (Scipion 3 plugin for DeepAlign)."""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"',
                    (HERE / "scipion_deepalign" / "version.py").read_text()).group(1)

setup(
    name="scipion-em-deepalign",
    version=VERSION,
    description="Scipion plugin for DeepAlign: 3D angular assignment of cryo-EM particles "
                "by regionalised deep learning",
    long_description=(HERE / "README.rst").read_text(),
    long_description_content_type="text/x-rst",
    license="GPLv3",
    python_requires=">=3.9",
    packages=find_packages(exclude=["benchmarks", "docs"]),
    package_data={"scipion_deepalign": ["protocols.conf", "*.png", "templates/*.json.template"]},
    install_requires=[
        "scipion-pyworkflow>=3.0",
        "scipion-em>=3.0",
        "numpy>=1.22",          # pyworkflow pins its own exact version; we follow it
        "scipy",
        "numba",                # the gridding loop (core/judge/fourier_grid.py) and others
        "matplotlib",
        "tensorflow-cpu>=2.16; platform_machine=='x86_64'",
        "tensorflow>=2.16; platform_machine!='x86_64'",
        "keras>=3.0",
        "mrcfile",
        "emtable",
        "tqdm",                 # progress bars on a terminal (core/progress.py)
    ],
    extras_require={
        "gpu": ["cupy-cuda12x<14"],
        "dev": ["pytest", "pytest-xdist", "ruff"],
    },
    entry_points={
        "pyworkflow.plugin": ["scipion_deepalign = scipion_deepalign"],
        "console_scripts": ["deepalign = scipion_deepalign.cli:main"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Bio-Informatics",
    ],
)
