#!/usr/bin/env bash
# Prove the install from a fresh clone: clone the repository into a temporary folder, check that no
# .venv came with it, run the README's test command (`make test`) there, print the wall time and the
# pytest summary, and exit with make's status.
#
#   scripts/fresh_clone_check.sh                 # clone this repository (HEAD of its current branch)
#   scripts/fresh_clone_check.sh URL-or-PATH     # clone another copy instead
#   KEEP=1 scripts/fresh_clone_check.sh          # keep the temporary folder (its path is printed)
#
# The environment passes through (CI, TORCH, TORCH_INDEX, KFAC_TEACH_BROWSER, ...), so
# `CI=1 scripts/fresh_clone_check.sh` makes a missing browser a failure, as in CI.  An activated
# virtualenv does not: the clone builds its own .venv from the system Python, never this checkout's.
# Uncommitted changes are not in the clone.  Takes a few minutes (a new .venv, torch and the extras).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="${1:-$(git -C "$here" rev-parse --show-toplevel)}"
test_cmd=(make test)   # the README's test command (tests/test_repo_config.py checks .ci/run uses it too)

tmp="$(mktemp -d "${TMPDIR:-/tmp}/kfac_teach-fresh-clone.XXXXXX")"
# shellcheck disable=SC2317  # (called by the EXIT trap)
cleanup() {
  if [ "${KEEP:-0}" = 1 ]; then
    echo "fresh_clone_check: kept $tmp"
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT

# Nothing from an activated or exported environment may leak into the clone's build: drop the active
# virtualenv and this checkout's .venv from PATH, and the variables that would point make or Python at them.
drop=("$(cd "$here/.." && pwd)/.venv/bin" "${VIRTUAL_ENV:+$VIRTUAL_ENV/bin}")
clean_path=""
IFS=: read -r -a path_parts <<< "$PATH"
for p in "${path_parts[@]}"; do
  keep=1
  for d in "${drop[@]}"; do
    if [ -n "$d" ] && [ "${p%/}" = "${d%/}" ]; then keep=0; fi
  done
  if [ "$keep" = 1 ]; then clean_path="${clean_path:+$clean_path:}$p"; fi
done
export PATH="$clean_path"
unset VIRTUAL_ENV VENV PYTHONPATH PYTHONHOME

echo "fresh_clone_check: cloning $src into $tmp/repo"
git clone --quiet "$src" "$tmp/repo"
cd "$tmp/repo"
echo "fresh_clone_check: testing $(git log -1 --format='%h %s') on $(git rev-parse --abbrev-ref HEAD)"
if [ -e .venv ]; then
  echo "fresh_clone_check: FAIL: the clone contains .venv (it must not be committed)" >&2
  exit 1
fi
echo "fresh_clone_check: python3 is $(command -v python3) ($(python3 --version 2>&1)); CI=${CI-<unset>}"

start=$(date +%s)
set +e
"${test_cmd[@]}" 2>&1 | tee "$tmp/make-test.log"
status=${PIPESTATUS[0]}
set -e
elapsed=$(( $(date +%s) - start ))

if [ ! -x .venv/bin/python ]; then
  echo "fresh_clone_check: FAIL: '${test_cmd[*]}' did not build the clone's own .venv" >&2
  [ "$status" -ne 0 ] || status=1
fi
summary="$(grep -E '^=+ .*\b(passed|failed|error|errors|skipped|no tests ran)\b.* in [0-9.]+s.*=+$' "$tmp/make-test.log" \
           | tail -n 1 || true)"
echo
echo "fresh_clone_check: '${test_cmd[*]}' exited $status after $((elapsed / 60)) min $((elapsed % 60)) s (wall)"
echo "fresh_clone_check: pytest summary: ${summary:-<none found>}"
exit "$status"
