"""The package's import graph, read from its source: no circle, and export sits on top of the applications.

Every import counts, also one inside a function body: Python never complains
about those, so only a test like this one sees a circle form. Importing a
submodule (`from keras_cnn.export import tflite`) is an edge to that module,
not to its package's `__init__`.
"""

import ast
import pathlib

import pytest

import keras_cnn

ROOT = pathlib.Path(keras_cnn.__file__).parent
# What must never import keras_cnn.export: the applications, the task layer and the training runtime.
BELOW_EXPORT = ("keras_cnn.colorization", "keras_cnn.segmentation", "keras_cnn.tasks", "keras_cnn.training",
                "keras_cnn.layers", "keras_cnn.distribute")


def module_names(root=ROOT):
    names = {}
    for path in root.rglob("*.py"):
        parts = ("keras_cnn",) + path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imports_of(name, path, modules):
    """The keras_cnn modules that module `name` (at `path`) imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in modules:
                    found.add(sub)  # a submodule
                elif base in modules:
                    found.add(base)  # a name defined in `base`
    found.discard(name)
    return found


def import_graph(root=ROOT):
    modules = module_names(root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def circles(graph):
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_circle():
    assert circles(import_graph()) == []


def test_no_application_tasks_or_training_module_imports_export():
    graph = import_graph()
    offenders = {name: sorted(t for t in targets if t == "keras_cnn.export" or t.startswith("keras_cnn.export."))
                 for name, targets in graph.items()
                 if name.startswith(BELOW_EXPORT)}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_each_application_has_an_export_adapter_in_the_registry():
    from keras_cnn.export.registry import ADAPTERS
    from keras_cnn.tasks import _TASK_MODULES

    assert set(ADAPTERS) == set(_TASK_MODULES)
    modules = module_names()
    for adapter in ADAPTERS.values():
        assert adapter in modules and "def from_run(" in modules[adapter].read_text()
        assert adapter.endswith(".adapter") and modules[adapter.rpartition(".")[0]].name == "__init__.py"


@pytest.mark.parametrize("source, expected", [
    ({"a": "from keras_cnn import b\n", "b": "def f():\n    from keras_cnn import a\n"},
     [["keras_cnn.a", "keras_cnn.b"]]),
    ({"a": "from keras_cnn.b import x\n", "b": "x = 1\n"}, []),
    ({"a": "import keras_cnn.b\n", "b": "from . import c\n", "c": "from .a import y\n"},
     [["keras_cnn.a", "keras_cnn.b", "keras_cnn.c"]]),
])
def test_the_checker_sees_circles_in_function_bodies_and_relative_imports(tmp_path, source, expected):
    root = tmp_path / "keras_cnn"
    root.mkdir()
    (root / "__init__.py").write_text("")
    for name, text in source.items():
        (root / f"{name}.py").write_text(text)
    assert circles(import_graph(root)) == expected
