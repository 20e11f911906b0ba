"""The package's shape: one-way layers, no import cycles, torch in one place, small modules,
thin commands in one place.

Read from the source with `ast`, imports inside functions included:
commands -> inference / training / evaluation -> weights / data / parallel -> model;
errors.py (the one line of an error) and configs/ (the training configs) import nothing of the
package but themselves.
"""
import ast
import os
import subprocess
import sys

import pytest

from googlenet_jax.commands import COMMANDS

import helpers

PACKAGE = os.path.join(helpers.REPO, "googlenet_jax")
# Each part and the parts it may import (itself included; errors.py from every part). commands/,
# the top-level aliases of the commands and parity/ (a tool) may import anything.
ALLOWED = {
    "errors": set(),
    "configs": {"configs"},
    "model": {"model"},
    "console": set(),
    "parallel": set(),
    "weights": {"weights", "model"},
    "data": {"data", "model"},
    "evaluation": {"evaluation", "model", "weights", "data", "parallel", "console"},
    "inference": {"inference", "model", "weights", "data", "parallel"},
    "training": {"training", "model", "weights", "data", "parallel", "console", "evaluation", "configs"},
}
# A command module is thin: arguments, a call into the library that does the work, printing.
COMMAND_MAX_LINES = 120
# What a command imports at its top level, before parsing: the commands' shared module, and the
# tables its flags choose from. The library it calls is imported after parsing.
COMMAND_TOP_LEVEL_IMPORTS = {"commands", "commands/common", "model", "model/architecture", "model/input_spec"}
# `python -m googlenet_jax.COMMAND`, kept for the docs and users that call it: aliases only.
ALIASES = ("predict", "evaluate", "export", "summary", "convert", "launch", "aot")
# A `from X import name` marked noqa F401: a name kept importable from a second place. Only the public
# API DESIGN.md names (googlenet_jax.convert's converters) and parity's package exports.
REEXPORTS_ALLOWED = ("convert", "parity/__init__")
TORCH_ALLOWED = ("parity", "weights/torch_layout")  # the reference models; reading/writing .pth files


def _modules() -> dict[str, str]:
    """{"model/network": path, ...} for every module of the package."""
    found = {}
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                found[os.path.relpath(path, PACKAGE)[:-3].replace(os.sep, "/")] = path
    return found


def _imports(path: str, *, top_level_only: bool = False) -> set[str]:
    """Dotted names of everything the module imports (absolute imports only, as the package writes them)."""
    tree = ast.parse(open(path).read())
    nodes = tree.body if top_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _part(name: str) -> str:
    return name.split("/")[0]


def _package_targets(imports: set[str], modules: dict[str, str]) -> set[str]:
    """The package's modules among imported names (googlenet_jax.a.b -> "a/b")."""
    targets = set()
    for name in imports:
        if name.startswith("googlenet_jax."):
            relative = name.removeprefix("googlenet_jax.").replace(".", "/")
            if relative in modules or f"{relative}/__init__" in modules:
                targets.add(relative)
    return targets


def test_every_arrow_points_down():
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        allowed = ALLOWED.get(_part(name))
        if allowed is None:
            continue  # a command, parity/ or the package's __init__ and __main__
        for target in _package_targets(_imports(path), modules):
            if _part(target) not in allowed | {"errors"}:
                wrong.append(f"{name} imports {target}")
    assert not wrong, wrong


def test_no_import_cycles():
    modules = _modules()
    graph = {name: {t if t in modules else f"{t}/__init__"
                    for t in _package_targets(_imports(path, top_level_only=True), modules)} - {name}
             for name, path in modules.items()}
    # A package's __init__ imports its own modules, which import the package: not a cycle.
    graph = {name: {t for t in targets if not (t.endswith("__init__") and name.startswith(t[:-8]))}
             for name, targets in graph.items()}
    visiting, done, cycles = set(), set(), []

    def visit(node, stack):
        visiting.add(node)
        for nxt in graph.get(node, ()):
            if nxt in visiting:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in done:
                visit(nxt, stack + [nxt])
        visiting.discard(node)
        done.add(node)

    for node in graph:
        if node not in done:
            visit(node, [node])
    assert not cycles, cycles


def test_torch_is_imported_only_by_the_parity_tools_and_pth_files():
    importers = [name for name, path in _modules().items()
                 if any(n == "torch" or n.startswith(("torch.", "torchvision")) for n in _imports(path))]
    assert importers and all(name.startswith(TORCH_ALLOWED) for name in importers), importers


def test_modules_stay_small():
    lengths = {name: sum(1 for _ in open(path)) for name, path in _modules().items()}
    assert max(lengths.values()) <= 400, sorted(lengths.items(), key=lambda item: -item[1])[:3]


def test_every_command_is_a_thin_module_in_commands():
    modules = _modules()
    in_commands = {name.removeprefix("commands/") for name in modules if name.startswith("commands/")}
    assert in_commands - {"__init__", "common"} == set(COMMANDS)
    thick = {}
    for command in COMMANDS:
        path = modules[f"commands/{command}"]
        lines = sum(1 for _ in open(path))
        top_level = _package_targets(_imports(path, top_level_only=True), modules)
        if lines > COMMAND_MAX_LINES or top_level - COMMAND_TOP_LEVEL_IMPORTS:
            thick[command] = (lines, sorted(top_level - COMMAND_TOP_LEVEL_IMPORTS))
    assert not thick, thick


@pytest.mark.parametrize("alias", ALIASES)
def test_the_top_level_command_modules_are_aliases_only(alias):
    """googlenet_jax/COMMAND.py: a docstring and `if __name__ == "__main__":` running
    commands.COMMAND.main (convert.py also keeps DESIGN.md's public converters importable)."""
    tree = ast.parse(open(_modules()[alias]).read())
    body = tree.body[1:] if ast.get_docstring(tree) else tree.body
    if alias == "convert":
        imported = body.pop(0)
        assert isinstance(imported, ast.ImportFrom) and imported.module == "googlenet_jax.weights.torch_layout"
        assert {a.name for a in imported.names} == {"torchvision_to_flax", "flax_to_torchvision"}
    assert len(body) == 1 and isinstance(body[0], ast.If), ast.dump(tree)[:300]
    assert ast.unparse(body[0].test) == "__name__ == '__main__'"
    assert f"from googlenet_jax.commands.{alias} import main" in ast.unparse(body[0])


def test_no_name_is_reexported_but_the_public_api():
    reexports = []
    for name, path in _modules().items():
        lines = open(path).read().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.ImportFrom) and any(
                    "noqa: F401" in line for line in lines[node.lineno - 1:node.end_lineno]):
                public = [a.asname or a.name for a in node.names if not (a.asname or a.name).startswith("_")]
                if public and name not in REEXPORTS_ALLOWED:
                    reexports.append(f"{name}: {', '.join(public)}")
    assert not reexports, reexports


def _loaded_after(code: str) -> set[str]:
    """The top-level modules a fresh interpreter has loaded after running `code`."""
    probe = f"import sys\n{code}\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    proc = subprocess.run([sys.executable, "-c", probe], cwd=helpers.REPO, capture_output=True, text=True,
                          timeout=120, check=True)
    return set(proc.stdout.split())


@pytest.mark.slow
def test_the_classifier_loads_neither_training_nor_tensorflow_nor_torch():
    loaded = _loaded_after("from googlenet_jax import Classifier\n"
                           "assert 'googlenet_jax.training' not in sys.modules")
    assert not loaded & {"tensorflow", "torch", "torchvision"}, loaded


@pytest.mark.slow
def test_commands_parse_their_arguments_before_loading_jax():
    loaded = _loaded_after("from googlenet_jax.commands import evaluate, export, launch, predict\n"
                           "predict.parse_args(['--weights', 'w', 'x.jpg'])\n"
                           "evaluate.parse_args(['--weights', 'w', '--crops', '1,10'])")
    assert not loaded & {"jax", "tensorflow", "torch", "flax"}, loaded
