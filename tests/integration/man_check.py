"""man_check: the manual pages say what --help says. Every option (and
mlxctl command) that `mlxd --help`, `mlxctl --help` and `mlxctl help
COMMAND` list appears in the man page's OPTIONS (or COMMANDS) with the same
words, and the man page lists no option the program does not have.

  python3 man_check.py MLXD MLXCTL SOURCE_DIR     (standard library; groff)
Exit status 0 when the pages match, 1 otherwise (the differences printed)."""

import os
import re
import subprocess
import sys


def norm(text):
    return " ".join(text.split())


def render(page):
    """The page as plain text: no hyphenation, no line breaks within paragraphs."""
    # grotty -c -b -o -u: no escape sequences, no overstrike: plain text.
    out = subprocess.run(["groff", "-man", "-Tascii", "-P-cbou", "-rLL=3000n", "-rHY=0", page],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True).stdout
    return re.sub(r"\x1b\[[0-9;]*m|.\x08", "", out.decode("ascii", "replace"))


def section(text, name):
    """The text of section NAME (a heading at the start of a line)."""
    m = re.search(rf"^{name}\n(.*?)(?=^[A-Z][A-Z ]+\n|\Z)", text, re.S | re.M)
    return m.group(1) if m else ""


def help_entries(text):
    """The option and command entries of a --help text: each line that starts
    with indentation and a dash (or a command name under "Commands:"), with
    the deeper-indented lines that continue it."""
    entries, cur, in_commands = [], None, False
    for line in text.splitlines():
        if not line.strip():
            cur, in_commands = None, False
            continue
        if line.startswith("Commands:"):
            in_commands = True
            continue
        indent = len(line) - len(line.lstrip())
        if indent >= 2 and (line.lstrip().startswith("-") or in_commands):
            cur = [line.strip()]
            entries.append(cur)
        elif cur is not None and indent > 4:
            cur.append(line.strip())
        else:
            cur = None
    return [norm(" ".join(e)) for e in entries]


def long_options(text):
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", text))


def main():
    mlxd, mlxctl, src = sys.argv[1:4]
    problems = []

    def run(*argv):
        return subprocess.run(argv, stdout=subprocess.PIPE, check=True).stdout.decode()

    pages = {
        "mlxd.8": [run(mlxd, "--help")],
        "mlxctl.1": [run(mlxctl, "--help")] + [run(mlxctl, "help", c) for c in ("status", "wait", "launch")],
    }
    for page, helps in pages.items():
        text = render(os.path.join(src, "man", page))
        opts = section(text, "OPTIONS")
        where = norm(opts + " " + section(text, "COMMANDS"))
        if not opts:
            problems.append(f"{page}: no OPTIONS section")
        help_opts = set()
        for h in helps:
            for e in help_entries(h):
                help_opts |= long_options(e)
                if e not in where:
                    problems.append(f"{page}: lacks the help's entry: {e}")
        stale = long_options(opts) - help_opts
        # Options the page mentions while describing another (e.g. --socket under --timeout's default).
        named = {o for o in stale if re.search(rf"^\s+(-\w, )?{re.escape(o)}\b", opts, re.M)}
        for o in sorted(named):
            problems.append(f"{page}: describes {o}, which the program's help does not list")
        print(f"{page}: {len(help_opts)} long options in the help")
    for p in problems:
        print("FAIL:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
