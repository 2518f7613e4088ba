"""Notebook parameters that cannot be misspelled.

papermill injects whatever ``-p NAME VALUE`` it is given, after the notebook's ``parameters`` cell; a
name the notebook does not declare (``-p max_steps 50`` where the notebook says ``steps``) only logs a
warning, and the run silently uses the default. Two guards stop such a run with the list of valid names:

* **Inside the notebook** — works for anyone running papermill by hand, from the command line or
  Python. Put ``check_parameters()`` at the top of the cell that follows the ``parameters`` cell::

      # %% tags=["parameters"]
      steps: int = 60  # optimizer steps
      # %%
      from workbench.notebook import check_parameters
      check_parameters()

  It reads the kernel's own input history: if papermill injected a cell, every name it assigns must be
  assigned in the ``parameters`` cell before it; otherwise :class:`~workbench.errors.ConfigError`.
  Outside papermill (JupyterLab) it does nothing.
* **Before the kernel starts** — :func:`execute` checks the names against the notebook's
  ``parameters`` cell and then calls :func:`papermill.execute_notebook`.

>>> unknown_parameters({"steps": 5, "max_step": 1}, ["steps", "lr"])
['max_step']
"""

from __future__ import annotations

import ast
import difflib
import os

from .errors import ConfigError, MissingPathError

INJECTED_HEADER = "# Parameters"  # first line of the cell papermill's Python translator injects


def unknown_parameters(given, declared) -> list[str]:
    """Names in ``given`` that are not in ``declared`` (in the order given)."""
    declared = set(declared)
    return [name for name in given if name not in declared]


def _error(unknown: list[str], declared: list[str], where: str) -> ConfigError:
    hints = [f"{name!r} → did you mean {close[0]!r}?" for name in unknown
             if (close := difflib.get_close_matches(name, declared, n=1))]
    return ConfigError(f"Unknown notebook parameter(s) {unknown} for {where}; papermill would inject them and the "
                       f"notebook would ignore them. " + (" ".join(hints) + " " if hints else "")
                       + f"Valid parameters: {', '.join(declared) if declared else '(none: it has no parameters cell)'}.")


def declared_parameters(notebook_path) -> list[str]:
    """The names a notebook's ``parameters`` cell assigns (what papermill's ``--help-notebook`` lists)."""
    import nbformat

    if not os.path.isfile(notebook_path):
        raise MissingPathError(f"No notebook at {str(notebook_path)!r}. Pass the path of an .ipynb file.")
    nb = nbformat.read(str(notebook_path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            return _assigned(cell.source)
    return []


def execute(input_path, output_path, parameters: dict | None = None, **kwargs):
    """:func:`papermill.execute_notebook`, after refusing parameters the notebook does not declare."""
    import papermill as pm  # noqa: F401 - fail here if papermill is missing, before reading the notebook

    parameters = dict(parameters or {})
    declared = declared_parameters(input_path)
    unknown = unknown_parameters(parameters, declared)
    if unknown:
        raise _error(unknown, declared, os.path.basename(str(input_path)))
    return pm.execute_notebook(str(input_path), str(output_path), parameters=parameters, **kwargs)


def _assigned(source: str) -> list[str]:
    """Top-level names a cell assigns (``x = 1``, ``x: int = 1``, ``x, y = ...``)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names: list[str] = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        for target in targets:
            for sub in ast.walk(target):
                if isinstance(sub, ast.Name) and sub.id not in names:
                    names.append(sub.id)
    return names


def check_history(cells: list[str]) -> None:
    """Check the injected cell among executed ``cells`` (oldest first) against the cell before it."""
    for k in range(len(cells) - 1, -1, -1):
        if cells[k].lstrip().startswith(INJECTED_HEADER):
            declared = _assigned(cells[k - 1]) if k > 0 else []
            unknown = unknown_parameters(_assigned(cells[k]), declared)
            if unknown:
                raise _error(unknown, declared, "this notebook")
            wrong = strings_for_containers(cells[k], cells[k - 1] if k > 0 else "")
            if wrong:
                raise ConfigError(f"Notebook parameter(s) {wrong} are declared as lists or dicts but arrived as text: "
                                  f"papermill's -p passes every value as a string. Pass them as YAML with -y, e.g. "
                                  f"-y '{wrong[0]}: [0, 1, 2]'.")
            return


def strings_for_containers(injected: str, parameters: str) -> list[str]:
    """Names the parameters cell annotates ``list``/``dict``/``tuple`` that the injected cell sets to a string.

    >>> strings_for_containers('seeds = "[0, 1]"', 'seeds: list = [0]\\nsteps: int = 5')
    ['seeds']
    >>> strings_for_containers('seeds = [0, 1]', 'seeds: list = [0]')
    []
    """
    try:
        declared, given = ast.parse(parameters).body, ast.parse(injected).body
    except SyntaxError:
        return []
    containers = set()
    for node in declared:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            ann = node.annotation.value if isinstance(node.annotation, ast.Subscript) else node.annotation
            if isinstance(ann, ast.Name) and ann.id in ("list", "dict", "tuple"):
                containers.add(node.target.id)
    return [t.id for node in given if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name) and t.id in containers
            and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)]


def check_parameters() -> None:
    """In a papermill-run notebook: stop if papermill injected a parameter the notebook does not declare.

    Call it at the top of the cell right after the ``parameters`` cell. Does nothing outside IPython or
    when nothing was injected.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is None:
        return
    cells = [ip.transform_cell(src) if hasattr(ip, "transform_cell") else src
             for src in ip.history_manager.input_hist_raw[1:-1]]
    check_history(cells)
