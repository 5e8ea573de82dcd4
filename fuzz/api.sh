#!/usr/bin/env bash
# Schema-driven API fuzzing: starts `permgate serve` on a scratch SQLite database and runs
# schemathesis (from PyPI, into target/venv) against its GET /openapi.json as the admin. Fails on
# any 5xx, any response that does not match its documented schema, status or content type, and
# any error without the {msg, code} shape (every operation's `default` response is the Error
# schema). A failure prints the request that reproduces it; turn it into a test before fixing.
#   fuzz/api.sh           # 25 examples per operation (CI)
#   fuzz/api.sh 500       # a longer run
set -euo pipefail
cd "$(dirname "$0")/.."
EXAMPLES=${1:-25}
VENV=target/venv
if [ ! -x "$VENV/bin/st" ]; then
  echo "== installing schemathesis into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'schemathesis>=4.3,<5'
fi
cargo build --locked --quiet -p permgate
SCRATCH=$(mktemp -d)
TOKEN=schemathesis-admin-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
PERMGATE_DATABASE_URL="sqlite://$SCRATCH/permgate.db" PERMGATE_ADMIN_TOKEN="$TOKEN" \
  PERMGATE_LISTEN="127.0.0.1:$PORT" PERMGATE_LOG=warn \
  target/debug/permgate serve > "$SCRATCH/server.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; rm -rf "$SCRATCH"' EXIT
BASE="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do
  curl -sf "$BASE/readyz" > /dev/null 2>&1 && break
  sleep 0.1
done
# Something to find: an app (id 1) with a key, so that operations on /v1/apps/1/... reach the
# services instead of stopping at "no such app".
curl -sS --fail-with-body -H "Authorization: Bearer $TOKEN" "$BASE/v1/apps" -d '{"name":"fuzzed","company_name":"permgate","category":"tools"}' > /dev/null
set +e
"$VENV/bin/st" run "$BASE/openapi.json" \
  --header "Authorization: Bearer $TOKEN" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples "$EXAMPLES" \
  --workers 1 \
  --request-timeout 10 \
  --no-color \
  --suppress-health-check all \
  --report junit --report-dir target/schemathesis
status=$?
set -e
if [ "$status" -ne 0 ]; then
  echo "== server log (last 40 lines)"
  tail -n 40 "$SCRATCH/server.log"
fi
exit "$status"
