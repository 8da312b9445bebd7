#!/usr/bin/env bash
# A scripted walk-through on the embedded SQLite default: one epic, three stories, one of
# them driven from pending to completed with real artifacts, tokens and a failed review,
# and the rules refusing what they must. Runs in .demo/ (recreated each time).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
art="$here/artifacts"
demo="${STORYFLOW_DEMO_DIR:-$here/../.demo}"
rm -rf "$demo" && mkdir -p "$demo" && cd "$demo"
unset STORYFLOW_DATABASE_URL
export STORYFLOW_ACTOR=demo

step() { printf '\n\033[1m$ storyflow %s\033[0m\n' "$*"; storyflow "$@"; }
refused() {  # a command the rules must refuse; show the refusal and its exit status
  printf '\n\033[1m$ storyflow %s\033[0m   (expected to be refused)\n' "$*"
  set +e; storyflow "$@"; code=$?; set -e
  echo "exit status $code"
  [ "$code" -ne 0 ] || { echo "walkthrough: that should have been refused" >&2; exit 1; }
}

step init
step epic new FLOW --title "FLOW - workflow alignment" --layout staged --require-approval
step story new FLOW --title "Wire schemas into the commands" --priority P1
step story new FLOW --title "Migrate the status vocabulary" --breaking-change --depends-on FLOW-001
step story new FLOW --title "Token ledger in the database" --requires db-schema-002

story=plans/flow/backlog/FLOW-001/story.yaml
step story move FLOW-001 generated
refused story move FLOW-001 in-elaboration
sed -i "s|^reuse_plan: ''|reuse_plan: Reuses @repo/workflow-schemas; no new package.|" "$story"
step story move FLOW-001 in-elaboration
step artifact submit FLOW-001 elaboration "$art/elaboration.yaml"
step token log FLOW-001 elaboration --input 9000 --output 3100 --model claude-sonnet-4
refused story move FLOW-001 ready-to-work
step approve FLOW-001 --by pm-lead
step story move FLOW-001 ready-to-work
step artifact submit FLOW-001 plan "$art/plan.yaml"
step story move FLOW-001 in-progress
step artifact submit FLOW-001 proof "$art/proof.yaml"
step token log FLOW-001 implementation --before 120000 --after 171000
step story move FLOW-001 ready-for-code-review
step artifact submit FLOW-001 code_review "$art/code-review-fail.yaml"
step story move FLOW-001 code-review-failed
step story move FLOW-001 in-progress
sed -i 's/^summary: .*/summary: Commands validate artifacts; the error path is tested now./' \
  plans/flow/in-progress/FLOW-001/proof.yaml
step artifact submit FLOW-001 proof
step story move FLOW-001 ready-for-code-review
step artifact submit FLOW-001 code_review "$art/code-review.yaml"
step token log FLOW-001 code_review --input 18000 --output 2500 --model claude-sonnet-4
step story move FLOW-001 ready-for-qa
step story move FLOW-001 in-qa
step artifact submit FLOW-001 verification "$art/verification.yaml"
step story move FLOW-001 uat
step artifact submit FLOW-001 qa_gate "$art/qa-gate.yaml"
refused story move FLOW-001 completed
step token log FLOW-001 qa_verification --input 7000 --output 900 --model claude-sonnet-4
step token log FLOW-001 story_generation --input 3000 --output 1200 --model claude-sonnet-4
step story move FLOW-001 completed

refused story move FLOW-003 generated --from in-progress
step story block FLOW-003 --reason "waiting for db-schema-002"
step next --epic FLOW
step story show FLOW-001
step story history FLOW-001
step budget show FLOW
step board --epic FLOW
echo
echo "walkthrough finished: workspace in $demo (files in plans/, database in .storyflow/)"
