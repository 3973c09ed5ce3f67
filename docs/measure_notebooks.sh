#!/bin/bash
# Time and peak memory of each course notebook, run top to bottom as a student's Run All runs it: the numbers of
# the map in notebooks/00_start_here.ipynb and the course table of the README.
#
#   bash docs/measure_notebooks.sh                      # every notebook, one after the other
#   bash docs/measure_notebooks.sh notebooks/07_*.ipynb # some of them
#
# Each notebook runs in its own kernel under `jupyter nbconvert --execute` (into a temporary folder: the repository
# is not touched), measured by `/usr/bin/time -v`, with the environment binder/start gives every Binder kernel
# (MALLOC_ARENA_MAX=2, one thread) and the solution cells not run (LOCOCOURSE_SOLUTIONS=0), as on Run All.
# "wall" is the wall time of the whole nbconvert process (kernel start included); "peak" is the largest resident
# set (in GB, 10⁹ bytes) of any one process in it (GNU time reports the maximum over the process and its
# waited-for children, here
# the kernel). Other load on the machine slows the times down; the memory does not depend on it.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (/usr/bin/time; Debian: apt-get install time)" >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export MALLOC_ARENA_MAX=2 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 LOCOCOURSE_SOLUTIONS=0 MPLBACKEND=Agg
notebooks=("$@")
[ ${#notebooks[@]} -gt 0 ] || notebooks=(notebooks/[0-9][0-9]_*.ipynb)
printf '%-28s %8s %9s\n' notebook wall peak
for nb in "${notebooks[@]}"; do
  name=$(basename "$nb" .ipynb)
  if ! /usr/bin/time -v -o "$out/$name.time" jupyter nbconvert --to notebook --execute \
       --ExecutePreprocessor.timeout=1800 --output-dir "$out" --output "$name" "$nb" >"$out/$name.log" 2>&1; then
    echo "$name: failed (last lines of the log below)" >&2
    tail -n 20 "$out/$name.log" >&2
    exit 1
  fi
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$out/$name.time")
  kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$out/$name.time")
  secs=$(python -c "import sys; p = [float(x) for x in sys.argv[1].split(':')]; print(round(sum(v * 60 ** i for i, v in enumerate(reversed(p)))))" "$wall")
  printf '%-28s %7ss %6.2f GB\n' "$name" "$secs" "$(python -c "print($kb * 1024 / 1e9)")"
done
