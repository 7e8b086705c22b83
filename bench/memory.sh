#!/usr/bin/env bash
# Observer memory with a full 65,535-flow ring, and the end-to-end rate of real new flows:
# UDP datagrams from every source port of a test host to two ports of this machine, each a new
# connection seen by the kernel programs, decoded and stored. Usage: bench/memory.sh
source "$(dirname "$0")/common.sh"
make_host
start_observer 42991 --max-flows 65535
status() { curl -s "http://127.0.0.1:42991/api/v1/status"; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval('d'+sys.argv[1]))" "$1"; }
# A follower reading every flow, as the UI would be, so the shared decoded window is in use.
/usr/bin/python3 - 42991 >/tmp/fsb-follower-$SFX.log 2>&1 <<'PY' &
import asyncio, sys, websockets
async def main():
    async with websockets.connect("ws://127.0.0.1:%s/api/v1/flows" % sys.argv[1], max_size=None) as ws:
        await ws.send('{"follow": true}')
        n = 0
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
                n += 1
        except asyncio.TimeoutError:
            print("follower received", n)
asyncio.run(main())
PY
PIDS+=("$!")
FOLLOWER=$!
sleep 1
seen0=$(status | field '["seen_flows"]')
t0=$(date +%s.%N)
ip netns exec "$NS" python3 - "$HOST_IP" <<'PY'
import socket, sys
dst = sys.argv[1]
for sport in range(1024, 65536):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", sport))
    s.sendto(b"x", (dst, 9000))
    s.sendto(b"x", (dst, 9001))
    s.close()
PY
t1=$(date +%s.%N)
sleep 2
st=$(status)
seen1=$(echo "$st" | field '["seen_flows"]')
echo "flows stored: $((seen1 - seen0)) new flows in $(python3 -c "print(round($t1-$t0,2))") s of sending"
python3 -c "print('end-to-end new flows/s: %.0f' % (($seen1-$seen0)/($t1-$t0)))"
echo "ring: $(echo "$st" | field '["num_flows"]') / $(echo "$st" | field '["max_flows"]') flows"
echo "datapath events lost: $(echo "$st" | field '["datapath"]["events_lost"]')"
grep -E 'VmRSS|VmHWM' "/proc/$OBS_PID/status"
wait "$FOLLOWER" 2>/dev/null || true
cat /tmp/fsb-follower-$SFX.log
