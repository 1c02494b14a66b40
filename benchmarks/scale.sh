#!/bin/bash
# MovieLens-25M-sized data end to end on one machine: the run behind benchmarks/SCALE.md.
#
#   benchmarks/scale.sh DATA_DIR OUT_DIR
#
# DATA_DIR holds the 25M-sized synthetic data of the ingest benchmark; it is generated first
# when missing (`python benchmarks/ingest.py --scales 25m --data-25m DATA_DIR --keep`).
# Each step runs as its own process under GNU time; OUT_DIR gets the workspace, each step's
# output (STEP.out) and its wall time and peak memory (STEP.err), and eval.json.
#
# Every step runs with the defaults. Two settings for a machine without a GPU, where the
# packaged MiniLM's encoding of 224,000 documents and the short-history users' would take
# hours: MODEL=DIR trains with another BERT folder (a small random one gives the pipeline's
# own time and memory), and EVALUATE=0 skips evaluate (its protocol trains twice more).
set -u
DATA=${1:?usage: benchmarks/scale.sh DATA_DIR OUT_DIR}
OUT=${2:?usage: benchmarks/scale.sh DATA_DIR OUT_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-$HERE/../.venv/bin/python}
mkdir -p "$OUT"
if [ ! -f "$DATA/ratings.csv" ]; then
    "$PY" "$HERE/ingest.py" --scales 25m --data-25m "$DATA" --impls tagrec --repeats 1 --keep
fi
export TAGREC_WORKDIR=$OUT/ws
T=("$PY" -m tagrec_cli)
step() {
    local name=$1; shift
    echo "== $name: tagrec $*"
    /usr/bin/time -v "${T[@]}" "$@" > "$OUT/$name.out" 2> "$OUT/$name.err"
    echo "exit $?"
    grep -E "Elapsed|Maximum resident" "$OUT/$name.err"
}
step ingest ingest --data "$DATA"
MODEL_OPT=()
[ -n "${MODEL:-}" ] && MODEL_OPT=(--model "$MODEL")
step train train "${MODEL_OPT[@]}"
step embed embed
step recommend recommend --user 42
step recommend_two recommend --user 42 --user 7 --json
step tags recommend --tags "heist, twist ending"
step similar similar --movie 2 -k 5   # the synthetic data has no movie 1
[ "${EVALUATE:-1}" = 0 ] || step evaluate evaluate --json "$OUT/eval.json"
