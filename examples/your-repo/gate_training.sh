#!/usr/bin/env bash
# Gate every checkpoint a training job writes, while it trains: `lvm-checks watch` beside the trainer.
#
#   bash gate_training.sh OUT -- TRAIN_COMMAND [ARGS...]
#
# OUT is the folder the trainer writes its checkpoints into. LVM_CHECKS_ARGS holds the watcher's and the
# gate's options (--model-adapter, --payload, --eval-set, --train-data, --level, ...); LVM_CHECKS is the
# command (default: lvm-checks). The watcher starts first, gates each checkpoint as soon as it is complete,
# and stops on OUT/TRAINING_DONE, which this script writes when the trainer exits if the trainer did not
# (`python -m train` writes it itself). Exit code: the trainer's if it failed, else the watcher's: 0 only if
# every checkpoint's decision is `continue`, 5 if no checkpoint was gated. Reports: OUT/reports/gates/
# (one folder per checkpoint, and run.md / run.json / run.png, the run side by side and which to keep).
set -uo pipefail
out="$1"; shift
[ "${1:-}" = "--" ] && shift
read -r -a checks_cmd <<< "${LVM_CHECKS:-lvm-checks}"
read -r -a options <<< "${LVM_CHECKS_ARGS:-}"
mkdir -p "$out"
rm -f "$out/TRAINING_DONE"
"${checks_cmd[@]}" watch "$out" --timeout "${LVM_WATCH_TIMEOUT:-3600}" "${options[@]}" &
watcher=$!
"$@"
trained=$?
[ -f "$out/TRAINING_DONE" ] || printf '{"status": "exit %s"}\n' "$trained" > "$out/TRAINING_DONE"
wait "$watcher"
gated=$?
if [ "$trained" -ne 0 ]; then
    echo "training failed (exit $trained); the gates of what it wrote: watcher exit $gated" >&2
    exit "$trained"
fi
exit "$gated"
