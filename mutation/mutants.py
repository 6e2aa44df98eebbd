#!/usr/bin/env python3
"""Ordering mutation runner: every non-Relaxed memory ordering and every fence in src/ is
weakened, one at a time, in a scratch copy of the crate, and a test suite must then fail.

Sites are found by scanning the source, not listed by hand, so a new ordering cannot be
missed: each site must appear in mutation/expected.tsv, either as killed (by which suite,
and the test expected to fail first) or as redundant (with the reason). The runner fails
loudly when

  * a site is not in the table, or the table names a site that no longer exists;
  * a mutant does not apply (the token is not where the scan found it) or does not change
    exactly one line;
  * a mutant expected to be killed survives, or one listed as redundant is killed (the
    table is then wrong: update it with the reason).

A site is `file::function#k`: the k-th ordering token (1-based) inside that function.
Mutations: an ordering argument becomes `Relaxed`; a fence statement is removed.

Suites (the `suite` column):
  loom   the loom model checks of the production ring (src/loom_tests.rs, --cfg shmcast_loom)
  miri   tests/in_process.rs and tests/defects.rs under Miri (heap rings, threads)
  test   cargo test --release --test in_process --test defects

Usage:
  mutation/mutants.py [--reduced] [--list] [--keep] [SITE...]

--reduced runs only the sites marked `ci` in the table (what .ci/run does); --list prints
the sites found and exits. Environment: MUTANT_DIR (scratch copy, default
target/mutants/crate), LOOM_MAX_PREEMPTIONS (default 2).
"""

import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLE = os.path.join(ROOT, "mutation", "expected.tsv")
ORDER = re.compile(r"\b(Acquire|Release|AcqRel|SeqCst)\b")
FN = re.compile(r"\bfn\s+([A-Za-z_][A-Za-z0-9_]*)")
SKIP_FILES = {"src/loom_tests.rs"}


def code_part(line):
    """The line without its // comment (no string literal in src/ holds `//` before an
    ordering name, so a plain split is exact enough; the scan asserts it below)."""
    i = line.find("//")
    return line if i < 0 else line[:i]


def scan(root=ROOT):
    """Every ordering token in src/: (site, path, line number, column, token, kind)."""
    sites = []
    for dirpath, _, files in os.walk(os.path.join(root, "src")):
        for f in sorted(files):
            if not f.endswith(".rs"):
                continue
            path = os.path.relpath(os.path.join(dirpath, f), root)
            if path in SKIP_FILES:
                continue
            lines = open(os.path.join(root, path)).read().split("\n")
            func, count = "<top>", {}
            for n, line in enumerate(lines):
                code = code_part(line)
                if re.match(r"\s*#\[cfg\(test\)\]", line) and n + 1 < len(lines) and re.match(
                    r"\s*mod tests", lines[n + 1]
                ):
                    break  # unit tests end every file that has them
                m = FN.search(code)
                if m:
                    func = m.group(1)
                for t in ORDER.finditer(code):
                    if "use " in code and "::" in code and "{" in code and code.strip().startswith("use"):
                        continue  # an import, not an access
                    key = (path, func)
                    count[key] = count.get(key, 0) + 1
                    site = f"{path[len('src/'):]}::{func}#{count[key]}"
                    kind = "fence" if re.search(r"\bfence\(\s*(Ordering::)?" + t.group(1), code) else "arg"
                    sites.append((site, path, n, t.start(), t.group(1), kind))
    return sites


def read_table():
    rows = {}
    for n, line in enumerate(open(TABLE)):
        line = line.rstrip("\n")
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) < 4:
            sys.exit(f"{TABLE}:{n + 1}: expected 4 tab-separated columns: {line!r}")
        site, suite, expect, note = cols[:4]
        ci = len(cols) > 4 and cols[4].strip() == "ci"
        rows[site] = (suite, expect, note, ci)
    return rows


def mutate(lines, n, col, token, kind):
    """The file with one mutation applied, and a description; asserts it applies."""
    line = lines[n]
    assert line[col : col + len(token)] == token, f"token not at {n + 1}:{col}"
    if kind == "fence":
        m = re.search(r"\bfence\(\s*(Ordering::)?" + token + r"\s*\);", line)
        assert m, f"fence statement not found on line {n + 1}: {line!r}"
        new = line[: m.start()] + "/* mutant: fence removed */" + line[m.end() :]
        what = f"fence({token}) removed"
    else:
        new = line[:col] + "Relaxed" + line[col + len(token) :]
        what = f"{token} -> Relaxed"
    assert new != line
    out = list(lines)
    out[n] = new
    return out, what


def run(cmd, cwd, env, timeout):
    start = time.time()
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=timeout)
        return p.returncode, p.stdout, time.time() - start
    except subprocess.TimeoutExpired as e:
        return "timeout", (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), time.time() - start


def loom_tests(copy, env):
    rc, out, _ = run(["cargo", "test", "-q", "--lib", "--release", "--", "--list"], copy, env, 3600)
    if rc != 0:
        return None, out
    return re.findall(r"^loom_tests::(\S+): test$", out, re.M), out


def run_suite(suite, copy, first, base_env):
    """'killed by X' or 'survived' (or 'build failed')."""
    env = dict(base_env)
    if suite == "loom":
        env["RUSTFLAGS"] = "--cfg shmcast_loom"
        env["CARGO_TARGET_DIR"] = os.path.join(copy, "target", "loom")
        env.setdefault("LOOM_MAX_PREEMPTIONS", "2")
        tests, out = loom_tests(copy, env)
        if tests is None:
            return "build failed", out
        order = [t for t in first if t in tests] + [t for t in tests if t not in first]
        for t in order:
            rc, out, secs = run(["cargo", "test", "-q", "--lib", "--release", "--", "--exact",
                                 f"loom_tests::{t}", "--test-threads=1"], copy, env, 900)
            if rc != 0:
                why = "timeout" if rc == "timeout" else "failed"
                return f"killed by {t} ({why}, {secs:.0f}s)", out
        return "survived", ""
    if suite == "miri":
        env["MIRIFLAGS"] = "-Zmiri-strict-provenance"
        env["CARGO_TARGET_DIR"] = os.path.join(copy, "target", "miri")
        rc, out, secs = run(["cargo", "+nightly", "miri", "test", "--test", "in_process", "--test", "defects"],
                            copy, env, 3600)
        return ("survived", "") if rc == 0 else (f"killed by miri ({secs:.0f}s)", out)
    if suite == "test":
        env["CARGO_TARGET_DIR"] = os.path.join(copy, "target", "test")
        rc, out, secs = run(["cargo", "test", "--release", "--test", "in_process", "--test", "defects"],
                            copy, env, 1800)
        return ("survived", "") if rc == 0 else (f"killed by tests ({secs:.0f}s)", out)
    sys.exit(f"unknown suite {suite!r}")


def main():
    args = sys.argv[1:]
    reduced = "--reduced" in args
    keep = "--keep" in args
    only = [a for a in args if not a.startswith("--")]
    sites = scan()
    if "--list" in args:
        for s in sites:
            print(f"{s[0]}\t{s[4]}\t{s[5]}\t{s[1]}:{s[2] + 1}")
        print(f"{len(sites)} sites", file=sys.stderr)
        return 0
    table = read_table()
    found = {s[0] for s in sites}
    errors = []
    for s in sites:
        if s[0] not in table:
            errors.append(f"site {s[0]} ({s[1]}:{s[2] + 1}, {s[4]}) is not in mutation/expected.tsv")
    for site in table:
        if site not in found:
            errors.append(f"mutation/expected.tsv names {site}, which no longer exists")
    if errors:
        print("\n".join(errors))
        return 1
    copy = os.environ.get("MUTANT_DIR", os.path.join(ROOT, "target", "mutants", "crate"))
    os.makedirs(copy, exist_ok=True)
    for entry in ["Cargo.toml", "Cargo.lock", "src", "tests", "build.rs"]:
        src = os.path.join(ROOT, entry)
        dst = os.path.join(copy, entry)
        if os.path.isdir(dst):
            shutil.rmtree(dst)
        if os.path.isdir(src):
            shutil.copytree(src, dst)
        elif os.path.exists(src):
            shutil.copy2(src, dst)
    # The scratch crate is a workspace of its own (no other members, no examples/benches).
    cargo = open(os.path.join(copy, "Cargo.toml")).read()
    cargo = re.sub(r"(?ms)^\[workspace\].*?(?=^\[)", "[workspace]\nmembers = [\".\"]\n\n", cargo)
    cargo = re.sub(r"(?ms)^\[\[bench\]\].*?(?=^\[|\Z)", "", cargo)
    open(os.path.join(copy, "Cargo.toml"), "w").write(cargo)
    # From here on the scratch copy is the source of truth: the working tree may change
    # while a long run goes on.
    sites = scan(copy)
    assert {s[0] for s in sites} == found, "the source changed while it was being copied"
    pristine = {p: open(os.path.join(copy, p)).read() for p in {s[1] for s in sites}}
    todo = [s for s in sites if (not only or s[0] in only) and (not reduced or table[s[0]][3])]
    env = dict(os.environ)
    env.setdefault("CARGO_TERM_COLOR", "never")
    results, bad = [], 0
    started = time.time()
    print(f"{len(todo)} of {len(sites)} sites; scratch crate {copy}")
    for site, path, n, col, token, kind in todo:
        suite, expect, note, _ = table[site]
        target = os.path.join(copy, path)
        original = pristine[path].split("\n")
        mutated, what = mutate(original, n, col, token, kind)
        changed = [i for i, (a, b) in enumerate(zip(original, mutated)) if a != b]
        assert changed == [n], f"{site}: mutant changed lines {changed}"
        open(target, "w").write("\n".join(mutated))
        first = [t for t in note.split() if re.fullmatch(r"[a-z0-9_]+", t) and "_" in t]
        try:
            outcome, log = run_suite(suite, copy, first, env)
        finally:
            open(target, "w").write("\n".join(original))
        if outcome == "build failed":
            ok = False
        elif expect == "killed":
            ok = outcome.startswith("killed")
        else:
            ok = outcome == "survived"
        bad += not ok
        line = f"{'ok ' if ok else 'BAD'} {site:<46} {what:<24} {suite:<5} expected {expect:<9} -> {outcome}"
        print(line, flush=True)
        if not ok:
            tail = "\n".join(log.strip().split("\n")[-25:])
            print("    " + tail.replace("\n", "\n    "))
        results.append((site, what, suite, expect, outcome, ok))
    killed = sum(1 for r in results if r[4].startswith("killed"))
    redundant = sum(1 for s in todo if table[s[0]][1] == "redundant")
    print(f"\n{len(results)} mutants in {time.time() - started:.0f}s: {killed} killed, "
          f"{len(results) - killed} survived ({redundant} listed as redundant); {bad} unexpected")
    if not keep:
        pass
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
