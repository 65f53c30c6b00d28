#!/usr/bin/env bash
# tests/bench/routes.sh: what a weighted route and 100% mirroring cost the gateway, against its
# plain route, measured in one run on the same backends (run.sh calls it after peers.sh).
#   tests/bench/routes.sh --weir PATH [--quick] [--rounds N] [--out FILE] [--keep]
# Scenarios, each a weir gateway config (one weir at a time, on 127.0.0.1):
#   plain     gateway.yaml.in: every request to the backend (the route peers.sh measures);
#   weighted  gateway-weighted.yaml.in: 50/50 between subsets v1 and v2 (one nginx, two ports);
#   mirror    gateway-mirror.yaml.in: the plain route plus `mirror:` to a second nginx (the
#             shadow), mirrorPercentage 100.
# Load as peers.sh does it (wrk -t1 closed loop; oloop, built from the source inside peers.sh,
# at a constant rate), with the same CPU split: the client on CPU 1, weir and both nginx on
# CPU 0. Measured per run: req/s, latency, weir's CPU per request (schedstat of its process
# tree over the run / requests answered), the backends' CPU per request, and the requests each
# nginx received (stub_status on a separate port), so the shadow/primary ratio shows whether
# the copies really flowed; weir's own mirror counters come from its admin port at the end.
# Rounds run the scenarios in rotated order; the report gives medians over clean rounds (runs
# with foreign CPU use above NOISE_MAX are re-run once, and used only when nothing clean exists)
# and every scenario as a ratio to plain from the same run. Traffic stays on 127.0.0.1; every
# process is started in its own session and stopped by its recorded PID on exit.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

# ---------------------------------------------------------------- defaults
WEIR=${WEIR_BIN:-$root/build-bench/weir}
PEERS=${PEERS_SH:-$root/../shared/bench/peers.sh}   # only read: the oloop source inside it
DUR=${DUR:-3}                       # seconds per closed-loop (wrk) run
CONNS=${CONNS:-"1 16"}              # wrk connections: 1 = latency, 16 = throughput
OL_RATE=${OL_RATE-5000}             # open-loop rate (req/s), the same for every scenario ("" to skip)
OL_CONNS=${OL_CONNS:-16}
OL_DUR=${OL_DUR:-4}
OL_WARM=${OL_WARM:-1}
ROUNDS=${ROUNDS:-3}
PIN=${PIN:-split}
CLIENT_CPU=${CLIENT_CPU:-1}
SERVER_CPU=${SERVER_CPU:-0}
PORT_BASE=${ROUTES_PORT_BASE:-18600}
NOISE_MAX=${NOISE_MAX:-0.3}
RETRY_NOISY=${RETRY_NOISY:-1}
SCENARIOS=${ROUTE_SCENARIOS:-"plain weighted mirror"}
OUT=${OUT:-}
KEEP=${KEEP:-0}
QUICK=0

while (($#)); do
  case $1 in
    --weir) WEIR=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "routes.sh: unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
done
if ((QUICK)); then DUR=2; OL_DUR=2; ROUNDS=1; fi
MAX_SECONDS=${ROUTES_MAX_SECONDS:-$((40 + 70 * ROUNDS))}   # hard budget; remaining runs are skipped
((${#SCENARIOS})) && [[ " $SCENARIOS " == *" plain "* ]] || SCENARIOS="plain $SCENARIOS"   # ratios need it
[[ $(nproc) -ge 2 ]] || PIN=none

for tool in nginx wrk curl cc taskset setsid ss awk; do
  command -v "$tool" >/dev/null || { echo "routes.sh: missing tool: $tool" >&2; exit 2; }
done
[[ -x $WEIR ]] || { echo "routes.sh: weir binary $WEIR not found (--weir)" >&2; exit 2; }
for s in $SCENARIOS; do
  case $s in plain|weighted|mirror) ;; *) echo "routes.sh: unknown scenario $s" >&2; exit 2 ;; esac
done

WORK=$(mktemp -d -t weir-routes-bench.XXXXXX)
chmod 755 "$WORK"
mkdir -p "$WORK"/{www,logs,tmp}
PIDS=()

cleanup() {
  local pid i alive
  for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null; done
  for i in $(seq 30); do
    alive=0
    for pid in "${PIDS[@]}"; do kill -0 -- "-$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do kill -KILL -- "-$pid" 2>/dev/null; done
  if ((KEEP)); then echo "work dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'echo "routes.sh: interrupted" >&2; exit 130' INT TERM

log() { printf '[%3ds] %s\n' "$SECONDS" "$*" >&2; }
port_free() { [[ -z $(ss -ltnH "sport = :$1" 2>/dev/null) ]]; }

spawn() {   # spawn NAME CPU CMD...: CMD in its own session (its PID is the group), pinned
  local name=$1 cpu=$2; shift 2
  if [[ $PIN == none ]]; then setsid "$@" >>"$WORK/logs/$name.log" 2>&1 </dev/null &
  else setsid taskset -c "$cpu" "$@" >>"$WORK/logs/$name.log" 2>&1 </dev/null &
  fi
  SPAWNED=$!
  PIDS+=("$SPAWNED")
}

stop() {   # stop PID's session and forget it
  local pid=$1 i keep=() p
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
  for i in $(seq 30); do kill -0 -- "-$pid" 2>/dev/null || kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

wait_port() {   # wait_port PORT PID
  local i
  for i in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

tree_cpu_ns() {   # CPU time (ns) of every thread in session $1
  local p
  for p in $(ps -o pid= --sid "$1" 2>/dev/null); do cat /proc/"$p"/task/*/schedstat 2>/dev/null; done |
    awk '{s += $1} END {printf "%.0f\n", s}'
}
tree_rss_kib() { ps -o rss= --sid "$1" 2>/dev/null | awk '{s+=$1} END{print s+0}'; }
busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; }
child_cpu() { times >"$WORK/tmp/times"; CHILD_CPU=$(awk 'NR==2{t=0; for(i=1;i<=NF;i++){split($i,m,"m"); sub("s","",m[2]); t+=m[1]*60+m[2]} printf "%.3f", t}' "$WORK/tmp/times"); }
HZ=$(getconf CLK_TCK)
to_us() { awk -v v="$1" 'BEGIN{ if (v ~ /us$/) {sub("us","",v); print v+0}
  else if (v ~ /ms$/) {sub("ms","",v); print v*1000} else if (v ~ /s$/) {sub("s","",v); print v*1e6}
  else print "NA" }'; }
on_client_cpu() { if [[ $PIN == none ]]; then "$@"; else taskset -c "$CLIENT_CPU" "$@"; fi; }
budget_ok() { ((SECONDS < MAX_SECONDS)); }

# ---------------------------------------------------------------- open-loop generator
OLOOP=""
if [[ -n $OL_RATE ]]; then
  if [[ -r $PEERS ]] && awk '/<<.OLOOP_C.$/{f=1; next} /^OLOOP_C$/{f=0} f' "$PEERS" >"$WORK/oloop.c" &&
     [[ -s $WORK/oloop.c ]] && cc -O2 -o "$WORK/oloop" "$WORK/oloop.c" 2>"$WORK/logs/oloop-build.log"; then
    OLOOP=$WORK/oloop
  else
    log "WARNING: no open-loop generator (oloop from $PEERS); open-loop runs skipped"
  fi
fi

# ---------------------------------------------------------------- backends
printf '<html><body>This is version V1!</body></html>\n' >"$WORK/www/v1.html"
head -c 1024 /dev/zero | tr '\0' 'a' >"$WORK/www/1k.html"
head -c 4096 /dev/zero | tr '\0' 'b' >"$WORK/www/4k.html"
chmod 755 "$WORK/www" && chmod 644 "$WORK"/www/*

BE_PORT=$((PORT_BASE + 1)); BE_PORT2=$((PORT_BASE + 2)); SH_PORT=$((PORT_BASE + 3))
BE_STATUS=$((PORT_BASE + 4)); SH_STATUS=$((PORT_BASE + 5))
GW_PORT=$((PORT_BASE + 10)); ADMIN_PORT=$((PORT_BASE + 11))
for p in "$BE_PORT" "$BE_PORT2" "$SH_PORT" "$BE_STATUS" "$SH_STATUS" "$GW_PORT" "$ADMIN_PORT"; do
  port_free "$p" || { echo "routes.sh: port $p is in use; set ROUTES_PORT_BASE" >&2; exit 2; }
done

# nginx_conf NAME STATUS_PORT PORT...: one worker serving www on every PORT (the response names
# the port it came in on, so the split can be checked), stub_status alone on STATUS_PORT
nginx_conf() {
  local name=$1 status=$2 p; shift 2
  cat <<EOF
worker_processes 1;
daemon off;
pid $WORK/logs/$name.pid;
error_log $WORK/logs/$name.error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $WORK/tmp/$name-cb; proxy_temp_path $WORK/tmp/$name-pt;
  fastcgi_temp_path $WORK/tmp/$name-ft; uwsgi_temp_path $WORK/tmp/$name-ut; scgi_temp_path $WORK/tmp/$name-st;
  keepalive_requests 10000000;
  keepalive_timeout 60s;
  default_type text/html;
  server {
$(for p in "$@"; do printf '    listen 127.0.0.1:%s;\n' "$p"; done)
    root $WORK/www;
    add_header X-Bench-Port \$server_port;
  }
  server { listen 127.0.0.1:$status; location / { stub_status; } }
}
EOF
}
nginx_conf backend "$BE_STATUS" "$BE_PORT" "$BE_PORT2" >"$WORK/backend.conf"
nginx_conf shadow "$SH_STATUS" "$SH_PORT" >"$WORK/shadow.conf"
spawn backend "$SERVER_CPU" nginx -p "$WORK" -c "$WORK/backend.conf"; BE_PID=$SPAWNED
spawn shadow "$SERVER_CPU" nginx -p "$WORK" -c "$WORK/shadow.conf"; SH_PID=$SPAWNED
for p in "$BE_PORT:$BE_PID" "$BE_PORT2:$BE_PID" "$BE_STATUS:$BE_PID" "$SH_PORT:$SH_PID" "$SH_STATUS:$SH_PID"; do
  wait_port "${p%%:*}" "${p##*:}" || {
    echo "routes.sh: a backend did not start:" >&2; cat "$WORK"/logs/*.log >&2 2>/dev/null; exit 1; }
done

# requests an nginx has received, less the one that asks (stub_status counts itself)
served() { curl -s --max-time 2 "http://127.0.0.1:$1/" | awk 'NR==3{print $3 - 1; f=1} END{if(!f) print "NA"}'; }

# ---------------------------------------------------------------- weir
subst() {
  sed -e "s|{LISTEN_PORT}|$GW_PORT|g" -e "s|{UPSTREAM_HOST}|127.0.0.1|g" -e "s|{UPSTREAM_PORT}|$BE_PORT|g" \
      -e "s|{UPSTREAM_PORT2}|$BE_PORT2|g" -e "s|{SHADOW_PORT}|$SH_PORT|g" -e "s|{UPSTREAM_TLS}|0|g" -e "s|{WORKDIR}|$WORK|g"
}
declare -A TEMPLATE=([plain]=gateway.yaml.in [weighted]=gateway-weighted.yaml.in [mirror]=gateway-mirror.yaml.in)
for s in $SCENARIOS; do
  subst <"$here/${TEMPLATE[$s]}" >"$WORK/$s.yaml"
  if ! "$WEIR" validate -c "$WORK/$s.yaml" >"$WORK/logs/$s.validate" 2>&1; then
    echo "routes.sh: weir validate refuses the $s config:" >&2; cat "$WORK/logs/$s.validate" >&2; exit 1
  fi
done

start_weir() {   # start_weir SCENARIO -> PROXY_PID
  spawn "weir-$1" "$SERVER_CPU" "$WEIR" gateway -c "$WORK/$1.yaml" --access-log off --log-level warning \
    --admin "127.0.0.1:$ADMIN_PORT" --health-port 0 --prometheus-port 0 --drain-seconds 1
  PROXY_PID=$SPAWNED
  if ! wait_port "$GW_PORT" "$PROXY_PID"; then
    log "$1: weir did not start listening on $GW_PORT; log follows"; tail -n 20 "$WORK/logs/weir-$1.log" >&2
    stop "$PROXY_PID"; PROXY_PID=""; return 1
  fi
}

check_scenario() {   # correctness gate: the pages come back; the split splits; the mirror copies
  local s=$1 body code hdr n1 n2 sh0 sh1 i
  body=$(curl -s --max-time 3 "http://127.0.0.1:$GW_PORT/v1.html") || return 1
  [[ $body == *"This is version V1!"* ]] || { log "$s: GET /v1.html gave: ${body:0:200}"; return 1; }
  code=$(curl -s -o /dev/null --max-time 3 -w '%{http_code}:%{size_download}' "http://127.0.0.1:$GW_PORT/4k.html")
  [[ $code == 200:4096 ]] || { log "$s: GET /4k.html gave $code"; return 1; }
  case $s in
    weighted)
      hdr=$(curl -s --max-time 10 -o /dev/null -D - "http://127.0.0.1:$GW_PORT/v1.html?[1-100]" 2>/dev/null)
      n1=$(grep -ci "^x-bench-port: $BE_PORT" <<<"$hdr"); n2=$(grep -ci "^x-bench-port: $BE_PORT2" <<<"$hdr")
      log "  split check: 100 requests -> v1 $n1, v2 $n2"
      ((n1 >= 25 && n2 >= 25)) || { log "$s: the 50/50 split is not splitting"; return 1; } ;;
    mirror)
      sh0=$(served "$SH_STATUS")
      curl -s -o /dev/null --max-time 3 "http://127.0.0.1:$GW_PORT/v1.html?[1-10]" >/dev/null
      for i in $(seq 20); do sh1=$(served "$SH_STATUS"); (( sh1 - sh0 - i >= 10 )) && break; sleep 0.05; done
      log "  mirror check: 10 requests -> $(( sh1 - sh0 - i )) at the shadow"
      (( sh1 - sh0 - i >= 10 )) || { log "$s: the shadow backend gets no copies"; return 1; } ;;
  esac
}

mirror_counters() {   # sum of weir's mirror counters: "requests abandoned failed"
  curl -s --max-time 3 "http://127.0.0.1:$ADMIN_PORT/stats/prometheus" | awk '
    /^weir_mirror_requests_total\{/ {r += $NF} /^weir_mirror_abandoned_total\{/ {a += $NF}
    /^weir_mirror_responses_total\{.*response_code_class="failed"/ {f += $NF}
    END {printf "%d %d %d\n", r, a, f}'
}

# ---------------------------------------------------------------- measurement
RAW=$WORK/raw.tsv
printf 'round\tscenario\tmode\tpayload\tconns\trate\trps\tp50_us\tp90_us\tp99_us\terrors\trequests\tproxy_rss_kib\tprimary_rx\tshadow_rx\tproxy_cpu_us_per_req\tbackend_cpu_us_per_req\tshadow_cpu_us_per_req\tbg_cores\tnoisy\n' >"$RAW"

measure() {
  local try
  for ((try = 0; try <= RETRY_NOISY; try++)); do
    measure_once "$@"
    [[ $LAST_NOISY == 1 ]] || return 0
    budget_ok || return 0
    ((try < RETRY_NOISY)) && { log "    (noisy: ${LAST_BG} foreign cores; re-running)"; sleep 1; }
  done
}

measure_once() {   # ROUND SCEN MODE PAYLOAD CONNS RATE
  local round=$1 s=$2 mode=$3 payload=$4 conns=$5 rate=$6 out=$WORK/tmp/run.out path=/v1.html
  [[ $payload == 1k ]] && path=/1k.html
  local c0 c1 b0 b1 e0 e1 h0 h1 p0 p1 t0 t1 n0 n1 m0 m1
  n0=$(served "$BE_STATUS"); m0=$(served "$SH_STATUS")
  child_cpu; c0=$CHILD_CPU; b0=$(busy_ticks); t0=$(date +%s.%N)
  e0=$(tree_cpu_ns "$BE_PID"); h0=$(tree_cpu_ns "$SH_PID"); p0=$(tree_cpu_ns "$PROXY_PID")
  if [[ $mode == closed ]]; then
    on_client_cpu timeout $((DUR + 10)) wrk -t1 -c"$conns" -d"${DUR}s" --latency "http://127.0.0.1:$GW_PORT$path" >"$out" 2>&1
  else
    on_client_cpu timeout $((OL_DUR + OL_WARM + 10)) "$OLOOP" -p "$GW_PORT" -P "$path" -c "$conns" -R "$rate" \
      -d "$OL_DUR" -w "$OL_WARM" >"$out" 2>&1
  fi
  p1=$(tree_cpu_ns "$PROXY_PID"); e1=$(tree_cpu_ns "$BE_PID"); h1=$(tree_cpu_ns "$SH_PID")
  b1=$(busy_ticks); child_cpu; c1=$CHILD_CPU; t1=$(date +%s.%N)
  local rss; rss=$(tree_rss_kib "$PROXY_PID")
  # shadows still in flight when the client stops: give them a moment before counting
  # (every status read is a request too: k reads since the first ones, so the bench's are x1 - x0 - k)
  local k=0
  while :; do
    sleep 0.1; k=$((k + 1)); m1=$(served "$SH_STATUS"); n1=$(served "$BE_STATUS")
    [[ $s == mirror && $k -lt 6 && $m1 != NA && $n1 != NA && $m0 != NA && $n0 != NA ]] || break
    (( m1 - m0 >= n1 - n0 )) && break
  done
  local rps p50 p90 p99 err nreq
  if [[ $mode == closed ]]; then
    rps=$(awk '/^Requests\/sec:/{print $2}' "$out")
    nreq=$(awk '/requests in/{print $1; exit}' "$out")
    p50=$(to_us "$(awk '$1=="50%"{print $2}' "$out")")
    p90=$(to_us "$(awk '$1=="90%"{print $2}' "$out")")
    p99=$(to_us "$(awk '$1=="99%"{print $2}' "$out")")
    err=$(awk '/Non-2xx/{e+=$NF} /Socket errors/{gsub(",","");e+=$4+$6+$8+$10} END{print e+0}' "$out")
  else
    kv() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" "$out"; }
    rps=$(kv achieved_rps); p50=$(kv p50_us); p90=$(kv p90_us); p99=$(kv p99_us); nreq=$(kv completed)
    local ev bv; ev=$(kv errors); bv=$(kv backlog_end); err=$(( ${ev:-0} + ${bv:-0} ))
  fi
  [[ -n $rps ]] || { rps=NA; p50=NA; p90=NA; p99=NA; log "  $s $mode $payload c=$conns: no result ($(head -c 200 "$out" | tr '\n' ' '))"; }
  local row
  row=$(awk -v b0="$b0" -v b1="$b1" -v c0="$c0" -v c1="$c1" -v e0="$e0" -v e1="$e1" -v h0="$h0" -v h1="$h1" \
            -v p0="$p0" -v p1="$p1" -v t0="$t0" -v t1="$t1" -v hz="$HZ" -v n="${nreq:-0}" -v nmax="$NOISE_MAX" \
            -v n0="$n0" -v n1="$n1" -v m0="$m0" -v m1="$m1" -v k="$k" 'BEGIN{
      wall = t1 - t0; if (wall <= 0) wall = 1
      busy = (b1 - b0) / hz; cl = c1 - c0; be = (e1 - e0) / 1e9; sh = (h1 - h0) / 1e9; pr = (p1 - p0) / 1e9
      bg = (busy - cl - be - sh - pr) / wall; if (bg < 0) bg = 0
      prx = (n0 == "NA" || n1 == "NA") ? "NA" : n1 - n0 - k; shx = (m0 == "NA" || m1 == "NA") ? "NA" : m1 - m0 - k
      if (n + 0 > 0) { pu = sprintf("%.2f", pr * 1e6 / n); bu = sprintf("%.2f", be * 1e6 / n); su = sprintf("%.2f", sh * 1e6 / n) }
      else { pu = "NA"; bu = "NA"; su = "NA" }
      printf "%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%d", n + 0, prx, shx, pu, bu, su, bg, (bg > nmax) ? 1 : 0 }')
  LAST_NOISY=${row##*$'\t'}
  LAST_BG=$(printf '%s' "$row" | cut -f7)
  local f; IFS=$'\t' read -r -a f <<<"$row"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$s" "$mode" "$payload" \
    "$conns" "$rate" "$rps" "$p50" "$p90" "$p99" "$err" "${f[0]}" "$rss" "${f[1]}" "${f[2]}" "${f[3]}" "${f[4]}" "${f[5]}" \
    "${f[6]}" "${f[7]}" >>"$RAW"
  log "  $s $mode $payload c=$conns${rate:+ R=$rate}: rps=$rps p50=${p50}us p99=${p99}us weir=${f[3]}us/req backend=${f[4]} shadow=${f[5]} rx=${f[1]}/${f[2]} err=$err bg=$LAST_BG"
}

read -r -a SCEN_ARR <<<"$SCENARIOS"
log "routes: work dir $WORK; scenarios: $SCENARIOS; rounds: $ROUNDS; pin: $PIN (client cpu $CLIENT_CPU, weir+backends cpu $SERVER_CPU)"
MIRROR_STATS=""
for ((round = 1; round <= ROUNDS; round++)); do
  n=${#SCEN_ARR[@]}
  for ((j = 0; j < n; j++)); do
    s=${SCEN_ARR[$(( (j + round - 1) % n ))]}
    budget_ok || { log "time budget (${MAX_SECONDS}s) reached: skipping the rest"; break 2; }
    log "round $round: $s"
    if ! start_weir "$s"; then printf '%s\t%s\tFAILED_TO_START\n' "$round" "$s" >>"$RAW"; continue; fi
    if ! check_scenario "$s"; then
      log "$s: correctness check failed"; printf '%s\t%s\tFAILED_CHECK\n' "$round" "$s" >>"$RAW"
      stop "$PROXY_PID"; continue
    fi
    on_client_cpu wrk -t1 -c16 -d1s "http://127.0.0.1:$GW_PORT/v1.html" >/dev/null 2>&1   # warm-up: pools
    for c in $CONNS; do budget_ok && measure "$round" "$s" closed v1 "$c" ""; done
    [[ -n $OLOOP ]] && budget_ok && measure "$round" "$s" open 1k "$OL_CONNS" "$OL_RATE"
    if [[ $s == mirror ]]; then
      read -r mr ma mf < <(mirror_counters)
      MIRROR_STATS+="${MIRROR_STATS:+; }round $round: weir_mirror_requests_total=$mr abandoned=$ma failed=$mf"
    fi
    stop "$PROXY_PID"
  done
done

# ---------------------------------------------------------------- report
[[ -n $OUT ]] && cp "$RAW" "$OUT"
awk -F'\t' -v nmax="$NOISE_MAX" -v mstats="$MIRROR_STATS" '
function use(g) { return (cnt[g, "c", "rps"] > 0) ? "c" : "a" }
function med(g, f,   u, n, i, j, t, a) { u = use(g); n = cnt[g, u, f]; if (n == 0) return "NA"
  for (i = 1; i <= n; i++) a[i] = val[g, u, f, i]
  for (i = 2; i <= n; i++) { t = a[i]; j = i - 1; while (j > 0 && a[j] > t) { a[j + 1] = a[j]; j-- } a[j + 1] = t }
  return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
function sum(g, f,   u, i, t) { u = use(g); t = 0; for (i = 1; i <= cnt[g, u, f]; i++) t += val[g, u, f, i]; return cnt[g, u, f] ? t : "NA" }
function put(g, u, f, v) { if (v == "NA" || v == "") return; cnt[g, u, f]++; val[g, u, f, cnt[g, u, f]] = v + 0 }
function add(g, clean, f, v) { put(g, "a", f, v); if (clean) put(g, "c", f, v) }
function us(v) { if (v == "NA" || v == "") return "NA"; if (v >= 10000) return sprintf("%.1fms", v / 1000); if (v >= 1000) return sprintf("%.2fms", v / 1000); return sprintf("%dus", v) }
function num(v, fmt) { return (v == "NA" || v == "") ? "NA" : sprintf(fmt, v) }
function ratio(a, b) { return (a == "NA" || b == "NA" || b + 0 <= 0) ? "NA" : sprintf("%.2f", a / b) }
function load(f) { return f[2] == "closed" ? "closed c=" f[4] : "open " f[5] "/s" }
NR == 1 { next }
$3 ~ /^FAILED/ { failed[$2] = failed[$2] " " $3 " (round " $1 ")"; next }
{ g = $2 SUBSEP $3 SUBSEP $4 SUBSEP $5 SUBSEP $6
  if (!(g in seen)) { seen[g] = 1; order[++ng] = g }
  clean = ($20 == "0"); runs[g]++; if (clean) cruns[g]++
  add(g, clean, "rps", $7); add(g, clean, "p50", $8); add(g, clean, "p90", $9); add(g, clean, "p99", $10)
  add(g, clean, "err", $11); add(g, clean, "n", $12); add(g, clean, "rss", $13); add(g, clean, "prx", $14); add(g, clean, "shx", $15)
  add(g, clean, "pu", $16); add(g, clean, "bu", $17); add(g, clean, "su", $18); add(g, clean, "bg", $19) }
END {
  printf "\n== routes: weir plain route vs 50/50 weighted route vs 100%% mirror, same backends, one run; medians over clean runs (n = clean/total); x plain = ratio to the plain route under the same load ==\n"
  printf "%-9s %-13s %8s %7s %8s %8s %8s %7s %8s %8s %8s %7s %6s %4s %5s\n", "scenario", "load", "req/s", "x plain", "p50", "p99", "weir", "x plain", "backend", "shadow", "shadow/", "RSS", "bgcpu", "err", "n"
  printf "%-9s %-13s %8s %7s %8s %8s %8s %7s %8s %8s %8s %7s %6s %4s %5s\n", "", "", "", "", "", "", "us/req", "", "us/req", "us/req", "primary", "MiB", "", "", ""
  for (i = 1; i <= ng; i++) {
    g = order[i]; split(g, f, SUBSEP); L = load(f); P = "plain" SUBSEP f[2] SUBSEP f[3] SUBSEP f[4] SUBSEP f[5]
    r = med(g, "rps"); pu = med(g, "pu"); sx = sum(g, "shx"); px = sum(g, "prx")
    sr = (f[1] == "mirror") ? ratio(sx, px) : "-"
    rss = med(g, "rss"); rss = (rss == "NA") ? "NA" : sprintf("%.1f", rss / 1024)
    printf "%-9s %-13s %8s %7s %8s %8s %8s %7s %8s %8s %8s %7s %6s %4d %5s\n", f[1], L, num(r, "%.0f"), ratio(r, med(P, "rps")),
      us(med(g, "p50")), us(med(g, "p99")), num(pu, "%.2f"), ratio(pu, med(P, "pu")), num(med(g, "bu"), "%.2f"),
      (f[1] == "mirror") ? num(med(g, "su"), "%.2f") : "-", sr, rss, num(med(g, "bg"), "%.2f"), med(g, "err"), (cruns[g] + 0) "/" runs[g]
    key[f[1], L] = g; loads[L] = 1; if (!(L in lseen)) { lseen[L] = 1; lorder[++nl] = L }
  }
  printf "\nsummary (ratios to the plain route from this run):\n"
  for (k = 1; k <= 2; k++) { s = (k == 1) ? "weighted" : "mirror"
    line = ""
    for (l = 1; l <= nl; l++) { L = lorder[l]; if (!((s, L) in key) || !(("plain", L) in key)) continue
      g = key[s, L]; P = key["plain", L]
      line = line sprintf("\n  %-13s req/s x%s, weir CPU/req x%s (%s -> %s us, %+.2f us), p50 %s -> %s", L, ratio(med(g, "rps"), med(P, "rps")),
        ratio(med(g, "pu"), med(P, "pu")), num(med(P, "pu"), "%.2f"), num(med(g, "pu"), "%.2f"),
        (med(g, "pu") == "NA" || med(P, "pu") == "NA") ? 0 : med(g, "pu") - med(P, "pu"), us(med(P, "p50")), us(med(g, "p50")))
      if (s == "mirror") { mx = ratio(med(g, "pu"), med(P, "pu")); if (mx != "NA") { worst = (worst == "" || mx + 0 > worst + 0) ? mx : worst }
        sx = sum(g, "shx"); px = sum(g, "prx"); line = line sprintf(", shadow/primary %s (%s/%s)", ratio(sx, px), sx, px) } }
    if (line != "") printf "%s:%s\n", s, line }
  if (mstats != "") printf "weir counters at the end of each mirror run: %s\n", mstats
  if (worst != "") {
    if (worst + 0 < 2) printf "mirror verdict: weir CPU/request at most %sx plain (< 2x): the copy costs about one extra upstream request\n", worst
    else printf "mirror verdict: WARNING: weir CPU/request up to %sx plain (>= 2x): the copy costs more than one extra upstream request\n", worst }
  for (s in failed) printf "%s:%s\n", s, failed[s]
  printf "\nnotes: weir, backend and shadow us/req are CPU time of that process tree (schedstat) per request answered to the\n"
  printf "client; weir, the backend and the shadow share one CPU (req/s of mirror pays for the shadow nginx as well); shadow/primary\n"
  printf "= requests the shadow nginx received / requests the backend received over all mirror runs of that load (stub_status);\n"
  printf "bgcpu = cores used by processes outside this benchmark; runs above %s are noisy, used only when no clean run exists.\n", nmax
}' "$RAW"
echo "routes phase took ${SECONDS}s${OUT:+; raw results: $OUT}"
exit 0
