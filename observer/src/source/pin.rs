//! The datapath's pins on a BPF filesystem: what outlives the observer, and how the next
//! observer finds it.
//!
//! ```text
//! <root>/                          default /sys/fs/bpf/flowscope, one observer at a time
//!   maps-<layout>/FLOWSCOPE_*      the maps (policy, identities, conntrack, deny list,
//!                                  counters, ring buffer): one folder per layout
//!   new-maps-<layout>/             maps not yet holding a policy (renamed once they do)
//!   links/tcx-<ifindex>-ingress    the tcx links that attach the programs to an interface;
//!   links/tcx-<ifindex>-egress     a new observer swaps its programs into them in place
//! ```
//!
//! While the pins exist the kernel keeps the programs attached and their maps filled, whatever
//! happens to the observer. An observer of the same layout adopts the maps as they are; one of
//! another layout fills a new folder and swaps its programs in once that holds its policy.

use std::{
    fs::File,
    io,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use aya::programs::TcAttachType;
use flowscope_common::{LAYOUT_VERSION, PINNED_MAPS};

/// Where the observer pins its datapath unless told otherwise (`--bpf-root`).
pub const DEFAULT_ROOT: &str = "/sys/fs/bpf/flowscope";
/// The conventional mount point of the BPF filesystem.
const BPFFS: &str = "/sys/fs/bpf";
/// `statfs.f_type` of a BPF filesystem.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// A pin root this observer holds: created on a BPF filesystem and locked, so two observers
/// never share (and fight over) one datapath. The lock goes with the process, also on SIGKILL.
pub struct PinRoot {
    root: PathBuf,
    _lock: File,
}

impl PinRoot {
    /// Creates `root` (and mounts the BPF filesystem on `/sys/fs/bpf` if nothing is mounted
    /// there yet, as Cilium does) and takes its lock.
    pub fn open(root: &Path) -> anyhow::Result<PinRoot> {
        ensure_bpffs(root)?;
        std::fs::create_dir_all(root.join("links"))
            .with_context(|| format!("creating the pin folder {}", root.display()))?;
        let lock = lock(root)?.ok_or_else(|| {
            anyhow::anyhow!(
                "another observer is using the datapath pinned under {0}: stop it first, or give \
                 this one its own --bpf-root",
                root.display()
            )
        })?;
        Ok(PinRoot {
            root: root.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The folder of the maps of `layout`.
    pub fn maps(&self, layout: &str) -> PathBuf {
        self.root.join(format!("maps-{layout}"))
    }

    /// Where maps of `layout` are made before they are complete: renamed to [`Self::maps`]
    /// only once filled, so a crash halfway never leaves a folder that looks adoptable.
    pub fn staging(&self, layout: &str) -> PathBuf {
        // bpffs refuses names with a dot.
        self.root.join(format!("new-maps-{layout}"))
    }

    /// After a failed start: the staging folder goes, and the whole root if nothing else is
    /// pinned there.
    pub fn discard(&self, staging: Option<&Path>) {
        if let Some(staging) = staging {
            let _ = std::fs::remove_dir_all(staging);
        }
        let empty = |p: &Path| std::fs::read_dir(p).map_or(true, |mut rd| rd.next().is_none());
        let others = std::fs::read_dir(&self.root)
            .map(|rd| rd.flatten().any(|e| e.file_name() != "links"))
            .unwrap_or(true);
        if !others && empty(&self.root.join("links")) {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    /// Folders of maps of other layouts (and their staging leftovers of a crash); this
    /// layout's folder and staging folder are not among them.
    pub fn other_maps(&self, layout: &str) -> Vec<PathBuf> {
        let (keep, staging) = (format!("maps-{layout}"), format!("new-maps-{layout}"));
        let Ok(rd) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut out: Vec<PathBuf> = rd
            .flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                (name.starts_with("maps-") || name.starts_with("new-maps-"))
                    && name != keep
                    && name != staging
            })
            .map(|e| e.path())
            .collect();
        out.sort();
        out
    }

    /// The pin of the link of `direction` on interface `ifindex`.
    pub fn link(&self, ifindex: u32, direction: TcAttachType) -> PathBuf {
        let dir = match direction {
            TcAttachType::Ingress => "ingress",
            _ => "egress",
        };
        self.root.join("links").join(format!("tcx-{ifindex}-{dir}"))
    }

    /// The pinned links: interface index, direction and pin.
    pub fn links(&self) -> Vec<(u32, TcAttachType, PathBuf)> {
        let Ok(rd) = std::fs::read_dir(self.root.join("links")) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let parsed = name.strip_prefix("tcx-").and_then(|rest| {
                let (index, dir) = rest.split_once('-')?;
                let dir = match dir {
                    "ingress" => TcAttachType::Ingress,
                    "egress" => TcAttachType::Egress,
                    _ => return None,
                };
                Some((index.parse().ok()?, dir))
            });
            match parsed {
                Some((index, dir)) => out.push((index, dir, e.path())),
                // Not flowscope's: left alone.
                None => tracing::warn!(pin = %e.path().display(), "Unknown pin, left alone"),
            }
        }
        out.sort_by_key(|(i, d, _)| (*i, matches!(d, TcAttachType::Egress)));
        out
    }
}

/// What `--cleanup` removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub links: usize,
    pub maps: usize,
}

/// Removes everything pinned under `root`: the programs detach from every interface and the
/// maps are freed. Refused while an observer holds the root. `Ok(None)`: nothing was pinned.
pub fn cleanup(root: &Path) -> anyhow::Result<Option<Removed>> {
    if !root.exists() {
        return Ok(None);
    }
    let Some(_lock) = lock(root)? else {
        bail!(
            "an observer is running with the datapath pinned under {}: stop it first",
            root.display()
        );
    };
    let mut removed = Removed::default();
    for e in std::fs::read_dir(root)
        .with_context(|| format!("reading {}", root.display()))?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let count = std::fs::read_dir(e.path())
            .map(|rd| rd.count())
            .unwrap_or(0);
        if name == "links" {
            removed.links += count;
        } else if name.starts_with("maps-") || name.starts_with("new-maps-") {
            removed.maps += count;
        }
    }
    std::fs::remove_dir_all(root).with_context(|| format!("removing {}", root.display()))?;
    Ok(Some(removed))
}

/// The layout of the pinned maps the object makes: [`LAYOUT_VERSION`] and each pinned map's
/// type, key and value sizes, capacity and flags, as the object file declares them. Stable
/// across builds and releases that keep all of it.
pub fn layout(object: &[u8]) -> anyhow::Result<String> {
    let obj = aya_obj::Object::parse(object).context("reading the eBPF object's maps")?;
    let mut shape = Vec::new();
    for name in PINNED_MAPS {
        let m = obj
            .maps
            .get(name)
            .with_context(|| format!("map {name} missing from the object"))?;
        shape.push((
            name,
            m.map_type(),
            m.key_size(),
            m.value_size(),
            m.max_entries(),
            m.map_flags(),
        ));
    }
    let hash = crate::endpoints::stable_hash(&(LAYOUT_VERSION, shape));
    Ok(format!("v{LAYOUT_VERSION}-{hash:016x}"))
}

/// Takes `root`'s lock without waiting: `Ok(None)` when another process holds it.
fn lock(root: &Path) -> anyhow::Result<Option<File>> {
    let dir = File::open(root).with_context(|| format!("opening {}", root.display()))?;
    // SAFETY: flock on a descriptor this function owns.
    let ret = unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if ret == 0 {
        return Ok(Some(dir));
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        return Ok(None);
    }
    Err(err).with_context(|| format!("locking {}", root.display()))
}

/// `root` lies on a BPF filesystem; an empty `/sys/fs/bpf` gets one mounted.
fn ensure_bpffs(root: &Path) -> anyhow::Result<()> {
    // The nearest folder that exists says which filesystem `root` will be made on.
    let mut existing = root;
    while !existing.exists() {
        existing = existing.parent().unwrap_or(Path::new("/"));
    }
    if is_bpffs(existing)? {
        return Ok(());
    }
    if root.starts_with(BPFFS) && existing == Path::new(BPFFS) {
        mount_bpffs().context("mounting the BPF filesystem on /sys/fs/bpf")?;
        if is_bpffs(Path::new(BPFFS))? {
            tracing::info!("Mounted the BPF filesystem on {BPFFS}");
            return Ok(());
        }
    }
    bail!(
        "{} is not on a BPF filesystem, where the datapath is pinned to outlive the observer: \
         mount one (`mount -t bpf bpf /sys/fs/bpf`) and use a folder under it for --bpf-root, \
         or run with --no-pin",
        root.display()
    )
}

fn is_bpffs(path: &Path) -> anyhow::Result<bool> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: statfs fills the zeroed struct; `c` is a valid NUL-terminated path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("statfs {}", path.display()));
    }
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}

fn mount_bpffs() -> io::Result<()> {
    // SAFETY: mount with valid NUL-terminated strings.
    let ret = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            c"/sys/fs/bpf".as_ptr(),
            c"bpf".as_ptr(),
            0,
            c"mode=0700".as_ptr().cast(),
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
