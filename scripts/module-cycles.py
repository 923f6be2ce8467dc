#!/usr/bin/env python3
"""Finds import cycles between the modules of a Rust crate.

Usage: scripts/module-cycles.py crates/volley/src/lib.rs [...]

A module depends on another when it names it (or an item re-exported from it) in a `use`
or in a `crate::`/`super::` path. Names are followed through `pub use` re-exports to the
module that defines them, so `crate::Status` is a dependency on `status`, not on the crate
root. A module may use its own submodules (a facade re-exporting its children is not a
cycle); between siblings, a subtree depends on another when any module in it does. The
check fails when, under any parent, sibling subtrees depend on each other in a circle.
Code under `#[cfg(test)]` modules is left out: tests may reach anywhere.
"""

import os
import re
import sys

MOD_DECL = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", re.M)
CFG_TEST_MOD = re.compile(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*([;{])")
USE_STMT = re.compile(r"^\s*(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", re.M)
PATH = re.compile(r"\b((?:crate|super|self)(?:::(?:\w+))+)")


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def strip_strings(text):
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


class Module:
    def __init__(self, path, file):
        self.path = path  # tuple of names; () is the crate root
        self.file = file
        self.children = {}
        self.text = ""
        self.reexports = {}  # name -> absolute path tuple it re-exports
        self.uses = []  # absolute path tuples named in the module


def child_file(parent_file, name, parent_is_dir_owner):
    base = os.path.dirname(parent_file)
    if not parent_is_dir_owner:
        stem = os.path.splitext(os.path.basename(parent_file))[0]
        base = os.path.join(base, stem)
    for candidate in (os.path.join(base, name + ".rs"), os.path.join(base, name, "mod.rs")):
        if os.path.exists(candidate):
            return candidate
    return None


def load(path, file, modules):
    m = Module(path, file)
    modules[path] = m
    with open(file, encoding="utf-8") as f:
        text = strip_strings(strip_comments(f.read()))
    test_mods = set()
    for t in CFG_TEST_MOD.finditer(text):
        test_mods.add(t.group(1))
        if t.group(2) == "{":
            text = text[: t.start()]  # an inline test module runs to the end of the file
            break
    m.text = text
    owner = os.path.basename(file) in ("mod.rs", "lib.rs", "main.rs")
    for d in MOD_DECL.finditer(text):
        name = d.group(1)
        if name in test_mods:
            continue
        cf = child_file(file, name, owner)
        if cf:
            m.children[name] = load(path + (name,), cf, modules)
    return m


def use_tree(tree):
    """Flattens `a::{b, c::{self, d}}` into (segments, alias) leaves."""
    tree = re.sub(r"\s+", "", tree)
    out = []

    def parse(s, prefix):
        depth, start, parts = 0, 0, []
        for i, ch in enumerate(s):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append(s[start:i])
                start = i + 1
        parts.append(s[start:])
        for p in parts:
            if not p:
                continue
            brace = p.find("{")
            if brace >= 0 and p.endswith("}"):
                head = [x for x in p[:brace].split("::") if x]
                parse(p[brace + 1 : -1], prefix + head)
            else:
                alias = None
                if "as" in p and re.search(r"\bas\b", p):
                    p, alias = re.split(r"\bas\b", p)
                segs = prefix + [x for x in p.split("::") if x]
                if segs and segs[-1] == "self":
                    segs = segs[:-1]
                out.append((segs, alias))

    parse(tree, [])
    return out


def absolute(segs, here, modules):
    """An absolute path tuple for `segs` as written in module `here`; None if external."""
    if not segs:
        return None
    cur = list(here)
    i = 0
    if segs[0] == "crate":
        cur, i = [], 1
    elif segs[0] in ("super", "self"):
        while i < len(segs) and segs[i] in ("super", "self"):
            if segs[i] == "super":
                cur = cur[:-1]
            i += 1
    elif segs[0] in modules[tuple(here)].children:
        pass  # a path relative to this module (`use child::Item`)
    else:
        return None
    return tuple(cur) + tuple(segs[i:])


def resolve(path, modules, seen=None):
    """The module that defines the item at absolute `path`."""
    seen = seen or set()
    mod = ()
    rest = list(path)
    while rest and mod + (rest[0],) in modules:
        mod = mod + (rest.pop(0),)
    if rest and (mod, rest[0]) not in seen:
        target = modules[mod].reexports.get(rest[0])
        if target:
            seen.add((mod, rest[0]))
            return resolve(target + tuple(rest[1:]), modules, seen)
    return mod


def main(roots):
    failed = False
    for root in roots:
        modules = {}
        load((), root, modules)
        for m in modules.values():
            for stmt in USE_STMT.finditer(m.text):
                for segs, alias in use_tree(stmt.group(2)):
                    absolute_path = absolute(segs, m.path, modules)
                    if absolute_path is None:
                        continue
                    m.uses.append(absolute_path)
                    if stmt.group(1):
                        name = alias or (segs[-1] if segs else None)
                        if name and name != "*":
                            m.reexports[name] = absolute_path
            for p in PATH.finditer(m.text):
                absolute_path = absolute(p.group(1).split("::"), m.path, modules)
                if absolute_path is not None:
                    m.uses.append(absolute_path)
        edges = {}
        for m in modules.values():
            for u in m.uses:
                target = resolve(u, modules)
                if target[: len(m.path)] == m.path:
                    continue  # itself or its own submodule
                edges.setdefault(m.path, set()).add(target)
        cycles = []
        for parent in modules.values():
            kids = sorted(parent.children)
            graph = {k: set() for k in kids}
            for src, targets in edges.items():
                if len(src) <= len(parent.path) or src[: len(parent.path)] != parent.path:
                    continue
                a = src[len(parent.path)]
                for t in targets:
                    if len(t) > len(parent.path) and t[: len(parent.path)] == parent.path:
                        b = t[len(parent.path)]
                        if a != b:
                            graph[a].add(b)
            cycles += [(parent.path, c) for c in strongly_connected(graph) if len(c) > 1]
        name = os.path.dirname(root)
        if cycles:
            failed = True
            for parent, comp in cycles:
                where = "::".join(("crate",) + parent)
                print(f"{name}: import cycle under {where}: {' <-> '.join(sorted(comp))}")
                for a in sorted(comp):
                    for src, targets in sorted(edges.items()):
                        if src[len(parent) : len(parent) + 1] != (a,):
                            continue
                        for t in sorted(targets):
                            b = t[len(parent) : len(parent) + 1]
                            if b and b[0] in comp and b[0] != a:
                                print(f"    {'::'.join(src)} -> {'::'.join(t)}")
        else:
            print(f"{name}: {len(modules)} modules, no import cycle")
    return 1 if failed else 0


def strongly_connected(graph):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    for v in graph:
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["crates/volley/src/lib.rs"]))
