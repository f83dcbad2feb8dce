"""Prints pyproject.toml's dependencies plus those of the named extras (an extra naming the project's own
extras is expanded), one a line. The Dockerfile installs them in a layer of their own, before the source
is copied, so that a change of the source or README does not reinstall torch.

Usage: python3 requirements_of.py EXTRA...   (reads ./pyproject.toml; Python 3.11+, standard library only)
"""

from __future__ import annotations

import re
import sys
import tomllib


def requirements_of(project: dict, extras: list[str]) -> list[str]:
    name = re.sub(r"[-_.]+", "-", project["name"]).lower()
    optional = project.get("optional-dependencies", {})
    out: list[str] = list(project.get("dependencies", []))
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        if extra not in optional:
            raise SystemExit(f"pyproject.toml has no extra {extra!r} (it has: {', '.join(sorted(optional))})")
        seen.add(extra)
        for requirement in optional[extra]:
            own = re.fullmatch(rf"{re.escape(name)}\[([^\]]+)\]", re.sub(r"[-_.]+", "-", requirement).lower())
            if own:
                pending.extend(part.strip() for part in own.group(1).split(","))
            else:
                out.append(requirement)
    return list(dict.fromkeys(out))


if __name__ == "__main__":
    with open("pyproject.toml", "rb") as f:
        print("\n".join(requirements_of(tomllib.load(f)["project"], sys.argv[1:])))
