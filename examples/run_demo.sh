#!/usr/bin/env bash
# `make run`: a workspace in .demo/ on the embedded SQLite default, the bundled example epic
# (examples/epic/stories.txt), and `storyflow run --epic FLOW --workers 4` with the built-in
# scripted agent until every story rests, ending with the report.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
demo="${STORYFLOW_DEMO_DIR:-$here/../.demo}"
rm -rf "$demo" && mkdir -p "$demo" && cd "$demo"
unset STORYFLOW_DATABASE_URL
export STORYFLOW_ACTOR=demo

say() { printf '\n\033[1m$ storyflow %s\033[0m\n' "$*"; }
say init
storyflow init >/dev/null
cat "$here/epic/storyflow-runs.yaml" >> storyflow.yaml
say epic new FLOW --title "FLOW - workflow alignment" --layout staged
storyflow epic new FLOW --title "FLOW - workflow alignment" --layout staged >/dev/null
say "story new FLOW ...   (examples/epic/stories.txt)"
while IFS='|' read -r title priority deps flags; do
  title="$(echo "$title" | xargs)"
  [[ -z "$title" || "$title" == \#* ]] && continue
  args=(story new FLOW --title "$title" --priority "$(echo "$priority" | xargs)")
  for n in $deps; do args+=(--depends-on "$(printf 'FLOW-%03d' "$n")"); done
  for f in $flags; do args+=("--$f"); done
  storyflow "${args[@]}"
done < "$here/epic/stories.txt"
say run --epic FLOW --workers 4
storyflow run --epic FLOW --workers 4
say board --epic FLOW
storyflow board --epic FLOW
echo
echo "run_demo: workspace in $demo (files in plans/, database and trace in .storyflow/)"
