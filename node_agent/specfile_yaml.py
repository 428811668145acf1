"""The YAML side of specfile: yaml's safe loader, refusing a mapping that gives a key twice.

Imported only when a YAML document is read (`specfile.parse_yaml`): the spec a node stores
for its frame tasks is JSON, so a render task's start does not import yaml (~8 ms)."""

from __future__ import annotations

from typing import Any

import yaml

from node_agent.specfile import DuplicateKey, _join

_MERGE = "tag:yaml.org,2002:merge"
_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlError(ValueError):
    """Not valid YAML (yaml.YAMLError, as a ValueError for specfile's one except)."""


class _StrictLoader(_Base):  # type: ignore[misc]
    """yaml's safe loader, refusing a mapping that gives a key twice (merge keys `<<` are
    not duplicates: explicit keys override merged ones, as YAML says)."""

    def construct_document(self, node: yaml.Node) -> Any:
        self._check(node, "", set())
        return super().construct_document(node)

    def _key(self, node: yaml.Node) -> object:
        if not isinstance(node, yaml.ScalarNode):
            return None  # a complex key: the spec's model refuses it anyway
        try:
            value = self.construct_object(node, deep=True)
        except yaml.YAMLError:
            return (node.tag, node.value)
        return value if isinstance(value, str | int | float | bool) else (node.tag, node.value)

    def _check(self, node: yaml.Node, path: str, seen: set[int]) -> None:
        if id(node) in seen:  # an alias: checked once (and no exponential walk)
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set[object] = set()
            for k, v in node.value:
                if k.tag == _MERGE:
                    self._check(v, path, seen)
                    continue
                key = self._key(k)
                if key is not None and key in keys:
                    where = _join(path, k.value if isinstance(k, yaml.ScalarNode) else key)
                    raise DuplicateKey(f"{where}: key given twice (line {k.start_mark.line + 1})")
                keys.add(key)
                self._check(v, _join(path, getattr(k, "value", "?")), seen)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._check(item, f"{path}[{i}]", seen)


def parse_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as e:
        raise YamlError(str(e) or type(e).__name__) from None
