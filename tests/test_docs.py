"""Every command the README, docs/ and the configs show runs as written: its program answers
--help, every flag it uses is one that program has, every --config.FIELD is a config field, and
every Python example compiles. (The commands themselves need data and weights we do not ship.)"""
import functools
import glob
import os
import re
import subprocess
import sys

import pytest

from googlenet_jax.training import config as config_lib

import helpers

pytestmark = pytest.mark.slow  # one --help subprocess per program

PAGES = ["README.md", *sorted(glob.glob("docs/*.md", root_dir=helpers.REPO)),
         *sorted(glob.glob("configs/*.py", root_dir=helpers.REPO))]
# A program: `python -m googlenet_jax.X`, `python path.py`, or a command of the dispatcher:
# `python -m googlenet_jax X` or the console script `googlenet-jax X`; after optional environment variables.
PROGRAM = re.compile(r"^(?:[A-Z_]+=\S+\s+)*(?:python3? (-m googlenet_jax\.\w+|\S+\.py)|"
                     r"(?:googlenet-jax|python3? -m googlenet_jax) (\w+))(.*)$")
FLAG = re.compile(r"(?<![\w-])--([A-Za-z][\w.-]*)")


def _snippets(page: str) -> tuple[list[str], list[str]]:
    """(command lines, Python code blocks) shown on a page; continuation lines joined."""
    text = open(os.path.join(helpers.REPO, page)).read()
    commands, code = [], []
    for language, body in re.findall(r"```(\w*)\n(.*?)```", text, re.S):
        if language == "python":
            code.append(body)
        else:
            commands += [line.strip() for line in body.replace("\\\n", " ").splitlines()]
    commands += re.findall(r"`([^`\n]*(?:python3? |googlenet-jax )[^`\n]*)`", text)
    return [c.split(" && ")[-1] for c in commands if PROGRAM.match(c.split(" && ")[-1])], code


def _split(command: str) -> list[tuple[tuple[str, ...], str]]:
    """[(program argv, its arguments)]; launch's command after `--` is a program of its own."""
    module, name, rest = PROGRAM.match(command).groups()
    program = tuple(module.split()) if module else ("-m", "googlenet_jax", name)
    rest = rest.split("#")[0]
    if " -- " in rest:
        rest, inner = rest.split(" -- ", 1)
        return [(program, rest), *_split(inner.strip())]
    return [(program, rest)]


@functools.lru_cache(maxsize=None)
def _help(program: tuple[str, ...]) -> str:
    proc = subprocess.run([sys.executable, *program, "--help"], cwd=helpers.REPO, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"{' '.join(program)} --help: {proc.stderr[-2000:]}"
    return proc.stdout + proc.stderr


@functools.lru_cache(maxsize=None)
def _config_fields() -> frozenset:
    return frozenset(config_lib.schema())


def _subcommand(program: tuple[str, ...], arguments: str) -> tuple[str, ...]:
    """The program with its subcommand (`convert to-flax`) when the arguments start with one."""
    words = arguments.split()
    choices = re.search(r"\{([\w,-]+)\}", _help(program))
    return program + (words[0],) if words and choices and words[0] in choices.group(1).split(",") else program


@pytest.mark.parametrize("page", PAGES)
def test_the_commands_shown_use_flags_their_programs_have(page):
    commands, _ = _snippets(page)
    for command in commands:
        for program, arguments in _split(command):
            text = _help(_subcommand(program, arguments))
            for flag in FLAG.findall(arguments):
                if flag.startswith("config."):
                    field = flag.removeprefix("config.").split("=")[0]
                    assert field == "FIELD" or field in _config_fields(), f"{page}: {command}: no config.{field}"
                else:
                    assert f"--{flag.split('=')[0]}" in text, f"{page}: {command}: --{flag} is not an option"


@pytest.mark.parametrize("page", [page for page in PAGES if page.endswith(".md")])
def test_the_python_examples_compile(page):
    for code in _snippets(page)[1]:
        compile(code, page, "exec")


def test_the_pages_show_commands():
    assert sum(len(_snippets(page)[0]) for page in PAGES) > 20
