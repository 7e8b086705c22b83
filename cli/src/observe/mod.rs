//! `flowscope observe`: Hubble's `hubble observe` against a flowscope observer.
//!
//! The data path: `args` (the flags) → `request` (selectors, and `filters` for the
//! whitelist/blacklist) → a GetFlowsRequest sent by `remote` over Hubble's gRPC API (`grpc`)
//! or the observer's WebSocket,
//! or replayed locally over a saved file by `input` → each response into a `sink`: the
//! `printer` (compact, dict, table, json) built from `format` pieces, or the
//! `aggregate` counter.

mod aggregate;
mod args;
mod filters;
mod format;
mod grpc;
mod input;
mod printer;
mod remote;
mod request;
mod sink;
mod table;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::io::{self, BufReader, BufWriter, IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, anyhow};
use flowscope_model::Timestamp;

pub use aggregate::AggregateKey;
pub use args::{ColorChoice, ObserveArgs, OutputFormat};
pub use filters::{FilterArg, FilterFlags};
pub use format::TimeFormat;
/// One line of flow JSON as `--input-file` reads it (for the fuzz targets and other readers).
pub use input::parse_line as parse_input_line;

use aggregate::Aggregator;
use format::Style;
use printer::{Output, Printer};
use sink::{Halt, Sink};

/// The local observer, where `--server`, FLOWSCOPE_SERVER and HUBBLE_SERVER are all unset.
pub const DEFAULT_SERVER: &str = "127.0.0.1:4244";

/// Stdout buffer: large enough that a busy stream is written in few system calls.
const OUT_BUFFER: usize = 64 * 1024;
/// Input buffer for `--input-file`.
const IN_BUFFER: usize = 64 * 1024;

/// Runs `flowscope observe` on stdout/stderr until the stream ends or Ctrl-C.
///
/// User errors (bad flags, unreachable observer, refused request, unreadable file) are
/// returned as one-line errors for the binary to print; a closed stdout (`| head`) ends
/// quietly with success.
pub async fn observe(mut args: ObserveArgs) -> anyhow::Result<ExitCode> {
    // Where `hubble observe` would look, when flowscope's own setting is absent.
    if args.server.is_none() {
        args.server = std::env::var("HUBBLE_SERVER")
            .ok()
            .filter(|s| !s.is_empty());
    }
    let env = Env {
        stdout_tty: io::stdout().is_terminal(),
        no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
            || std::env::var_os("TERM").is_some_and(|t| t == "dumb"),
        hints: true,
        now: Timestamp::now(),
    };
    let io = Output {
        out: Box::new(BufWriter::with_capacity(OUT_BUFFER, io::stdout())),
        err: Box::new(io::stderr()),
    };
    let interrupt = async {
        // If the handler cannot be installed, Ctrl-C keeps its default (end the process).
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    run(args, io, env, interrupt).await
}

/// What `observe` takes from the process, fixed in tests.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Env {
    pub stdout_tty: bool,
    /// NO_COLOR is set (or TERM=dumb).
    pub no_color: bool,
    /// Ask the observer's status endpoint why nothing matched.
    pub hints: bool,
    pub now: Timestamp,
}

pub(crate) async fn run(
    args: ObserveArgs,
    mut io: Output,
    env: Env,
    interrupt: impl Future<Output = ()>,
) -> anyhow::Result<ExitCode> {
    let plan = request::build(&args, env.now)?;
    if args.print_raw_filters {
        let yaml = filters::raw_filters_yaml(&plan.lists.whitelist, &plan.lists.blacklist);
        return finish_output(
            io.out
                .write_all(yaml.as_bytes())
                .and_then(|()| io.out.flush()),
        );
    }
    let aggregating = !args.aggregate_by.is_empty();
    if args.output == OutputFormat::Table && plan.request.follow && !aggregating {
        anyhow::bail!(
            "-o table cannot be used with --follow: columns are aligned once all flows are in \
             (use -o compact, or --aggregate-by for a live table)"
        );
    }
    let style = Style {
        color: match args.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => env.stdout_tty && !env.no_color,
        },
        ip_translation: args.ip_translation && !args.numeric,
        time_format: args.time_format,
        node_name: args.print_node_name,
        policy_names: args.print_policy_names,
    };
    let mut sink = if aggregating {
        Sink::Aggregate(Aggregator::new(
            io,
            args.aggregate_by.clone(),
            args.output,
            style,
            plan.request.follow,
            env.stdout_tty,
        ))
    } else {
        Sink::Print(Printer::new(io, args.output, style))
    };

    if let Some(path) = &args.input_file {
        return replay_file(path, plan, sink, interrupt).await;
    }

    let server = args.server.as_deref().unwrap_or(DEFAULT_SERVER);
    let tls = (args.tls
        || args.tls_allow_insecure
        || !args.tls_ca_cert_files.is_empty()
        || args.tls_client_cert_file.is_some())
    .then(|| flowscope_tls::ClientTls {
        cas: args.tls_ca_cert_files.clone(),
        cert: args.tls_client_cert_file.clone(),
        key: args.tls_client_key_file.clone(),
        server_name: args.tls_server_name.clone(),
        insecure: args.tls_allow_insecure,
    });
    let result = remote::stream(
        server,
        tls.as_ref(),
        args.timeout,
        &plan.request,
        &mut sink,
        interrupt,
    )
    .await;
    let result = result.and_then(|end| {
        sink.finish()?;
        Ok(end)
    });
    match result {
        Ok(remote::End::Complete) => {
            if env.hints && !plan.request.follow && sink.flows() == 0 {
                let server = server.to_string();
                let since = plan.request.since;
                let hint =
                    tokio::task::spawn_blocking(move || remote::empty_result_hint(&server, since))
                        .await
                        .ok()
                        .flatten();
                if let Some(hint) = hint {
                    let _ = writeln!(sink.err(), "{hint}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Ok(remote::End::Interrupted) => Ok(ExitCode::SUCCESS),
        Err(halt) => {
            // Show what arrived before the error.
            let _ = sink.finish();
            halted(halt)
        }
    }
}

/// `--input-file`: the file is read on its own thread so a blocking read (a pipe, a
/// terminal) never holds up Ctrl-C, which prints what was read so far.
async fn replay_file(
    path: &std::path::Path,
    plan: request::Plan,
    sink: Sink,
    interrupt: impl Future<Output = ()>,
) -> anyhow::Result<ExitCode> {
    let (reader, source): (Box<dyn io::Read + Send>, String) = if path.as_os_str() == "-" {
        (Box::new(io::stdin()), "stdin".to_owned())
    } else {
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot open --input-file {}", path.display()))?;
        (Box::new(file), path.display().to_string())
    };
    let sink = Arc::new(Mutex::new(sink));
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    {
        let sink = Arc::clone(&sink);
        let stop = Arc::clone(&stop);
        // A plain thread, not spawn_blocking: the runtime would wait for a read on a terminal
        // before it could shut down.
        std::thread::Builder::new()
            .name("observe-input".to_owned())
            .spawn(move || {
                let reader = BufReader::with_capacity(IN_BUFFER, reader);
                let result =
                    input::replay(reader, &source, &plan.request, &plan.filters, &sink, &stop);
                let _ = done_tx.send(result);
            })
            .context("starting the input reader")?;
    }
    let result = tokio::select! {
        done = done_rx => done.unwrap_or_else(|_| Err(Halt::Failed(anyhow!("the input reader stopped")))),
        () = interrupt => {
            stop.store(true, Ordering::Relaxed);
            Ok(())
        }
    };
    let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
    let finished = sink.finish();
    match result {
        Ok(()) => finish_output(finished),
        Err(halt) => halted(halt),
    }
}

fn finish_output(result: io::Result<()>) -> anyhow::Result<ExitCode> {
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => halted(Halt::from(e)),
    }
}

fn halted(halt: Halt) -> anyhow::Result<ExitCode> {
    match halt {
        Halt::Closed => Ok(ExitCode::SUCCESS),
        Halt::Failed(e) => Err(e),
    }
}
