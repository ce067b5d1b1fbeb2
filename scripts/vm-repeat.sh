#!/usr/bin/env bash
# Runs the VM tier (npm run test:vm) N times in a row (default 10) and prints, per run: pass/fail,
# duration, the host's load average at the end, and the slowest step the tests reported
# ("vm step: <what> <seconds> s" lines); then a summary line. Logs stay in $AM_VM_REPEAT_DIR
# (default a new /tmp/vm-repeat-* dir). Exit status: 0 when every run passed.
#
#   npm run test:vm:repeat -- 10
#   bash scripts/vm-repeat.sh 3 test/vm/mesh.test.ts   # extra arguments go to vitest
set -uo pipefail
cd "$(dirname "$0")/.."

runs=${1:-10}
shift || true
if ! [[ "$runs" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [RUNS] [vitest args...]" >&2
  exit 2
fi
dir=${AM_VM_REPEAT_DIR:-$(mktemp -d /tmp/vm-repeat-XXXXXX)}
mkdir -p "$dir"
echo "vm-repeat: $runs runs of the VM tier; logs in $dir"
printf '%-4s %-5s %8s  %-16s %s\n' run result time load "slowest step"

# INT/TERM stop the current run too (its vitest cleans up its VMs), not only this loop.
child=
trap '[ -n "$child" ] && kill -TERM "$child" 2>/dev/null && wait "$child"; exit 130' INT TERM

passed=0
durations=()
for ((i = 1; i <= runs; i++)); do
  log="$dir/run-$i.log"
  start=$(date +%s)
  node_modules/.bin/vitest run --config test/vm/vitest.config.ts "$@" >"$log" 2>&1 &
  child=$!
  wait "$child"
  rc=$?
  child=
  secs=$(($(date +%s) - start))
  durations+=("$secs")
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  # Strip colours, keep "vm step:" lines, sort by their seconds, take the largest.
  slowest=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -o 'vm step: .* [0-9.]* s\( (.*)\)\?$' |
    awk '{ for (f = NF; f > 0; f--) if ($f == "s" && $(f-1) ~ /^[0-9.]+$/) { print $(f-1) "\t" $0; break } }' |
    sort -t$'\t' -k1,1 -rn | head -1 | cut -f2- | sed 's/^vm step: //')
  if [ "$rc" -eq 0 ]; then
    result=pass
    passed=$((passed + 1))
  else
    result=FAIL
  fi
  printf '%-4s %-5s %7ss  %-16s %s\n' "$i" "$result" "$secs" "$load" "${slowest:-(none reported)}"
  if [ "$rc" -ne 0 ]; then
    sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -m3 -E 'FAIL|Error:' | sed 's/^/       /'
  fi
done
sorted=$(printf '%s\n' "${durations[@]}" | sort -n)
min=$(head -1 <<<"$sorted")
max=$(tail -1 <<<"$sorted")
median=$(sed -n "$(((runs + 1) / 2))p" <<<"$sorted")
echo "vm-repeat: $passed/$runs passed; duration min ${min}s, median ${median}s, max ${max}s; logs in $dir"
[ "$passed" -eq "$runs" ]
