"""Packaging. The Ansible files live at the repository's top (``playbooks/``, ``roles/``,
``inventory_templates/``, ``ansible.cfg`` and every path ``ansible.cfg`` names): a build
copies them into the package as ``api/ansible_files/``, where ``api.settings`` finds them
when the package runs from an installed wheel rather than a checkout."""

import configparser
import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

TOP = Path(__file__).resolve().parent
ANSIBLE_FILES = ["playbooks", "roles", "inventory_templates", "ansible.cfg"]
SHIPPED_DIR = Path("api") / "ansible_files"


def ansible_cfg_paths() -> list[str]:
    """The relative paths ansible.cfg names (roles, plugins, modules): shipped beside it.
    A plugin type's directory inside a ``*_plugins`` directory comes with that whole
    directory, where its plugins' shared helpers live."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(TOP / "ansible.cfg")
    paths = []
    for key, value in parser.items("defaults") if parser.has_section("defaults") else []:
        if key.endswith(("_plugins", "_path")) or key == "library":
            for item in value.split(":"):
                item = item.strip()
                if item and not item.startswith(("/", "~", "$")) and (TOP / item).exists():
                    parent = Path(item).parent
                    paths.append(str(parent) if parent.name.endswith("_plugins") else item)
    return paths


class BuildWithAnsibleFiles(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install runs from the checkout, which has them at its top
        target = Path(self.build_lib) / SHIPPED_DIR
        for name in ANSIBLE_FILES + ansible_cfg_paths():
            source = TOP / name
            dest = target / Path(name)
            if source.is_dir():
                shutil.copytree(source, dest, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            elif source.is_file():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, dest)


setup(
    name="lambda-service",
    version="0.1.0",
    description="Ansible-driven orchestration backend for lambda instances on Synnefo clouds",
    # api/http/web holds the web page's files, no Python: named, so that they ship.
    packages=[*find_packages(include=["api", "api.*", "lambda_testbed", "lambda_testbed.*"]),
              "api.http.web"],
    include_package_data=True,
    package_data={"api": ["adapters/db/migrations/*.py",
                          "adapters/db/migrations/versions/*.py"],
                  "api.http.web": ["*.html", "*.css", "*.js", "*.svg"]},
    cmdclass={"build_py": BuildWithAnsibleFiles},
    python_requires=">=3.10",
    install_requires=[
        "falcon>=4,<5",
        "hypercorn>=0.17,<0.19",
        "ansible-core>=2.16,<2.20",
        "ansible-runner>=2.4,<3",
        "mitogen>=0.3.25",
        "SQLAlchemy>=2.0,<3",
        "alembic>=1.13",
        "PyYAML>=6",
        "requests>=2.31",
        "urllib3>=2",
        "cryptography>=42",
        "Jinja2>=3.1",
        "celery>=5.4,<6",
        "psycopg[binary]>=3.1",
        "redis>=5",
        "psutil>=5.9",
        "cachetools>=5.3",
        "prometheus_client>=0.20",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-timeout", "ruff", "ansible-lint",
                 "openapi-spec-validator", "schemathesis>=4.32.5,<5",
                 # Drives Debian's chromium through /usr/bin/chromedriver (never a
                 # downloaded driver): scripts/install-browser-deps.sh installs both.
                 "selenium>=4.20,<5"],
    },
    entry_points={"console_scripts": ["lambda-service = api.cli:main"]},
)
