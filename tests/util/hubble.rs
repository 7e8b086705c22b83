//! A Hubble gRPC client as Hubble's users build theirs: Python modules protoc and grpcio's
//! plugin (Debian's) generate from the vendored protos, and `tests/grpc/hubble_client.py`.

use std::{net::SocketAddr, process::Command};

use serde_json::Value;

use super::TempDir;

const PROTOS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/proto/hubble");
const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc/hubble_client.py");
/// Debian's Python, which has grpcio and protobuf (`scripts/setup.sh` installs them).
const PYTHON: &str = "/usr/bin/python3";

/// A Hubble client: the Python modules protoc generates from the vendored protos, in a
/// directory removed with it, and the script that uses them.
pub struct Hubble(TempDir);

impl Hubble {
    pub fn generate() -> Hubble {
        let dir = TempDir::new("fs-grpc-stubs");
        let protoc = Command::new("protoc")
            .current_dir(PROTOS)
            .args([
                "-I",
                ".",
                &format!("--python_out={}", dir.display()),
                &format!("--grpc_out={}", dir.display()),
                "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin",
                "flow/flow.proto",
                "observer/observer.proto",
                "peer/peer.proto",
                "relay/relay.proto",
            ])
            .output()
            .expect("protoc (scripts/setup.sh installs protobuf-compiler-grpc)");
        assert!(
            protoc.status.success(),
            "{}",
            String::from_utf8_lossy(&protoc.stderr)
        );
        Hubble(dir)
    }

    pub fn command(&self, server: SocketAddr, args: &[&str]) -> Command {
        let mut cmd = Command::new(PYTHON);
        cmd.arg(CLIENT)
            .arg(server.to_string())
            .args(args)
            .env("PYTHONPATH", &*self.0);
        cmd
    }

    /// What the client printed, one JSON value per line; `Err` holds its error object.
    pub fn call(&self, server: SocketAddr, args: &[&str]) -> Result<Vec<Value>, Value> {
        self.call_with(server, args, &[])
    }

    /// As [`Hubble::call`], with environment variables (the client's `HUBBLE_TLS_*`).
    pub fn call_with(
        &self,
        server: SocketAddr,
        args: &[&str],
        env: &[(&str, String)],
    ) -> Result<Vec<Value>, Value> {
        let out = self
            .command(server, args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run the Python Hubble client");
        let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        match out.status.code() {
            Some(0) => Ok(lines),
            Some(3) => Err(lines.last().cloned().unwrap_or_default()["error"].clone()),
            _ => panic!(
                "the client failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
}
