//! Between Hubble's messages and flowscope's model. Both read and write Hubble's JSON
//! (protojson's mapping, which pbjson generates for the messages), so they convert through it:
//! no field-by-field code to drift from either side.

use flowscope_model::{GetFlowsRequest, GetFlowsResponse};
use serde_json::Value;

use crate::{Encoded, observer as proto};

/// The model's request as Hubble's message. A field mask's paths are set as they are written
/// (protojson's lowerCamelCase form cannot spell a path through `UDP`).
pub fn request_to_proto(request: &GetFlowsRequest) -> Result<proto::GetFlowsRequest, String> {
    let cannot = |e: serde_json::Error| format!("cannot encode the request: {e}");
    let mut json = serde_json::to_value(request).map_err(cannot)?;
    let mask = json
        .as_object_mut()
        .and_then(|o| o.remove("field_mask").or_else(|| o.remove("experimental")));
    let mut message: proto::GetFlowsRequest = serde_json::from_value(json).map_err(cannot)?;
    if let Some(mask) = mask {
        let paths = match mask.get("field_mask").unwrap_or(&mask) {
            Value::String(s) => s.split(',').map(str::to_string).collect(),
            other => other["paths"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect(),
        };
        message.field_mask = Some(pbjson_types::FieldMask { paths });
    }
    Ok(message)
}

/// Hubble's request as the JSON text the model reads (a server then checks it as it checks a
/// WebSocket's request, with the same messages).
pub fn request_json(request: &proto::GetFlowsRequest) -> Result<String, String> {
    let mut json = serde_json::to_value(request).map_err(|e| format!("invalid request: {e}"))?;
    if let Some(object) = json.as_object_mut() {
        // protojson writes a mask's paths in lowerCamelCase; the model reads the protos' own
        // names, as the WebSocket's clients send them. (`experimental.field_mask` is reserved
        // in the protos since Cilium 1.15: clients send `field_mask`.)
        if let Some(mask) = &request.field_mask {
            object.insert("field_mask".into(), Value::from(mask.paths.join(",")));
        }
    }
    Ok(json.to_string())
}

/// A response as the JSON line flowscope's WebSocket sends (`hubble observe -o json`).
pub fn response_line(response: &proto::GetFlowsResponse) -> Result<String, String> {
    let bad = |e: serde_json::Error| format!("a GetFlowsResponse flowscope cannot read: {e}");
    let value = serde_json::to_value(response).map_err(bad)?;
    let response: GetFlowsResponse = serde_json::from_value(value).map_err(bad)?;
    serde_json::to_string(&response.as_ref()).map_err(bad)
}

/// A JSON response line as Hubble's message, encoded.
pub fn line_to_encoded(line: &str) -> Result<Encoded, String> {
    serde_json::from_str::<proto::GetFlowsResponse>(line)
        .map(|r| Encoded::new(&r))
        .map_err(|e| format!("a flow that does not convert to flow.proto: {e}"))
}
