#!/usr/bin/env bash
# A Switchboard cluster on this machine: a local PostgreSQL (Debian's `postgresql`, in a temp
# directory, run as the `postgres` user when started as root), three nodes on it and HAProxy
# (Debian's `haproxy`) in front, with the sample IVR live on +15550100 and the order-status
# chat flow on the widget (http://127.0.0.1:8080/chat). Ctrl-C stops everything and removes
# the temp directory.
#
#   ./scripts/cluster.sh            # HAProxy on http://127.0.0.1:8080, nodes on 8081-8083
#   PORT=9000 ./scripts/cluster.sh  # HAProxy on 9000, nodes on 9001-9003
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
port=${PORT:-8080}
sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"

missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
haproxy=$(command -v haproxy || echo /usr/sbin/haproxy)
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

echo "==> building switchboard and the sample flow (the first build takes about 10 minutes)"
rustup target add wasm32-wasip2 >/dev/null
cargo build --release -p switchboard
cargo build --profile guest --target wasm32-wasip2 -p ivr-menu -p order-status
bin="$root/target/release/switchboard"
flow="$root/target/wasm32-wasip2/guest/ivr_menu.wasm"
chat_flow="$root/target/wasm32-wasip2/guest/order_status.wasm"

# Short path: PostgreSQL's socket path must fit in 107 bytes.
base=$(mktemp -d /tmp/sbcluster.XXXXXX)
chmod 755 "$base"  # the postgres user reaches its directory inside
pids=()
pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$pgbin/$1" "${@:2}"; else "$pgbin/$1" "${@:2}"; fi
}
stop_all() {
  trap - EXIT INT TERM
  echo
  echo "==> stopping the nodes, HAProxy and PostgreSQL"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pg pg_ctl stop -D "$base/pg/data" -m fast >/dev/null 2>&1 || true
  rm -rf "$base"
}
trap stop_all EXIT INT TERM

echo "==> starting PostgreSQL in $base/pg"
mkdir -p "$base/pg"
[ "$(id -u)" -eq 0 ] && chown postgres: "$base/pg"
pg initdb -A trust -U switchboard -E UTF8 -D "$base/pg/data" >/dev/null
pg pg_ctl start -w -D "$base/pg/data" -l "$base/pg/log" \
  -o "-k $base/pg -c listen_addresses='' -c max_connections=200" >/dev/null
store="host=$base/pg user=switchboard dbname=postgres"

# Starts node N in the background; waits until it listens.
start_node() {
  local n=$1; shift
  local dir="$base/node$n"
  mkdir -p "$dir"
  [ -f "$base/node1/admin.token" ] && cp "$base/node1/admin.token" "$dir/"
  "$bin" serve --data-dir "$dir" --store "$store" \
    --listen "127.0.0.1:$((port + n))" --sip "127.0.0.1:$((5060 + n))" \
    "$@" >"$dir/log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 300); do
    grep -q "^Switchboard listening on" "$dir/log" && return 0
    if ! kill -0 "${pids[-1]}" 2>/dev/null; then
      echo "node$n did not start; its log ($dir/log):" >&2
      cat "$dir/log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "node$n did not listen within 30 s; its log: $dir/log" >&2
  exit 1
}

echo "==> starting three nodes"
start_node 1 \
  --deploy "ivr-menu=$flow" \
  --setting ivr-menu:days=mon-sun --setting ivr-menu:open=00:00 --setting ivr-menu:close=24:00 \
  --customers examples/customers.csv \
  --queue sales --queue support --queue agents --queue vip \
  --bind +15550100=ivr-menu \
  --deploy "order-status=$chat_flow" --setting order-status:orders=1001:shipped \
  --bind chat:support=order-status
start_node 2
start_node 3

echo "==> starting HAProxy on 127.0.0.1:$port"
for n in 1 2 3; do echo "    server node$n 127.0.0.1:$((port + n)) check"; done >"$base/servers"
sed -e "s|@LISTEN@|127.0.0.1:$port|" -e "/@SERVERS@/{r $base/servers" -e "d}" \
  scripts/cluster-haproxy.cfg >"$base/haproxy.cfg"
"$haproxy" -db -f "$base/haproxy.cfg" >"$base/haproxy.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done

token=$(cat "$base/node1/admin.token")
leader=$(curl -fs -H "Authorization: Bearer $token" "http://127.0.0.1:$port/v1/cluster" \
  | sed -n 's/.*"leader":"\([^"]*\)".*/\1/p' || true)
cat <<EOF

Switchboard cluster: 3 nodes on PostgreSQL, HAProxy in front (Ctrl-C stops everything).

  load balancer  http://127.0.0.1:$port
  node1          http://127.0.0.1:$((port + 1))  SIP 127.0.0.1:5061  pid ${pids[0]}  log $base/node1/log
  node2          http://127.0.0.1:$((port + 2))  SIP 127.0.0.1:5062  pid ${pids[1]}  log $base/node2/log
  node3          http://127.0.0.1:$((port + 3))  SIP 127.0.0.1:5063  pid ${pids[2]}  log $base/node3/log
  PostgreSQL     $store
  router leader  ${leader:-"(being elected)"}

In another terminal:

  export SWITCHBOARD_URL=http://127.0.0.1:$port SWITCHBOARD_TOKEN=$token
  curl -s -H "Authorization: Bearer \$SWITCHBOARD_TOKEN" \$SWITCHBOARD_URL/v1/cluster
  echo 1 | $bin simulate ivr-menu --from +15551230002
  kill -9 ${pids[0]}      # node1 dies: the others carry on, one takes over the router

Chat across nodes: make an agent for the support queue with a password for the desk,

  $bin agent sara --capacity chat=3
  echo 'choose-a-password' | $bin users add sara --role agent --password-stdin

then open http://127.0.0.1:$port/chat (ask for "agent", then write) and, in another browser,
http://127.0.0.1:$port/desk signed in as sara. Kill the node holding the widget's socket
(GET /v1/contacts/ID names its "node"): the widget reconnects through HAProxy and shows the
whole conversation; sara's desk, on another node, keeps talking to it.

EOF
wait "${pids[@]}"
