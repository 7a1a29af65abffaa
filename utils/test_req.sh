#!/usr/bin/env bash
# Send a health request, a valid predict and an invalid predict to a running server (a
# color directly, or the nginx front door), print each answer, and exit non-zero if an
# answer is not the expected one.
# Usage: utils/test_req.sh [URL]   (default localhost:8080)
set -uo pipefail
url="${1:-localhost:8080}"
url="${url%/}"
failures=0

check() {  # check NAME EXPECTED_STATUS EXPECTED_TEXT -- curl args...
  local name="$1" want_status="$2" want_text="$3"; shift 4
  local out status body
  out="$(curl -sS --max-time 10 -w '\n%{http_code}' "$@" 2>&1)"
  status="${out##*$'\n'}"
  body="${out%$'\n'*}"
  echo "== $name: HTTP $status"
  echo "$body"
  if [ "$status" = "$want_status" ] && [[ "$body" == *"$want_text"* ]]; then
    echo "OK"
  else
    echo "FAILED: expected HTTP $want_status with $want_text"
    failures=$((failures + 1))
  fi
}

check "GET /health" 200 '"status": "ok"' -- "$url/health"
check "POST /predict (valid)" 200 '"prediction": "setosa"' -- "$url/predict" -d '{"x": [5.1, 3.5, 1.4, 0.2]}'
check "POST /predict (invalid: 3 features)" 400 '"error": "\"x\" has 3 values; expected 4 numbers"' \
  -- "$url/predict" -d '{"x": [5.1, 3.5, 1.4]}'

if [ "$failures" -gt 0 ]; then
  echo "$failures check(s) failed against $url" >&2
  exit 1
fi
echo "all checks passed against $url"
