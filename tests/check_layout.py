#!/usr/bin/env python3
"""The layout rules of CONTRIBUTING.md, checked on the source tree.

Usage: check_layout.py SOURCE_DIR

- Each library folder includes headers only from the folders it may depend on (LAYERS below:
  dependencies point down, never to a folder above or beside it unless listed).
- Each library folder defines exactly one CMake library named after it; apps/ defines only
  executables.
- apps/*.cpp stay thin: at most APPS_MAX_LINES lines each.
Exits 1 naming every file and line that breaks a rule.
"""
import os
import re
import sys

# folder -> the folders whose headers it may include (besides its own)
LAYERS = {
    "kernels": [],
    "engine/io": [],
    "engine/sqlite": [],
    "engine/dist": [],
    "engine": ["kernels", "engine/io", "engine/dist"],
    "engine/audio": ["engine", "engine/io", "engine/sqlite", "kernels"],
    "graph": ["kernels", "engine/io"],
    "engine/embed": ["engine", "engine/audio", "engine/io", "kernels"],
    "engine/perf": ["engine", "engine/io", "kernels"],
    "engine/demo": ["engine", "engine/audio", "engine/io", "kernels"],
    "engine/train": ["engine", "engine/audio", "engine/dist", "engine/embed", "engine/io", "engine/sqlite", "graph",
                     "kernels"],
    "engine/index": ["engine", "engine/audio", "engine/embed", "engine/io", "engine/sqlite", "graph", "kernels"],
    "engine/report": ["engine", "engine/index", "engine/io", "engine/train", "graph", "kernels"],
    "engine/quality": ["engine", "engine/audio", "engine/demo", "engine/embed", "engine/index", "engine/io",
                       "engine/report", "engine/train", "graph", "kernels"],
}
LIBRARY_NAME = {folder: "melgraph_" + (folder.split("/")[-1]) for folder in LAYERS}
LIBRARY_NAME["engine"] = "melgraph_engine"
# The CLI and the Python module may use every library; benchmarks and tests everything but the CLI.
TOP = {"apps": set(LAYERS), "apps/python": set(LAYERS), "bench": set(LAYERS), "bench/compare": set(LAYERS)}
APPS_MAX_LINES = 150
SOURCE = re.compile(r"\.(h|cpp|cu|cuh)$")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: check_layout.py SOURCE_DIR")
    root = sys.argv[1]
    problems = []
    for top in ("kernels", "engine", "graph", "apps", "bench"):
        for d, _, files in os.walk(os.path.join(root, top)):
            folder = os.path.relpath(d, root)
            allowed = TOP.get(folder)
            if allowed is None:
                if folder not in LAYERS:
                    if any(SOURCE.search(f) for f in files):
                        problems.append(f"{folder}/: a source folder missing from LAYERS in tests/check_layout.py "
                                        f"(add it with the folders it may include)")
                    continue
                allowed = set(LAYERS[folder])
            for f in sorted(files):
                if not SOURCE.search(f):
                    continue
                path = os.path.join(folder, f)
                text = open(os.path.join(root, path), encoding="utf-8").read()
                for m in INCLUDE.finditer(text):
                    target = os.path.dirname(m.group(1))
                    if not target or target == folder or target in allowed:
                        continue
                    line = text.count("\n", 0, m.start()) + 1
                    problems.append(f"{path}:{line}: includes {m.group(1)}, but {folder}/ may include only "
                                    f"{sorted(allowed) or 'its own headers'}")
                if folder == "apps" and f.endswith(".cpp"):
                    n = text.count("\n")
                    if n > APPS_MAX_LINES:
                        problems.append(f"{path}: {n} lines; a command stays under {APPS_MAX_LINES} "
                                        f"(move its logic into a library)")
    for folder, name in LIBRARY_NAME.items():
        cmake = os.path.join(root, folder, "CMakeLists.txt")
        if not os.path.exists(cmake):
            problems.append(f"{folder}/CMakeLists.txt: missing (each library folder builds its library)")
            continue
        libs = set(re.findall(r"add_library\(\s*(\w+)", open(cmake, encoding="utf-8").read()))
        if libs != {name}:
            problems.append(f"{folder}/CMakeLists.txt: defines {sorted(libs)}; a folder is one library, {name}")
    apps_cmake = open(os.path.join(root, "apps", "CMakeLists.txt"), encoding="utf-8").read()
    if "add_library" in apps_cmake:
        problems.append("apps/CMakeLists.txt: defines a library; apps/ holds the command line only")
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print(f"layout: {len(LAYERS)} library folders, includes point down, apps/ thin")


if __name__ == "__main__":
    main()
