"""Point a kustomization at a freshly built image, editing only the lines that name it
(comments, order and formatting stay as they are, so the bot's commit is a small diff).

    python .github/scripts/set_image.py kustomization --file rollouts/base/kustomization.yaml \\
        --name demo-app --new-name ghcr.io/OWNER/demo-app --new-tag stable-abc1234

Used by build-app.yaml and e2e-kind.yaml. The chart is never edited: its image.tag defaults to
the chart's appVersion, which build-agent.yaml publishes (see that workflow).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

# A Docker reference component: registry/path and tag, as accepted by `docker build -t`.
REPOSITORY = re.compile(
    r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$"
)
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class ImageEditError(ValueError):
    """The file does not hold the block or entry the edit needs."""


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _block(lines: list[str], start: int) -> int:
    """End (exclusive) of the block opened by lines[start]: the next line at its indent or less."""
    base = _indent(lines[start])
    end = start + 1
    while end < len(lines):
        line = lines[end]
        if line.strip() and not line.lstrip().startswith("#") and _indent(line) <= base:
            break
        end += 1
    return end


def _set_key(lines: list[str], start: int, end: int, indent: int, key: str, value: str) -> None:
    """Set `key: value` at `indent` within lines[start:end]; append it when absent."""
    pattern = re.compile(rf"^ {{{indent}}}{re.escape(key)}:(\s.*)?$")
    for i in range(start, end):
        if pattern.match(lines[i]):
            lines[i] = f"{' ' * indent}{key}: {value}"
            return
    insert_at = end
    while insert_at > start and not lines[insert_at - 1].strip():
        insert_at -= 1
    lines.insert(insert_at, f"{' ' * indent}{key}: {value}")


def _quote(value: str) -> str:
    return f'"{value}"'


def _check(repository: str, tag: str) -> None:
    if not REPOSITORY.match(repository):
        raise ImageEditError(f"not an image repository: {repository!r}")
    if not TAG.match(tag):
        raise ImageEditError(f"not an image tag: {tag!r}")


def _item_end(lines: list[str], item: int, dash_indent: int) -> int:
    """End (exclusive) of the list item starting at lines[item]."""
    end = item + 1
    while end < len(lines):
        line = lines[end]
        if line.strip() and not line.lstrip().startswith("#") and _indent(line) <= dash_indent:
            break
        end += 1
    return end


def set_kustomize_image(text: str, name: str, new_name: str, new_tag: str) -> str:
    """Set newName/newTag of the `images:` entry called `name` in a kustomization."""
    _check(new_name, new_tag)
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if re.match(r"^images:\s*(#.*)?$", line))
    except StopIteration:
        raise ImageEditError("the kustomization has no top-level `images:` list") from None
    item = re.compile(rf"^(?P<indent> *)- name: *[\"']?{re.escape(name)}[\"']? *(#.*)?$")
    for i in range(start + 1, _block(lines, start)):
        match = item.match(lines[i])
        if match:
            dash_indent = len(match["indent"])
            key_indent = dash_indent + 2
            _set_key(
                lines, i + 1, _item_end(lines, i, dash_indent), key_indent, "newName", new_name
            )
            tag = _quote(new_tag)
            _set_key(lines, i + 1, _item_end(lines, i, dash_indent), key_indent, "newTag", tag)
            return "\n".join(lines) + "\n"
    raise ImageEditError(f"no `images:` entry named {name!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    kustomization = commands.add_parser("kustomization", help="set an images: entry")
    kustomization.add_argument("--file", type=Path, required=True)
    kustomization.add_argument("--name", required=True)
    kustomization.add_argument("--new-name", required=True)
    kustomization.add_argument("--new-tag", required=True)
    args = parser.parse_args(argv)
    try:
        path: Path = args.file
        edited = set_kustomize_image(path.read_text(), args.name, args.new_name, args.new_tag)
        path.write_text(edited)
        print(f"{path}: {args.name} -> {args.new_name}:{args.new_tag}")
    except (ImageEditError, OSError) as error:
        print(f"set_image: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
