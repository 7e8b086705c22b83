//! Where responses end up: printed flows or aggregated counts, and how output errors stop the
//! command.

use std::io::{self, Write};
use std::time::Duration;

use flowscope_model::GetFlowsResponse;

use super::aggregate::Aggregator;
use super::printer::Printer;

/// Why processing stopped before the stream ended.
#[derive(Debug)]
pub(crate) enum Halt {
    /// Stdout was closed (`| head`): end quietly, as Unix tools do.
    Closed,
    /// An error for the user, printed by the binary as one line.
    Failed(anyhow::Error),
}

impl From<io::Error> for Halt {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Halt::Closed
        } else {
            Halt::Failed(anyhow::anyhow!("cannot write the output: {e}"))
        }
    }
}

impl From<anyhow::Error> for Halt {
    fn from(e: anyhow::Error) -> Self {
        Halt::Failed(e)
    }
}

/// The consumer of responses.
pub(crate) enum Sink {
    Print(Printer),
    Aggregate(Aggregator),
}

impl Sink {
    /// A flow or lost-events JSON line that may be copied unchanged (`-o json/jsonpb`);
    /// returns false when it must be parsed instead.
    pub(crate) fn raw_json_line(&mut self, line: &str, is_flow: bool) -> io::Result<bool> {
        match self {
            Sink::Print(p) if p.passes_json_through() => {
                p.raw_json_line(line, is_flow)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    pub(crate) fn response(&mut self, resp: &GetFlowsResponse) -> io::Result<()> {
        match self {
            Sink::Print(p) => p.response(resp),
            Sink::Aggregate(a) => a.response(resp),
        }
    }

    /// Called when no more input is ready: make what was printed visible.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Print(p) => p.flush(),
            Sink::Aggregate(a) => a.flush(),
        }
    }

    /// The stream ended (or Ctrl-C): print what is held back, flush.
    pub(crate) fn finish(&mut self) -> io::Result<()> {
        match self {
            Sink::Print(p) => p.finish(),
            Sink::Aggregate(a) => a.finish(),
        }
    }

    /// How often [`Sink::tick`] should run while following, if at all.
    pub(crate) fn tick_interval(&self) -> Option<Duration> {
        match self {
            Sink::Print(_) => None,
            Sink::Aggregate(a) => Some(a.interval()),
        }
    }

    pub(crate) fn tick(&mut self) -> io::Result<()> {
        match self {
            Sink::Print(_) => Ok(()),
            Sink::Aggregate(a) => a.tick(),
        }
    }

    /// Flows printed or counted.
    pub(crate) fn flows(&self) -> u64 {
        match self {
            Sink::Print(p) => p.flows,
            Sink::Aggregate(a) => a.flows(),
        }
    }

    /// Stderr.
    pub(crate) fn err(&mut self) -> &mut dyn Write {
        match self {
            Sink::Print(p) => p.err(),
            Sink::Aggregate(a) => a.err(),
        }
    }
}
