"""The documentation stays true: the site builds and the code blocks run.

`mkdocs build --strict` fails on a broken link, anchor, snippet or API
reference; pytest-markdown-docs runs every Python block of the README and
of `docs/` (blocks marked `notest` need trained models or consumers).
"""

import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
README_LIMIT_BYTES = 12 * 1024


def _run(args, tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]
    return result


def test_mkdocs_build_strict(tmp_path):
    _run(["-m", "mkdocs", "build", "--strict", "-d", str(tmp_path)], tmp_path)
    assert (tmp_path / "index.html").is_file()
    assert (tmp_path / "api" / "layers" / "index.html").is_file()


def test_code_blocks_of_readme_and_docs_run(tmp_path):
    result = _run(
        [
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--markdown-docs",
            "--markdown-docs-syntax=superfences",
            "README.md",
            "docs",
        ],
        tmp_path,
    )
    assert re.search(r"\b[1-9]\d* passed", result.stdout), result.stdout


def test_readme_is_short_and_its_links_exist():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) <= README_LIMIT_BYTES
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if "://" not in link]
    assert local, "the README links to docs/"
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, missing
