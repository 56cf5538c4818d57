# test_cli.sh — the command-line skeleton: version, help, usage errors.
. tests/e2e/lib.sh

check "--version runs" "$YOTO" --version
contains "--version names the version" "$OUT" "yoto 0."
contains "--version names the git commit" "$OUT" "git "
git_head=$(git rev-parse --short=12 HEAD 2>/dev/null || true)
if [ -n "$git_head" ]; then contains "--version commit is HEAD" "$OUT" "$git_head"; fi

check "--help runs" "$YOTO" --help
for cmd in config prepare data-info train eval sample reconstruct bench; do
    contains "--help lists $cmd" "$OUT" "  $cmd"
done
for cmd in config prepare data-info train eval sample reconstruct bench; do
    expect_exit 0 "$cmd --help exits 0" "$YOTO" $cmd --help
    contains "$cmd --help prints usage" "$OUT" "usage: yoto $cmd"
done

expect_exit 2 "no command is a usage error" "$YOTO"
expect_exit 2 "unknown command is a usage error" "$YOTO" frobnicate
contains "unknown command is named" "$ERR" "unknown command 'frobnicate'"
expect_exit 2 "unknown option is a usage error" "$YOTO" config --frobnicate x.yaml
contains "unknown option is named" "$ERR" "--frobnicate"
expect_exit 2 "missing option value is a usage error" "$YOTO" config x.yaml --set
done_testing
