//! `flowscope demo`, the README's main command: it comes up, shows allowed and denied traffic,
//! and leaves nothing behind when stopped (or when a kill -9 is followed by another start).

mod util;

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};
use util::{collect_until, free_port, http_get, subscribe};

/// The running demo; killed, and its hosts removed, if the test fails before stopping it.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
        for ns in ["fsd-client", "fsd-server"] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn start_demo(port: u16) -> Demo {
    let demo = Demo(
        Command::new(env!("CARGO_BIN_EXE_flowscope"))
            .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn demo"),
    );
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..300 {
        if http_get(addr, "/readyz").is_some_and(|(c, _)| c == 200) {
            return demo;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("demo not ready");
}

fn leftovers() -> String {
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    let mut out = String::from_utf8_lossy(&ns.stdout).to_string();
    out.push_str(&String::from_utf8_lossy(&links.stdout));
    out.lines()
        .filter(|l| l.contains("fsd-"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn flowscope_links() -> usize {
    let out = Command::new("bpftool")
        .args(["-j", "link", "show"])
        .output()
        .expect("bpftool");
    let links: Value = serde_json::from_slice(&out.stdout).unwrap_or(json!([]));
    links
        .as_array()
        .map(|a| {
            a.iter()
                // Debian's bpftool prints tcx links as type 11.
                .filter(|l| l["type"] == "tcx" || l["type"] == 11)
                .filter(|l| {
                    let id = l["prog_id"].to_string();
                    let p = Command::new("bpftool")
                        .args(["-j", "prog", "show", "id", &id])
                        .output()
                        .unwrap();
                    String::from_utf8_lossy(&p.stdout).contains("flowscope_")
                })
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_shows_allowed_and_denied_traffic_and_cleans_up() {
    let port = free_port();
    // A demo killed with SIGKILL cannot clean up its hosts; the next start must.
    let mut first = start_demo(port);
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    assert!(
        !leftovers().is_empty(),
        "expected the killed demo's hosts to remain"
    );

    // Its hosts are left for the next start to clean up, not for the guard.
    std::mem::forget(first);
    let mut demo = start_demo(port);
    let mut ws = subscribe(
        &format!("ws://127.0.0.1:{port}/api/v1/flows"),
        json!({"follow": true}),
    )
    .await;
    let flows = collect_until(&mut ws, Duration::from_secs(15), |g| {
        let seen = |verdict: &str, port: u64| {
            g.iter().any(|f| {
                f["flow"]["verdict"] == verdict
                    && (f["flow"]["l4"]["TCP"]["destination_port"] == port
                        || f["flow"]["l4"]["UDP"]["destination_port"] == port)
            })
        };
        seen("FORWARDED", 8080) && seen("FORWARDED", 5353) && seen("DROPPED", 9090)
    })
    .await;
    let dropped = flows
        .iter()
        .find(|f| f["flow"]["verdict"] == "DROPPED")
        .unwrap_or_else(|| panic!("no dropped flow in {flows:#?}"));
    assert_eq!(dropped["flow"]["IP"]["source"], "198.18.100.2");
    assert_eq!(dropped["flow"]["drop_reason_desc"], "POLICY_DENIED");
    // Seen leaving the client's veth: the client's egress.
    assert_eq!(dropped["flow"]["traffic_direction"], "EGRESS");
    assert!(flows.iter().any(|f| f["flow"]["verdict"] == "FORWARDED"
        && f["flow"]["l4"]["UDP"]["destination_port"] == 5353));
    assert!(flowscope_links() >= 4, "two programs on each of two veths");

    // SIGTERM (like Ctrl-C): everything goes.
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(demo.0.id() as i32, libc::SIGTERM) };
    let status = demo.0.wait().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(leftovers(), "", "demo left hosts behind");
    assert_eq!(flowscope_links(), 0, "tc links left attached");
}
