//! One-shot requests to an observer's HTTP API, for the CLI's list and status commands.

use anyhow::Context as _;
use serde::de::DeserializeOwned;

/// GETs `path` from the observer at `server` (`host:port`) and reads the JSON body as `T` (a
/// body of the API contract, `flowscope_model::api`, or `serde_json::Value` to print it as
/// it came). An unreachable server is one clear line, not a backtrace.
pub fn get_json<T: DeserializeOwned>(server: &str, path: &str) -> anyhow::Result<T> {
    let url = format!("http://{server}{path}");
    let mut response = match ureq::get(&url).call() {
        Ok(r) => r,
        Err(ureq::Error::StatusCode(code)) => {
            anyhow::bail!("the observer at {server} answered {code} for {path}")
        }
        Err(err) => anyhow::bail!(
            "cannot reach the observer at {server}: {err} (is `flowscope observer` or \
             `flowscope demo` running? set --server or FLOWSCOPE_SERVER)"
        ),
    };
    response
        .body_mut()
        .read_json()
        .with_context(|| format!("reading {url}"))
}
