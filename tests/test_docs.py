"""The project's own text speaks of the project: no work log, no tracker numbers.

Also: the README stays short user documentation whose links resolve.
"""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEXT_ROOTS = ("README.md", "docs", "configs", "dni_jax", "experiments")
TEXT_SUFFIXES = {".md", ".py", ".txt", ".toml", ".cfg", ".rst"}

# Phrases of a work log or a tracker, not of the project.
FORBIDDEN = [
    r"\bissues? ?#?\d+",            # "issue 12", "issue #4"
    r"\(#\d+\)",                    # "(#12)"
    r"\bthis stop\b",
    r"\b(last|previous|next|earlier|later) stops?\b",
    r"\bstops? \d+",                # "stop 16", "stops 15–17"
    r"\bno GPU was lent\b",
    r"\bscratch (run|runs|script|change|test)\b",
]
_PATTERN = re.compile("|".join(f"(?:{p})" for p in FORBIDDEN), re.IGNORECASE)


def _text_files():
  for name in TEXT_ROOTS:
    path = ROOT / name
    if path.is_file():
      yield path
    elif path.is_dir():
      for p in sorted(path.rglob("*")):
        if p.is_file() and p.suffix in TEXT_SUFFIXES and (
            "__pycache__" not in p.parts):
          yield p


def work_log_lines(text: str) -> list[tuple[int, str]]:
  return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1)
          if _PATTERN.search(line)]


@pytest.mark.parametrize("phrase", [
    "as issue 12 asked", "see issue #4", "fixed (#7)", "measured this stop",
    "from stops 15–17", "stop 16's runs", "the previous stop", "no GPU was lent",
    "a scratch run"])
def test_the_pattern_catches_work_log_phrases(phrase):
  assert work_log_lines(f"x\n{phrase}\n") == [(2, phrase)]


@pytest.mark.parametrize("phrase", [
    "early stopping", "the run stops at step 200", "stop_gradient",
    "GitHub issues are welcome", "Ctrl-C stops it"])
def test_the_pattern_spares_ordinary_words(phrase):
  assert not work_log_lines(phrase)


def test_repo_text_has_no_work_log_or_issue_numbers():
  found = []
  for path in _text_files():
    for number, line in work_log_lines(path.read_text(errors="replace")):
      found.append(f"{path.relative_to(ROOT)}:{number}: {line}")
  assert not found, "work-log text in the repo:\n" + "\n".join(found)


def test_readme_is_short_user_documentation():
  lines = (ROOT / "README.md").read_text().splitlines()
  assert len(lines) <= 300, f"README.md has {len(lines)} lines (at most 300)"


def test_readme_and_docs_links_resolve():
  missing = []
  for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
    text = path.read_text()
    for target in re.findall(r"\]\(([^)#\s]+)", text):
      if "://" in target:
        continue
      if not (path.parent / target).exists():
        missing.append(f"{path.relative_to(ROOT)} -> {target}")
    for target in re.findall(r"`((?:docs|configs|experiments|dni_jax)/"
                             r"[\w./]+\.(?:md|py|png))`", text):
      if not (ROOT / target).exists():
        missing.append(f"{path.relative_to(ROOT)} -> {target}")
  assert not missing, "links to missing files:\n" + "\n".join(missing)


def test_every_experiment_config_docstring_gives_its_command():
  configs = [p for p in sorted((ROOT / "configs").glob("*.py"))
             if p.stem not in ("__init__", "base", "recurrent")]
  assert configs
  lacking = [p.name for p in configs
             if f"configs/{p.name}" not in p.read_text().split('"""')[1]]
  assert not lacking, ("config docstrings without their command: " +
                       ", ".join(lacking))

