# test_config.sh — `yoto config` end to end: bad configs (exit code 2 and a
# message with file:line:column and the key, or the --set text), --set
# overrides, round trips of every shipped config, and docs/CONFIG.md covering
# every key.
. tests/e2e/lib.sh

# A small valid config, one key per line so that line numbers are easy to
# read off; the bad cases below each change a line or two of it.
cat >"$T/base.yaml" <<'EOF'
experiment:
  name: tiny
  seed: 3
data:
  file: d.h5
  splits:
    - name: train
      range: "20%:"
    - name: valid
      range: ":20%"
  preprocess_train: ["pad(8)", "value_range(0, 1)"]
  preprocess_eval: ["value_range(0, 1)"]
model:
  input_shape: [8, 8, 1]
  latent_dim: 2
  output_distribution: bernoulli
  encoder:
    num_blocks: 1
    layers_per_block: 1
    base_channels: 4
    fc_sizes: [8, 4]
  decoder:
    num_blocks: 1
    layers_per_block: 1
    base_channels: 4
    fc_sizes: [8, 16]
    reshape: [4, 4, 1]
    channels_out: 1
  conditioning:
    hidden_sizes: [8]
loss_weights:
  kl:
    distribution: log_uniform
    low: 0.5
    high: 8.0
  reconstruction:
    distribution: fixed
    value: 1.0
optimizer:
  lr: 0.001
  decay_steps: [5, 8]
train:
  batch_size: 4
  steps: 10
eval:
  splits: [train, valid]
  betas: [1.0, 2.0]
EOF
B=$T/base.yaml

check "the base config is valid" "$YOTO" config "$B"

# edit NAME LINE TEXT: $T/NAME.yaml is the base with line LINE replaced by
# TEXT ("\n" starts another line; an empty TEXT deletes the line).
edit() {
    awk -v n="$2" -v t="$3" 'NR == n { if (t != "") print t; next } { print }' "$B" >"$T/$1.yaml"
}

# bad NAME WANT... — `yoto config $T/NAME.yaml` exits 2 and stderr holds each
# WANT; a WANT starting with ":" is a position, prefixed with the file name.
bad() {
    local name=$1
    shift
    expect_exit 2 "$name: exit code 2" "$YOTO" config "$T/$name.yaml"
    for want in "$@"; do
        case $want in :*) want="$T/$name.yaml$want" ;; esac
        contains "$name: says $want" "$ERR" "$want"
    done
}

# bad_set NAME SET WANT... — the base with --set SET exits 2 naming it.
bad_set() {
    local name=$1 set=$2
    shift 2
    expect_exit 2 "$name: exit code 2" "$YOTO" config "$B" --set "$set"
    contains "$name: names --set $set" "$ERR" "--set $set: "
    for want in "$@"; do contains "$name: says $want" "$ERR" "$want"; done
}

# ---- keys: unknown, duplicate, missing ---------------------------------------------
edit unknown_key 15 "  latnet_dim: 2"
bad unknown_key ":15:3: " "unknown key 'model.latnet_dim'" "did you mean 'model.latent_dim'?"
edit unknown_section 42 "trian:"
bad unknown_section ":42:1: " "unknown key 'trian'" "did you mean 'train'?"
edit unknown_far 47 "  betas: [1.0, 2.0]\n  frobnicate: 1"
bad unknown_far ":48:3: " "unknown key 'eval.frobnicate'" "valid keys in 'eval': batch_size,"
edit unknown_in_split 8 '      rnage: "20%:"'
bad unknown_in_split ":8:7: " "unknown key 'data.splits[0].rnage'" "did you mean 'data.splits[0].range'?"
edit encoder_has_no_reshape 21 "    fc_sizes: [8, 4]\n    reshape: [4, 4, 1]"
bad encoder_has_no_reshape ":22:5: " "unknown key 'model.encoder.reshape'"
edit duplicate_key 44 "  steps: 10\n  steps: 20"
bad duplicate_key ":45:3: " "duplicate key 'train.steps' (first set at $T/duplicate_key.yaml:44:3)"
edit missing_key 15 ""
bad missing_key ":13:1: " "missing required key 'model.latent_dim' (in 'model')"
awk 'NR < 39 || NR > 41' "$B" >"$T/missing_section.yaml"
bad missing_section ":1:1: " "missing required key 'optimizer.lr' (there is no 'optimizer' section)"

# ---- types -----------------------------------------------------------------------------
edit real_for_int 44 "  steps: 1.5"
bad real_for_int ":44:10: " "train.steps: expected an integer >= 1, found '1.5'"
edit text_for_real 40 "  lr: abc"
bad text_for_real ":40:7: " "optimizer.lr: expected a real number > 0, found 'abc'"
edit quoted_int 44 '  steps: "10"'
bad quoted_int ":44:10: " "train.steps: expected an integer" 'found the quoted string "10"'
edit yes_for_bool 16 "  output_distribution: bernoulli\n  final_sigmoid: yes"
bad yes_for_bool ":17:18: " "model.final_sigmoid: expected true or false, found 'yes'"
edit bad_enum 16 "  output_distribution: Gaussian"
bad bad_enum ":16:24: " "model.output_distribution: bad value 'Gaussian'; expected one of: bernoulli, gaussian" \
    "did you mean 'gaussian'?"
edit map_for_scalar 15 "  latent_dim: {a: 1}"
bad map_for_scalar ":15:15: " "model.latent_dim: expected an integer" "found a mapping"
edit list_for_scalar 44 "  steps: [10]"
bad list_for_scalar ":44:10: " "train.steps: expected an integer" "found a list"
awk 'NR == 29 { print "  conditioning: film"; next } NR == 30 { next } { print }' "$B" >"$T/scalar_for_map.yaml"
bad scalar_for_map ":29:17: " "model.conditioning: expected a mapping (with keys type, hidden_sizes," "found a scalar"
edit scalar_for_list 47 "  betas: 1.0"
bad scalar_for_list ":47:10: " "eval.betas: expected a list of real numbers" "found a single value"
edit null_value 15 "  latent_dim:"
bad null_value ":15:14: " "model.latent_dim: expected an integer" "found nothing (null)"
edit too_long_string 2 "  name: $(printf 'n%.0s' $(seq 70))"
bad too_long_string ":2:9: " "experiment.name: too long: 70 characters, at most 63"
edit empty_name 7 '    - name: ""'
bad empty_name ":7:13: " "data.splits[0].name: expected a non-empty string"

# ---- ranges and lists ------------------------------------------------------------------
edit out_of_range 18 "    num_blocks: 0"
bad out_of_range ":18:17: " "model.encoder.num_blocks: out of range: expected an integer in [1, 16], found 0"
edit negative_beta 47 "  betas: [1.0, -2.0]"
bad negative_beta ":47:16: " "eval.betas[1]: out of range: expected a real number > 0, found -2.0"
edit negative_seed 3 "  seed: -1"
bad negative_seed ":3:9: " "experiment.seed: out of range: expected an integer >= 0"
edit huge_int 44 "  steps: 99999999999999999999999"
bad huge_int ":44:10: " "train.steps: out of range"
edit list_too_long 47 "  betas: [$(seq -s ', ' 1 65)]"
bad list_too_long ":47:10: " "eval.betas: list too long: 65 entries, at most 64"
edit short_shape 14 "  input_shape: [8, 8]"
bad short_shape ":14:16: " "model.input_shape: expected a list of exactly 3 integers, found 2"
edit empty_betas 47 "  betas: []"
bad empty_betas ":47:10: " "eval.betas: expected at least 1 real numbers, found an empty list"
edit bad_preop 11 '  preprocess_train: ["pad(8)", "resise(8)"]'
bad bad_preop ":11:32: " "data.preprocess_train[1]: bad preprocessing op 'resise(8)'" "did you mean 'resize'?"
edit bad_preop_arg 11 '  preprocess_train: ["pad(8)", "value_range(1)"]'
bad bad_preop_arg ":11:32: " "data.preprocess_train[1]: bad preprocessing op 'value_range(1)': expected value_range(a, b)"
edit bad_range 8 '      range: "20%%:"'
bad bad_range ":8:14: " "data.splits[0].range: bad row range '20%%:'"

# ---- YAML itself -----------------------------------------------------------------------
edit malformed 21 "    fc_sizes: [8, 4"
bad malformed ":22:" "malformed YAML: did not find expected ',' or ']'"
edit tab_indent 2 "	name: tiny"
bad tab_indent ":2:1: " "malformed YAML: found character that cannot start any token"
edit alias 3 "  seed: *x"
bad alias ":3:9: " "YAML alias '*x' is not supported"
{ cat "$B"; printf -- '---\nb: 1\n'; } >"$T/two_docs.yaml"
bad two_docs ":48:1: " "more than one YAML document"
: >"$T/empty.yaml"
bad empty ":1:1: empty config"
printf '# nothing but a comment\n\n' >"$T/comments_only.yaml"
bad comments_only ":1:1: empty config"
printf -- '- experiment\n- data\n' >"$T/list_root.yaml"
bad list_root ":1:1: " "config: expected a mapping (with keys experiment, data, model,"
expect_exit 2 "missing file: exit code 2" "$YOTO" config "$T/no_such.yaml"
contains "missing file: says cannot open" "$ERR" "$T/no_such.yaml: cannot open config"

# ---- cross-key rules: both keys and where they were set --------------------------------
edit both_batches 43 "  batch_size: 4\n  batch_per_rank: 2"
bad both_batches ":43:15: " "set exactly one of them" \
    "train.batch_size = 4 ($T/both_batches.yaml:43:15)" "train.batch_per_rank = 2 ($T/both_batches.yaml:44:19)"
edit no_batch 43 "  batch_size: 0"
bad no_batch ":43:15: " "train.batch_per_rank = 0 (default)"
edit enc_fc 21 "    fc_sizes: [8, 6]"
bad enc_fc ":21:15: " "model.encoder.fc_sizes: the last size must be 2 * model.latent_dim = 4" \
    "model.latent_dim at $T/enc_fc.yaml:15:15" "found 6"
edit dec_fc 26 "    fc_sizes: [8, 15]"
bad dec_fc ":26:15: " "model.decoder.fc_sizes: the last size must be h*w*c of model.decoder.reshape [4, 4, 1] = 16 ($T/dec_fc.yaml:27:14)"
edit dec_reshape 27 "    reshape: [2, 2, 4]"
bad dec_reshape ":27:14: " "model.decoder.reshape: height 2 * 2^model.decoder.num_blocks (1) = 4 must equal the input height 8" \
    "model.input_shape ($T/dec_reshape.yaml:14:16)"
edit channels_out 28 "    channels_out: 2"
bad channels_out ":28:19: " "model.decoder.channels_out: must be 1 for model.output_distribution = bernoulli ($T/channels_out.yaml:16:24)"
edit not_divisible 14 "  input_shape: [7, 7, 1]"
bad not_divisible ":14:16: " "model.input_shape: height 7 is not divisible by 2^model.encoder.num_blocks = 2" \
    "model.encoder.num_blocks = 1 at $T/not_divisible.yaml:18:17"
edit final_sigmoid 16 "  output_distribution: bernoulli\n  final_sigmoid: true"
bad final_sigmoid ":17:18: " "model.final_sigmoid: must be false: the reference configs use false"
edit fixed_mode 31 "loss_weights:\n  mode: fixed"
bad fixed_mode ":32:9: " "loss_weights.mode: fixed needs both weight distributions fixed" \
    "loss_weights.kl.distribution = log_uniform ($T/fixed_mode.yaml:34:19)"
edit no_film 30 "    hidden_sizes: [8]\n    type: none"
bad no_film ":31:11: " "loss_weights.mode: yoto feeds the loss weights to the network, so it needs model.conditioning.type = film" \
    "found none ($T/no_film.yaml:31:11)"
edit log_uniform_zero 34 "    low: 0"
bad log_uniform_zero ":34:10: " "loss_weights.kl.distribution: log_uniform needs 0 < low <= high" \
    "loss_weights.kl.high = 8 ($T/log_uniform_zero.yaml:35:11)"
awk 'NR == 33 { print "    distribution: uniform"; next } NR == 34 { print "    low: 9"; next } { print }' "$B" >"$T/uniform_inverted.yaml"
bad uniform_inverted ":34:10: " "loss_weights.kl.distribution: uniform needs 0 < low <= high"
edit fixed_zero 38 "    value: 0"
bad fixed_zero ":38:12: " "loss_weights.reconstruction.distribution: a fixed weight must be > 0" "loss_weights.transform is log"
edit decay_order 41 "  decay_steps: [8, 5]"
bad decay_order ":41:16: " "optimizer.decay_steps: must be strictly increasing; entry [1] = 5 follows 8"
edit train_split 12 '  preprocess_eval: ["value_range(0, 1)"]\n  train_split: trian'
bad train_split ":13:16: " "data.train_split: 'trian' is not one of the splits in data.splits ($T/train_split.yaml:7:5)"
edit eval_split 46 "  splits: [train, test]"
bad eval_split ":46:11: " "eval.splits[1]: 'test' is not one of the splits in data.splits"
edit same_split 9 "    - name: train"
bad same_split ":9:13: " "data.splits[1].name: split name 'train' is used twice (also data.splits[0].name at $T/same_split.yaml:7:13)"
edit eval_split_twice 46 "  splits: [valid, valid]"
bad eval_split_twice ":46:11: " "eval.splits[1]: split 'valid' is listed twice (also eval.splits[0])"
edit slash_split 9 "    - name: a/b"
bad slash_split ":9:13: " "data.splits[1].name: split name 'a/b' cannot contain '/'"
edit no_file 5 ""
bad no_file ":6:7: " "data.splits[0]: split 'train' names no file: set its 'file' or data.file"
edit bernoulli_range 12 '  preprocess_eval: ["value_range(-1, 1)"]'
bad bernoulli_range ":12:20: " "data.preprocess_eval[0]: value_range(-1, 1) leaves [0, 1], but model.output_distribution = bernoulli"
edit pad_size 11 '  preprocess_train: ["pad(16)", "value_range(0, 1)"]'
bad pad_size ":11:21: " "data.preprocess_train makes 16 x 16 images, but model.input_shape = [8, 8, 1] ($T/pad_size.yaml:14:16)"

# ---- --set: errors name the option --------------------------------------------------
bad_set set_unknown "model.latnet_dim=3" "unknown key 'model.latnet_dim'; did you mean 'model.latent_dim'?"
bad_set set_unknown_section "modle.latent_dim=3" "unknown key 'modle'; did you mean 'model'?"
bad_set set_type "train.steps=abc" "train.steps: expected an integer >= 1, found 'abc'"
bad_set set_malformed "eval.betas=[1," "value at column" "malformed YAML"
bad_set set_no_equals "train.steps" "expected KEY=VALUE"
bad_set set_into_scalar "train.steps.x=1" "'train.steps' is not a mapping, so it has no key 'x'"
bad_set set_bad_index "data.splits[5].range=x" "'data.splits' has no entry [5] (the list is shorter)"
bad_set set_unquoted_colon "data.splits[0].range=:10%:" "expected a string, found a mapping" "must be quoted"
bad_set set_cross "train.batch_per_rank=2" "train.batch_per_rank = 2 (--set train.batch_per_rank=2)" \
    "train.batch_size = 4 ($B:43:15)"
bad_set set_missing_in_map "model.encoder={num_blocks: 1}" "missing required key 'model.encoder.layers_per_block'"

# ---- --set: what works ------------------------------------------------------------------
check "--set a list" "$YOTO" config "$B" --set eval.betas=[1,2,4]
contains "--set a list: printed" "$OUT" "  betas: [1.0, 2.0, 4.0]"
check "--set a list of mappings" "$YOTO" config "$B" \
    --set 'data.splits=[{name: train, dataset: images}, {name: valid, range: ":1%"}]'
contains "--set a list of mappings: printed" "$OUT" '      range: ":1%"'
check "--set an entry of a list" "$YOTO" config "$B" --set 'data.splits[1].range=":5%"'
contains "--set an entry: printed" "$OUT" '      range: ":5%"'
check "--set in order, the last wins" "$YOTO" config "$B" --set train.steps=5 --set train.steps=7
contains "--set in order: printed" "$OUT" "  steps: 7"
check "--set nested" "$YOTO" config "$B" --set model.conditioning.scales_mult=0.01
contains "--set nested: printed" "$OUT" "    scales_mult: 0.01"

# ---- round trips: the printed config resolves to itself --------------------------------
for cfg in configs/*.yaml; do
    n=$(basename "$cfg" .yaml)
    check "$n: resolves" "$YOTO" config "$cfg"
    cp "$OUT" "$T/$n.1.yaml"
    check "$n: its output resolves" "$YOTO" config "$T/$n.1.yaml"
    cp "$OUT" "$T/$n.2.yaml"
    check "$n: to the same text" cmp "$T/$n.1.yaml" "$T/$n.2.yaml"
    "$YOTO" config /dev/stdin <"$T/$n.1.yaml" >"$T/$n.3.yaml" 2>"$ERR"
    check "$n: read from a pipe, the same" cmp "$T/$n.1.yaml" "$T/$n.3.yaml"
done
check "Shapes3D with --set resolves" "$YOTO" config configs/shapes3d_conv_vae_yoto.yaml \
    --set optimizer.lr=0.30000000000000004 --set experiment.name='"a b: c"'
cp "$OUT" "$T/set.1.yaml"
contains "... keeping all 17 digits" "$T/set.1.yaml" "lr: 0.30000000000000004"
check "... and its output resolves" "$YOTO" config "$T/set.1.yaml"
cp "$OUT" "$T/set.2.yaml"
check "... to the same text" cmp "$T/set.1.yaml" "$T/set.2.yaml"

# ---- docs/CONFIG.md documents every key ----------------------------------------------
"$YOTO" config configs/shapes3d_conv_vae_yoto.yaml >"$T/keys.yaml" 2>"$ERR"
# dotted paths from the indentation; keys of list entries become NAME[].KEY
"$PYTHON" - "$T/keys.yaml" >"$T/keys.txt" <<'PY'
import sys
stack = []  # [indent, name, is_list]
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    if not line.strip() or line.lstrip().startswith("#"):
        continue
    ind = len(line) - len(line.lstrip(" "))
    body = line[ind:]
    item = body.startswith("- ")
    if item:
        ind, body = ind + 2, body[2:]
    key, _, rest = body.partition(":")
    while stack and stack[-1][0] >= ind:
        stack.pop()
    if item:
        stack[-1][2] = True
    path = ".".join(n + ("[]" if lst else "") for _, n, lst in stack)
    path = (path + "." if path else "") + key
    if rest.strip():
        print(path)
    else:
        stack.append([ind, key, False])
PY
sort -u -o "$T/keys.txt" "$T/keys.txt"
nkeys=$(wc -l <"$T/keys.txt")
if [ "$nkeys" -ge 60 ]; then _ok "the dump has $nkeys keys"; else _not_ok "the dump has only $nkeys keys"; fi
missing=$(while read -r k; do grep -qF -- "\`$k\`" docs/CONFIG.md || echo "$k"; done <"$T/keys.txt")
if [ -z "$missing" ]; then _ok "docs/CONFIG.md names every key"; else
    _not_ok "docs/CONFIG.md names every key" "missing: $(echo $missing)"; fi

done_testing
