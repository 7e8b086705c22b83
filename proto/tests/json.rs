//! Hubble's JSON (as `hubble observe -o json` writes it, and flowscope with it) reads into the
//! generated types and writes back the same.

use flowscope_proto::observer::GetFlowsResponse;
use serde_json::Value;

/// pbjson writes a timestamp's UTC offset as `+00:00` where Go's protojson writes `Z`: the
/// same instant.
fn zulu(v: &mut Value) {
    match v {
        Value::String(s) if s.ends_with("+00:00") && s.contains('T') => {
            *s = format!("{}Z", &s[..s.len() - 6]);
        }
        Value::Array(items) => items.iter_mut().for_each(zulu),
        Value::Object(map) => map.values_mut().for_each(zulu),
        _ => {}
    }
}

#[test]
fn hubble_json_lines_round_trip_through_the_protos() {
    let lines = include_str!("../../cli/testdata/flows.jsonl");
    let mut read = 0;
    for line in lines.lines().filter(|l| !l.trim().is_empty()) {
        let response: GetFlowsResponse =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let mut back: Value = serde_json::to_value(&response).unwrap();
        zulu(&mut back);
        let want: Value = serde_json::from_str(line).unwrap();
        assert_eq!(back, want, "\n{line}");
        read += 1;
    }
    assert!(read >= 5);
}

#[test]
fn the_time_is_the_instant_written() {
    let response: GetFlowsResponse = serde_json::from_str(
        r#"{"flow":{"time":"2024-06-01T10:00:00.123456789Z","verdict":"DROPPED","drop_reason_desc":"POLICY_DENIED"},"node_name":"n","time":"2024-06-01T10:00:00.123456789Z"}"#,
    )
    .unwrap();
    let time = response.time.unwrap();
    assert_eq!((time.seconds, time.nanos), (1_717_236_000, 123_456_789));
    let Some(flowscope_proto::observer::get_flows_response::ResponseTypes::Flow(flow)) =
        response.response_types
    else {
        panic!("not a flow");
    };
    assert_eq!(flow.verdict, flowscope_proto::flow::Verdict::Dropped as i32);
    assert_eq!(
        flow.drop_reason_desc,
        flowscope_proto::flow::DropReason::PolicyDenied as i32
    );
}

#[test]
fn an_encoded_response_is_the_message_on_the_wire() {
    use prost::Message as _;
    let line = include_str!("../../cli/testdata/flows.jsonl")
        .lines()
        .find(|l| l.starts_with("{\"flow\""))
        .unwrap();
    let response: GetFlowsResponse = serde_json::from_str(line).unwrap();
    let encoded = flowscope_proto::Encoded::new(&response);
    assert_eq!(encoded.encoded_len(), response.encoded_len());
    // What a server sends of it is what a client decodes.
    let sent = encoded.encode_to_vec();
    assert_eq!(GetFlowsResponse::decode(sent.as_slice()).unwrap(), response);
}

#[test]
fn a_responses_head_is_read_without_the_flow() {
    let flow: GetFlowsResponse = serde_json::from_str(
        r#"{"flow":{"time":"2024-06-01T10:00:00.5Z","verdict":"DROPPED"},"node_name":"n","time":"2024-06-01T10:00:00.5Z"}"#,
    )
    .unwrap();
    let head = flowscope_proto::Encoded::new(&flow).head().unwrap();
    assert_eq!(head.kind, flowscope_proto::Kind::Flow);
    assert_eq!(head.time_ns, Some(1_717_236_000_500_000_000));
    assert_eq!(head.lost, 0);
    let lost: GetFlowsResponse = serde_json::from_str(
        r#"{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"12"},"node_name":"n"}"#,
    )
    .unwrap();
    let head = flowscope_proto::Encoded::new(&lost).head().unwrap();
    assert_eq!(
        (head.kind, head.time_ns, head.lost),
        (flowscope_proto::Kind::LostEvents, None, 12)
    );
}
