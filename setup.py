from setuptools import find_packages, setup

setup(
    name="lambda-service",
    version="0.1.0",
    description="Ansible-driven orchestration backend for lambda instances on Synnefo clouds",
    packages=find_packages(include=["api", "api.*"]),
    include_package_data=True,
    package_data={"api": ["adapters/db/migrations/*.py",
                          "adapters/db/migrations/versions/*.py"]},
    python_requires=">=3.10",
    install_requires=[
        "falcon>=4,<5",
        "gunicorn>=22",
        "ansible-core>=2.16,<2.20",
        "ansible-runner>=2.4,<3",
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
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-timeout", "ruff", "ansible-lint",
                 "openapi-spec-validator"],
    },
    entry_points={"console_scripts": ["lambda-service = api.cli:main"]},
)
