# test_docs.sh — the documentation cites only what users have: every
# Markdown page (capitals, then .md) cited in docs/, configs/, include/, src/, analysis/, jobs/,
# README.md and the Makefile is a file of the repository; every relative
# link and image in the Markdown pages exists; README's table lists every
# page of docs/; and the pages written for users (README, docs/ but the
# design page) name no internal C function of include/.
. tests/e2e/lib.sh

cat >"$T/check_docs.py" <<'EOF'
import glob, os, re, sys

what = sys.argv[1]
sources = [f for f in ("README.md", "Makefile") if os.path.isfile(f)]
for d in ("docs", "configs", "include", "src", "analysis", "jobs"):
    for root, _, files in os.walk(d):
        sources += [os.path.join(root, f) for f in files if not f.endswith((".png", ".h5", ".pyc"))]

def exists(cited, by):
    # as written from the project root, beside the citing file, or in docs/
    return any(os.path.isfile(os.path.normpath(p))
               for p in (cited, os.path.join(os.path.dirname(by), cited), os.path.join("docs", cited)))

if what == "cited":  # documents named in capitals + .md (pages, not output files like scaling.md)
    cite = re.compile(r"(?<![A-Za-z0-9_./-])((?:[A-Za-z0-9_.-]+/)*[A-Z][A-Z0-9_]*\.md)\b")
    seen, missing = 0, []
    for f in sources:
        for n, line in enumerate(open(f, errors="replace"), 1):
            for m in cite.finditer(line):
                seen += 1
                if not exists(m.group(1), f):
                    missing.append(f"{f}:{n}: {m.group(1)}")
    assert seen >= 50, f"only {seen} citations found: is the pattern broken?"
    assert not missing, "cited but not in the repository: " + "; ".join(missing)
    print(f"{seen} citations, all there")
elif what == "links":  # [text](target) and ![alt](target) in the pages
    link = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
    pages = ["README.md"] + glob.glob("docs/*.md")
    missing = [f"{p}: {t}" for p in pages for t in link.findall(open(p).read())
               if "://" not in t and not os.path.exists(os.path.join(os.path.dirname(p), t))]
    assert not missing, "broken links: " + "; ".join(missing)
elif what == "readme":  # every page of docs/ is in README's table
    readme = open("README.md").read()
    absent = [p for p in sorted(glob.glob("docs/*.md")) if f"| {p} |" not in readme]
    assert not absent, "not in README's documentation table: " + ", ".join(absent)
elif what == "functions":  # user pages describe what users do, not internal functions
    decl = re.compile(r"^(?:static\s+|extern\s+|inline\s+|_Noreturn\s+)*(?:const\s+)?(?:unsigned\s+|struct\s+)?"
                      r"[A-Za-z_][A-Za-z0-9_]*[\s*]+([a-z][a-z0-9]*_[a-z0-9_]+)\s*\(")
    names = {m.group(1) for h in glob.glob("include/*.h") for line in open(h) for m in [decl.match(line)] if m}
    assert len(names) >= 100, f"only {len(names)} functions found in include/: is the pattern broken?"
    pages = ["README.md"] + [p for p in glob.glob("docs/*.md") if not p.endswith("DESIGN.md")]
    found = [f"{p}: {n}" for p in pages for n in sorted(names)
             if re.search(r"(?<![A-Za-z0-9_.])%s\b" % re.escape(n), open(p).read())]
    assert not found, "internal functions named in user pages: " + "; ".join(found)
print("ok")
EOF
check "every Markdown page cited in docs/, configs/, include/, src/, analysis/, jobs/ is in the repository" \
    "$PYTHON" "$T/check_docs.py" cited
check "every relative link and image of README.md and docs/*.md exists" "$PYTHON" "$T/check_docs.py" links
check "README's documentation table lists every page of docs/" "$PYTHON" "$T/check_docs.py" readme
check "user pages name no internal C function of include/" "$PYTHON" "$T/check_docs.py" functions

# the checker itself: a page that cites a missing document fails it (its
# name is put together here, so that this script cites no missing page)
missing=docs/MISSING_PAGE
mkdir -p "$T/repo/docs" "$T/repo/include"
cp README.md "$T/repo/"
cp docs/*.md "$T/repo/docs/"
cp include/*.h "$T/repo/include/"
echo "See $missing.md and DESIGN.md." >>"$T/repo/docs/CONFIG.md"
for i in $(seq 1 50); do echo "DESIGN.md"; done >>"$T/repo/docs/DATA.md"
expect_exit 1 "(the check fails on a page citing a missing page)" env -C "$T/repo" "$PYTHON" "$T/check_docs.py" cited
contains "... and names the page" "$ERR" "$missing.md"
contains "... and where it is cited" "$ERR" "docs/CONFIG.md:"
echo "Call config_load() first." >>"$T/repo/docs/CLI.md"
expect_exit 1 "(the function check fails on a page naming config_load)" env -C "$T/repo" "$PYTHON" "$T/check_docs.py" functions
contains "... and names it" "$ERR" "docs/CLI.md: config_load"
done_testing
