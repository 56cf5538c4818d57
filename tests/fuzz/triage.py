#!/usr/bin/python3
"""tests/fuzz/triage.py BINARY ARTIFACT... -- sorts libFuzzer findings (run by run.sh).

Replays each crash/leak/timeout/oom input once, reads the sanitizer's stack
and files it under
  yoto     the first frame that is not the sanitizer, libc's string functions
           or libFuzzer is in our code (src/, tests/fuzz/), or a FUZZ_CHECK
           failed: a bug to fix (then keep the input in tests/fuzz/regress/);
  libhdf5  that frame is inside libhdf5 (a malformed file crashes, hangs or
           leaks inside the library); the yoto function that called it is
           shown, to check that our arguments were sound;
  flaky    the replay did not fail.
Prints one line per distinct (class, frame, caller) with its count and an
example input; exits 1 when any finding is yoto's or flaky.
"""
import os, re, subprocess, sys

SKIP = re.compile(r"__sanitizer|__asan|__lsan|__ubsan|__interceptor|\bmalloc\b|\bcalloc\b|"
                  r"\brealloc\b|\bfree\b|__memcpy|__memmove|__memset|__strlen|\bmemcpy\b|"
                  r"\bmemmove\b|\bstrlen\b|fuzzer::|libFuzzer|\babort\b|\braise\b|__GI_|gsignal|"
                  r"fuzz_check_failed|/sysdeps/|libc\.so|__libc_start|\b_start\b")
LIBC = re.compile(r"(str|mem|wcs)[a-z]*")
FRAME = re.compile(r"^\s*#\d+ 0x[0-9a-f]+ in (\S+) (.*)$")
OURS = re.compile(r"/(src|tests/fuzz)/[^ ]+\.c:\d+")


def replay(binary, path):
    """The output of one run of the harness on path (None: it ran past 60 s)."""
    env = dict(os.environ, ASAN_OPTIONS="fast_unwind_on_malloc=0:detect_leaks=1:"
               "allocator_may_return_null=0:symbolize=1")
    try:
        return subprocess.run([binary, "-timeout=5", "-rss_limit_mb=2048", "-malloc_limit_mb=2048",
                               path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace", timeout=60, env=env).stdout
    except subprocess.TimeoutExpired:
        return None


def classify(binary, path):
    # an RSS limit report lists live allocations, not where memory went; the
    # malloc-limit report (which of the two comes first varies) has the stack
    for _ in range(3):
        out = replay(binary, path)
        if out is None or "out-of-memory (used:" not in out:
            break
    if out is None:
        return "flaky", "replay ran past 60 s", ""
    if "fuzz check failed" in out:
        m = re.search(r"(\S+:\d+): fuzz check failed: (.*)", out)
        return "yoto", "FUZZ_CHECK " + (m.group(2)[:80] if m else "?"), m.group(1) if m else ""
    err = re.search(r"ERROR: (\w+Sanitizer|libFuzzer): ([^\n(]*)", out)
    if not err:
        return "flaky", "did not fail on replay", ""
    kind = re.sub(r"0x[0-9a-f]+|\d+", "N", err.group(2).strip())[:40]
    stack = out[err.end():]
    first, caller = None, ""
    for line in stack.splitlines():
        m = FRAME.match(line)
        if not m:
            if first and line.strip() == "":
                break
            continue
        func, where = m.group(1), m.group(2)
        libc = LIBC.fullmatch(func)  # the sanitizer's interceptors of libc's string functions
        if first is None and not libc and not SKIP.search(func + " " + where):
            first = (func, where)
        o = OURS.search(where)
        if first is not None and o:
            caller = func + " " + o.group(0).split("/", 1)[1]
            break
    if first is None:
        return "yoto", kind + " (no frame)", caller
    cls = "libhdf5" if "libhdf5" in first[1] else "yoto"
    return cls, "%s in %s" % (kind, first[0]), caller


def main():
    binary, arts = sys.argv[1], sys.argv[2:]
    groups = {}
    if len(arts) > 40:  # a replay can take 10 s (hangs): sort a sample
        print("    (%d findings: triaging the first 40)" % len(arts))
        arts = sorted(arts)[:40]
    for a in arts:
        key = classify(binary, a)
        groups.setdefault(key, []).append(a)
    bad = 0
    for (cls, what, caller), files in sorted(groups.items()):
        if cls in ("yoto", "flaky"):
            bad += len(files)
        print("    %-8s %3d x %s%s  e.g. %s" % (cls, len(files), what,
                                               ", called by " + caller if caller else "",
                                               files[0]))
    counts = {}
    for (cls, _, _), files in groups.items():
        counts[cls] = counts.get(cls, 0) + len(files)
    print("TRIAGE " + " ".join("%s=%d" % kv for kv in sorted(counts.items())) +
          " distinct=%d" % len(groups))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
