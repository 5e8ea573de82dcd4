#!/usr/bin/env bash
# HTTP load runs, all in one go on this machine (the load generator shares it):
#   1. POST /v1/check (consume: false) at 64 connections;
#   2. GET through nginx's plain reverse proxy to an upstream;
#   3. GET through permgate's built-in gateway to the same upstream;
#   4. GET through nginx with auth_request to permgate, to the same upstream.
# The upstream is nginx answering `return 200` on its own port. Needs: wrk, nginx, curl, jq,
# and a release build (cargo build --release). Usage: bench/http.sh [seconds per run]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
W=$(mktemp -d)
# Stop what this run started and wait for it to be gone, so that the next run finds its ports free.
stop() {
  local pids; pids=$(cat $W/*.pid 2>/dev/null || true)
  kill $pids 2>/dev/null || true
  for _ in $(seq 50); do kill -0 $pids 2>/dev/null || break; sleep 0.1; done
  kill -9 $pids 2>/dev/null || true
  rm -rf $W
}
trap stop EXIT
PG=127.0.0.1:18080; GW=127.0.0.1:18000; UP=127.0.0.1:19000; NGX_PLAIN=127.0.0.1:18001; NGX_AUTH=127.0.0.1:18002
for port in ${PG##*:} ${GW##*:} ${UP##*:} ${NGX_PLAIN##*:} ${NGX_AUTH##*:}; do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then echo "port $port is in use: stop what listens there first" >&2; exit 1; fi
done
ADMIN=bench-admin-token-0123456789

# `exec`, so that the recorded pid is permgate's own (not a subshell's that a signal would miss).
( cd $W && PERMGATE_LISTEN=$PG PERMGATE_GATEWAY_LISTEN=$GW PERMGATE_UPSTREAM=http://$UP PERMGATE_ADMIN_TOKEN=$ADMIN \
  PERMGATE_LOG=warn exec "$OLDPWD/target/release/permgate" serve > $W/permgate.log 2>&1 ) &
echo $! > $W/permgate.pid
sed -e "s/listen 8000;/listen $NGX_AUTH;/" -e "s/127.0.0.1:8080/$PG/" -e "s/127.0.0.1:9000/$UP/" examples/nginx/permgate.conf > $W/auth.conf
cat > $W/nginx.conf <<CONF
daemon off; master_process off; worker_processes 1; pid $W/nginx.pid; error_log $W/error.log;
events { worker_connections 1024; }
http {
  access_log off; client_body_temp_path $W/b; proxy_temp_path $W/p; fastcgi_temp_path $W/f; uwsgi_temp_path $W/u; scgi_temp_path $W/s;
  upstream api { server $UP; keepalive 64; }
  server { listen $UP; location / { return 200 "ok\n"; } }
  server { listen $NGX_PLAIN; location / { proxy_pass http://api; proxy_http_version 1.1; proxy_set_header Connection ""; } }
  include $W/auth.conf;
}
CONF
nginx -p $W -c $W/nginx.conf & echo $! > $W/nginx.pid
for _ in $(seq 100); do curl -sf http://$PG/readyz >/dev/null && break; sleep 0.1; done

DEV=$(curl -s -X POST http://$PG/v1/accounts -H "Authorization: Bearer $ADMIN" -d '{"name":"bench","role":"developer"}' | jq -r .token)
APP=$(curl -s -X POST http://$PG/v1/apps -H "Authorization: Bearer $DEV" -d '{"name":"Bench","company_name":"B","category":"x"}')
APP_ID=$(echo "$APP" | jq .id); KEY=$(echo "$APP" | jq -r '.keys.rest_api[0].key')
curl -s -X POST http://$PG/v1/apps/$APP_ID/permissions -H "Authorization: Bearer $ADMIN" \
  -d '{"permission":"increased_quota","reason":"bench","params":{"rule":"local_keyword_search_daily","limit":1000000000}}' > /dev/null
cat > $W/check.lua <<LUA
wrk.method = "POST"
wrk.body = '{"method":"GET","path":"/v2/local/search/keyword.json","headers":{"authorization":"KakaoAK $KEY"},"consume":false}'
LUA
run() { echo "== $1"; shift; wrk -t2 -c64 -d${SECS}s --latency "$@" | grep -E "Requests/sec|Non-2xx|50%|99%"; }
run "decision API: POST /v1/check" -s $W/check.lua http://$PG/v1/check
run "nginx plain reverse proxy" http://$NGX_PLAIN/v2/local/search/keyword.json
run "permgate gateway" -H "Authorization: KakaoAK $KEY" http://$GW/v2/local/search/keyword.json
run "nginx + auth_request to permgate" -H "Authorization: KakaoAK $KEY" http://$NGX_AUTH/v2/local/search/keyword.json
