#!/usr/bin/env bash
# The CI recipe of docs/ci.md as one script: start a mock SSE stream on a free port in
# the background, take its URL from its stdout, assert on the stream, stop the server.
# Run it from any directory (sample:llm comes with sseplay: no checkout of sseplay is
# needed); it exits 0 when the stream is as expected. tests/e2e/test_ci_recipe.py runs it,
# so the recipe stays true.
set -euo pipefail

work=$(mktemp -d)
sseplay serve sample:llm --port 0 --interval 0.02 >"$work/urls" 2>"$work/serve.log" &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT

# The URL is printed, in one write, once the server accepts connections.
for _ in $(seq 100); do
  grep -q '^http' "$work/urls" && break
  kill -0 "$server" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
  sleep 0.1
done
url=$(head -n 1 "$work/urls")

# The stream must end with [DONE] within 10 s; every event is kept as JSON Lines.
sseplay tail "$url" --until '^\[DONE\]$' --timeout 10 --format json >"$work/events.jsonl"
test "$(wc -l <"$work/events.jsonl")" -eq 11  # sample:llm has 11 events
grep -qF '"data":"[DONE]"' "$work/events.jsonl"
echo "ok: $(wc -l <"$work/events.jsonl") events from $url"
