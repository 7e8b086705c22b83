//! Tests of `flowscope observe` end to end: flags → request, request → output (golden files
//! under `cli/testdata/`), `--input-file`, aggregation, and the WebSocket stream against a fake
//! observer.

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::Parser;
use flowscope_model::{GetFlowsRequest, Timestamp};

use super::printer::Output;
use super::{Env, ObserveArgs, request, run};

const FLOWS: &str = include_str!("../../testdata/flows.jsonl");
const FLOWS_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/flows.jsonl");

#[derive(Parser, Debug)]
#[command(name = "observe")]
struct Cli {
    #[command(flatten)]
    args: ObserveArgs,
}

fn try_parse(argv: &[&str]) -> Result<ObserveArgs, clap::Error> {
    Cli::try_parse_from(std::iter::once("observe").chain(argv.iter().copied())).map(|c| c.args)
}

fn parse(argv: &[&str]) -> ObserveArgs {
    try_parse(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"))
}

fn now() -> Timestamp {
    ts("2024-06-01T12:00:00Z")
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn request_for(argv: &[&str]) -> GetFlowsRequest {
    request::build(&parse(argv), now())
        .unwrap_or_else(|e| panic!("{argv:?}: {e:#}"))
        .request
}

fn request_error(argv: &[&str]) -> String {
    match request::build(&parse(argv), now()) {
        Ok(plan) => panic!("{argv:?} built {:?}", plan.request),
        Err(e) => format!("{e:#}"),
    }
}

/// The whitelist and blacklist as the JSON the observer receives.
fn lists(argv: &[&str]) -> (String, String) {
    let req = request_for(argv);
    (
        serde_json::to_string(&req.whitelist).unwrap(),
        serde_json::to_string(&req.blacklist).unwrap(),
    )
}

/// A writer tests can read back.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A stdout whose reader went away (`| head`).
struct ClosedPipe;

impl Write for ClosedPipe {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::BrokenPipe.into())
    }
    fn flush(&mut self) -> io::Result<()> {
        Err(io::ErrorKind::BrokenPipe.into())
    }
}

fn env() -> Env {
    Env {
        stdout_tty: false,
        no_color: false,
        hints: false,
        now: now(),
    }
}

struct Ran {
    result: anyhow::Result<ExitCode>,
    out: String,
    err: String,
}

impl Ran {
    fn ok(&self) -> &str {
        if let Err(e) = &self.result {
            panic!("failed: {e:#}\nstderr: {}", self.err);
        }
        &self.out
    }

    fn error(&self) -> String {
        match &self.result {
            Ok(code) => panic!("succeeded with {code:?}; stdout:\n{}", self.out),
            Err(e) => format!("{e:#}"),
        }
    }
}

async fn run_with(argv: &[&str], interrupt: impl Future<Output = ()>) -> Ran {
    let (out, err) = (Capture::default(), Capture::default());
    let io = Output {
        out: Box::new(out.clone()),
        err: Box::new(err.clone()),
    };
    let result = run(parse(argv), io, env(), interrupt).await;
    Ran {
        result,
        out: out.text(),
        err: err.text(),
    }
}

async fn run_args(argv: &[&str]) -> Ran {
    run_with(argv, std::future::pending()).await
}

/// Replays the test flows with extra flags.
async fn replay(extra: &[&str]) -> Ran {
    let mut argv = vec!["--input-file", FLOWS_PATH];
    argv.extend_from_slice(extra);
    run_args(&argv).await
}

fn golden(name: &str) -> String {
    let path = format!("{}/testdata/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

mod requests {
    use super::*;

    #[test]
    fn field_masks_go_to_the_observer_checked() {
        let req = request_for(&[
            "--field-mask",
            "time,source.pod_name",
            "--field-mask",
            "verdict",
        ]);
        assert_eq!(
            req.field_mask,
            Some(serde_json::json!("time,source.pod_name,verdict"))
        );
        assert!(req.mask().unwrap().is_some());
        let legacy = request_for(&["--experimental-field-mask", "IP"]);
        assert_eq!(legacy.field_mask, Some(serde_json::json!("IP")));
        let err = request_error(&["--field-mask", "source.podname"]);
        assert!(
            err.starts_with(
                "--field-mask: field mask path `source.podname`: `source` has no field"
            ),
            "{err}"
        );
        let err = request_error(&["--field-mask", "IP", "--input-file", "-"]);
        assert!(
            err.contains("with --input-file there is no observer"),
            "{err}"
        );
    }

    #[test]
    fn either_direction_flags_make_a_source_and_a_destination_filter() {
        assert_eq!(
            lists(&["--pod", "web"]),
            (
                r#"[{"source_pod":["web"]},{"destination_pod":["web"]}]"#.into(),
                "[]".into()
            )
        );
        assert_eq!(
            lists(&["--ip", "10.0.0.0/8", "-l", "k8s:app=web"]).0,
            concat!(
                r#"[{"source_ip":["10.0.0.0/8"],"source_label":["k8s:app=web"]},"#,
                r#"{"destination_ip":["10.0.0.0/8"],"destination_label":["k8s:app=web"]}]"#
            )
        );
        assert_eq!(
            lists(&["--identity", "world", "--port", "53"]).0,
            concat!(
                r#"[{"source_port":["53"],"source_identity":[2]},"#,
                r#"{"destination_port":["53"],"destination_identity":[2]}]"#
            )
        );
    }

    #[test]
    fn from_and_to_flags_apply_to_both_filters_and_collapse_to_one() {
        assert_eq!(
            lists(&["--from-pod", "shop/web", "--to-port", "5432"]).0,
            r#"[{"source_pod":["shop/web"],"destination_port":["5432"]}]"#
        );
        // A direction-free flag joins both halves of an either-direction flag.
        assert_eq!(
            lists(&["--fqdn", "*.example.com", "--verdict", "DROPPED"]).0,
            concat!(
                r#"[{"source_fqdn":["*.example.com"],"verdict":["DROPPED"]},"#,
                r#"{"destination_fqdn":["*.example.com"],"verdict":["DROPPED"]}]"#
            )
        );
    }

    #[test]
    fn repeated_flags_or_and_different_flags_and() {
        assert_eq!(
            lists(&[
                "--http-method",
                "put",
                "--http-method",
                "get",
                "--to-namespace",
                "foo",
                "--to-namespace",
                "bar"
            ])
            .0,
            r#"[{"destination_pod":["foo/","bar/"],"http_method":["put","get"]}]"#
        );
        assert_eq!(
            lists(&["--pod", "a", "--pod", "b", "--verdict", "dropped"]).0,
            concat!(
                r#"[{"source_pod":["a","b"],"verdict":["DROPPED"]},"#,
                r#"{"destination_pod":["a","b"],"verdict":["DROPPED"]}]"#
            )
        );
    }

    #[test]
    fn not_negates_only_the_next_filter_flag() {
        // The example from Hubble's documentation.
        assert_eq!(
            lists(&["--not", "--namespace", "kube-system"]),
            (
                "[]".into(),
                r#"[{"source_pod":["kube-system/"]},{"destination_pod":["kube-system/"]}]"#.into()
            )
        );
        // Several --not flags of different kinds form one blacklist filter (all must match);
        // flags after the negated one, and other options in between, are not negated.
        assert_eq!(
            lists(&[
                "--not",
                "-o",
                "json",
                "--http-method",
                "get",
                "--pod",
                "x",
                "--not",
                "--to-namespace",
                "foo"
            ]),
            (
                r#"[{"source_pod":["x"]},{"destination_pod":["x"]}]"#.into(),
                r#"[{"destination_pod":["foo/"],"http_method":["get"]}]"#.into()
            )
        );
        assert_eq!(
            lists(&[
                "--not",
                "--verdict",
                "FORWARDED",
                "--not",
                "--verdict",
                "TRACED"
            ])
            .1,
            r#"[{"verdict":["FORWARDED","TRACED"]}]"#
        );
    }

    #[test]
    fn misplaced_not_is_refused() {
        assert!(
            request_error(&["--not", "--not", "--pod", "x"]).contains("--not --not"),
            "consecutive"
        );
        let err = request_error(&["--pod", "x", "--not"]);
        assert!(
            err.contains("--not must be followed by the filter flag"),
            "{err}"
        );
    }

    #[test]
    fn namespaces_qualify_pods_and_services() {
        assert_eq!(
            lists(&["-n", "shop", "--pod", "web"]).0,
            r#"[{"source_pod":["shop/web"]},{"destination_pod":["shop/web"]}]"#
        );
        assert_eq!(
            lists(&["--from-namespace", "a", "--to-namespace", "b"]).0,
            r#"[{"source_pod":["a/"],"destination_pod":["b/"]}]"#
        );
        assert_eq!(
            lists(&["--from-namespace", "a", "--from-service", "api"]).0,
            r#"[{"source_service":["a/api"]}]"#
        );
        assert_eq!(
            lists(&["-A"]).0,
            r#"[{"source_pod":["/"]},{"destination_pod":["/"]}]"#
        );
        let err = request_error(&["-n", "shop", "--pod", "db/postgres"]);
        assert_eq!(
            err,
            r#"namespace conflict: "shop" does not contain "db/postgres""#
        );
        let err = request_error(&["--from-pod", "a/x", "--from-service", "b/y"]);
        assert!(err.contains("conflicts with pod namespace \"a\""), "{err}");
        let err = request_error(&["--namespace", "a/b"]);
        assert!(
            err.starts_with("--namespace: \"a/b\" is not a namespace name"),
            "{err}"
        );
    }

    #[test]
    fn conflicting_filters_name_both_flags() {
        for (argv, want) in [
            (
                &["--label", "a", "--from-label", "b"][..],
                "--label and --from-label",
            ),
            (&["--port", "80", "--to-port", "81"], "--port and --to-port"),
            (&["--ip", "1.1.1.1", "--fqdn", "a.com"], "--ip and --fqdn"),
            (
                &["--from-pod", "x", "-n", "y"],
                "--from-pod and --namespace",
            ),
            (
                &["--encrypted", "--unencrypted"],
                "--encrypted and --unencrypted",
            ),
        ] {
            let err = request_error(argv);
            assert_eq!(
                err,
                format!("filters {want} cannot be combined"),
                "{argv:?}"
            );
        }
        // Whitelist and blacklist are separate.
        assert_eq!(
            lists(&["--label", "a", "--not", "--from-label", "b"]).1,
            r#"[{"source_label":["b"]}]"#
        );
    }

    #[test]
    fn values_are_checked_with_the_flag_named() {
        for (argv, want) in [
            (
                &["--ip", "10.0.0.0/33"][..],
                r#"--ip: "10.0.0.0/33" is not an IP address or CIDR"#,
            ),
            (
                &["--to-port", "99999"],
                r#"--to-port: "99999" is not a port number (0-65535)"#,
            ),
            (
                &["--verdict", "DROPED"],
                r#"--verdict: "DROPED" is not a valid value; expected one of VERDICT_UNKNOWN, FORWARDED"#,
            ),
            (
                &["--identity", "everyone"],
                r#"--identity: "everyone" is not a security identity; expected a number or one of host, world"#,
            ),
            (
                &["--tcp-flags", "syn,foo"],
                r#"--tcp-flags: "foo" is not a TCP flag"#,
            ),
            (&["-t", "bogus"], r#"--type: "bogus" is not an event type"#),
            (
                &["-t", "trace:to-nowhere"],
                r#"--type: "to-nowhere" is not a sub-type of trace; expected one of to-endpoint"#,
            ),
            (
                &["--http-status", "600"],
                r#"--http-status: "600" is not an HTTP status code or prefix"#,
            ),
            (
                &["--label", "app in (a"],
                r#"--label: "app in (a" is not a valid label selector"#,
            ),
            (
                &["--fqdn", "a b.com"],
                r#"--fqdn: "a b.com" is not a valid pattern"#,
            ),
            (
                &["--http-path", "(["],
                r#"--http-path: "([" is not a valid regular expression"#,
            ),
            (
                &["--protocol", "quic"],
                r#"--protocol: "quic" is not a known protocol"#,
            ),
            (
                &["--traffic-direction", "up"],
                r#"--traffic-direction: "up" is not a traffic direction"#,
            ),
            (
                &["--http-header", "nocolon"],
                r#"--http-header: "nocolon" is not a header; expected NAME:VALUE"#,
            ),
            (
                &["--drop-reason-desc", "nope"],
                r#"--drop-reason-desc: "nope" is not a valid value; expected one of DROP_REASON_UNKNOWN"#,
            ),
            (
                &["--ip-trace-id", "0"],
                r#"--ip-trace-id: "0" is not a trace ID"#,
            ),
            (
                &["--pod", "a/b/c"],
                r#"--pod: "a/b/c" is not a valid "[namespace/]name-prefix""#,
            ),
        ] {
            let err = request_error(argv);
            assert!(err.starts_with(want), "{argv:?}: {err}");
        }
    }

    #[test]
    fn types_tcp_flags_and_enums() {
        assert_eq!(
            lists(&[
                "-t",
                "trace:to-endpoint",
                "-t",
                "drop",
                "-t",
                "l7",
                "-t",
                "4:5"
            ])
            .0,
            concat!(
                r#"[{"event_type":[{"type":4,"match_sub_type":true},{"type":1},{"type":129},"#,
                r#"{"type":4,"match_sub_type":true,"sub_type":5}]}]"#
            )
        );
        assert_eq!(
            lists(&["--tcp-flags", "syn,ACK", "--tcp-flags", "fin"]).0,
            r#"[{"tcp_flags":[{"SYN":true,"ACK":true},{"FIN":true}]}]"#
        );
        assert_eq!(
            lists(&[
                "--drop-reason-desc",
                "policy_denied",
                "--traffic-direction",
                "EGRESS",
                "-4",
                "--ip-version",
                "v6"
            ])
            .0,
            concat!(
                r#"[{"traffic_direction":["EGRESS"],"drop_reason_desc":["POLICY_DENIED"],"#,
                r#""ip_version":["IPv4","IPv6"]}]"#
            )
        );
        assert_eq!(
            lists(&[
                "--workload",
                "Deployment/web",
                "--http-header",
                "x-user:a:b",
                "--interface",
                "eth0"
            ])
            .0,
            concat!(
                r#"[{"source_workload":[{"name":"web","kind":"Deployment"}],"interface":[{"name":"eth0"}],"#,
                r#""http_header":[{"key":"x-user","value":"a:b"}]},"#,
                r#"{"destination_workload":[{"name":"web","kind":"Deployment"}],"interface":[{"name":"eth0"}],"#,
                r#""http_header":[{"key":"x-user","value":"a:b"}]}]"#
            )
        );
    }

    #[test]
    fn whole_request_is_validated_by_the_model() {
        let err = request_error(&["--http-status", "500", "-t", "trace"]);
        assert!(
            err.starts_with("the filters cannot match (whitelist[0].http_status_code: HTTP filters only match L7 events"),
            "{err}"
        );
        let err = request_error(&["--cel-expression", "true"]);
        assert!(err.contains("not supported by flowscope"), "{err}");
        let err = request_error(&[
            "--since",
            "2024-06-01T11:00:00Z",
            "--until",
            "2024-06-01T10:00:00Z",
        ]);
        assert!(
            err.starts_with("--since (2024-06-01T11:00:00Z) is after --until"),
            "{err}"
        );
        let err = request_error(&["--since", "yesterday"]);
        assert!(
            err.starts_with("--since: \"yesterday\" is neither a duration"),
            "{err}"
        );
    }

    #[test]
    fn selectors_follow_hubble() {
        let r = request_for(&[]);
        assert_eq!((r.number, r.first, r.follow), (20, false, false));
        let r = request_for(&["-f"]);
        assert_eq!((r.number, r.first, r.follow), (0, false, true));
        let r = request_for(&["--last", "5", "--follow"]);
        assert_eq!((r.number, r.follow), (5, true));
        assert_eq!(request_for(&["--all"]).number, u64::MAX);
        let r = request_for(&["--first", "3"]);
        assert_eq!((r.number, r.first), (3, true));
        // A time window replaces the default count.
        let r = request_for(&["--since", "5m"]);
        assert_eq!((r.number, r.since), (0, Some(ts("2024-06-01T11:55:00Z"))));
        let r = request_for(&["--until", "2024-06-01T10:00:00Z"]);
        assert_eq!((r.number, r.until), (0, Some(ts("2024-06-01T10:00:00Z"))));
        // --until is ignored when following.
        assert_eq!(request_for(&["-f", "--until", "1m"]).until, None);
        // Counting looks at every stored flow unless told otherwise.
        assert_eq!(request_for(&["--aggregate-by", "verdict"]).number, u64::MAX);
        assert_eq!(
            request_for(&["--aggregate-by", "verdict", "--last", "7"]).number,
            7
        );
        // A file is read whole unless --first/--last say otherwise.
        assert_eq!(request_for(&["--input-file", "x"]).number, 0);
        assert!(!request_for(&["--input-file", "x", "-f"]).follow);
        assert_eq!(
            serde_json::to_string(&request_for(&["--all", "-f"])).unwrap(),
            r#"{"number":"18446744073709551615","follow":true}"#
        );
    }

    #[test]
    fn conflicting_selectors_name_both_flags() {
        for (argv, a, b) in [
            (&["--first", "1", "--last", "2"][..], "--first", "--last"),
            (&["--first", "1", "-f"], "--first", "--follow"),
            (&["--all", "--first", "1"], "--first", "--all"),
            (&["--all", "--last", "3"], "--last", "--all"),
        ] {
            let err = try_parse(argv).unwrap_err().to_string();
            assert!(
                err.contains("cannot be used with") && err.contains(a) && err.contains(b),
                "{argv:?}: {err}"
            );
        }
    }

    #[test]
    fn raw_filters_are_added_and_printable() {
        assert_eq!(
            lists(&[
                "--pod",
                "x",
                "--allowlist",
                r#"{"verdict":["DROPPED"]}{"uuid":["u"]}"#,
                "--denylist",
                r#"{"source_label":["k8s:app=noisy"]}"#
            ]),
            (
                concat!(
                    r#"[{"source_pod":["x"]},{"destination_pod":["x"]},"#,
                    r#"{"verdict":["DROPPED"]},{"uuid":["u"]}]"#
                )
                .into(),
                r#"[{"source_label":["k8s:app=noisy"]}]"#.into()
            )
        );
        let err = request_error(&["--allowlist", r#"{"sourc_pod":["x"]}"#]);
        assert!(
            err.contains("--allowlist") && err.contains("unknown field `sourc_pod`"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn print_raw_filters_prints_yaml_and_exits() {
        let ran = run_args(&[
            "--print-raw-filters",
            "--not",
            "-n",
            "kube-system",
            "--verdict",
            "DROPPED",
        ])
        .await;
        assert_eq!(
            ran.ok(),
            concat!(
                "allowlist:\n",
                "    - '{\"verdict\":[\"DROPPED\"]}'\n",
                "denylist:\n",
                "    - '{\"source_pod\":[\"kube-system/\"]}'\n",
                "    - '{\"destination_pod\":[\"kube-system/\"]}'\n"
            )
        );
        assert_eq!(run_args(&["--print-raw-filters"]).await.ok(), "{}\n");
    }

    #[test]
    fn help_explains_the_semantics() {
        let err = try_parse(&["--help"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
        let help = err.to_string();
        for want in [
            "How filters combine",
            "Repeating a flag ORs its values",
            "--not --namespace kube-system",
            "-l, --label <SELECTOR>",
            "-t, --type <TYPE[:SUBTYPE]>",
            "--aggregate-by <KEYS>",
            "flowscope observe -f --verdict DROPPED",
        ] {
            assert!(help.contains(want), "missing {want:?} in:\n{help}");
        }
    }
}

mod output {
    use super::*;

    #[tokio::test]
    async fn compact_matches_hubble() {
        assert_eq!(replay(&[]).await.ok(), golden("compact.txt"));
    }

    #[tokio::test]
    async fn compact_with_node_and_policy_names() {
        let ran = replay(&["--print-node-name", "--print-policy-names"]).await;
        assert_eq!(ran.ok(), golden("compact-names.txt"));
    }

    #[tokio::test]
    async fn compact_in_color() {
        let ran = replay(&["--color", "always", "--first", "1"]).await;
        assert_eq!(
            ran.ok(),
            "Jun  1 10:00:00.123: \x1b[36mshop/frontend-7d4b9c-x2x8z:\x1b[33m43210\x1b[0m\x1b[0m \
             \x1b[35m(ID:12345)\x1b[0m -> \x1b[36mshop/backend-5f6d7-abcde:\x1b[33m8080\x1b[0m\
             \x1b[0m \x1b[35m(ID:23456)\x1b[0m to-endpoint \x1b[32mFORWARDED\x1b[0m \
             (TCP Flags: SYN)\n"
        );
        // auto: only on a terminal.
        assert!(!replay(&["--color", "auto"]).await.ok().contains('\x1b'));
    }

    #[tokio::test]
    async fn dict_matches_hubble() {
        assert_eq!(replay(&["-o", "dict"]).await.ok(), golden("dict.txt"));
    }

    #[tokio::test]
    async fn table_matches_hubble() {
        assert_eq!(replay(&["-o", "table"]).await.ok(), golden("table.txt"));
        let ran = replay(&["-o", "tab", "--print-node-name", "--last", "2"]).await;
        assert_eq!(ran.ok(), golden("table-node.txt"));
    }

    #[tokio::test]
    async fn table_is_refused_when_following() {
        let ran = run_args(&["-o", "table", "-f"]).await;
        assert!(
            ran.error()
                .starts_with("-o table cannot be used with --follow")
        );
    }

    #[tokio::test]
    async fn jsonpb_reproduces_the_input_and_json_is_its_alias() {
        assert_eq!(replay(&["-o", "jsonpb"]).await.ok(), FLOWS);
        assert_eq!(replay(&["-o", "json"]).await.ok(), FLOWS);
        assert_eq!(replay(&["-o", "JSON"]).await.ok(), FLOWS);
    }

    #[tokio::test]
    async fn numeric_shows_addresses() {
        let ran = replay(&["--numeric", "--first", "1"]).await;
        assert_eq!(
            ran.ok(),
            "Jun  1 10:00:00.123: 10.0.1.5:43210 (ID:12345) -> 10.0.2.9:8080 (ID:23456) \
             to-endpoint FORWARDED (TCP Flags: SYN)\n"
        );
        let ran = replay(&["--ip-translation=false", "--first", "1"]).await;
        assert!(ran.ok().starts_with("Jun  1 10:00:00.123: 10.0.1.5:43210 "));
    }

    #[tokio::test]
    async fn time_formats() {
        let first_time = |format: &'static str| async move {
            let ran = replay(&["--time-format", format, "--first", "1"]).await;
            ran.ok().split(": ").next().unwrap().to_owned()
        };
        assert_eq!(first_time("StampMilli").await, "Jun  1 10:00:00.123");
        assert_eq!(first_time("yearmonthday").await, "2024-06-01");
        assert_eq!(first_time("YearMonthDayHour").await, "2024-06-01T10Z");
        assert_eq!(
            first_time("YearMonthDayHourMinute").await,
            "2024-06-01T10:00Z"
        );
        assert_eq!(first_time("RFC3339").await, "2024-06-01T10:00:00Z");
        assert_eq!(first_time("RFC3339Milli").await, "2024-06-01T10:00:00.123Z");
        assert_eq!(
            first_time("RFC3339Micro").await,
            "2024-06-01T10:00:00.123456Z"
        );
        assert_eq!(
            first_time("RFC3339Nano").await,
            "2024-06-01T10:00:00.123456789Z"
        );
        assert_eq!(
            first_time("RFC1123Z").await,
            "Sat, 01 Jun 2024 10:00:00 +0000"
        );
        let err = try_parse(&["--time-format", "iso"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("expected one of StampMilli, YearMonthDay"),
            "{err}"
        );
    }

    #[test]
    fn go_fraction_layouts_drop_trailing_zeros() {
        use super::super::format::TimeFormat;
        let mut out = String::new();
        TimeFormat::Rfc3339Nano.write(&mut out, Some(ts("2024-06-01T10:00:00.120Z")));
        out.push(' ');
        TimeFormat::Rfc3339Milli.write(&mut out, Some(ts("2024-06-01T10:00:00.000900Z")));
        out.push(' ');
        TimeFormat::StampMilli.write(&mut out, Some(ts("2024-12-24T23:59:59.999999Z")));
        out.push(' ');
        TimeFormat::StampMilli.write(&mut out, None);
        assert_eq!(
            out,
            "2024-06-01T10:00:00.12Z 2024-06-01T10:00:00Z Dec 24 23:59:59.999 N/A"
        );
    }

    #[test]
    fn hosts_identities_types_and_escaping() {
        use super::super::format::{Side, Style, TimeFormat, write_flow_type, write_host};
        use flowscope_model::Flow;
        let style = Style {
            color: false,
            ip_translation: true,
            time_format: TimeFormat::StampMilli,
            node_name: false,
            policy_names: false,
        };
        let flow: Flow = serde_json::from_str(
            r#"{"IP":{"source":"fd00::1","destination":"2001:db8::2"},
                "l4":{"TCP":{"source_port":443,"destination_port":0}},
                "destination":{"pod_name":"evil\u001b[2Jpod\r"},
                "event_type":{"type":1,"sub_type":250}}"#,
        )
        .unwrap();
        let mut out = String::new();
        write_host(&mut out, &style, &flow, Side::Source);
        out.push(' ');
        write_host(&mut out, &style, &flow, Side::Destination);
        out.push(' ');
        write_flow_type(&mut out, &flow);
        assert_eq!(out, "[fd00::1]:443 evil^[[2Jpod\\r 250, 0");

        let mut out = String::new();
        for json in [
            r#"{"event_type":{"type":4,"sub_type":101}}"#,
            r#"{"event_type":{"type":7},"sock_xlate_point":"SOCK_XLATE_POINT_PRE_DIRECTION_FWD"}"#,
            r#"{"event_type":{"type":3},"debug_capture_point":"DBG_CAPTURE_DELIVERY"}"#,
            r#"{"event_type":{"type":5},"policy_match_type":0}"#,
            r#"{"event_type":{"type":1,"sub_type":0}}"#,
            r#"{}"#,
            r#"{"l7":{"type":"REQUEST","dns":{"query":"a."}}}"#,
            r#"{"l7":{"type":"SAMPLE"}}"#,
        ] {
            write_flow_type(&mut out, &serde_json::from_str(json).unwrap());
            out.push('|');
        }
        assert_eq!(
            out,
            "101|pre-xlate-fwd|DBG_CAPTURE_DELIVERY|policy-verdict:none \
             TRAFFIC_DIRECTION_UNKNOWN|Success|UNKNOWN|dns-request |l7-sample|"
        );
    }

    #[tokio::test]
    async fn summaries_fall_back_to_hubbles_parsers() {
        let dir =
            std::env::temp_dir().join(format!("flowscope-cli-summary-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("flows.json");
        std::fs::write(
            &file,
            concat!(
                r#"{"time":"2024-06-01T10:00:00Z","IP":{"source":"1.1.1.1","destination":"2.2.2.2"},"l4":{"TCP":{"source_port":1,"destination_port":2,"flags":{"ACK":true,"SYN":true}}},"event_type":{"type":4,"sub_type":3},"is_reply":false}"#,
                "\n",
                r#"{"time":"2024-06-01T10:00:00Z","IP":{"source":"1.1.1.1","destination":"2.2.2.2"},"l4":{"UDP":{"source_port":1,"destination_port":53}},"l7":{"type":"REQUEST","dns":{"query":"a.example.","qtypes":["A","AAAA"]}},"is_reply":false}"#,
                "\n",
                r#"{"time":"2024-06-01T10:00:00Z","IP":{"source":"1.1.1.1","destination":"2.2.2.2"},"l7":{"type":"RESPONSE","dns":{"query":"b.example.","rcode":3,"qtypes":["A"]}},"auth_type":"SPIRE","ip_trace_id":{"trace_id":"9"}}"#,
                "\n",
            ),
        )
        .unwrap();
        let ran = run_args(&["--input-file", file.to_str().unwrap()]).await;
        assert_eq!(
            ran.ok(),
            "Jun  1 10:00:00.000: 1.1.1.1:1 (unknown) -> 2.2.2.2:2 (unknown) to-stack \
             VERDICT_UNKNOWN (TCP Flags: SYN, ACK)\n\
             Jun  1 10:00:00.000: 1.1.1.1:1 (unknown) -> 2.2.2.2:53 (unknown) dns-request  \
             VERDICT_UNKNOWN (DNS Query a.example. A,AAAA)\n\
             Jun  1 10:00:00.000: 1.1.1.1 (unknown) <> 2.2.2.2 (unknown) dns-response  \
             VERDICT_UNKNOWN (IP Trace ID: 9; DNS Answer RCode: Non-Existent Domain TTL: 0 \
             (Query b.example. A); Auth: SPIRE)\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_closed_stdout_ends_quietly() {
        let err = Capture::default();
        let io = Output {
            out: Box::new(ClosedPipe),
            err: Box::new(err.clone()),
        };
        let argv = ["--input-file", FLOWS_PATH];
        let result = run(parse(&argv), io, env(), std::future::pending()).await;
        assert_eq!(
            format!("{:?}", result.unwrap()),
            format!("{:?}", ExitCode::SUCCESS)
        );
        assert_eq!(err.text(), "");
    }
}

mod input_file {
    use super::*;

    fn write_temp(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("flowscope-cli-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("in.json");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[tokio::test]
    async fn jsonpb_round_trip_keeps_every_flow() {
        // Print the flows as jsonpb, read that back, print again: same bytes, same flows.
        let first = replay(&["-o", "jsonpb"]).await.ok().to_owned();
        let path = write_temp("round-trip", &first);
        let ran = run_args(&["--input-file", path.to_str().unwrap(), "-o", "jsonpb"]).await;
        assert_eq!(ran.ok(), first);
        let parse = |text: &str| -> Vec<flowscope_model::GetFlowsResponse> {
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        assert_eq!(parse(ran.ok()), parse(FLOWS));
        assert_eq!(parse(ran.ok()).len(), 9);
    }

    #[tokio::test]
    async fn bare_flows_and_other_events_are_read() {
        let flow_line = FLOWS.lines().next().unwrap();
        let envelope: serde_json::Value = serde_json::from_str(flow_line).unwrap();
        let bare = envelope["flow"].to_string();
        let text = format!(
            "\n{bare}\n{{\"agent_event\":{{\"type\":\"AGENT_STARTED\"}},\"time\":\"2024-06-01T10:00:00Z\"}}\n   \n{flow_line}\n"
        );
        let path = write_temp("bare", &text);
        let ran = run_args(&["--input-file", path.to_str().unwrap(), "-o", "jsonpb"]).await;
        // The bare flow gets the envelope Hubble puts around a flow.
        assert_eq!(ran.ok(), format!("{flow_line}\n{flow_line}\n"));
    }

    #[tokio::test]
    async fn bad_lines_are_errors_with_their_line_number() {
        let good = FLOWS.lines().next().unwrap();
        for (text, want) in [
            (
                format!("{good}\n\n{{not json\n"),
                ":3: not JSON: key must be a string",
            ),
            (format!("{good}\n[1,2]\n"), ":2: not a JSON object"),
            ("{\"foo\":1}\n".to_owned(), ":1: neither a GetFlowsResponse"),
            (
                "{\"flow\":{\"l4\":{\"TCP\":{},\"UDP\":{}}}}\n".to_owned(),
                ":1: not a valid GetFlowsResponse: l4 sets more than one",
            ),
        ] {
            let path = write_temp("bad", &text);
            let ran = run_args(&["--input-file", path.to_str().unwrap()]).await;
            let err = ran.error();
            assert!(
                err.starts_with(path.to_str().unwrap()) && err.contains(want),
                "{text:?}: {err}"
            );
        }
        // What was read before the bad line is printed.
        let path = write_temp("partial", &format!("{good}\n{{not json\n"));
        let ran = run_args(&["--input-file", path.to_str().unwrap()]).await;
        assert_eq!(ran.out.lines().count(), 1);
        let ran = run_args(&["--input-file", "/nonexistent/flows.json"]).await;
        assert!(
            ran.error()
                .starts_with("cannot open --input-file /nonexistent/flows.json: ")
        );
    }

    #[tokio::test]
    async fn filters_and_selectors_apply_to_files() {
        let times = |ran: &Ran| -> Vec<String> {
            ran.ok()
                .lines()
                .map(|l| l.split(": ").next().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            times(&replay(&["--verdict", "DROPPED"]).await),
            ["Jun  1 10:00:01.500", "Jun  1 10:00:04.000 EVENTS LOST"]
        );
        assert_eq!(
            times(&replay(&["--not", "--pod", "shop/frontend", "-t", "l7"]).await).len(),
            1,
            "only the lost event: every L7 flow involves the frontend"
        );
        assert_eq!(
            times(&replay(&["--protocol", "dns", "--to-pod", "shop/"]).await),
            ["Jun  1 10:00:02.000", "Jun  1 10:00:04.000 EVENTS LOST"]
        );
        assert_eq!(
            times(&replay(&["--first", "2"]).await),
            ["Jun  1 10:00:00.123", "Jun  1 10:00:00.124"]
        );
        assert_eq!(
            times(&replay(&["--last", "2"]).await),
            [
                "Jun  1 10:00:02.260",
                "Jun  1 10:00:03.000",
                "Jun  1 10:00:04.000 EVENTS LOST"
            ]
        );
        assert_eq!(
            times(
                &replay(&[
                    "--since",
                    "2024-06-01T10:00:02Z",
                    "--until",
                    "2024-06-01T10:00:02.250Z"
                ])
                .await
            ),
            ["Jun  1 10:00:02.000", "Jun  1 10:00:02.250"]
        );
        assert_eq!(
            times(&replay(&["--node-name", "node-2"]).await),
            ["Jun  1 10:00:01.750", "Jun  1 10:00:04.000 EVENTS LOST"]
        );
        assert_eq!(
            times(&replay(&["--http-status", "5+"]).await),
            ["Jun  1 10:00:02.260", "Jun  1 10:00:04.000 EVENTS LOST"]
        );
    }
}

mod aggregation {
    use super::*;

    #[tokio::test]
    async fn counts_per_key_sorted_by_count() {
        let ran = replay(&["--aggregate-by", "src-pod,dst-pod,verdict"]).await;
        assert_eq!(
            ran.ok(),
            concat!(
                "SRC-POD                                DST-POD                      VERDICT     COUNT\n",
                "shop/frontend-7d4b9c-x2x8z             shop/backend-5f6d7-abcde     FORWARDED   3\n",
                "shop/backend-5f6d7-abcde               shop/frontend-7d4b9c-x2x8z   FORWARDED   2\n",
                "kube-system/coredns-5d78c9869d-abcde   shop/frontend-7d4b9c-x2x8z   FORWARDED   1\n",
                "shop/frontend-7d4b9c-x2x8z             -                            FORWARDED   1\n",
                "shop/web-6b8f9-qwert                   db/postgres-0                DROPPED     1\n",
            )
        );
        assert_eq!(ran.err, "8 flows in 5 groups, 5 events lost\n");
    }

    #[tokio::test]
    async fn json_counts_and_other_keys() {
        let ran = replay(&["--aggregate-by", "protocol,dst-port", "-o", "json"]).await;
        assert_eq!(
            ran.ok(),
            concat!(
                "{\"protocol\":\"tcp\",\"dst-port\":\"8080\",\"count\":2}\n",
                "{\"protocol\":\"dns\",\"dst-port\":\"40000\",\"count\":1}\n",
                "{\"protocol\":\"http\",\"dst-port\":\"43300\",\"count\":1}\n",
                "{\"protocol\":\"http\",\"dst-port\":\"8080\",\"count\":1}\n",
                "{\"protocol\":\"icmpv4\",\"dst-port\":\"-\",\"count\":1}\n",
                "{\"protocol\":\"tcp\",\"dst-port\":\"43210\",\"count\":1}\n",
                "{\"protocol\":\"tcp\",\"dst-port\":\"5432\",\"count\":1}\n",
            )
        );
        let ran = replay(&[
            "--aggregate-by",
            "dst,dst-identity,drop-reason,policy,type",
            "--verdict",
            "DROPPED",
        ])
        .await;
        assert!(
            ran.ok().contains(
                "db/postgres-0   4242           POLICY_DENIED   shop/deny-db   Policy denied   1\n"
            ),
            "{}",
            ran.out
        );
    }

    #[test]
    fn unknown_keys_are_refused_with_the_valid_ones() {
        let err = try_parse(&["--aggregate-by", "src-pod,color"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(r#"unknown key "color"; valid keys: src, dst, src-pod"#),
            "{err}"
        );
    }
}

mod remote_stream {
    use super::*;
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio::net::TcpListener;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    enum Step {
        Send(String),
        Close(u16, &'static str),
        /// Send a ping and report when the client's pong arrives: the client has handled
        /// every message before the ping by then.
        Sync(tokio::sync::oneshot::Sender<()>),
        /// Keep the connection open until the client closes it.
        Hold,
    }

    /// A one-connection observer on flowscope's WebSocket: returns its `ws://` address and the
    /// request it received.
    async fn fake_observer(steps: Vec<Step>) -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("ws://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let request = match ws.next().await {
                Some(Ok(Message::Text(t))) => t.to_string(),
                other => panic!("expected a text request, got {other:?}"),
            };
            for step in steps {
                match step {
                    Step::Send(line) => ws.send(Message::text(line)).await.unwrap(),
                    Step::Close(code, reason) => {
                        ws.send(Message::Close(Some(CloseFrame {
                            code: CloseCode::from(code),
                            reason: reason.into(),
                        })))
                        .await
                        .unwrap();
                    }
                    Step::Sync(done) => {
                        ws.send(Message::Ping("sync".into())).await.unwrap();
                        while let Some(Ok(message)) = ws.next().await {
                            if matches!(message, Message::Pong(_)) {
                                break;
                            }
                        }
                        let _ = done.send(());
                    }
                    Step::Hold => while let Some(Ok(_)) = ws.next().await {},
                }
            }
            request
        });
        (addr, task)
    }

    fn flow_steps() -> Vec<Step> {
        let mut steps: Vec<Step> = FLOWS.lines().map(|l| Step::Send(l.to_owned())).collect();
        steps.push(Step::Close(1000, "end of flows"));
        steps
    }

    #[tokio::test]
    async fn streams_flows_and_prints_them() {
        let (addr, server) = fake_observer(flow_steps()).await;
        let ran = run_args(&["--server", &addr, "--not", "-n", "kube-system"]).await;
        assert_eq!(ran.ok(), golden("compact.txt"));
        assert_eq!(
            server.await.unwrap(),
            concat!(
                r#"{"number":"20","blacklist":[{"source_pod":["kube-system/"]},"#,
                r#"{"destination_pod":["kube-system/"]}]}"#
            )
        );
    }

    #[tokio::test]
    async fn jsonpb_lines_pass_through_and_node_status_goes_to_stderr() {
        let mut steps = flow_steps();
        steps.insert(
            1,
            Step::Send(
                r#"{"node_status":{"state_change":"NODE_UNAVAILABLE","node_names":["a","b"]},"node_name":"relay","time":"2024-06-01T10:00:00Z"}"#
                    .into(),
            ),
        );
        steps.insert(
            1,
            Step::Send(
                r#"{"node_status":{"state_change":"NODE_CONNECTED","node_names":["c"]},"node_name":"relay","time":"2024-06-01T10:00:00Z"}"#
                    .into(),
            ),
        );
        let (addr, _server) = fake_observer(steps).await;
        let ran = run_args(&["--server", &addr, "-o", "jsonpb"]).await;
        assert_eq!(ran.ok(), FLOWS);
        assert_eq!(
            ran.err,
            "{\"node_status\":{\"state_change\":\"NODE_UNAVAILABLE\",\"node_names\":[\"a\",\"b\"]},\"node_name\":\"relay\",\"time\":\"2024-06-01T10:00:00Z\"}\n"
        );
        let (addr, _server) = fake_observer(vec![
            Step::Send(
                r#"{"node_status":{"state_change":"NODE_ERROR","node_names":["a"],"message":"boom"},"node_name":"relay","time":"2024-06-01T10:00:00Z"}"#
                    .into(),
            ),
            Step::Close(1000, ""),
        ])
        .await;
        let ran = run_args(&["--server", &addr]).await;
        assert_eq!(ran.ok(), "");
        assert_eq!(
            ran.err,
            "Jun  1 10:00:00.000 [relay]: Error \"boom\" on 1 nodes: a\n"
        );
    }

    #[tokio::test]
    async fn a_refused_request_is_an_error_with_the_observers_message() {
        let (addr, _server) = fake_observer(vec![
            Step::Send(
                r#"{"error":{"code":"INVALID_ARGUMENT","message":"invalid request: whitelist[0].source_ip[0]: \"x\" is not an IP address or CIDR"}}"#
                    .into(),
            ),
            Step::Close(1007, "invalid request: whitelist[0].source_ip[0]..."),
        ])
        .await;
        let ran = run_args(&["--server", &addr]).await;
        assert_eq!(
            ran.error(),
            r#"the observer refused the request: invalid request: whitelist[0].source_ip[0]: "x" is not an IP address or CIDR"#
        );
        // A close with 1007 and no error line still says why.
        let (addr, _server) = fake_observer(vec![Step::Close(1007, "too slow")]).await;
        assert_eq!(
            run_args(&["--server", &addr]).await.error(),
            "the observer refused the request: too slow"
        );
        let (addr, _server) =
            fake_observer(vec![Step::Close(1001, "observer shutting down")]).await;
        assert_eq!(
            run_args(&["--server", &addr]).await.error(),
            format!("the observer at {addr} closed the stream: observer shutting down (code 1001)")
        );
    }

    #[tokio::test]
    async fn servers_are_named_by_what_hubble_accepts() {
        let err = run_args(&["--server", "unix:///var/run/cilium/hubble.sock"])
            .await
            .error();
        assert!(
            err.contains("`unix://` is not supported") && err.contains("tls://HOST:PORT"),
            "{err}"
        );
        // TLS without a CA to check the server against says which flag gives one.
        let err = run_args(&["--server", "tls://127.0.0.1:1"]).await.error();
        assert!(err.contains("--tls-ca-cert-files"), "{err}");
        let err = super::try_parse(&["--tls-client-cert-file", "c.pem"]).unwrap_err();
        assert!(err.to_string().contains("--tls-client-key-file"), "{err}");
    }

    #[tokio::test]
    async fn an_unreachable_observer_is_one_clear_line() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let err = run_args(&["--server", &addr]).await.error();
        assert!(
            err.starts_with(&format!("cannot reach the observer at {addr}: "))
                && err.ends_with(
                    "(is `flowscope observer` running? set --server or FLOWSCOPE_SERVER)"
                )
                && !err.contains('\n'),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_server_that_is_not_an_observer_is_named() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("ws://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = tcp.read(&mut buf).await;
            let _ = tcp
                .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                .await;
        });
        let err = run_args(&["--server", &addr]).await.error();
        assert!(
            err.starts_with(&format!(
                "the server at {addr} is not a flowscope observer: it answered HTTP 404"
            )),
            "{err}"
        );
    }

    #[tokio::test]
    async fn ctrl_c_ends_a_follow_cleanly_after_printing_what_arrived() {
        let mut steps: Vec<Step> = FLOWS
            .lines()
            .take(3)
            .map(|l| Step::Send(l.to_owned()))
            .collect();
        steps.push(Step::Hold);
        let (addr, server) = fake_observer(steps).await;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let interrupt = async move {
            let _ = rx.await;
        };
        let out = Capture::default();
        let io = Output {
            out: Box::new(out.clone()),
            err: Box::new(Capture::default()),
        };
        let running = tokio::spawn(run(parse(&["--server", &addr, "-f"]), io, env(), interrupt));
        // Wait until the three flows are printed, then press Ctrl-C.
        for _ in 0..200 {
            if out.text().lines().count() == 3 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(out.text().lines().count(), 3, "{}", out.text());
        tx.send(()).unwrap();
        let result = running.await.unwrap();
        assert_eq!(
            format!("{:?}", result.unwrap()),
            format!("{:?}", ExitCode::SUCCESS)
        );
        assert_eq!(
            server.await.unwrap(),
            r#"{"follow":true}"#,
            "the server saw the client leave"
        );
        let compact = golden("compact.txt");
        let want: Vec<&str> = compact.lines().take(3).collect();
        assert_eq!(out.text().lines().collect::<Vec<_>>(), want);
    }

    /// Stdout as a BufWriter: written bytes become visible on flush only.
    #[derive(Clone, Default)]
    struct Buffered {
        pending: Arc<Mutex<Vec<u8>>>,
        visible: Capture,
        flushes: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Write for Buffered {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.pending.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            let pending = std::mem::take(&mut *self.pending.lock().unwrap());
            self.visible.write_all(&pending)?;
            self.flushes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
    }

    #[tokio::test]
    async fn output_is_flushed_when_idle_not_per_line() {
        const FLOWS_SENT: usize = 3000;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("ws://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let _request = ws.next().await;
            let line = FLOWS.lines().next().unwrap();
            for _ in 0..FLOWS_SENT {
                ws.feed(Message::text(line)).await.unwrap();
            }
            ws.flush().await.unwrap();
            while let Some(Ok(_)) = ws.next().await {}
        });
        let out = Buffered::default();
        let io = Output {
            out: Box::new(out.clone()),
            err: Box::new(Capture::default()),
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(run(
            parse(&["--server", &addr, "-f"]),
            io,
            env(),
            async move {
                let _ = rx.await;
            },
        ));
        // Everything becomes visible while the stream is still open...
        for _ in 0..500 {
            if out.visible.text().lines().count() == FLOWS_SENT {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(out.visible.text().lines().count(), FLOWS_SENT);
        // ...written in blocks, not a flush per line.
        let flushes = out.flushes.load(std::sync::atomic::Ordering::Relaxed);
        assert!(flushes < FLOWS_SENT / 10, "{flushes} flushes");
        tx.send(()).unwrap();
        running.await.unwrap().unwrap();
    }

    /// Serves one HTTP response with `body` on a plain socket.
    fn status_server(body: &'static str) -> String {
        use std::io::Read as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let (mut tcp, _) = listener.accept().unwrap();
            let mut buf = [0u8; 2048];
            let _ = tcp.read(&mut buf);
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{body}",
                body.len()
            );
            tcp.write_all(response.as_bytes()).unwrap();
        });
        addr
    }

    #[test]
    fn an_empty_result_is_explained_from_the_status_endpoint() {
        let addr = status_server(
            r#"{"num_flows":4095,"max_flows":4095,"oldest_flow_time":"2024-06-01T09:00:00Z","newest_flow_time":"2024-06-01T10:00:00Z"}"#,
        );
        assert_eq!(
            super::super::remote::empty_result_hint(&addr, Some(ts("2024-06-01T11:00:00Z"))),
            Some(format!(
                "no flows matched; the observer at {addr} holds 4095 flows from \
                 2024-06-01T09:00:00Z to 2024-06-01T10:00:00Z; --since is after the newest"
            ))
        );
        let addr = status_server(r#"{"num_flows":0,"max_flows":4095}"#);
        assert_eq!(
            super::super::remote::empty_result_hint(&addr, None),
            Some(format!(
                "no flows: the observer at {addr} has not stored any flow yet"
            ))
        );
    }

    #[test]
    fn observe_can_run_on_any_runtime_thread() {
        fn assert_send<T: Send>(_: &T) {}
        let future = crate::observe(parse(&[]));
        assert_send(&future);
    }

    #[tokio::test]
    async fn a_live_aggregate_prints_final_counts_on_ctrl_c() {
        let (synced, handled) = tokio::sync::oneshot::channel::<()>();
        let mut steps: Vec<Step> = FLOWS.lines().map(|l| Step::Send(l.to_owned())).collect();
        steps.push(Step::Sync(synced));
        steps.push(Step::Hold);
        let (addr, _server) = fake_observer(steps).await;
        let out = Capture::default();
        let io = Output {
            out: Box::new(out.clone()),
            err: Box::new(Capture::default()),
        };
        // Ctrl-C once every flow has been counted.
        let running = tokio::spawn(run(
            parse(&["--server", &addr, "-f", "--aggregate-by", "verdict"]),
            io,
            env(),
            async move {
                let _ = handled.await;
            },
        ));
        running.await.unwrap().unwrap();
        let text = out.text();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("VERDICT     COUNT"));
        assert_eq!(lines.next(), Some("FORWARDED   7"));
        assert_eq!(lines.next(), Some("DROPPED     1"));
        let footer = lines.next().unwrap();
        assert!(
            footer.ends_with(": 8 flows in 2 groups, 5 events lost"),
            "{footer}"
        );
        assert_eq!(lines.next(), None);
    }
}
