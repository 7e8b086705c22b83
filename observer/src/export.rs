//! The flow exporter, as Hubble's static exporter: every new flow that passes the allow and
//! deny lists is appended to a file as a `hubble observe -o json` line (a `GetFlowsResponse`),
//! so history outlives the ring and any tool that reads Hubble's exports reads it. The file is
//! rotated by size, as Hubble does (lumberjack: `name-2006-01-02T15-04-05.000.ext` in UTC), and
//! only the newest backups are kept.
//!
//! It follows the flow store like a subscriber, on a thread of its own so that a slow disk
//! never holds up the API. Work is per batch: one read of the store, one write and flush.
//! Flows the store overwrote before the exporter read them are written as a `lost_events`
//! line (source `HUBBLE_RING_BUFFER`) and counted, as are flows a failed write dropped.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufWriter, Write as _},
    path::{Path, PathBuf},
    sync::Arc,
};

use axum::extract::ws::Utf8Bytes;
pub use flowscope_model::api::ExportStatus;
use flowscope_model::{filter::FilterSet, flow::FieldMask};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::{
    api::{AppState, masked_line},
    event::{Record, ring_lost_line, unix_now_ns},
    pipeline::FlowStore,
};

/// Flows read from the store per batch.
const BATCH: usize = 1024;

/// What `--export-file` and its companions ask for.
#[derive(Clone, Debug)]
pub struct ExportConfig {
    pub path: PathBuf,
    /// Rotate once the file would grow past this.
    pub max_size_bytes: u64,
    /// Rotated files kept; older ones are removed.
    pub max_backups: usize,
    /// `--export-allowlist` / `--export-denylist`, compiled.
    pub filters: FilterSet,
    /// `--export-field-mask`: only these fields of each flow.
    pub mask: Option<FieldMask>,
}

/// An append-only file rotated by size.
struct Rotating {
    path: PathBuf,
    max_size: u64,
    max_backups: usize,
    file: BufWriter<File>,
    size: u64,
    /// The time in the newest backup's name, in ms.
    last_backup_ms: i64,
}

impl Rotating {
    fn open(path: &Path, max_size: u64, max_backups: usize) -> io::Result<Rotating> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Rotating {
            path: path.to_owned(),
            max_size,
            max_backups,
            file: BufWriter::with_capacity(64 * 1024, file),
            size,
            last_backup_ms: 0,
        })
    }

    /// Writes one line, rotating first when it would take the file past its size. A line
    /// longer than the limit goes alone into a fresh file.
    fn write_line(&mut self, line: &[u8]) -> io::Result<bool> {
        let len = line.len() as u64 + 1;
        let mut rotated = false;
        if self.size > 0 && self.size + len > self.max_size {
            self.rotate()?;
            rotated = true;
        }
        self.file.write_all(line)?;
        self.file.write_all(b"\n")?;
        self.size += len;
        Ok(rotated)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        // Names carry the millisecond: a second rotation within one takes the next, so no
        // backup is overwritten and names keep sorting by age.
        let mut at = (unix_now_ns() / 1_000_000).max(self.last_backup_ms + 1);
        let mut backup = backup_name(&self.path, &timestamp(at));
        while backup.exists() {
            at += 1;
            backup = backup_name(&self.path, &timestamp(at));
        }
        self.last_backup_ms = at;
        fs::rename(&self.path, &backup)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.file = BufWriter::with_capacity(64 * 1024, file);
        self.size = 0;
        self.prune()
    }

    /// Removes the oldest backups beyond `max_backups`. Backup names sort by time.
    fn prune(&self) -> io::Result<()> {
        let dir = match self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(d) => d.to_owned(),
            None => PathBuf::from("."),
        };
        let (stem, ext) = stem_and_ext(&self.path);
        let prefix = format!("{stem}-");
        let mut backups: Vec<PathBuf> = fs::read_dir(&dir)?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.starts_with(&prefix)
                        && n.ends_with(&ext)
                        && n.len() > prefix.len() + ext.len()
                })
            })
            .collect();
        backups.sort();
        let excess = backups.len().saturating_sub(self.max_backups);
        for old in &backups[..excess] {
            fs::remove_file(old)?;
        }
        Ok(())
    }
}

/// `flows.log` -> (`flows`, `.log`); `flows` -> (`flows`, ``).
fn stem_and_ext(path: &Path) -> (String, String) {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("flows");
    match name.rfind('.') {
        Some(i) if i > 0 => (name[..i].to_owned(), name[i..].to_owned()),
        _ => (name.to_owned(), String::new()),
    }
}

/// `dir/flows.log` at `2026-11-25T21-30-00.123` -> `dir/flows-2026-11-25T21-30-00.123.log`.
fn backup_name(path: &Path, stamp: &str) -> PathBuf {
    let (stem, ext) = stem_and_ext(path);
    path.with_file_name(format!("{stem}-{stamp}{ext}"))
}

/// UTC, millisecond precision, with `-` for `:` (lumberjack's backup time format).
fn timestamp(unix_ms: i64) -> String {
    let t = flowscope_model::Timestamp::from_unix_nanos(unix_ms * 1_000_000).to_string();
    // 2026-11-25T21:30:00.123Z -> 2026-11-25T21-30-00.123
    let t = t.trim_end_matches('Z');
    let (secs, frac) = t.split_once('.').unwrap_or((t, ""));
    format!("{}.{:0<3.3}", secs.replace(':', "-"), frac)
}

/// An exporter whose file is open, ready to follow a store.
pub struct Exporter {
    cfg: ExportConfig,
    out: Rotating,
}

/// Opens the file, creating its directory: an error names the file. Done before anything is
/// attached, so a bad path stops the observer before it starts.
pub fn open(cfg: ExportConfig) -> anyhow::Result<Exporter> {
    use anyhow::Context as _;
    let out = Rotating::open(&cfg.path, cfg.max_size_bytes, cfg.max_backups)
        .with_context(|| format!("--export-file {}", cfg.path.display()))?;
    Ok(Exporter { cfg, out })
}

impl Exporter {
    /// Starts the exporter's thread, which follows the store from now until shutdown.
    pub fn start(
        self,
        store: Arc<FlowStore>,
        state: Arc<AppState>,
    ) -> io::Result<std::thread::JoinHandle<()>> {
        let Exporter { cfg, out } = self;
        info!(
            path = %cfg.path.display(),
            max_size_bytes = cfg.max_size_bytes,
            max_backups = cfg.max_backups,
            "Exporting flows"
        );
        let shutdown = state.shutdown.clone();
        // From the store's position now, not once the thread runs: flows stored meanwhile
        // are exported too.
        let from = store.follow_pos().pos;
        std::thread::Builder::new()
            .name("flow-export".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(err) => {
                        warn!("Flow export stopped: {err}");
                        return;
                    }
                };
                rt.block_on(follow(cfg, out, store, from, state, shutdown));
            })
    }
}

async fn follow(
    cfg: ExportConfig,
    mut out: Rotating,
    store: Arc<FlowStore>,
    from: u64,
    state: Arc<AppState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut status = ExportStatus {
        path: cfg.path.display().to_string(),
        ..ExportStatus::default()
    };
    publish(&state, &status);
    let everything = cfg.filters.matches_everything();
    let mut pos = from;
    // Writes are failing now (a warning was logged; a success logs the recovery).
    let mut failing = false;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            _ = store.wait_for(pos) => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
        batch.clear();
        let r = store.read(pos, u64::MAX, BATCH, &mut batch);
        pos = r.pos;
        let mut lines: Vec<Utf8Bytes> = Vec::new();
        if r.lost > 0 {
            status.lost += r.lost;
            lines.push(ring_lost_line(r.lost, &state.node_name));
        }
        let mut flows = 0u64;
        for e in &batch {
            match &*e.record {
                // Lost events the pipeline stored (the datapath's) are exported as they are.
                Record::Lost { .. } => lines.push(e.json()),
                Record::Flow(_) => {
                    if everything || e.flow().is_some_and(|f| cfg.filters.matches(f)) {
                        lines.push(match &cfg.mask {
                            None => e.json(),
                            Some(mask) => masked_line(&e.json(), mask),
                        });
                        flows += 1;
                    }
                }
            }
        }
        if lines.is_empty() {
            if r.lost > 0 {
                publish(&state, &status);
            }
            continue;
        }
        let written = lines
            .iter()
            .try_fold(0u64, |rotations, line| {
                out.write_line(line.as_bytes())
                    .map(|rotated| rotations + u64::from(rotated))
            })
            .and_then(|rotations| out.flush().map(|()| rotations));
        match written {
            Ok(rotations) => {
                status.flows += flows;
                status.rotations += rotations;
                if std::mem::take(&mut failing) {
                    info!(
                        path = %cfg.path.display(),
                        write_errors = status.write_errors,
                        "Flow export resumed"
                    );
                }
            }
            Err(err) => {
                status.write_errors += flows;
                let error = write_error(&err);
                // Once per failing spell, not per batch.
                if !std::mem::replace(&mut failing, true) {
                    warn!(path = %cfg.path.display(), "Flow export: {error}");
                }
                status.last_error = Some(error);
            }
        }
        publish(&state, &status);
    }
    if let Err(err) = out.flush() {
        warn!(path = %cfg.path.display(), "Flow export: {err}");
    }
}

/// A write error with what to do about it: flows are counted as `write_errors` meanwhile.
fn write_error(err: &std::io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => format!(
            "{err}: the file system of the export file is full; flows are counted in \
             status.export.write_errors until there is room (free space, or lower \
             --export-file-max-size-mb or --export-file-max-backups)"
        ),
        _ => err.to_string(),
    }
}

fn publish(state: &AppState, status: &ExportStatus) {
    if let Ok(mut rt) = state.runtime.lock() {
        rt.export = Some(status.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backups_are_named_as_hubble_names_them() {
        assert_eq!(
            backup_name(
                Path::new("/var/run/cilium/hubble/events.log"),
                "2026-11-25T21-30-00.123"
            ),
            Path::new("/var/run/cilium/hubble/events-2026-11-25T21-30-00.123.log")
        );
        assert_eq!(
            backup_name(Path::new("flows"), "2026-11-25T21-30-00.123"),
            Path::new("flows-2026-11-25T21-30-00.123")
        );
        // 2026-11-25T21:30:00.120Z and a whole second.
        assert_eq!(timestamp(1_795_642_200_120), "2026-11-25T21-30-00.120");
        assert_eq!(timestamp(1_795_642_200_000), "2026-11-25T21-30-00.000");
    }

    #[test]
    fn files_rotate_by_size_and_keep_the_newest_backups() {
        let dir = std::env::temp_dir().join(format!("flowscope-export-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let path = dir.join("flows.log");
        let mut out = Rotating::open(&path, 100, 2).unwrap();
        let line = [b'x'; 39]; // 40 bytes with its newline: two per file
        let mut rotations = 0;
        // Faster than a millisecond per rotation: no backup may overwrite another.
        for _ in 0..10 {
            rotations += u64::from(out.write_line(&line).unwrap());
        }
        out.flush().unwrap();
        assert_eq!(rotations, 4);
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names.len(), 3, "{names:?}");
        assert_eq!(names[2], "flows.log");
        assert!(
            names[..2]
                .iter()
                .all(|n| n.starts_with("flows-") && n.ends_with(".log"))
        );
        for n in &names {
            let len = fs::metadata(dir.join(n)).unwrap().len();
            assert_eq!(len, 80, "{n}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Many rotations in a row: every backup is named by its own rotation time (now, not
    /// 1970: the name's time once came out of a misplaced parenthesis after the first
    /// rotation), names sort in rotation order, the newest `max_backups` are kept, and every
    /// line is in exactly one file.
    #[test]
    fn many_rotations_keep_the_newest_backups_in_order_with_every_line_once() {
        for keep in [3, 100] {
            let dir = std::env::temp_dir().join(format!(
                "flowscope-export-many-{}-{keep}",
                std::process::id()
            ));
            let _ = fs::remove_dir_all(&dir);
            let path = dir.join("flows.log");
            let start_ms = unix_now_ns() / 1_000_000;
            let mut out = Rotating::open(&path, 100, keep).unwrap();
            let lines: usize = 60;
            let mut rotations = 0;
            for i in 0..lines {
                // 40 bytes with the newline: two lines per file.
                let line = format!("{i:039}");
                rotations += u64::from(out.write_line(line.as_bytes()).unwrap());
                if i % 7 == 0 {
                    // Some rotations a few milliseconds apart, most within one.
                    std::thread::sleep(std::time::Duration::from_millis(3));
                }
            }
            out.flush().unwrap();
            assert_eq!(rotations, (lines / 2 - 1) as u64);
            let end_ms = unix_now_ns() / 1_000_000 + rotations as i64;
            let mut names: Vec<String> = fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n != "flows.log")
                .collect();
            names.sort();
            assert_eq!(names.len(), keep.min(rotations as usize), "{names:?}");
            let mut previous = 0;
            for name in &names {
                let stamp = name
                    .strip_prefix("flows-")
                    .and_then(|n| n.strip_suffix(".log"))
                    .unwrap_or_else(|| panic!("{name}"));
                let (day, time) = stamp.split_once('T').unwrap();
                let rfc3339 = format!("{day}T{}Z", time.replacen('-', ":", 2));
                let ms = rfc3339
                    .parse::<flowscope_model::Timestamp>()
                    .unwrap_or_else(|e| panic!("{name}: {e}"))
                    .as_unix_nanos()
                    / 1_000_000;
                assert!(
                    (start_ms..=end_ms).contains(&ms),
                    "{name} is not named by its rotation time ({start_ms}..={end_ms})"
                );
                assert!(ms > previous, "{names:?}");
                previous = ms;
            }
            // In name order, then the current file: the newest lines, each once, in order.
            let mut read = Vec::new();
            for name in names.iter().map(String::as_str).chain(["flows.log"]) {
                let text = fs::read_to_string(dir.join(name)).unwrap();
                read.extend(text.lines().map(|l| l.parse::<usize>().unwrap()));
            }
            let first = lines - read.len();
            assert_eq!(read, (first..lines).collect::<Vec<_>>(), "keep {keep}");
            if keep >= rotations as usize {
                assert_eq!(first, 0, "every line is in a file");
            }
            fs::remove_dir_all(&dir).unwrap();
        }
    }
}
