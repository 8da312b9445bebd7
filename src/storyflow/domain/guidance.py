"""What to do next, per status: the line `story show` prints under the status."""

from __future__ import annotations

from storyflow.domain.statuses import Status

NEXT_ACTION: dict[Status, str] = {
    Status.PENDING: "write the story (## Reuse Plan), then: storyflow story move {id} generated",
    Status.GENERATED: "start elaboration: storyflow story move {id} in-elaboration",
    Status.IN_ELABORATION: "submit the elaboration (storyflow artifact submit {id} elaboration), "
    "then move by its verdict (ready-to-work / needs-refinement / needs-split)",
    Status.NEEDS_REFINEMENT: "fix the story, then: storyflow story move {id} generated",
    Status.NEEDS_SPLIT: "storyflow story split {id} --into TITLE --into TITLE, or re-scope: "
    "storyflow story move {id} generated",
    Status.READY_TO_WORK: "submit a plan (storyflow artifact submit {id} plan), then: "
    "storyflow story move {id} in-progress",
    Status.IN_PROGRESS: "implement, submit the proof (storyflow artifact submit {id} proof), "
    "then: storyflow story move {id} ready-for-code-review",
    Status.READY_FOR_CODE_REVIEW: "submit the code review (storyflow artifact submit {id} "
    "code_review), then move by its verdict (ready-for-qa / code-review-failed)",
    Status.CODE_REVIEW_FAILED: "start the fix: storyflow story move {id} in-progress",
    Status.READY_FOR_QA: "start verification: storyflow story move {id} in-qa",
    Status.IN_QA: "submit the verification (storyflow artifact submit {id} verification), "
    "then move by its verdict (uat / needs-work)",
    Status.NEEDS_WORK: "start the fix: storyflow story move {id} in-progress",
    Status.UAT: "submit the QA gate (storyflow artifact submit {id} qa_gate), then: "
    "storyflow story move {id} completed (or in-progress on FAIL)",
    Status.COMPLETED: "nothing: the story is completed",
    Status.BLOCKED: "resolve the blocker, then: storyflow story unblock {id}",
    Status.CANCELLED: "nothing: the story is cancelled",
    Status.SUPERSEDED: "nothing: the story was split; work on its children",
}

if set(NEXT_ACTION) != set(Status):
    raise ValueError("every status needs a next action")


def next_action(status: Status, story_id: str) -> str:
    return NEXT_ACTION[status].format(id=story_id)
