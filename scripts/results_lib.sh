# Sourced by the scripts/results*.sh sweeps: runs one row of a results table.
#   results_row NAME [spush-train flags...]
# runs "$bin" "${common[@]}" FLAGS --out "$out/NAME", its output in "$out/NAME.log", and prints
# the run's last line. A row whose log already ends with its "done:" line is kept (an interrupted
# sweep resumes where it stopped); SPUSH_RERUN=1 runs every row again. A failed row is reported
# and the sweep goes on. Needs $bin, $out and the array common set by the caller.
results_row() {
  local name=$1; shift
  if [[ -z ${SPUSH_RERUN:-} ]] && grep -q '^done:' "$out/$name.log" 2>/dev/null; then
    echo "== $name: finished earlier (SPUSH_RERUN=1 runs it again)"; tail -1 "$out/$name.log"
    return
  fi
  echo "== $name: spush-train ${common[*]} $* --out $out/$name"
  "$bin" "${common[@]}" "$@" --out "$out/$name" > "$out/$name.log" 2>&1 || {
    echo "!! $name failed:"; tail -3 "$out/$name.log"; }
  tail -1 "$out/$name.log"
}
