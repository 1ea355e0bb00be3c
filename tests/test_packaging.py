"""Every distribution builds a wheel an index could publish, and installs into a clean venv.

Everything runs offline: wheels are built with the setuptools of the test
environment (``--no-build-isolation``), and the clean environments get their
few third-party dependencies copied from this one, so pip never looks for an
index (``--isolated --no-index``).
"""

from __future__ import annotations

import email.parser
import email.policy
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ["notify_redis", "notify_amqp", "notify_mail", "notify_flask", "notify_starlette"]
#: Distribution name -> (folder in the checkout, top-level package).
DISTRIBUTIONS = {
    "notifycore": (ROOT, "notifycore"),
    **{name.replace("_", "-"): (ROOT / "plugins" / name, name) for name in PLUGINS},
}
REPOSITORY = "https://github.com/notifycore/notifycore"
SKIP = {"__pycache__", "build", "dist", ".pytest_cache", ".mypy_cache"}


def clean_environment() -> dict[str, str]:
    """This process's environment without what would steer pip or notifycore elsewhere."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PIP_", "NOTIFYCORE_", "PYTHON"))
        and key not in ("VIRTUAL_ENV", "CONDA_PREFIX")
    }
    # setuptools checks classifiers with trove-classifiers (a test dependency), never a download.
    env["VALIDATE_PYPROJECT_NO_NETWORK"] = "1"
    return env


def run(*args: str | Path, cwd: Path | None = None, timeout: float = 300) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_environment(),
        cwd=cwd,
        check=False,
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def pip(*args: str | Path, python: Path | None = None) -> str:
    """This environment's pip, offline, ignoring every pip configuration on the machine."""
    target: list[str | Path] = ["--python", python] if python is not None else []
    return run(sys.executable, "-m", "pip", "--isolated", *target, *args, "--no-input")


def copy_tree(source: Path, dest: Path) -> None:
    def ignore(folder: str, names: list[str]) -> set[str]:
        return {n for n in names if n in SKIP or n.endswith(".egg-info")}

    shutil.copytree(source, dest, ignore=ignore)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of what the distributions are built from, so builds leave the work tree alone."""
    copy = tmp_path_factory.mktemp("checkout")
    for name in ("pyproject.toml", "README.package.md", "LICENSE"):
        shutil.copy2(ROOT / name, copy / name)
    copy_tree(ROOT / "notifycore", copy / "notifycore")
    for plugin in PLUGINS:
        copy_tree(ROOT / "plugins" / plugin, copy / "plugins" / plugin)
    return copy


@pytest.fixture(scope="module")
def wheels(checkout: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every distribution's wheel, built in one pip run."""
    folder = tmp_path_factory.mktemp("wheels")
    sources = [checkout, *(checkout / "plugins" / p for p in PLUGINS)]
    pip(
        "wheel",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "-w",
        folder,
        *sources,
    )
    built = {}
    for wheel in folder.glob("*.whl"):
        name = wheel.name.split("-")[0].replace("_", "-")
        built[name] = wheel
    assert sorted(built) == sorted(DISTRIBUTIONS)
    return built


def wheel_metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        (path,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        text = archive.read(path).decode()
    return email.parser.Parser(policy=email.policy.compat32).parsestr(text)


def requirements(metadata: Message, *, extras: bool = False) -> list[str]:
    """Requires-Dist values; without ``extras``, only the unconditional ones."""
    found = metadata.get_all("Requires-Dist") or []
    return [r for r in found if extras or "extra ==" not in r]


def requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match is not None, requirement
    return match.group(0).lower().replace("_", "-")


# -- what a wheel carries -------------------------------------------------------------------


@pytest.mark.parametrize("distribution", sorted(DISTRIBUTIONS))
def test_every_wheel_carries_the_license_and_py_typed(
    wheels: dict[str, Path], distribution: str
) -> None:
    package = DISTRIBUTIONS[distribution][1]
    with zipfile.ZipFile(wheels[distribution]) as archive:
        names = archive.namelist()
        licenses = [n for n in names if re.fullmatch(r"[^/]+\.dist-info/licenses/LICENSE", n)]
        assert licenses, f"no LICENSE in {wheels[distribution].name}: {names}"
        assert archive.read(licenses[0]) == (ROOT / "LICENSE").read_bytes()
        assert f"{package}/py.typed" in names
        # The editable-install helper is a build tool, never part of the installed package.
        assert not [n for n in names if n.startswith("build_backend")]


@pytest.mark.parametrize("distribution", sorted(DISTRIBUTIONS))
def test_wheel_metadata_is_what_an_index_shows(wheels: dict[str, Path], distribution: str) -> None:
    metadata = wheel_metadata(wheels[distribution])
    assert metadata["Name"] == distribution
    assert metadata["License-Expression"] == "MIT"
    assert metadata["Author"] == "The notifycore authors"
    assert metadata["Requires-Python"] == ">=3.11"
    classifiers = metadata.get_all("Classifier") or []
    for expected in (
        "Development Status :: 3 - Alpha",
        "Programming Language :: Python :: 3.11",
        "Intended Audience :: Developers",
        "Typing :: Typed",
    ):
        assert expected in classifiers
    urls = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL") or [])
    assert sorted(urls) == ["Documentation", "Homepage", "Issues", "Source"]
    assert all(url.startswith(REPOSITORY) for url in urls.values()), urls
    # No path of the build machine in anything published (the editable helper's rewrite).
    assert "file:" not in metadata.as_string()
    assert metadata["Description-Content-Type"] == "text/markdown"


@pytest.mark.parametrize("distribution", sorted(DISTRIBUTIONS))
def test_long_description_reads_well_on_an_index(
    wheels: dict[str, Path], distribution: str
) -> None:
    description = wheel_metadata(wheels[distribution]).get_payload()
    assert isinstance(description, str)
    assert description.startswith(f"# {distribution}\n")
    assert len(description.split()) > 40, "a real description, not a title"
    assert "./scripts" not in description
    targets = re.findall(r"\]\(([^)]*)\)", description)
    relative = [t for t in targets if not t.startswith("https://")]
    assert not relative, f"relative links do not work on an index: {relative}"
    # A file of the repository is linked, not named as if the reader had the checkout.
    unlinked = re.sub(r"\[[^\]]*\]\([^)]*\)", "", description)
    assert not re.search(r"docs/\w+\.md", unlinked), "name a page with a link"


def test_the_core_depends_on_pluggy_and_stevedore_only(wheels: dict[str, Path]) -> None:
    needed = {requirement_name(r) for r in requirements(wheel_metadata(wheels["notifycore"]))}
    assert needed == {"pluggy", "stevedore"}


@pytest.mark.parametrize("distribution", [d for d in sorted(DISTRIBUTIONS) if d != "notifycore"])
def test_plugins_require_the_core_by_version(wheels: dict[str, Path], distribution: str) -> None:
    needed = requirements(wheel_metadata(wheels[distribution]), extras=True)
    assert "notifycore>=0.1" in needed
    assert not [r for r in needed if "@" in r], needed


def test_notify_mail_keeps_flask_behind_extras(wheels: dict[str, Path]) -> None:
    metadata = wheel_metadata(wheels["notify-mail"])
    assert requirements(metadata) == ["notifycore>=0.1"]
    extras = metadata.get_all("Provides-Extra") or []
    assert {"flask-mail", "flask-email"} <= set(extras)
    every = requirements(metadata, extras=True)
    assert 'Flask-Mail>=0.10; extra == "flask-mail"' in every
    assert 'flask-mailman>=1.0; extra == "flask-email"' in every


def test_every_plugin_has_the_same_build_backend() -> None:
    first = (ROOT / "plugins" / PLUGINS[0] / "build_backend.py").read_text()
    for plugin in PLUGINS[1:]:
        assert (ROOT / "plugins" / plugin / "build_backend.py").read_text() == first, plugin
        assert (ROOT / "plugins" / plugin / "LICENSE").read_bytes() == (
            ROOT / "LICENSE"
        ).read_bytes()


def test_a_plugin_sdist_builds_a_publishable_wheel(
    checkout: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The sdist carries the build backend; built outside a checkout it changes nothing."""
    plugin = checkout / "plugins" / "notify_mail"
    sdists = tmp_path_factory.mktemp("sdist")
    code = f"import build_backend; print(build_backend.build_sdist({str(sdists)!r}))"
    name = run(sys.executable, "-c", code, cwd=plugin).strip().splitlines()[-1]
    with tarfile.open(sdists / name) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
        archive.extractall(sdists, filter="data")
    assert {"build_backend.py", "LICENSE", "README.md", "tests/conftest.py"} <= names
    unpacked = sdists / name.removesuffix(".tar.gz")
    out = sdists / "wheel"
    pip("wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index", "-w", out, unpacked)
    (wheel,) = out.glob("*.whl")
    assert "notifycore>=0.1" in requirements(wheel_metadata(wheel))


# -- clean virtual environments ---------------------------------------------------------------


def make_venv(folder: Path, *also: str) -> Path:
    """A venv without pip, holding only the distributions named, copied from this environment."""
    run(sys.executable, "-m", "venv", "--without-pip", folder)
    python = folder / "bin" / "python"
    site = Path(
        run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip()
    )
    for name in ("pluggy", "stevedore", *also):
        dist = importlib.metadata.distribution(name)
        for file in dist.files or []:
            if file.parts[0] == ".." or "__pycache__" in file.parts:
                continue  # console scripts and byte code: not needed
            target = site / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(str(dist.locate_file(file))), target)
    return python


def in_venv(python: Path, code: str) -> Any:
    """Run ``code`` in the venv (from an empty folder) and return the JSON it prints last."""
    folder = python.parent.parent / "work"
    folder.mkdir(exist_ok=True)
    out = run(python, "-c", textwrap.dedent(code), cwd=folder)
    return json.loads(out.strip().splitlines()[-1])


def installed(python: Path, name: str) -> dict[str, Any]:
    return in_venv(  # type: ignore[no-any-return]
        python,
        f"""
        import importlib.metadata, json
        dist = importlib.metadata.distribution({name!r})
        direct = dist.read_text("direct_url.json")
        print(json.dumps({{
            "requires": dist.requires or [],
            "direct_url": json.loads(direct) if direct else None,
        }}))
        """,
    )


def distributions(python: Path) -> list[str]:
    """Every distribution installed in the venv."""
    names: list[str] = sorted(
        in_venv(
            python,
            """
            import importlib.metadata, json
            print(json.dumps([d.metadata["Name"] for d in importlib.metadata.distributions()]))
            """,
        )
    )
    return names


CORE_CHECKS = """
import json
import notifycore
from notifycore import ConfigurationError, Notifications
from notifycore.drivers import BACKENDS, CONSUMERS, available

def error(config):
    try:
        Notifications(config=config, environ={}).close()
    except ConfigurationError as exc:
        return str(exc)
    return None

print(json.dumps({
    "module": notifycore.__file__,
    "backends": available(BACKENDS),
    "consumers": available(CONSUMERS),
    "redis": error({"BACKEND": "redis"}),
    "redis_with_url": error({"BACKEND": "redis", "REDIS_URL": "redis://127.0.0.1:1/0"}),
    "amqp_with_url": error({"BACKEND": "amqp", "AMQP_URL": "amqp://127.0.0.1:1//"}),
    "mail_setting": error({"BACKEND": "memory", "MAIL_SERVER": "127.0.0.1"}),
    "smtp_listener": error({"BACKEND": "memory", "LISTENERS": {"mailer": {"use": "smtp"}}}),
}))
"""

MAIL_CHECKS = """
import json
from notifycore import ConfigurationError, Event, Notifications
from notifycore.drivers import CONSUMERS, available, resolve
from notifycore.plugins import get_plugins
from notify_mail import SMTPConsumer

def failure(action):
    try:
        action()
    except (ConfigurationError, ImportError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None

def import_module(name):
    __import__(name)

notifications = Notifications(config={"BACKEND": "memory", "MAIL_SERVER": "127.0.0.1"}, environ={})
print(json.dumps({
    "consumers": available(CONSUMERS),
    "plugins": sorted(p.name for p in get_plugins().list_plugins()),
    "smtp": resolve(CONSUMERS, "smtp") is SMTPConsumer,
    "mail_server": notifications.settings["MAIL_SERVER"],
    "flask_mail": failure(lambda: resolve(CONSUMERS, "flask_mail")),
    "flask_email": failure(lambda: resolve(CONSUMERS, "flask_email")),
    "import": failure(lambda: import_module("notify_mail.flask_mail")),
    "attribute": failure(lambda: __import__("notify_mail").FlaskEmailConsumer),
}))
"""


def test_the_core_wheel_installs_alone_and_names_missing_plugins(
    wheels: dict[str, Path], tmp_path: Path
) -> None:
    python = make_venv(tmp_path / "venv")
    folder = wheels["notifycore"].parent
    pip("install", "--quiet", "--no-index", "--find-links", folder, "notifycore", python=python)

    needed = [r for r in installed(python, "notifycore")["requires"] if "extra ==" not in r]
    assert {requirement_name(r) for r in needed} == {"pluggy", "stevedore"}
    assert distributions(python) == ["notifycore", "pluggy", "stevedore"]
    seen = in_venv(python, CORE_CHECKS)
    assert seen["module"].startswith(str(tmp_path / "venv"))
    assert seen["backends"] == ["memory", "sqlite"]
    assert seen["consumers"] == ["function", "log", "push"]
    for key in ("redis", "redis_with_url"):
        assert "'redis' comes with the notify-redis distribution" in seen[key], seen[key]
        assert "pip install notify-redis" in seen[key]
    assert "pip install notify-amqp" in seen["amqp_with_url"]
    assert "unknown setting" not in seen["redis_with_url"]
    assert seen["mail_setting"].startswith("unknown setting 'MAIL_SERVER'")
    assert (
        "notify-mail distribution, which is not installed (pip install notify-mail)"
        in (seen["mail_setting"])
    )
    assert "pip install notify-mail" in seen["smtp_listener"]
    listed = run(python.parent / "notifycore", "plugins", cwd=tmp_path)
    assert "memory = notifycore.backends.memory:MemoryBackend  (notifycore 0.1.0)" in listed


def test_notify_mail_installs_without_flask_and_names_the_extra(
    wheels: dict[str, Path], checkout: Path, tmp_path: Path
) -> None:
    python = make_venv(tmp_path / "venv", "setuptools")
    folder = wheels["notifycore"].parent
    pip(
        "install", "--quiet", "--no-index", "--find-links", folder, "notifycore", "notify-mail",
        python=python,
    )  # fmt: skip
    seen = in_venv(python, MAIL_CHECKS)
    assert seen["consumers"] == ["flask_email", "flask_mail", "function", "log", "push", "smtp"]
    assert "mail" in seen["plugins"]
    assert seen["smtp"] is True
    assert seen["mail_server"] == "127.0.0.1"
    for key, extra in (
        ("flask_mail", "flask-mail"),
        ("flask_email", "flask-email"),
        ("import", "flask-mail"),
        ("attribute", "flask-email"),
    ):
        assert f"pip install 'notify-mail[{extra}]'" in seen[key], seen[key]
    assert seen["flask_mail"].startswith(
        "ConfigurationError: the notifycore.consumers driver 'flask_mail' cannot be imported"
    )

    # With a core already installed, an editable plugin install keeps it (no checkout path).
    core_before = installed(python, "notifycore")
    plugin = checkout / "plugins" / "notify_mail"
    pip("install", "--quiet", "--no-index", "--no-build-isolation", "-e", plugin, python=python)
    assert installed(python, "notifycore") == core_before
    mail = installed(python, "notify-mail")
    assert mail["direct_url"]["dir_info"] == {"editable": True}
    assert "notifycore>=0.1" in mail["requires"]


def test_an_editable_plugin_install_brings_the_core_from_the_checkout(
    checkout: Path, tmp_path: Path
) -> None:
    python = make_venv(tmp_path / "venv", "setuptools")
    plugin = checkout / "plugins" / "notify_mail"
    pip("install", "--quiet", "--no-index", "--no-build-isolation", "-e", plugin, python=python)
    core = installed(python, "notifycore")
    assert core["direct_url"] == {"url": checkout.as_uri(), "dir_info": {}}
    mail = installed(python, "notify-mail")
    assert mail["direct_url"]["dir_info"] == {"editable": True}
    assert f"notifycore @ {checkout.as_uri()}" in mail["requires"]
    seen = in_venv(
        python,
        """
        import json, notifycore, notify_mail
        print(json.dumps([notifycore.__file__, notify_mail.__file__]))
        """,
    )
    assert seen[0].startswith(str(tmp_path / "venv"))  # the core, installed from the checkout
    assert seen[1] == str(plugin / "notify_mail" / "__init__.py")  # the plugin, editable


def test_editable_metadata_takes_only_missing_checkout_distributions_from_the_checkout(
    checkout: Path, tmp_path: Path
) -> None:
    """The rewrite itself: first-party names not installed, with extras and markers kept."""
    python = make_venv(tmp_path / "venv", "setuptools")
    plugin = checkout / "plugins" / "notify_amqp"
    dist_info = tmp_path / "notify_amqp-0.1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        textwrap.dedent(
            """\
            Metadata-Version: 2.4
            Name: notify-amqp
            Version: 0.1.0
            Requires-Dist: notifycore>=0.1
            Requires-Dist: kombu>=5.3
            Requires-Dist: notify-amqp[extra]; extra == "test"
            Requires-Dist: notify-mail[flask-mail]>=0.1; extra == "test"
            Requires-Dist: notify_flask; python_version >= "3.11"
            Requires-Dist: notify-redis>=0.1

            A description, left alone even where a line reads like a header:
            Requires-Dist: notifycore>=0.1
            """
        )
    )
    code = f"""
        import json, build_backend
        build_backend._use_checkout(build_backend.Path({str(dist_info)!r}))
        print(json.dumps(True))
    """
    # notify-redis is "installed" in the venv: a distribution folder is all it takes to count.
    site = Path(
        in_venv(
            python, "import json, sysconfig; print(json.dumps(sysconfig.get_paths()['purelib']))"
        )
    )
    redis = site / "notify_redis-0.1.0.dist-info"
    redis.mkdir()
    (redis / "METADATA").write_text("Metadata-Version: 2.1\nName: notify-redis\nVersion: 0.1.0\n")
    run(python, "-c", textwrap.dedent(code), cwd=plugin)
    lines = (dist_info / "METADATA").read_text().splitlines()
    uri = checkout.as_uri()
    assert lines[3:9] == [
        f"Requires-Dist: notifycore @ {uri}",
        "Requires-Dist: kombu>=5.3",
        'Requires-Dist: notify-amqp[extra]; extra == "test"',
        f'Requires-Dist: notify-mail[flask-mail] @ {uri}/plugins/notify_mail ; extra == "test"',
        f'Requires-Dist: notify_flask @ {uri}/plugins/notify_flask ; python_version >= "3.11"',
        "Requires-Dist: notify-redis>=0.1",
    ]
    assert lines[-1] == "Requires-Dist: notifycore>=0.1"
