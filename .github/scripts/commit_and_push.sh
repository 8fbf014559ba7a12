#!/usr/bin/env bash
# Commit the given files as github-actions[bot] and push to the checked-out branch, rebasing
# on what landed meanwhile (build-app and build-agent may both push). No-op without changes.
# Usage: commit_and_push.sh "<message>" FILE...
set -euo pipefail
message="$1"
shift
if git diff --quiet -- "$@"; then
  echo "nothing to commit: $*"
  exit 0
fi
git config user.name "github-actions[bot]"
git config user.email "41898282+github-actions[bot]@users.noreply.github.com"
git add -- "$@"
git commit --quiet -m "$message" -- "$@"
branch="${GITHUB_REF_NAME:?}"
for attempt in 1 2 3; do
  if git push origin "HEAD:$branch"; then
    exit 0
  fi
  echo "push rejected (attempt $attempt); rebasing on origin/$branch"
  git pull --rebase --quiet origin "$branch"
done
echo "::error::could not push after 3 attempts"
exit 1
