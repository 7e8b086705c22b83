//! The datapath outlives its observer: pinned under the BPF filesystem, it keeps enforcing
//! while the observer is killed with SIGKILL, and the next observer adopts it (same layout) or
//! replaces it (another layout) without a packet judged otherwise, resuming the events the ring
//! buffer kept and reporting those it could not. As root, on the lab's namespaces.

mod util;

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use serde_json::{Value, json};
use util::{Observer, PinGuard};

const XYZ: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/labs/xyz.yaml");
/// The default pin root, as users run the observer (the lab tests run one at a time).
const ROOT: &str = "/sys/fs/bpf/flowscope";
/// x/b's address in the xyz lab.
const X_B: &str = "198.18.1.2";
/// A port the test serves itself in x/b, for one connection that stays open throughout.
const LONG_PORT: u16 = 8080;

/// x/b admits TCP 80 and 8080 from namespace y, and nothing else: y/a's connections to port 80
/// must always connect, those to port 81 never.
fn policy() -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: allow-80, namespace: x}}\nspec:\n  podSelector: {{matchLabels: {{pod: b}}}}\n  ingress:\n    - from: [{{namespaceSelector: {{matchLabels: {{ns: \"y\"}}}}}}]\n      ports: [{{port: 80, protocol: TCP}}, {{port: {LONG_PORT}, protocol: TCP}}]\n"
    )
}

/// y/a probes x/b on port 80 (allowed) and 81 (denied) until stopped, counting rounds and
/// every probe whose outcome was not the policy's.
struct Prober {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
    misjudged: Arc<AtomicU64>,
    log: Arc<std::sync::Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Prober {
    fn start() -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let misjudged = Arc::new(AtomicU64::new(0));
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let thread = {
            let (stop, rounds, misjudged, log) =
                (stop.clone(), rounds.clone(), misjudged.clone(), log.clone());
            flowscope_lab::topology::spawn_in("fsl-y-a", move || {
                while !stop.load(Ordering::Relaxed) {
                    for (port, allowed, timeout) in [(80, true, 1000), (81, false, 200)] {
                        let dst: SocketAddr = format!("{X_B}:{port}").parse().unwrap();
                        let got =
                            flowscope_lab::servers::probe_tcp(dst, Duration::from_millis(timeout));
                        if got.connected != allowed
                            && misjudged.fetch_add(1, Ordering::Relaxed) < 10
                        {
                            log.lock().unwrap().push(format!(
                                "{:?}: port {port} connected={} ({got:?})",
                                SystemTime::now(),
                                got.connected
                            ));
                        }
                    }
                    rounds.fetch_add(1, Ordering::Relaxed);
                }
            })
            .unwrap()
        };
        Prober {
            stop,
            rounds,
            misjudged,
            log,
            thread: Some(thread),
        }
    }

    fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }

    /// Waits until `n` more rounds have run.
    fn wait_rounds(&self, n: u64) {
        let target = self.rounds() + n;
        util::eventually(
            &format!("{n} more probe rounds"),
            Duration::from_secs(60),
            || (self.rounds() >= target).then_some(()),
        );
    }

    fn assert_none_misjudged(&self, during: &str) {
        assert_eq!(
            self.misjudged.load(Ordering::Relaxed),
            0,
            "{during}: {:?}",
            self.log.lock().unwrap()
        );
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A connection from y/a to a server the test runs in x/b, opened once: each `exchange` sends
/// a line and reads it back.
struct LongConnection {
    client: TcpStream,
    _server: std::thread::JoinHandle<()>,
}

impl LongConnection {
    fn open() -> LongConnection {
        let listener = flowscope_lab::topology::spawn_in("fsl-x-b", || {
            TcpListener::bind(format!("{X_B}:{LONG_PORT}")).unwrap()
        })
        .unwrap()
        .join()
        .unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 256];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        let client = flowscope_lab::topology::spawn_in("fsl-y-a", || {
            let dst: SocketAddr = format!("{X_B}:{LONG_PORT}").parse().unwrap();
            TcpStream::connect_timeout(&dst, Duration::from_secs(2)).unwrap()
        })
        .unwrap()
        .join()
        .unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        LongConnection {
            client,
            _server: server,
        }
    }

    fn exchange(&mut self, what: &str) {
        let line = format!("{what}\n");
        self.client
            .write_all(line.as_bytes())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let mut got = vec![0u8; line.len()];
        self.client
            .read_exact(&mut got)
            .unwrap_or_else(|e| panic!("the connection stalled {what}: {e}"));
        assert_eq!(got, line.as_bytes());
    }
}

/// Kills the observer with SIGKILL: nothing of it runs its exit path.
fn kill_9(mut obs: Observer) {
    obs.child.kill().unwrap();
    obs.child.wait().unwrap();
}

fn observer(dir: &Path) -> Observer {
    util::lab_observer(
        dir.to_str().unwrap(),
        &["--bpf-root", ROOT, "--max-flows", "65535"],
    )
}

fn pins(obs: &Observer) -> Value {
    util::wait_for_revision_after(obs, 0);
    obs.status()["pins"].clone()
}

/// The flows an observer holds from y/a to x/b.
fn flows_y_a_to_x_b(obs: &Observer) -> Vec<Value> {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut ws = util::subscribe(
            &obs.ws_url(),
            json!({"number": 65535, "whitelist": [{"source_pod": ["y/a"], "destination_pod": ["x/b"]}]}),
        )
        .await;
        util::collect_until(&mut ws, Duration::from_secs(5), |_| false).await
    })
}

fn unix_ns(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as i64
}

/// A flow's time in Unix nanoseconds.
fn flow_time(f: &Value) -> Option<i64> {
    let t = f["flow"]["time"].as_str()?;
    Some(
        flowscope_model::time::Timestamp::parse_rfc3339(t)
            .ok()?
            .as_unix_nanos(),
    )
}

/// Killed with SIGKILL under traffic, the observer's datapath keeps enforcing: y/a reaches x/b
/// on the allowed port and never on the denied one, and a connection opened before keeps
/// flowing. The next observer adopts the pins (policy, conntrack, the ring buffer with the
/// events of the time no observer ran); the events the ring could not hold are reported as
/// lost. Pins of another layout are replaced, again with no packet judged otherwise; and
/// `lab down` removes what is pinned.
#[test]
fn the_datapath_outlives_a_killed_observer_and_the_next_adopts_it() {
    let _lab = util::lab_up(XYZ);
    let _pins = PinGuard(ROOT.into());
    let _ = std::fs::remove_dir_all(ROOT);
    let dir = util::TempDir::new("restart-policy");
    std::fs::write(dir.join("policy.yaml"), policy()).unwrap();

    let first = observer(&dir);
    assert_eq!(pins(&first)["start"], "fresh", "{}", first.status());
    let mut long = LongConnection::open();
    long.exchange("before the kill");
    let prober = Prober::start();
    prober.wait_rounds(3);
    prober.assert_none_misjudged("with the first observer");

    // No observer: the datapath judges alone.
    let killed_at = SystemTime::now();
    kill_9(first);
    prober.wait_rounds(5);
    long.exchange("while no observer runs");
    // More drop events than the ring buffer holds (about 35,000): each dropped datagram is
    // one, so the ring fills and counts what it loses.
    flowscope_lab::topology::spawn_in("fsl-y-a", || {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..60_000 {
            let _ = socket.send_to(b"flood", format!("{X_B}:81"));
        }
    })
    .unwrap()
    .join()
    .unwrap();
    prober.assert_none_misjudged("while no observer ran");

    let second = observer(&dir);
    let adopted_at = SystemTime::now();
    let p = pins(&second);
    assert_eq!(p["start"], "adopted", "{p}");
    assert!(
        p["links_found"].as_u64().unwrap() >= 9,
        "every pod's veth: {p}"
    );
    assert_eq!(p["pending_swaps"], 0, "{p}");
    assert!(
        p["lost_while_away"].as_u64().unwrap() > 0,
        "the flood overflowed the ring: {p}"
    );
    assert!(p["away_seconds"].as_f64().unwrap() > 0.0, "{p}");
    prober.wait_rounds(3);
    prober.assert_none_misjudged("after the adoption");
    long.exchange("after the adoption");

    // The events of the time no observer ran are in the new observer's history, with the
    // verdicts the datapath gave them; what the ring lost is said, not skipped.
    let flows = flows_y_a_to_x_b(&second);
    let away: Vec<&Value> = flows
        .iter()
        .filter(|f| flow_time(f).is_some_and(|t| t > unix_ns(killed_at) && t < unix_ns(adopted_at)))
        .collect();
    let verdict_on = |port: u64, verdict: &str| {
        away.iter().any(|f| {
            f["flow"]["l4"]["TCP"]["destination_port"] == port && f["flow"]["verdict"] == verdict
        })
    };
    assert!(
        verdict_on(80, "FORWARDED") && verdict_on(81, "DROPPED"),
        "flows of the time away: {} of {}",
        away.len(),
        flows.len()
    );
    let status = second.status();
    assert!(
        status["datapath"]["events_lost"].as_u64().unwrap()
            >= p["lost_while_away"].as_u64().unwrap(),
        "{status}"
    );
    let counted = |status: &Value| status["datapath"]["events_lost"].as_u64().unwrap();
    let counted_before = counted(&second.status());
    let lost = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut ws = util::subscribe(&second.ws_url(), json!({"number": 65535})).await;
        util::collect_until(&mut ws, Duration::from_secs(5), |_| false).await
    });
    let reported: u64 = lost
        .iter()
        .filter_map(|l| {
            // A uint64 is a string in protojson.
            let n = &l["lost_events"]["num_events_lost"];
            n.as_u64().or_else(|| n.as_str()?.parse().ok())
        })
        .sum();
    let counted_after = counted(&second.status());
    // Every loss since the previous observer's last handover is reported once: the gap, and
    // whatever the ring lost after the adoption before this observer drained it (more on a
    // loaded machine). The count moves while the stream is read, hence the bracket.
    let theirs = p["lost_reported_before"].as_u64().unwrap();
    assert!(
        reported >= p["lost_while_away"].as_u64().unwrap()
            && (counted_before - theirs..=counted_after - theirs).contains(&reported),
        "lost events reported {reported}; counted {counted_before}..{counted_after}, of which \
         the previous observer reported {theirs}; {p}"
    );

    // Pins of another layout (as an older release left them): replaced, packets judged by
    // the old programs until the new maps hold the policy, then by the new ones.
    kill_9(second);
    let layout = p["layout"].as_str().unwrap().to_owned();
    std::fs::rename(
        Path::new(ROOT).join(format!("maps-{layout}")),
        Path::new(ROOT).join("maps-v0-0000000000000000"),
    )
    .unwrap();
    prober.wait_rounds(2);
    let third = observer(&dir);
    let p = pins(&third);
    assert_eq!(p["start"], "replaced", "{p}");
    util::eventually("the programs swapped in", Duration::from_secs(10), || {
        (third.status()["pins"]["pending_swaps"] == 0).then_some(())
    });
    assert!(!Path::new(ROOT).join("maps-v0-0000000000000000").exists());
    assert!(Path::new(ROOT).join(format!("maps-{layout}")).is_dir());
    prober.wait_rounds(3);
    prober.assert_none_misjudged("across the layout change");
    long.exchange("after the layout change");
    let rounds = prober.rounds();
    drop(prober);
    eprintln!("{rounds} probe rounds (2 connections each), none misjudged");

    // `lab down` removes what an observer pinned (none may hold it).
    kill_9(third);
    let down = util::flowscope(&["lab", "down"]);
    assert!(
        String::from_utf8_lossy(&down.stdout).contains("Pinned datapath removed from"),
        "{down:?}"
    );
    assert!(!Path::new(ROOT).exists());
}
