//! Loads the kernel programs, fills their maps and keeps them attached to the interfaces the
//! observer was asked to watch, as interfaces come and go.

use std::{collections::HashMap, net::IpAddr};

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, HashMap as AyaHashMap, MapData, PerCpuArray, RingBuf,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{
        LinkOrder, SchedClassifier, TcAttachType,
        links::{FdLink, PinnedLink},
        tc::{SchedClassifierLink, SchedClassifierLinkId, TcAttachOptions},
    },
};
use flowscope_common::{
    CONFIG_AUDIT, CONFIG_DNS, CONFIG_GENERATION, CONFIG_HTTP, CONFIG_L7_INGRESS, Config, DenyKey,
    DenyValue, EndpointInfo, FAMILY_IPV4, FAMILY_IPV6, GENERATION_SHIFT, IP_KEY_FIXED_BITS,
    IdentityValue, IpKey, MAP_CONFIG, MAP_DENY, MAP_ENDPOINTS, MAP_EVENTS, MAP_HANDOVER,
    MAP_IPCACHE, MAP_IPCACHE_HOSTS, MAP_L7_INGRESS, MAP_POLICY, MAP_POLICY_RANGES,
    MAP_PROXY_SOCKETS, MAP_STATS, PINNED_MAPS, POLICY_RANGE_KEY_FIXED_BITS, PROG_EGRESS,
    PROG_INGRESS, PROG_PROXY_LOOKUP, PolicyKey, PolicyRangeKey, PolicyValue, STAT_COUNT, handover,
};
use ipnet::IpNet;
use tracing::{debug, info, warn};

use super::deny::DenyRule;
use super::interfaces::{self, Interface, InterfaceSelector};
use super::pin::PinRoot;

/// The compiled kernel object, built by build.rs from `ebpf/`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flowscope"));

/// Per-CPU datapath counters summed over CPUs, indexed by `flowscope_common::STAT_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DatapathStats {
    pub counters: [u64; STAT_COUNT as usize],
    /// Ring buffer reservation failures per CPU (`STAT_EVENTS_LOST`).
    pub lost_per_cpu: [u64; MAX_CPUS],
}

/// Enough for the machines flowscope runs on; CPUs beyond this are summed into the last slot.
pub const MAX_CPUS: usize = 256;
const _: () = assert!(MAX_CPUS == handover::CPUS as usize);

/// What the programs are told at load: one write of the settings map, so an observer that
/// adopts a running datapath never passes through a state its configuration does not ask for.
#[derive(Clone, Debug, Default)]
pub struct DatapathSettings {
    /// A connection reports its counters at most this often (0: never).
    pub summary_interval_ns: u64,
    /// Policy audit mode: what the policy would drop passes, reported as AUDIT.
    pub audit: bool,
    /// DNS visibility: DNS messages on UDP port 53 are reported with their first bytes.
    pub dns: bool,
    /// HTTP visibility on these TCP ports (at most `HTTP_PORTS_MAX`).
    pub http_ports: Vec<u16>,
}

/// What a pinned datapath's observer found when it started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinStart {
    /// Nothing was pinned: a new datapath.
    Fresh,
    /// The pinned maps of this layout, taken over as they are; the programs swapped in place.
    Adopted,
    /// Pins of another layout (or of an observer that died before its first policy): new maps,
    /// and the previous programs keep enforcing until these hold a policy.
    Replaced,
}

impl PinStart {
    pub fn as_str(self) -> &'static str {
        match self {
            PinStart::Fresh => "fresh",
            PinStart::Adopted => "adopted",
            PinStart::Replaced => "replaced",
        }
    }
}

/// The pins' side of the status.
#[derive(Clone, Debug)]
pub struct PinReport {
    pub root: std::path::PathBuf,
    pub layout: String,
    pub start: PinStart,
    /// Interfaces whose pinned links were found attached.
    pub links_found: usize,
    /// Events the ring buffer had no room for while no observer read it.
    pub lost_while_away: u64,
    /// Events the ring buffer had lost before the previous observer's last handover, which it
    /// reported itself.
    pub lost_reported_before: u64,
    /// From the previous observer's last heartbeat to this one's start.
    pub away: Option<std::time::Duration>,
}

struct Pins {
    root: PinRoot,
    layout: String,
    /// Where this observer's maps are pinned until they hold a policy (a new layout): renamed
    /// to the layout's folder then. None: the maps are the layout's folder already.
    staging: Option<std::path::PathBuf>,
    /// Programs may be swapped into links found pinned: the maps hold what they judge by.
    swap_ready: bool,
    /// Links found pinned and attached, by interface index (ingress, egress), until the first
    /// sync takes them over or unpins them.
    found: Option<HashMap<u32, [Option<SchedClassifierLink>; 2]>>,
    /// The lost-event counts last written to the handover map.
    lost_handed: [u64; MAX_CPUS],
    lost_reported_at_start: [u64; MAX_CPUS],
    report: PinReport,
}

/// Where a pinned datapath's maps go: the layout's folder (adopted), or a staging folder.
struct Placement {
    layout: String,
    dir: std::path::PathBuf,
    staging: Option<std::path::PathBuf>,
}

impl Placement {
    fn new(root: &PinRoot) -> anyhow::Result<Placement> {
        let layout = super::pin::layout(OBJECT)?;
        let maps = root.maps(&layout);
        if maps.is_dir() {
            return Ok(Placement {
                layout,
                dir: maps,
                staging: None,
            });
        }
        let staging = root.staging(&layout);
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging)
            .with_context(|| format!("creating {}", staging.display()))?;
        Ok(Placement {
            layout,
            dir: staging.clone(),
            staging: Some(staging),
        })
    }
}

/// One direction's link on an interface.
enum Links {
    /// Held by the programs: detached when the observer exits.
    Owned {
        ingress: SchedClassifierLinkId,
        egress: SchedClassifierLinkId,
    },
    /// Pinned: attached until the pin is removed, whatever happens to the observer. `current`
    /// is false while they still run the previous observer's programs.
    Pinned {
        ingress: SchedClassifierLink,
        egress: SchedClassifierLink,
        current: bool,
    },
}

struct Attached {
    ifindex: u32,
    links: Links,
}

/// The loaded datapath: programs, maps and the interfaces it is attached to.
pub struct Datapath {
    ebpf: Ebpf,
    stats: PerCpuArray<MapData, u64>,
    attached: HashMap<String, Attached>,
    /// With pinning: the pin root, and how this observer took over what it found there.
    pins: Option<Pins>,
    /// Interfaces (name, index) whose attach failed: retried on every sync, but reported once.
    failed: HashMap<String, u32>,
    /// Prefixes written to the ipcache by the last policy install, with their identities,
    /// sorted ([`sorted`]).
    ipcache_installed: Vec<(IpNet, u32)>,
    /// Addresses written to the L7 ingress map by the last policy install, with their
    /// interfaces, sorted.
    l7_ingress_installed: Vec<(IpAddr, u32)>,
    /// What each policy generation holds in the maps; `None` when unknown (a write failed
    /// half-way): read back from the maps before the next install diffs against it.
    generations: [Option<Generation>; 2],
    /// When the active generation last flipped: until every program run that read the old
    /// one has finished, the old one is not written.
    flipped_at: Option<std::time::Instant>,
    /// The socket lookup program's link to this network namespace, while the proxy runs.
    proxy_lookup: Option<aya::programs::sk_lookup::SkLookupLinkId>,
}

impl Datapath {
    /// Loads and verifies the programs, writes the settings and the deny list. Nothing is
    /// pinned: the datapath goes with the observer.
    pub fn load(settings: &DatapathSettings, deny: &[DenyRule]) -> anyhow::Result<Self> {
        Self::load_with(settings, deny, None)
    }

    /// As [`Datapath::load`], pinned under `root` to outlive the observer: maps of this layout
    /// pinned there are adopted as they are (policy, identities, conntrack, counters, the
    /// events waiting in the ring buffer), and links pinned there get these programs swapped in
    /// ([`Datapath::sync`]), so enforcement never pauses.
    pub fn load_pinned(
        settings: &DatapathSettings,
        deny: &[DenyRule],
        root: PinRoot,
    ) -> anyhow::Result<Self> {
        Self::load_with(settings, deny, Some(root))
    }

    fn load_with(
        settings: &DatapathSettings,
        deny: &[DenyRule],
        root: Option<PinRoot>,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            settings.http_ports.len() <= flowscope_common::HTTP_PORTS_MAX,
            "at most {} HTTP visibility ports, got {}",
            flowscope_common::HTTP_PORTS_MAX,
            settings.http_ports.len()
        );
        let placed = match &root {
            Some(root) => Some(Placement::new(root)?),
            None => None,
        };
        let loaded = Self::load_programs(settings, deny, placed.as_ref());
        match (loaded, root, placed) {
            (Ok(mut dp), Some(root), Some(placed)) => {
                dp.take_over(root, placed.layout, placed.staging)?;
                Ok(dp)
            }
            (Ok(dp), _, _) => Ok(dp),
            (Err(err), Some(root), Some(placed)) => {
                // Nothing half-made is left pinned.
                root.discard(placed.staging.as_deref());
                Err(err)
            }
            (Err(err), _, _) => Err(err),
        }
    }

    fn load_programs(
        settings: &DatapathSettings,
        deny: &[DenyRule],
        placed: Option<&Placement>,
    ) -> anyhow::Result<Self> {
        raise_memlock_limit();
        let mut loader = EbpfLoader::new();
        // The programs read only stable UAPI fields (`__sk_buff`, packet data), so they need no
        // CO-RE relocations against the kernel's BTF; skipping it saves parsing vmlinux BTF,
        // which would otherwise set the observer's peak memory (tens of MiB).
        loader.btf(None);
        if let Some(placed) = placed {
            for name in PINNED_MAPS {
                loader.map_pin_path(name, placed.dir.join(name));
            }
        }
        let mut ebpf = loader
            .load(OBJECT)
            .context("loading the eBPF object into the kernel")?;
        for name in [PROG_INGRESS, PROG_EGRESS] {
            let prog: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("program {name} missing from the object"))?
                .try_into()?;
            prog.load()
                .with_context(|| format!("verifying program {name}"))?;
        }
        let adopted = placed.is_some_and(|p| p.staging.is_none());
        let stats = PerCpuArray::try_from(
            ebpf.take_map(MAP_STATS)
                .ok_or_else(|| anyhow!("map {MAP_STATS} missing"))?,
        )?;
        let mut dp = Datapath {
            ebpf,
            stats,
            attached: HashMap::new(),
            pins: None,
            failed: HashMap::new(),
            ipcache_installed: Default::default(),
            l7_ingress_installed: Default::default(),
            generations: [Some(Generation::default()), Some(Generation::default())],
            flipped_at: None,
            proxy_lookup: None,
        };
        dp.write_settings(settings, adopted)?;
        dp.write_deny(deny, adopted)?;
        Ok(dp)
    }

    /// The settings map in one write. Adopted maps keep what the policy install owns (the
    /// active generation, the L7 ingress flag) and the proxy's ports until the proxy starts.
    fn write_settings(&mut self, s: &DatapathSettings, adopted: bool) -> anyhow::Result<()> {
        let mut config: Array<&mut MapData, Config> = Array::try_from(self.map_mut(MAP_CONFIG)?)?;
        let previous = if adopted {
            config.get(&0, 0)?
        } else {
            Config::default()
        };
        let mut flags = previous.flags & (CONFIG_GENERATION | CONFIG_L7_INGRESS);
        for (on, flag) in [
            (s.audit, CONFIG_AUDIT),
            (s.dns, CONFIG_DNS),
            (!s.http_ports.is_empty(), CONFIG_HTTP),
        ] {
            if on {
                flags |= flag;
            }
        }
        let mut http_ports = [0; flowscope_common::HTTP_PORTS_MAX];
        http_ports[..s.http_ports.len()].copy_from_slice(&s.http_ports);
        config.set(
            0,
            Config {
                summary_interval_ns: s.summary_interval_ns,
                flags,
                http_ports,
                ..previous
            },
            0,
        )?;
        Ok(())
    }

    /// The deny list: every rule's entries written; in adopted maps, then the entries of rules
    /// no longer listed removed (for a moment both lists apply: nothing passes that either
    /// denies).
    fn write_deny(&mut self, deny: &[DenyRule], adopted: bool) -> anyhow::Result<()> {
        let mut trie: LpmTrie<&mut MapData, DenyKey, DenyValue> =
            LpmTrie::try_from(self.map_mut(MAP_DENY)?)?;
        let mut wanted = std::collections::HashSet::new();
        for (index, rule) in deny.iter().enumerate() {
            for (key, value) in rule.trie_entries(index as u32) {
                trie.insert(&key, value, 0)
                    .with_context(|| format!("writing deny rule {rule}"))?;
                wanted.insert((key.prefix_len(), key.data()));
            }
        }
        if adopted {
            let stale: Vec<Key<DenyKey>> = trie
                .keys()
                .filter_map(Result::ok)
                .filter(|k| !wanted.contains(&(k.prefix_len(), k.data())))
                .collect();
            for k in stale {
                let _ = trie.remove(&k);
            }
        }
        Ok(())
    }

    /// Takes over what is pinned under `root`: the links found attached (swapped to these
    /// programs by the first sync, or once these maps hold a policy), what the last observer
    /// reported of the ring buffer's losses, and in adopted maps what the last install wrote.
    fn take_over(
        &mut self,
        root: PinRoot,
        layout: String,
        staging: Option<std::path::PathBuf>,
    ) -> anyhow::Result<()> {
        let adopted = staging.is_none();
        let present = interfaces::list().unwrap_or_default();
        let mut found: HashMap<u32, [Option<SchedClassifierLink>; 2]> = HashMap::new();
        for (ifindex, direction, path) in root.links() {
            let slot = usize::from(matches!(direction, TcAttachType::Egress));
            match adopt_link(&path, ifindex, direction, &present) {
                Ok(Some(link)) => found.entry(ifindex).or_default()[slot] = Some(link),
                Ok(None) => {
                    debug!(pin = %path.display(), "Pinned link of a gone interface, removed");
                    let _ = std::fs::remove_file(&path);
                }
                Err(err) => {
                    warn!(pin = %path.display(), "Pinned link unusable, removed: {err:#}");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        // A direction found without the other is attached anew with the other at sync.
        let links_found = found
            .values()
            .filter(|l| l.iter().all(Option::is_some))
            .count();
        let start = if adopted {
            PinStart::Adopted
        } else if found.is_empty() && root.other_maps(&layout).is_empty() {
            PinStart::Fresh
        } else {
            PinStart::Replaced
        };
        let (lost_reported, heartbeat) = if adopted {
            self.read_handover()?
        } else {
            ([0; MAX_CPUS], 0)
        };
        if adopted {
            self.read_installed()?;
        }
        let stats = self.stats()?;
        let lost_while_away: u64 = stats
            .lost_per_cpu
            .iter()
            .zip(&lost_reported)
            .map(|(now, reported)| now.saturating_sub(*reported))
            .sum();
        let away = (heartbeat > 0).then(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            now.saturating_sub(std::time::Duration::from_nanos(heartbeat))
        });
        let report = PinReport {
            root: root.path().to_path_buf(),
            layout: layout.clone(),
            start,
            links_found,
            lost_while_away,
            lost_reported_before: lost_reported.iter().sum(),
            away,
        };
        match start {
            PinStart::Fresh => info!(root = %report.root.display(), layout, "Datapath pinned"),
            PinStart::Adopted => info!(
                root = %report.root.display(),
                layout,
                interfaces = links_found,
                lost_while_away,
                away_seconds = away.map(|a| a.as_secs_f64()),
                "Adopted the pinned datapath: its policy, conntrack and events carry on"
            ),
            PinStart::Replaced => info!(
                root = %report.root.display(),
                layout,
                interfaces = links_found,
                "Pinned datapath of another layout: it keeps enforcing until this one holds its policy, then is replaced"
            ),
        }
        self.pins = Some(Pins {
            root,
            layout,
            swap_ready: adopted || found.is_empty(),
            staging,
            found: Some(found),
            lost_handed: lost_reported,
            lost_reported_at_start: lost_reported,
            report,
        });
        Ok(())
    }

    /// What the previous observer left: per CPU the lost events it reported, and its last
    /// heartbeat.
    fn read_handover(&self) -> anyhow::Result<([u64; MAX_CPUS], u64)> {
        let map: Array<&MapData, u64> = Array::try_from(
            self.ebpf
                .map(MAP_HANDOVER)
                .ok_or_else(|| anyhow!("map {MAP_HANDOVER} missing"))?,
        )?;
        let mut lost = [0; MAX_CPUS];
        for (cpu, slot) in lost.iter_mut().enumerate() {
            *slot = map.get(&(handover::LOST_REPORTED + cpu as u32), 0)?;
        }
        Ok((lost, map.get(&handover::HEARTBEAT, 0)?))
    }

    /// Tells the next observer what this one reported: the lost events per CPU (written when
    /// they change) and a heartbeat (one write; called once a second).
    pub fn hand_over(&mut self, lost_reported: &[u64; MAX_CPUS]) -> anyhow::Result<()> {
        let Some(pins) = self.pins.as_mut() else {
            return Ok(());
        };
        let changed: Vec<(usize, u64)> = lost_reported
            .iter()
            .zip(&pins.lost_handed)
            .enumerate()
            .filter(|(_, (now, handed))| now != handed)
            .map(|(cpu, (now, _))| (cpu, *now))
            .collect();
        pins.lost_handed = *lost_reported;
        let mut map: Array<&mut MapData, u64> = Array::try_from(
            self.ebpf
                .map_mut(MAP_HANDOVER)
                .ok_or_else(|| anyhow!("map {MAP_HANDOVER} missing"))?,
        )?;
        for (cpu, value) in changed {
            map.set(handover::LOST_REPORTED + cpu as u32, value, 0)?;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        map.set(handover::HEARTBEAT, now.as_nanos() as u64, 0)?;
        Ok(())
    }

    /// Per CPU, the lost events already reported when this observer started (by the one
    /// before it); zero for a datapath of its own.
    pub fn lost_reported_at_start(&self) -> [u64; MAX_CPUS] {
        self.pins
            .as_ref()
            .map_or([0; MAX_CPUS], |p| p.lost_reported_at_start)
    }

    /// How this observer found the pins; None when nothing is pinned.
    pub fn pin_report(&self) -> Option<&PinReport> {
        self.pins.as_ref().map(|p| &p.report)
    }

    /// Links still running the previous layout's programs.
    pub fn pending_swaps(&self) -> usize {
        self.attached
            .values()
            .filter(|a| matches!(a.links, Links::Pinned { current: false, .. }))
            .count()
    }

    /// In adopted maps, what the last installs wrote: the prefixes and addresses (the next
    /// install removes those it no longer needs) and both policy generations (the next install
    /// writes only what differs).
    fn read_installed(&mut self) -> anyhow::Result<()> {
        let mut nets = Vec::new();
        {
            let hosts: AyaHashMap<&MapData, IpKey, IdentityValue> =
                AyaHashMap::try_from(self.map(MAP_IPCACHE_HOSTS)?)?;
            for (k, v) in hosts.iter().filter_map(Result::ok) {
                let bits = if k.family == FAMILY_IPV4 { 32 } else { 128 };
                if let Some(net) = ip_net(&k, bits) {
                    nets.push((net, v.identity));
                }
            }
            let trie: LpmTrie<&MapData, IpKey, IdentityValue> =
                LpmTrie::try_from(self.map(MAP_IPCACHE)?)?;
            for (k, v) in trie.iter().filter_map(Result::ok) {
                let net = k
                    .prefix_len()
                    .checked_sub(IP_KEY_FIXED_BITS)
                    .and_then(|bits| ip_net(&k.data(), bits as u8));
                if let Some(net) = net {
                    nets.push((net, v.identity));
                }
            }
        }
        let l7: AyaHashMap<&MapData, IpKey, u32> = AyaHashMap::try_from(self.map(MAP_L7_INGRESS)?)?;
        self.l7_ingress_installed = sorted(
            l7.iter()
                .filter_map(Result::ok)
                .filter_map(|(k, ifindex)| {
                    let bits = if k.family == FAMILY_IPV4 { 32 } else { 128 };
                    Some((ip_net(&k, bits)?.addr(), ifindex))
                })
                .collect(),
        );
        self.ipcache_installed = sorted(nets);
        self.generations = [
            Some(self.read_generation(0)?),
            Some(self.read_generation(1)?),
        ];
        Ok(())
    }

    /// A policy generation's content as the maps hold it.
    fn read_generation(&self, generation: u32) -> anyhow::Result<Generation> {
        let untag =
            |id: u32| (id >> GENERATION_SHIFT == generation).then_some(id & !GENERATION_TAGS);
        let (mut endpoints, mut entries, mut ranges_read) = (Vec::new(), Vec::new(), Vec::new());
        let eps: AyaHashMap<&MapData, u32, EndpointInfo> =
            AyaHashMap::try_from(self.map(MAP_ENDPOINTS)?)?;
        for (k, mut v) in eps.iter().filter_map(Result::ok) {
            if let Some(ifindex) = untag(k) {
                v.endpoint_id &= !GENERATION_TAGS;
                endpoints.push((ifindex, v));
            }
        }
        let pol: AyaHashMap<&MapData, PolicyKey, PolicyValue> =
            AyaHashMap::try_from(self.map(MAP_POLICY)?)?;
        for (mut k, v) in pol.iter().filter_map(Result::ok) {
            if let Some(id) = untag(k.endpoint_id) {
                k.endpoint_id = id;
                entries.push((k, v));
            }
        }
        let ranges: LpmTrie<&MapData, PolicyRangeKey, PolicyValue> =
            LpmTrie::try_from(self.map(MAP_POLICY_RANGES)?)?;
        for (k, v) in ranges.iter().filter_map(Result::ok) {
            let mut data = k.data();
            let bits = k.prefix_len().checked_sub(POLICY_RANGE_KEY_FIXED_BITS);
            if let (Some(id), Some(bits)) = (untag(data.endpoint_id), bits) {
                data.endpoint_id = id;
                ranges_read.push(((data, bits as u8), v));
            }
        }
        Ok(Generation::new(endpoints, entries, ranges_read))
    }

    /// Once this observer's maps hold what the programs judge by (its first policy, or at once
    /// without policies): links found still running the previous programs get these, a new
    /// layout's maps become the ones the next observer adopts, and the other layouts' pins
    /// go. Nothing to do on later calls.
    pub fn release(&mut self) -> anyhow::Result<()> {
        let Some(pins) = self.pins.as_mut() else {
            return Ok(());
        };
        if pins.swap_ready && pins.staging.is_none() {
            return Ok(());
        }
        pins.swap_ready = true;
        let names: Vec<String> = self
            .attached
            .iter()
            .filter(|(_, a)| matches!(a.links, Links::Pinned { current: false, .. }))
            .map(|(n, _)| n.clone())
            .collect();
        let pending = names.len();
        for name in names {
            if let Err(err) = self.swap(&name) {
                warn!(interface = %name, "Swapping the programs in: {err:#}");
            }
        }
        if pending > 0 {
            info!(
                interfaces = pending - self.pending_swaps(),
                "Programs swapped in place of the previous layout's"
            );
        }
        let Some(pins) = self.pins.as_mut() else {
            return Ok(());
        };
        if let Some(staging) = pins.staging.take() {
            let maps = pins.root.maps(&pins.layout);
            std::fs::rename(&staging, &maps)
                .with_context(|| format!("renaming {} to {}", staging.display(), maps.display()))?;
        }
        for stale in pins.root.other_maps(&pins.layout) {
            if let Err(err) = std::fs::remove_dir_all(&stale) {
                warn!(pin = %stale.display(), "Removing the previous layout's maps: {err}");
            } else {
                info!(pin = %stale.display(), "Previous layout's maps removed");
            }
        }
        Ok(())
    }

    /// Swaps this observer's programs into the pinned links of interface `name`, each in one
    /// kernel operation (BPF_LINK_UPDATE): every packet runs the old program or the new one.
    /// The links are opened again from their pins, so a failure loses nothing.
    fn swap(&mut self, name: &str) -> anyhow::Result<()> {
        let (Some(a), Some(pins)) = (self.attached.get(name), self.pins.as_ref()) else {
            return Ok(());
        };
        let ingress_pin = pins.root.link(a.ifindex, TcAttachType::Ingress);
        let egress_pin = pins.root.link(a.ifindex, TcAttachType::Egress);
        let ingress = swap_program(self.classifier(PROG_INGRESS)?, &ingress_pin)?;
        let egress = swap_program(self.classifier(PROG_EGRESS)?, &egress_pin)?;
        if let Some(a) = self.attached.get_mut(name) {
            a.links = Links::Pinned {
                ingress,
                egress,
                current: true,
            };
        }
        Ok(())
    }

    /// Policy audit mode: connections the policy would drop pass, reported as AUDIT.
    pub fn set_audit(&mut self, on: bool) -> anyhow::Result<()> {
        self.set_config_flag(CONFIG_AUDIT, on)
    }

    /// The L7 proxy's listener ports (0: no proxy; connections that need it are dropped).
    pub fn set_proxy_ports(&mut self, ingress: u16, egress: u16) -> anyhow::Result<()> {
        let mut config: Array<&mut MapData, Config> = Array::try_from(self.map_mut(MAP_CONFIG)?)?;
        let mut c = config.get(&0, 0)?;
        c.proxy_port_ingress = ingress;
        c.proxy_port_egress = egress;
        config.set(0, c, 0)?;
        Ok(())
    }

    /// Hands the L7 proxy's listeners (`(slot, socket)`, slots of
    /// `flowscope_common::proxy_socket`) to the socket lookup program and attaches it to this
    /// network namespace: from now on a connection the tc programs send to the proxy finds
    /// the listener of its side and family.
    pub fn attach_proxy(&mut self, listeners: &[(u32, std::os::fd::RawFd)]) -> anyhow::Result<()> {
        {
            let mut map: aya::maps::SockMap<&mut MapData> =
                aya::maps::SockMap::try_from(self.map_mut(MAP_PROXY_SOCKETS)?)?;
            for (slot, fd) in listeners {
                map.set(*slot, fd, 0)
                    .with_context(|| format!("adding proxy listener {slot} to the sockmap"))?;
            }
        }
        let prog: &mut aya::programs::SkLookup = self
            .ebpf
            .program_mut(PROG_PROXY_LOOKUP)
            .ok_or_else(|| anyhow!("program {PROG_PROXY_LOOKUP} missing"))?
            .try_into()?;
        prog.load()
            .with_context(|| format!("verifying program {PROG_PROXY_LOOKUP}"))?;
        let netns = std::fs::File::open("/proc/self/ns/net")
            .context("opening this process's network namespace")?;
        let link = prog
            .attach(netns)
            .context("attaching the proxy's socket lookup program")?;
        self.proxy_lookup = Some(link);
        Ok(())
    }

    /// Records the security identity behind a prefix (a pod's /32 or /128, a policy CIDR).
    pub fn ipcache_insert(&mut self, net: IpNet, identity: u32) -> anyhow::Result<()> {
        let key = ipcache_key(net);
        if net.prefix_len() == net.max_prefix_len() {
            let mut hosts: AyaHashMap<&mut MapData, IpKey, IdentityValue> =
                AyaHashMap::try_from(self.map_mut(MAP_IPCACHE_HOSTS)?)?;
            hosts.insert(key.data(), IdentityValue { identity }, 0)?;
        } else {
            let mut trie: LpmTrie<&mut MapData, IpKey, IdentityValue> =
                LpmTrie::try_from(self.map_mut(MAP_IPCACHE)?)?;
            trie.insert(&key, IdentityValue { identity }, 0)?;
        }
        Ok(())
    }

    /// Declares the local endpoint behind an interface.
    pub fn endpoint_insert(&mut self, ifindex: u32, info: EndpointInfo) -> anyhow::Result<()> {
        let mut map: AyaHashMap<&mut MapData, u32, EndpointInfo> =
            AyaHashMap::try_from(self.map_mut(MAP_ENDPOINTS)?)?;
        map.insert(ifindex, info, 0)?;
        Ok(())
    }

    /// Adds one compiled policy entry.
    pub fn policy_insert(&mut self, key: PolicyKey, value: PolicyValue) -> anyhow::Result<()> {
        let mut map: AyaHashMap<&mut MapData, PolicyKey, PolicyValue> =
            AyaHashMap::try_from(self.map_mut(MAP_POLICY)?)?;
        map.insert(key, value, 0)?;
        Ok(())
    }

    /// Adds one compiled entry for a block of ports: the first `port_bits` bits of
    /// `key.port_be` are fixed.
    pub fn policy_range_insert(
        &mut self,
        key: PolicyRangeKey,
        port_bits: u8,
        value: PolicyValue,
    ) -> anyhow::Result<()> {
        let mut trie: LpmTrie<&mut MapData, PolicyRangeKey, PolicyValue> =
            LpmTrie::try_from(self.map_mut(MAP_POLICY_RANGES)?)?;
        let key = Key::new(POLICY_RANGE_KEY_FIXED_BITS + u32::from(port_bits), key);
        trie.insert(&key, value, 0)?;
        Ok(())
    }

    /// Installs a complete compiled policy. The inactive generation still holds the policy
    /// before the active one: only the entries that differ from it are written (removed,
    /// added or changed), then the active generation flips in one map write. No connection is
    /// ever judged by a mix of two policies, and a change of one rule writes the entries of
    /// that rule, not the whole policy. The generation switched from stays as it is, for the
    /// next install to diff against. `ranges` are the port-block entries with their fixed port
    /// bits; `l7_ingress` the addresses (and interfaces) of the local endpoints whose ingress
    /// sends some connections to the L7 proxy.
    pub fn install_policy(
        &mut self,
        endpoints: &[(u32, EndpointInfo)],
        entries: &[(PolicyKey, PolicyValue)],
        ranges: &[(PolicyRangeKey, u8, PolicyValue)],
        ipcache: &[(IpNet, u32)],
        l7_ingress: &[(IpAddr, u32)],
    ) -> anyhow::Result<PolicyWritten> {
        let active = self.generation()?;
        let next = 1 - active;
        let target = Generation::new(
            endpoints.to_vec(),
            entries.to_vec(),
            ranges
                .iter()
                .map(|(k, bits, v)| ((*k, *bits), *v))
                .collect(),
        );
        let mut written = PolicyWritten {
            generation: next,
            ..PolicyWritten::default()
        };
        // Identities first, so that a connection judged by the new generation finds its
        // remote's. Only new and changed prefixes are written; unused ones go after the flip.
        let ipcache = sorted(ipcache.to_vec());
        let (stale_nets, new_nets) = difference(&self.ipcache_installed, &ipcache);
        for (net, identity) in &new_nets {
            self.ipcache_insert(*net, *identity)?;
        }
        // Before the flip: a connection judged by the new generation finds its endpoint here.
        // An address of the old set only costs a lookup that finds no proxy entry.
        let l7_ingress = sorted(l7_ingress.to_vec());
        let (stale_ips, new_ips) = difference(&self.l7_ingress_installed, &l7_ingress);
        {
            let mut map: AyaHashMap<&mut MapData, IpKey, u32> =
                AyaHashMap::try_from(self.map_mut(MAP_L7_INGRESS)?)?;
            for (ip, ifindex) in new_ips {
                map.insert(ip_key(ip), ifindex, 0)?;
            }
        }
        self.set_config_flag(CONFIG_L7_INGRESS, !l7_ingress.is_empty())?;
        self.rewrite_generation(next, target, &mut written)?;
        self.set_config_flag(CONFIG_GENERATION, next == 1)?;
        self.flipped_at = Some(std::time::Instant::now());
        // Prefixes and addresses no longer in use go after the flip: nothing refers to them.
        for net in &stale_nets {
            self.ipcache_remove(*net)?;
        }
        written.ipcache = new_nets.len() + stale_nets.len();
        self.ipcache_installed = ipcache;
        {
            let mut map: AyaHashMap<&mut MapData, IpKey, u32> =
                AyaHashMap::try_from(self.map_mut(MAP_L7_INGRESS)?)?;
            for ip in stale_ips {
                let _ = map.remove(&ip_key(ip));
            }
        }
        self.l7_ingress_installed = l7_ingress;
        Ok(written)
    }

    /// Brings the inactive generation up to the active one (only the entries that differ),
    /// so that the next install writes only its own change. Returns what it wrote.
    pub fn mirror_active(&mut self) -> anyhow::Result<PolicyWritten> {
        let active = self.generation()?;
        let inactive = 1 - active;
        let mut written = PolicyWritten {
            generation: active,
            ..PolicyWritten::default()
        };
        let target = match self.generations[active as usize].clone() {
            Some(g) => g,
            None => self.read_generation(active)?,
        };
        self.rewrite_generation(inactive, target, &mut written)?;
        Ok(written)
    }

    /// Makes inactive generation `generation` hold `target`, writing only what differs from
    /// what it holds (read back from the maps when a failed write left that unknown), once no
    /// program run can still be judging by it.
    fn rewrite_generation(
        &mut self,
        generation: u32,
        target: Generation,
        written: &mut PolicyWritten,
    ) -> anyhow::Result<()> {
        let before = match self.generations[generation as usize].take() {
            Some(g) => g,
            None => self.read_generation(generation)?,
        };
        self.settle();
        self.write_generation(generation, &before, &target, written)?;
        self.generations[generation as usize] = Some(target);
        Ok(())
    }

    /// Waits, after a recent flip, until no program run can still be judging by the generation
    /// switched from: the programs run under RCU, and a global memory barrier waits for an RCU
    /// grace period. Without it (a kernel that refuses it), waits long enough for any run.
    fn settle(&self) {
        const RUNS_DONE: std::time::Duration = std::time::Duration::from_secs(1);
        if self.flipped_at.is_none_or(|t| t.elapsed() >= RUNS_DONE) {
            return;
        }
        // SAFETY: membarrier takes no pointers; MEMBARRIER_CMD_GLOBAL (1) waits for a grace
        // period.
        let r = unsafe { libc::syscall(libc::SYS_membarrier, 1, 0, 0) };
        if r != 0 {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Turns generation `generation` from `before` into `target`: removals first (room in the
    /// maps), then additions and changes. Nothing judges by this generation meanwhile.
    fn write_generation(
        &mut self,
        generation: u32,
        before: &Generation,
        target: &Generation,
        written: &mut PolicyWritten,
    ) -> anyhow::Result<()> {
        let tag = generation << GENERATION_SHIFT;
        {
            let mut map: AyaHashMap<&mut MapData, PolicyKey, PolicyValue> =
                AyaHashMap::try_from(self.map_mut(MAP_POLICY)?)?;
            let (removals, writes) = difference(&before.entries, &target.entries);
            for k in removals {
                let key = PolicyKey {
                    endpoint_id: k.endpoint_id | tag,
                    ..k
                };
                ignore_missing(map.remove(&key))?;
                written.entries += 1;
            }
            for (k, v) in writes {
                let key = PolicyKey {
                    endpoint_id: k.endpoint_id | tag,
                    ..k
                };
                map.insert(key, v, 0)?;
                written.entries += 1;
            }
        }
        {
            let mut trie: LpmTrie<&mut MapData, PolicyRangeKey, PolicyValue> =
                LpmTrie::try_from(self.map_mut(MAP_POLICY_RANGES)?)?;
            let key = |(k, bits): &(PolicyRangeKey, u8)| {
                Key::new(
                    POLICY_RANGE_KEY_FIXED_BITS + u32::from(*bits),
                    PolicyRangeKey {
                        endpoint_id: k.endpoint_id | tag,
                        ..*k
                    },
                )
            };
            let (removals, writes) = difference(&before.ranges, &target.ranges);
            for k in removals {
                ignore_missing(trie.remove(&key(&k)))?;
                written.entries += 1;
            }
            for (k, v) in writes {
                trie.insert(&key(&k), v, 0)?;
                written.entries += 1;
            }
        }
        let mut eps: AyaHashMap<&mut MapData, u32, EndpointInfo> =
            AyaHashMap::try_from(self.map_mut(MAP_ENDPOINTS)?)?;
        let (removals, writes) = difference(&before.endpoints, &target.endpoints);
        for ifindex in removals {
            ignore_missing(eps.remove(&(ifindex | tag)))?;
            written.endpoints += 1;
        }
        for (ifindex, info) in writes {
            let info = EndpointInfo {
                endpoint_id: info.endpoint_id | tag,
                ..info
            };
            eps.insert(ifindex | tag, info, 0)?;
            written.endpoints += 1;
        }
        Ok(())
    }

    /// Installs the empty policy: adopted maps of an observer that enforced policies stop
    /// enforcing them under one that has none.
    pub fn clear_policy(&mut self) -> anyhow::Result<()> {
        self.install_policy(&[], &[], &[], &[], &[]).map(|_| ())
    }

    fn generation(&self) -> anyhow::Result<u32> {
        let config: Array<&MapData, Config> = Array::try_from(
            self.ebpf
                .map(MAP_CONFIG)
                .ok_or_else(|| anyhow!("map {MAP_CONFIG} missing"))?,
        )?;
        Ok(u32::from(config.get(&0, 0)?.flags & CONFIG_GENERATION != 0))
    }

    fn set_config_flag(&mut self, flag: u64, on: bool) -> anyhow::Result<()> {
        let mut config: Array<&mut MapData, Config> = Array::try_from(self.map_mut(MAP_CONFIG)?)?;
        let mut c = config.get(&0, 0)?;
        c.flags = if on { c.flags | flag } else { c.flags & !flag };
        config.set(0, c, 0)?;
        Ok(())
    }

    fn ipcache_remove(&mut self, net: IpNet) -> anyhow::Result<()> {
        let key = ipcache_key(net);
        if net.prefix_len() == net.max_prefix_len() {
            let mut hosts: AyaHashMap<&mut MapData, IpKey, IdentityValue> =
                AyaHashMap::try_from(self.map_mut(MAP_IPCACHE_HOSTS)?)?;
            let _ = hosts.remove(&key.data());
        } else {
            let mut trie: LpmTrie<&mut MapData, IpKey, IdentityValue> =
                LpmTrie::try_from(self.map_mut(MAP_IPCACHE)?)?;
            let _ = trie.remove(&key);
        }
        Ok(())
    }

    /// Hands over the ring buffer of flow events (once).
    pub fn take_events(&mut self) -> anyhow::Result<RingBuf<MapData>> {
        let map = self
            .ebpf
            .take_map(MAP_EVENTS)
            .ok_or_else(|| anyhow!("map {MAP_EVENTS} already taken"))?;
        Ok(RingBuf::try_from(map)?)
    }

    /// Attaches to every present interface the selector matches and forgets interfaces that
    /// are gone (the kernel removes their links with them). Returns the names newly attached.
    pub fn sync(
        &mut self,
        present: &[Interface],
        selector: &InterfaceSelector,
    ) -> Vec<(String, anyhow::Result<()>)> {
        let mut changes = Vec::new();
        let gone: Vec<String> = self
            .attached
            .iter()
            .filter(|(name, a)| {
                !present
                    .iter()
                    .any(|i| &i.name == *name && i.index == a.ifindex)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(a) = self.attached.remove(&name) {
                self.detach(&name, a);
                info!(interface = %name, "Interface gone, detached");
            }
        }
        // Bounded by the interfaces that exist: forget failures of interfaces that are gone.
        self.failed
            .retain(|name, index| present.iter().any(|i| &i.name == name && i.index == *index));
        // The first sync takes over the links found pinned on the interfaces to watch, and
        // unpins (detaches) the rest.
        let mut found = self
            .pins
            .as_mut()
            .and_then(|p| p.found.take())
            .unwrap_or_default();
        for iface in present {
            if !selector.matches(&iface.name) || self.attached.contains_key(&iface.name) {
                continue;
            }
            if let Some([Some(ingress), Some(egress)]) = found.remove(&iface.index) {
                self.attached.insert(
                    iface.name.clone(),
                    Attached {
                        ifindex: iface.index,
                        links: Links::Pinned {
                            ingress,
                            egress,
                            current: false,
                        },
                    },
                );
                let swap_ready = self.pins.as_ref().is_some_and(|p| p.swap_ready);
                let swapped = swap_ready && self.swap(&iface.name).is_ok();
                info!(
                    interface = %iface.name,
                    ifindex = iface.index,
                    programs = if swapped { "swapped in" } else { "previous, until the policy is in" },
                    "Adopted its pinned links"
                );
                changes.push((iface.name.clone(), Ok(())));
                continue;
            }
            let result = self.attach(iface);
            match &result {
                Ok(()) => {
                    self.failed.remove(&iface.name);
                    info!(interface = %iface.name, ifindex = iface.index, "Attached");
                }
                Err(err) => {
                    if self.failed.insert(iface.name.clone(), iface.index) != Some(iface.index) {
                        warn!(interface = %iface.name, "Attach failed (will retry): {err:#}");
                    }
                }
            }
            changes.push((iface.name.clone(), result));
        }
        if let Some(pins) = &self.pins {
            for (ifindex, links) in found {
                for (direction, link) in [TcAttachType::Ingress, TcAttachType::Egress]
                    .into_iter()
                    .zip(links)
                {
                    let pin = pins.root.link(ifindex, direction);
                    if std::fs::remove_file(&pin).is_ok() && link.is_some() {
                        info!(ifindex, pin = %pin.display(), "Pinned link of an interface not watched now: detached");
                    }
                }
            }
        }
        changes
    }

    /// Names of the interfaces currently attached, with their index.
    pub fn attached(&self) -> Vec<(String, u32)> {
        let mut v: Vec<_> = self
            .attached
            .iter()
            .map(|(n, a)| (n.clone(), a.ifindex))
            .collect();
        v.sort();
        v
    }

    fn attach(&mut self, iface: &Interface) -> anyhow::Result<()> {
        let ingress = attach_first(self.classifier(PROG_INGRESS)?, iface, TcAttachType::Ingress)
            .with_context(|| format!("attaching to {} ingress", iface.name))?;
        let egress = match attach_first(self.classifier(PROG_EGRESS)?, iface, TcAttachType::Egress)
        {
            Ok(l) => l,
            Err(err) => {
                // Never leave one direction watched and the other not.
                let _ = self.classifier(PROG_INGRESS)?.detach(ingress);
                return Err(err).with_context(|| format!("attaching to {} egress", iface.name));
            }
        };
        let links = match self.pin_links(iface.index, ingress, egress) {
            Ok(links) => links,
            Err(err) => {
                return Err(err).with_context(|| format!("pinning the links of {}", iface.name));
            }
        };
        self.attached.insert(
            iface.name.clone(),
            Attached {
                ifindex: iface.index,
                links,
            },
        );
        Ok(())
    }

    /// With pinning, the new links of interface `ifindex` are pinned (and so outlive the
    /// observer); on failure both are detached.
    fn pin_links(
        &mut self,
        ifindex: u32,
        ingress: SchedClassifierLinkId,
        egress: SchedClassifierLinkId,
    ) -> anyhow::Result<Links> {
        let Some(pins) = self.pins.as_ref() else {
            return Ok(Links::Owned { ingress, egress });
        };
        if !tcx() {
            // Netlink tc filters are no bpf links: nothing to pin, they go with the observer.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                warn!(
                    "This kernel (before 6.6) attaches tc programs without links: they cannot \
                     be pinned and detach when the observer exits"
                )
            });
            return Ok(Links::Owned { ingress, egress });
        }
        let paths = [
            pins.root.link(ifindex, TcAttachType::Ingress),
            pins.root.link(ifindex, TcAttachType::Egress),
        ];
        let ingress = self.classifier(PROG_INGRESS)?.take_link(ingress)?;
        let egress = self.classifier(PROG_EGRESS)?.take_link(egress)?;
        let mut pinned = Vec::with_capacity(2);
        for (link, path) in [ingress, egress].into_iter().zip(&paths) {
            // A pin left by a link that is gone (its interface replaced) makes way.
            let _ = std::fs::remove_file(path);
            let fd = FdLink::try_from(link)?;
            let done = fd
                .pin(path)
                .map_err(anyhow::Error::from)
                .and_then(|p| Ok(SchedClassifierLink::try_from(FdLink::from(p))?));
            match done {
                Ok(link) => pinned.push(link),
                Err(err) => {
                    // The links taken so far go with their pins: nothing half-attached.
                    for path in &paths {
                        let _ = std::fs::remove_file(path);
                    }
                    return Err(err);
                }
            }
        }
        let egress = pinned.pop().expect("two links");
        let ingress = pinned.pop().expect("two links");
        Ok(Links::Pinned {
            ingress,
            egress,
            current: true,
        })
    }

    fn detach(&mut self, name: &str, a: Attached) {
        match a.links {
            Links::Owned { ingress, egress } => {
                // The links of a deleted interface are already gone; detaching them only
                // releases our file descriptors, so errors here are expected and harmless.
                for (prog, link) in [(PROG_INGRESS, ingress), (PROG_EGRESS, egress)] {
                    if let Ok(p) = self.classifier(prog)
                        && let Err(err) = p.detach(link)
                    {
                        debug!(interface = name, "Detach: {err}");
                    }
                }
            }
            Links::Pinned {
                ingress, egress, ..
            } => {
                // Without its pin and our descriptor, the kernel detaches the link.
                if let Some(pins) = &self.pins {
                    for direction in [TcAttachType::Ingress, TcAttachType::Egress] {
                        let _ = std::fs::remove_file(pins.root.link(a.ifindex, direction));
                    }
                }
                drop((ingress, egress));
            }
        }
    }

    fn map(&self, name: &'static str) -> anyhow::Result<&aya::maps::Map> {
        self.ebpf
            .map(name)
            .ok_or_else(|| anyhow!("map {name} missing from the object"))
    }

    fn map_mut(&mut self, name: &'static str) -> anyhow::Result<&mut aya::maps::Map> {
        self.ebpf
            .map_mut(name)
            .ok_or_else(|| anyhow!("map {name} missing from the object"))
    }

    /// Runs program `prog` ([`PROG_INGRESS`] or [`PROG_EGRESS`]) `repeat` times on a crafted
    /// Ethernet frame in the kernel (BPF_PROG_TEST_RUN), for tests and benchmarks: its return
    /// code and the kernel's average run time. The packet's interface is the loopback's.
    pub fn test_run(
        &mut self,
        prog: &str,
        packet: &[u8],
        repeat: u32,
    ) -> anyhow::Result<(u32, std::time::Duration)> {
        use aya::programs::{TestRun as _, TestRunOptions};
        let opts = TestRunOptions {
            data_in: Some(packet),
            repeat,
            ..TestRunOptions::default()
        };
        let r = self.classifier(prog)?.test_run(opts)?;
        Ok((r.return_value, r.duration))
    }

    fn classifier(&mut self, name: &str) -> anyhow::Result<&mut SchedClassifier> {
        Ok(self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("program {name} missing"))?
            .try_into()?)
    }

    /// Reads the per-CPU counters.
    pub fn stats(&self) -> anyhow::Result<DatapathStats> {
        let mut out = DatapathStats {
            counters: [0; STAT_COUNT as usize],
            lost_per_cpu: [0; MAX_CPUS],
        };
        for stat in 0..STAT_COUNT {
            let values = self.stats.get(&stat, 0)?;
            for (cpu, v) in values.iter().enumerate() {
                out.counters[stat as usize] += *v;
                if stat == flowscope_common::STAT_EVENTS_LOST {
                    out.lost_per_cpu[cpu.min(MAX_CPUS - 1)] += *v;
                }
            }
        }
        Ok(out)
    }
}

impl Drop for Datapath {
    /// Unpinned, the programs detach with the observer. Pinned, they stay attached and keep
    /// enforcing: only the observer's descriptors close.
    fn drop(&mut self) {
        if self.pins.is_some() {
            return;
        }
        let attached: Vec<_> = self.attached.drain().collect();
        for (name, a) in attached {
            self.detach(&name, a);
        }
    }
}

/// A link pinned at `path` that is still attached to interface `ifindex` in `direction`
/// (its program is among the interface's tcx programs); None when its interface is gone.
fn adopt_link(
    path: &std::path::Path,
    ifindex: u32,
    direction: TcAttachType,
    present: &[Interface],
) -> anyhow::Result<Option<SchedClassifierLink>> {
    let fd = FdLink::from(PinnedLink::from_pin(path)?);
    let program = fd.info()?.program_id();
    let Some(iface) = present.iter().find(|i| i.index == ifindex) else {
        return Ok(None);
    };
    let (_, programs) = SchedClassifier::query_tcx(&iface.name, direction)?;
    if !programs.iter().any(|p| p.id() == program) {
        return Ok(None);
    }
    Ok(Some(SchedClassifierLink::try_from(fd)?))
}

/// Puts `prog` into the link pinned at `pin` in place of the program it runs.
fn swap_program(
    prog: &mut SchedClassifier,
    pin: &std::path::Path,
) -> anyhow::Result<SchedClassifierLink> {
    let link = SchedClassifierLink::try_from(FdLink::from(PinnedLink::from_pin(pin)?))?;
    let id = prog.attach_to_link(link)?;
    Ok(prog.take_link(id)?)
}

/// The prefix of an ipcache key with `bits` fixed address bits.
fn ip_net(key: &IpKey, bits: u8) -> Option<IpNet> {
    let addr: IpAddr = match key.family {
        FAMILY_IPV4 => {
            std::net::Ipv4Addr::new(key.addr[0], key.addr[1], key.addr[2], key.addr[3]).into()
        }
        FAMILY_IPV6 => std::net::Ipv6Addr::from(key.addr).into(),
        _ => return None,
    };
    IpNet::new(addr, bits).ok()
}

/// tc programs attach as tcx links (kernels >= 6.6), which can be pinned.
fn tcx() -> bool {
    use aya::util::KernelVersion;
    KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0))
}

/// The ipcache key of a prefix: family and address, the prefix covering the family too.
/// The exact-match key of one address.
/// The bits of an endpoint id or interface index that name its policy generation.
const GENERATION_TAGS: u32 = !0 << GENERATION_SHIFT;

/// One policy generation's content in the maps, keys without the generation's tag, each
/// table sorted by key: two generations are compared by one merge, without hashing.
#[derive(Clone, Debug, Default)]
struct Generation {
    /// Interface index -> the endpoint behind it.
    endpoints: Vec<(u32, EndpointInfo)>,
    entries: Vec<(PolicyKey, PolicyValue)>,
    /// (key, fixed port bits) -> value.
    ranges: Vec<((PolicyRangeKey, u8), PolicyValue)>,
}

impl Generation {
    fn new(
        endpoints: Vec<(u32, EndpointInfo)>,
        entries: Vec<(PolicyKey, PolicyValue)>,
        ranges: Vec<((PolicyRangeKey, u8), PolicyValue)>,
    ) -> Self {
        Generation {
            endpoints: sorted(endpoints),
            entries: sorted(entries),
            ranges: sorted(ranges),
        }
    }
}

/// `table` sorted by key, one entry per key (the last given wins, as in a map).
fn sorted<K: Ord, V>(mut table: Vec<(K, V)>) -> Vec<(K, V)> {
    // A stable sort keeps equal keys in their order and `dedup` keeps the first of a run:
    // reversed first, the first kept is the last given.
    table.reverse();
    table.sort_by(|a, b| a.0.cmp(&b.0));
    table.dedup_by(|a, b| a.0 == b.0);
    table
}

/// What turns sorted table `before` into sorted table `after`: the keys to remove, and the
/// entries to write (new, or with another value).
fn difference<K: Ord + Copy, V: PartialEq + Copy>(
    before: &[(K, V)],
    after: &[(K, V)],
) -> (Vec<K>, Vec<(K, V)>) {
    use std::cmp::Ordering;
    let (mut removals, mut writes) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < before.len() || j < after.len() {
        let order = match (before.get(i), after.get(j)) {
            (Some(b), Some(a)) => b.0.cmp(&a.0),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        match order {
            Ordering::Less => {
                removals.push(before[i].0);
                i += 1;
            }
            Ordering::Greater => {
                writes.push(after[j]);
                j += 1;
            }
            Ordering::Equal => {
                if before[i].1 != after[j].1 {
                    writes.push(after[j]);
                }
                i += 1;
                j += 1;
            }
        }
    }
    (removals, writes)
}

/// What a policy install wrote to the maps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyWritten {
    /// The generation now active.
    pub generation: u32,
    /// Policy and port-block entries added, changed or removed.
    pub entries: usize,
    /// Endpoint entries added, changed or removed.
    pub endpoints: usize,
    /// Prefixes added, changed or removed in the ipcache.
    pub ipcache: usize,
}

/// A removal of a key that is already gone succeeded.
fn ignore_missing(r: Result<(), aya::maps::MapError>) -> Result<(), aya::maps::MapError> {
    match r {
        Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(aya::maps::MapError::SyscallError(e))
            if e.io_error.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok(())
        }
        r => r,
    }
}

fn ip_key(ip: IpAddr) -> IpKey {
    ipcache_key(IpNet::from(ip)).data()
}

fn ipcache_key(net: IpNet) -> Key<IpKey> {
    let (family, addr, bits) = match net {
        IpNet::V4(n) => {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&n.network().octets());
            (FAMILY_IPV4, a, u32::from(n.prefix_len()))
        }
        IpNet::V6(n) => (FAMILY_IPV6, n.network().octets(), u32::from(n.prefix_len())),
    };
    Key::new(
        IP_KEY_FIXED_BITS + bits,
        IpKey {
            family,
            _pad: [0; 3],
            addr,
        },
    )
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; lift it so loading works there too.
fn raise_memlock_limit() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid pointer to an initialised struct.
    let ret = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) };
    if ret != 0 {
        debug!("setrlimit(RLIMIT_MEMLOCK) failed; fine on kernels >= 5.11");
    }
}

/// The datapath's parser and conntrack, run in the kernel on crafted packets through
/// BPF_PROG_TEST_RUN (needs root, like every test that loads BPF).
/// Attaches `program` ahead of any other tc program on the interface (tcx, kernels >= 6.6).
/// A CNI's own programs (Cilium's, Calico's in eBPF mode) end the chain with a verdict; after
/// them flowscope would see nothing. flowscope's programs return `TC_ACT_UNSPEC` (tcx's
/// "next") for what they let through, so the programs after them still decide as before, and
/// they drop only what policy denies. Older kernels get the netlink attach, where flowscope's
/// filter is added at the clsact qdisc's default priority.
fn attach_first(
    program: &mut SchedClassifier,
    iface: &Interface,
    direction: TcAttachType,
) -> Result<SchedClassifierLinkId, aya::programs::ProgramError> {
    if tcx() {
        program.attach_with_options(
            &iface.name,
            direction,
            TcAttachOptions::TcxOrder(LinkOrder::first()),
        )
    } else {
        program.attach(&iface.name, direction)
    }
}

#[cfg(test)]
mod tests {
    use aya::programs::{TestRun as _, TestRunOptions};
    use flowscope_common::{FlowEvent, hook, kind, policy_match, tcp, verdict};

    use super::*;

    const PASS: u32 = u32::MAX; // TC_ACT_UNSPEC (-1): no opinion, next program decides
    const SHOT: u32 = 2;

    struct Harness {
        dp: Datapath,
        ring: RingBuf<MapData>,
    }

    impl Harness {
        fn new(deny: &[&str]) -> Self {
            Self::with_summary(deny, 0)
        }

        fn with_summary(deny: &[&str], summary_interval_ns: u64) -> Self {
            let rules: Vec<DenyRule> = deny.iter().map(|r| r.parse().unwrap()).collect();
            let settings = DatapathSettings {
                summary_interval_ns,
                ..DatapathSettings::default()
            };
            let mut dp = Datapath::load(&settings, &rules).expect("load datapath (root needed)");
            let ring = dp.take_events().unwrap();
            Harness { dp, ring }
        }

        /// Runs the program on `pkt`; events stay in the ring buffer.
        fn run_only(&mut self, prog: &str, pkt: &[u8]) -> u32 {
            let opts = TestRunOptions {
                data_in: Some(pkt),
                ..TestRunOptions::default()
            };
            let ret = self.dp.classifier(prog).unwrap().test_run(opts).unwrap();
            ret.return_value
        }

        fn run(&mut self, prog: &str, pkt: &[u8]) -> (u32, Vec<FlowEvent>) {
            let ret = self.run_only(prog, pkt);
            (ret, self.drain())
        }

        fn drain(&mut self) -> Vec<FlowEvent> {
            let mut events = Vec::new();
            while let Some(item) = self.ring.next() {
                assert_eq!(item.len(), std::mem::size_of::<FlowEvent>());
                // SAFETY: the record is a FlowEvent written by the datapath.
                events.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) });
            }
            events
        }

        fn stat(&self, i: u32) -> u64 {
            self.dp.stats().unwrap().counters[i as usize]
        }
    }

    const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa];
    const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0xb];
    const A4: [u8; 4] = [198, 18, 7, 1];
    const B4: [u8; 4] = [198, 18, 7, 2];

    fn eth(ethertype: u16) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&MAC_B);
        p.extend_from_slice(&MAC_A);
        p.extend_from_slice(&ethertype.to_be_bytes());
        p
    }

    fn ipv4(p: &mut Vec<u8>, proto: u8, src: [u8; 4], dst: [u8; 4], payload: usize, frag: u16) {
        p.extend_from_slice(&[0x45, 0]);
        p.extend_from_slice(&((20 + payload) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 1]);
        p.extend_from_slice(&frag.to_be_bytes());
        p.extend_from_slice(&[64, proto, 0, 0]);
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
    }

    fn tcp(p: &mut Vec<u8>, sport: u16, dport: u16, flags: u8) {
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&[0; 8]);
        p.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    }

    fn udp(p: &mut Vec<u8>, sport: u16, dport: u16) {
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&[0, 8, 0, 0]);
    }

    fn tcp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, flags: u8) -> Vec<u8> {
        let mut p = eth(0x0800);
        ipv4(&mut p, 6, src, dst, 20, 0);
        tcp(&mut p, sport, dport, flags);
        p
    }

    fn udp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut p = eth(0x0800);
        ipv4(&mut p, 17, src, dst, 8, 0);
        udp(&mut p, sport, dport);
        p
    }

    /// An SCTP INIT chunk header after the common header (ports, tag, checksum).
    fn sctp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut p = eth(0x0800);
        ipv4(&mut p, 132, src, dst, 16, 0);
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&[0; 8]);
        p.extend_from_slice(&[1, 0, 0, 4]);
        p
    }

    #[test]
    fn sctp_associations_are_tracked_and_judged_by_port() {
        use flowscope_common::{POLICY_ALLOW, direction, drop_reason};
        let (mut h, _) = policy_harness(flowscope_common::ENFORCE_INGRESS);
        allow(&mut h, direction::INGRESS, 400, 132, 9999, POLICY_ALLOW, 0);
        let (ret, ev) = h.run(PROG_EGRESS, &sctp4(B4, A4, 5000, 9999));
        assert_eq!(ret, PASS);
        assert_eq!(
            (ev[0].kind, ev[0].proto, ev[0].sport, ev[0].dport),
            (kind::NEW, 132, 5000, 9999)
        );
        assert_eq!(
            (ev[0].policy_ref, ev[0].policy_match),
            (1, policy_match::L3_L4)
        );
        // The reply belongs to the association: conntrack, no new event.
        let (ret, ev) = h.run(PROG_INGRESS, &sctp4(A4, B4, 9999, 5000));
        assert_eq!(ret, PASS);
        assert!(ev.iter().all(|e| e.kind != kind::NEW), "{ev:?}");
        // Another port, or TCP on the same port: isolated, dropped.
        let (ret, ev) = h.run(PROG_EGRESS, &sctp4(B4, A4, 5001, 9998));
        assert_eq!((ret, ev[0].drop_reason), (SHOT, drop_reason::POLICY_DENIED));
        let (ret, _) = h.run(PROG_EGRESS, &tcp4(B4, A4, 5002, 9999, tcp::SYN as u8));
        assert_eq!(ret, SHOT);
    }

    #[test]
    fn tcp_connection_reports_per_flow_not_per_packet() {
        let mut h = Harness::new(&[]);
        let syn = tcp4(A4, B4, 40000, 80, tcp::SYN as u8);
        let (ret, ev) = h.run(PROG_INGRESS, &syn);
        assert_eq!(ret, PASS);
        assert_eq!(ev.len(), 1, "{ev:?}");
        let e = ev[0];
        assert_eq!(
            (e.kind, e.hook, e.family, e.proto),
            (kind::NEW, hook::INGRESS, 4, 6)
        );
        assert_eq!((e.sport, e.dport), (40000, 80));
        assert_eq!(&e.saddr[..4], &A4);
        assert_eq!(&e.daddr[..4], &B4);
        assert_eq!(e.tcp_flags, tcp::SYN);
        assert_eq!((e.verdict, e.is_reply), (verdict::FORWARDED, 0));
        assert_eq!(e.smac, MAC_A);
        assert_eq!(e.dmac, MAC_B);
        assert_eq!(e.pkt_len as usize, syn.len());

        // A retransmitted SYN is the same flow: no event.
        assert!(h.run(PROG_INGRESS, &syn).1.is_empty());
        // The SYN-ACK is the reply direction's first packet and a new flag there.
        let synack = tcp4(B4, A4, 80, 40000, (tcp::SYN | tcp::ACK) as u8);
        let (_, ev) = h.run(PROG_EGRESS, &synack);
        assert_eq!(ev.len(), 1);
        assert_eq!(
            (ev[0].kind, ev[0].is_reply, ev[0].hook),
            (kind::TCP_FLAGS, 1, hook::EGRESS)
        );
        assert_eq!(ev[0].origin_hook, hook::INGRESS);
        assert_eq!(ev[0].packets, [2, 1]);
        // Plain ACKs and data: nothing.
        for _ in 0..10 {
            assert!(
                h.run(PROG_INGRESS, &tcp4(A4, B4, 40000, 80, tcp::ACK as u8))
                    .1
                    .is_empty()
            );
            assert!(
                h.run(PROG_EGRESS, &tcp4(B4, A4, 80, 40000, tcp::ACK as u8))
                    .1
                    .is_empty()
            );
        }
        // FIN each way is reported once per direction.
        let fin = tcp4(A4, B4, 40000, 80, (tcp::FIN | tcp::ACK) as u8);
        assert_eq!(h.run(PROG_INGRESS, &fin).1.len(), 1);
        assert!(h.run(PROG_INGRESS, &fin).1.is_empty());
        let (_, ev) = h.run(
            PROG_EGRESS,
            &tcp4(B4, A4, 80, 40000, (tcp::FIN | tcp::ACK) as u8),
        );
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].packets, [14, 12]);
        assert_eq!(h.stat(flowscope_common::STAT_CT_CREATED), 1);
    }

    /// Conntrack keys a connection by its ends in canonical order: whichever end has the lower
    /// address (or, between equal addresses, port), the opener's packets are the original
    /// direction and the other end's are replies, over IPv4 and IPv6 (both read in place).
    #[test]
    fn both_directions_find_the_connection_whichever_end_sorts_first() {
        // TCP over IPv4 or IPv6 by the addresses' length.
        fn tcp_any(src: &[u8], dst: &[u8], sport: u16, dport: u16, flags: u16) -> Vec<u8> {
            if src.len() == 4 {
                return tcp4(
                    src.try_into().unwrap(),
                    dst.try_into().unwrap(),
                    sport,
                    dport,
                    flags as u8,
                );
            }
            let mut p = eth(0x86dd);
            p.extend_from_slice(&[0x60, 0, 0, 0, 0, 20, 6, 64]);
            p.extend_from_slice(src);
            p.extend_from_slice(dst);
            tcp(&mut p, sport, dport, flags as u8);
            p
        }
        let v6 = |last| {
            [
                0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last,
            ]
        };
        let (low6, high6) = (v6(3), v6(9));
        // (case, client, server): the client's address lower, then higher; over one address
        // the ports decide, and the client's is the higher.
        let cases: [(&str, &[u8], &[u8]); 4] = [
            ("IPv4 client first", &A4, &B4),
            ("IPv4 server first", &B4, &A4),
            ("IPv6 server first", &high6, &low6),
            ("one address", &A4, &A4),
        ];
        for (case, client, server) in cases {
            let packet = |from_client: bool, flags: u16| {
                if from_client {
                    tcp_any(client, server, 40000, 80, flags)
                } else {
                    tcp_any(server, client, 80, 40000, flags)
                }
            };
            let mut h = Harness::new(&[]);
            let (_, ev) = h.run(PROG_INGRESS, &packet(true, tcp::SYN));
            assert_eq!(
                (ev.len(), ev[0].kind, ev[0].is_reply),
                (1, kind::NEW, 0),
                "{case}"
            );
            let (_, ev) = h.run(PROG_EGRESS, &packet(false, tcp::SYN | tcp::ACK));
            assert_eq!(
                ev.len(),
                1,
                "{case}: the SYN-ACK is a new flag of the reply"
            );
            assert_eq!((ev[0].kind, ev[0].is_reply), (kind::TCP_FLAGS, 1), "{case}");
            assert_eq!(ev[0].packets, [1, 1], "{case}");
            for _ in 0..3 {
                assert!(
                    h.run(PROG_INGRESS, &packet(true, tcp::ACK)).1.is_empty(),
                    "{case}"
                );
                assert!(
                    h.run(PROG_EGRESS, &packet(false, tcp::ACK)).1.is_empty(),
                    "{case}"
                );
            }
            let (_, ev) = h.run(PROG_EGRESS, &packet(false, tcp::FIN | tcp::ACK));
            assert_eq!((ev[0].is_reply, ev[0].packets), (1, [4, 5]), "{case}");
            let (_, ev) = h.run(PROG_INGRESS, &packet(true, tcp::FIN | tcp::ACK));
            assert_eq!((ev[0].is_reply, ev[0].packets), (0, [5, 5]), "{case}");
            assert_eq!(h.stat(flowscope_common::STAT_CT_CREATED), 1, "{case}");
        }
    }

    #[test]
    fn udp_over_ipv6_with_extension_header() {
        let mut h = Harness::new(&[]);
        let mut p = eth(0x86dd);
        let src = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let dst = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        p.extend_from_slice(&[0x60, 0, 0, 0, 0, 16, 0 /* hop-by-hop */, 64]);
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        // Hop-by-hop options: next header UDP, length 0 (8 bytes), PadN.
        p.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
        udp(&mut p, 5353, 53);
        let (ret, ev) = h.run(PROG_INGRESS, &p);
        assert_eq!(ret, PASS);
        assert_eq!(ev.len(), 1);
        assert_eq!(
            (ev[0].family, ev[0].proto, ev[0].sport, ev[0].dport),
            (6, 17, 5353, 53)
        );
        assert_eq!(ev[0].saddr, src);
        assert_eq!(ev[0].daddr, dst);
    }

    #[test]
    fn vlan_tags_are_skipped_and_reported() {
        let mut h = Harness::new(&[]);
        let mut p = eth(0x88a8);
        p.extend_from_slice(&[0x00, 0x64, 0x81, 0x00]); // S-tag 100, then C-tag
        p.extend_from_slice(&[0x00, 0x2a, 0x08, 0x00]); // C-tag 42, then IPv4
        ipv4(&mut p, 17, A4, B4, 8, 0);
        udp(&mut p, 1000, 2000);
        let (_, ev) = h.run(PROG_INGRESS, &p);
        assert_eq!(ev.len(), 1);
        assert_eq!((ev[0].vlan, ev[0].sport, ev[0].dport), (42, 1000, 2000));
    }

    #[test]
    fn icmp_echo_and_reply_are_one_connection() {
        let mut h = Harness::new(&[]);
        let echo = |src, dst, ty: u8| {
            let mut p = eth(0x0800);
            ipv4(&mut p, 1, src, dst, 8, 0);
            p.extend_from_slice(&[ty, 0, 0, 0, 0x12, 0x34, 0, 1]);
            p
        };
        let (_, ev) = h.run(PROG_INGRESS, &echo(A4, B4, 8));
        assert_eq!(ev.len(), 1);
        assert_eq!(
            (ev[0].icmp_type, ev[0].sport, ev[0].dport),
            (8, 0x1234, 0x1234)
        );
        let (_, ev) = h.run(PROG_EGRESS, &echo(B4, A4, 0));
        assert_eq!(ev.len(), 1);
        assert_eq!((ev[0].icmp_type, ev[0].is_reply), (0, 1));
    }

    #[test]
    fn malformed_and_foreign_packets_pass_untouched_and_are_counted() {
        let mut h = Harness::new(&["cidr=0.0.0.0/0"]);
        // Cut inside the TCP header. (BPF_PROG_TEST_RUN itself refuses IPv4 frames shorter
        // than an IPv4 header, so shorter cuts are made behind a VLAN tag below.)
        let mut full = tcp4(A4, B4, 1, 2, tcp::SYN as u8);
        for len in [47, 40, 34] {
            full.truncate(len);
            let (ret, ev) = h.run(PROG_INGRESS, &full);
            assert_eq!(ret, PASS, "len {len}");
            assert!(ev.is_empty(), "len {len}");
        }
        // An IPv4 header claiming 60 bytes of options that are not there.
        let mut long_ihl = tcp4(A4, B4, 1, 2, 0);
        long_ihl[14] = 0x4f;
        assert_eq!(h.run(PROG_INGRESS, &long_ihl), (PASS, vec![]));
        // A VLAN tag followed by 10 bytes of an IPv4 header.
        let mut short = eth(0x8100);
        short.extend_from_slice(&[0, 5, 0x08, 0x00, 0x45, 0, 0, 20, 0, 1, 0, 0, 64, 6]);
        assert_eq!(h.run(PROG_INGRESS, &short), (PASS, vec![]));
        // IHL below 5 and a TCP data offset below 5 are malformed.
        let mut bad_ihl = tcp4(A4, B4, 1, 2, 0);
        bad_ihl[14] = 0x44;
        assert_eq!(h.run(PROG_INGRESS, &bad_ihl).0, PASS);
        let mut bad_doff = tcp4(A4, B4, 1, 2, 0);
        bad_doff[14 + 20 + 12] = 0x40;
        assert_eq!(h.run(PROG_INGRESS, &bad_doff).0, PASS);
        // An IPv6 ethertype carrying a version-4 header.
        let mut wrong_ver = eth(0x86dd);
        wrong_ver.extend_from_slice(&[0x45; 60]);
        assert_eq!(h.run(PROG_INGRESS, &wrong_ver).0, PASS);
        assert_eq!(h.stat(flowscope_common::STAT_TRUNCATED), 8);
        // ARP is not IP.
        let mut arp = eth(0x0806);
        arp.extend_from_slice(&[0; 28]);
        assert_eq!(h.run(PROG_INGRESS, &arp).0, PASS);
        assert_eq!(h.stat(flowscope_common::STAT_NON_IP), 1);
        assert_eq!(h.stat(flowscope_common::STAT_PACKETS), 9);
        assert_eq!(h.stat(flowscope_common::STAT_DROPPED), 0);
    }

    #[test]
    fn later_fragments_are_tracked_by_address() {
        let mut h = Harness::new(&[]);
        let mut p = eth(0x0800);
        ipv4(&mut p, 17, A4, B4, 8, 185); // offset 185*8, no L4 header here
        p.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0]);
        let (ret, ev) = h.run(PROG_INGRESS, &p);
        assert_eq!(ret, PASS);
        assert_eq!(ev.len(), 1);
        assert_eq!((ev[0].proto, ev[0].sport, ev[0].dport), (17, 0, 0));
        assert_eq!(h.stat(flowscope_common::STAT_FRAGMENTS), 1);
    }

    #[test]
    fn deny_rules_drop_every_packet_of_the_connection() {
        let mut h = Harness::new(&[
            "cidr=198.18.7.0/24,port=443,protocol=tcp",
            "cidr=198.18.9.9",
        ]);
        let denied = tcp4(A4, B4, 1234, 443, tcp::SYN as u8);
        for _ in 0..3 {
            let (ret, ev) = h.run(PROG_INGRESS, &denied);
            assert_eq!(ret, SHOT);
            assert_eq!(ev.len(), 1, "every dropped packet is reported");
            assert_eq!((ev[0].kind, ev[0].verdict), (kind::DROP, verdict::DROPPED));
            assert_eq!(
                ev[0].drop_reason,
                flowscope_common::drop_reason::POLICY_DENIED
            );
            assert_eq!(ev[0].rule, 0);
        }
        // Other port, other protocol: allowed.
        assert_eq!(
            h.run(PROG_INGRESS, &tcp4(A4, B4, 1234, 80, tcp::SYN as u8))
                .0,
            PASS
        );
        let mut u = eth(0x0800);
        ipv4(&mut u, 17, A4, B4, 8, 0);
        udp(&mut u, 1234, 443);
        assert_eq!(h.run(PROG_INGRESS, &u).0, PASS);
        // Any protocol and port to a host rule.
        let (ret, ev) = h.run(
            PROG_INGRESS,
            &tcp4(A4, [198, 18, 9, 9], 1, 22, tcp::SYN as u8),
        );
        assert_eq!((ret, ev[0].rule), (SHOT, 1));
        assert_eq!(h.stat(flowscope_common::STAT_DROPPED), 4);
        // Replies of an allowed connection are never judged.
        assert_eq!(h.run(PROG_EGRESS, &tcp4(B4, A4, 80, 1234, 0x12)).0, PASS);
    }

    #[test]
    fn long_connections_report_their_counters() {
        let mut h = Harness::with_summary(&[], 1);
        let pkt = |src, dst, sport, dport| {
            let mut p = eth(0x0800);
            ipv4(&mut p, 17, src, dst, 8, 0);
            udp(&mut p, sport, dport);
            p
        };
        assert_eq!(h.run(PROG_INGRESS, &pkt(A4, B4, 7, 8)).1[0].kind, kind::NEW);
        assert_eq!(
            h.run(PROG_EGRESS, &pkt(B4, A4, 8, 7)).1[0].kind,
            kind::TCP_FLAGS
        );
        // The summary clock has jiffy resolution: let it tick.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (_, ev) = h.run(PROG_INGRESS, &pkt(A4, B4, 7, 8));
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, kind::SUMMARY);
        assert_eq!((ev[0].packets, ev[0].bytes), ([2, 1], [84, 42]));
        // Not again until the interval has passed once more.
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(h.run(PROG_INGRESS, &pkt(A4, B4, 7, 8)).1.len(), 1);
    }

    #[test]
    fn a_full_ring_buffer_counts_every_lost_event() {
        let mut h = Harness::new(&[]);
        // More new connections than the 4 MiB ring holds, without reading it.
        const N: u32 = 40_000;
        let mut p = eth(0x0800);
        ipv4(&mut p, 17, A4, B4, 8, 0);
        udp(&mut p, 0, 53);
        for i in 0..N {
            let src = (i as u16).to_be_bytes();
            p[26 + 2] = src[0]; // vary the source address's last two bytes
            p[26 + 3] = src[1];
            p[34..36].copy_from_slice(&((i / 65536) as u16 + 1).to_be_bytes());
            assert_eq!(h.run_only(PROG_INGRESS, &p), PASS);
        }
        let delivered = h.drain().len() as u64;
        let stats = h.dp.stats().unwrap();
        let lost = stats.counters[flowscope_common::STAT_EVENTS_LOST as usize];
        assert!(lost > 0, "the ring should have overflowed");
        assert_eq!(
            delivered + lost,
            N as u64,
            "{delivered} delivered, {lost} lost"
        );
        assert_eq!(
            stats.counters[flowscope_common::STAT_EVENTS as usize],
            delivered
        );
        assert_eq!(stats.lost_per_cpu.iter().sum::<u64>(), lost);
    }

    /// The interface index BPF_PROG_TEST_RUN gives packets, learnt from a first event.
    fn test_ifindex(h: &mut Harness) -> u32 {
        let (_, ev) = h.run(
            PROG_INGRESS,
            &tcp4([198, 18, 250, 1], [198, 18, 250, 2], 9, 9, 0x02),
        );
        ev[0].ifindex
    }

    fn policy_harness(flags: u32) -> (Harness, u32) {
        use flowscope_common::EndpointInfo;
        let mut h = Harness::new(&[]);
        let ifindex = test_ifindex(&mut h);
        h.dp.endpoint_insert(
            ifindex,
            EndpointInfo {
                endpoint_id: 7,
                identity: 300,
                flags,
                _pad: 0,
            },
        )
        .unwrap();
        // B4 is a pod with identity 400; everything else is world.
        h.dp.ipcache_insert("198.18.7.2/32".parse().unwrap(), 400)
            .unwrap();
        (h, ifindex)
    }

    fn allow(h: &mut Harness, dir: u8, identity: u32, proto: u8, port: u16, action: u8, r: u32) {
        use flowscope_common::{PolicyKey, PolicyValue};
        h.dp.policy_insert(
            PolicyKey {
                endpoint_id: 7,
                remote_identity: identity,
                port,
                proto,
                direction: dir,
            },
            PolicyValue {
                action,
                flags: 0,
                _pad: [0; 2],
                policy_ref: r,
            },
        )
        .unwrap();
    }

    fn proxy_entry(h: &mut Harness, dir: u8, port: u16, r: u32) {
        use flowscope_common::{POLICY_ALLOW, POLICY_FLAG_PROXY, PolicyKey, PolicyValue};
        h.dp.policy_insert(
            PolicyKey {
                endpoint_id: 7,
                remote_identity: 0,
                port,
                proto: 6,
                direction: dir,
            },
            PolicyValue {
                action: POLICY_ALLOW,
                flags: POLICY_FLAG_PROXY,
                _pad: [0; 2],
                policy_ref: r,
            },
        )
        .unwrap();
    }

    #[test]
    fn connections_that_need_the_proxy_fail_closed_without_it() {
        use flowscope_common::{direction, drop_reason, proxy};
        let (mut h, _) = policy_harness(flowscope_common::ENFORCE_EGRESS);
        // Egress to any peer on TCP 80 goes through the proxy (entry 3).
        proxy_entry(&mut h, direction::EGRESS, 80, 3);
        // No proxy port configured (the proxy is not running): the SYN is dropped, reported,
        // counted, and names no policy as allowing it.
        let (ret, ev) = h.run(PROG_INGRESS, &tcp4(A4, B4, 1000, 80, tcp::SYN as u8));
        assert_eq!((ret, ev[0].verdict), (SHOT, verdict::DROPPED));
        assert_eq!(
            (ev[0].drop_reason, ev[0].policy_ref, ev[0].proxy),
            (drop_reason::SOCKET_LOOKUP_FAILED, 0, proxy::NONE)
        );
        // A port with no listener behind it: the same.
        h.dp.set_proxy_ports(1, 1).unwrap();
        let (ret, ev) = h.run(PROG_INGRESS, &tcp4(A4, B4, 1001, 80, tcp::SYN as u8));
        assert_eq!(
            (ret, ev[0].drop_reason),
            (SHOT, drop_reason::SOCKET_LOOKUP_FAILED)
        );
        // A connection first seen mid-stream (no SYN) cannot be handed over at all.
        let (ret, ev) = h.run(PROG_INGRESS, &tcp4(A4, B4, 1002, 80, 0x10));
        assert_eq!(
            (ret, ev[0].drop_reason),
            (SHOT, drop_reason::PROXY_REDIRECTION_NOT_SUPPORTED)
        );
        assert_eq!(h.stat(flowscope_common::STAT_PROXY_FAILURES), 3);
        assert_eq!(h.stat(flowscope_common::STAT_PROXY_REDIRECTS), 0);
        // Other ports are not the proxy's business: no entry, isolated, dropped as ever.
        let (_, ev) = h.run(PROG_INGRESS, &tcp4(A4, B4, 1003, 81, tcp::SYN as u8));
        assert_eq!(ev[0].drop_reason, drop_reason::POLICY_DENIED);
    }

    #[test]
    fn a_connection_reaching_its_endpoint_without_the_proxy_is_dropped() {
        use flowscope_common::{direction, drop_reason};
        let (mut h, _) = policy_harness(flowscope_common::ENFORCE_INGRESS);
        // Ingress on TCP 8080 goes through the proxy; the connection arrives at the endpoint's
        // interface (tc egress) unmarked: it did not pass the proxy.
        proxy_entry(&mut h, direction::INGRESS, 8080, 4);
        let (ret, ev) = h.run(PROG_EGRESS, &tcp4(B4, A4, 2000, 8080, tcp::SYN as u8));
        assert_eq!((ret, ev[0].verdict), (SHOT, verdict::DROPPED));
        assert_eq!(
            (ev[0].drop_reason, ev[0].policy_ref),
            (drop_reason::PROXY_REDIRECTION_NOT_SUPPORTED, 0)
        );
        // In audit mode it passes, reported as AUDIT with the same reason.
        h.dp.set_audit(true).unwrap();
        let (ret, ev) = h.run(PROG_EGRESS, &tcp4(B4, A4, 2001, 8080, tcp::SYN as u8));
        assert_eq!((ret, ev[0].verdict), (PASS, verdict::AUDIT));
        assert_eq!(
            ev[0].drop_reason,
            drop_reason::PROXY_REDIRECTION_NOT_SUPPORTED
        );
    }

    #[test]
    fn generation_tables_are_sorted_with_the_last_value_of_a_key_and_diffed_by_merge() {
        let t = sorted(vec![(3, 'a'), (1, 'b'), (3, 'c'), (2, 'd')]);
        assert_eq!(t, vec![(1, 'b'), (2, 'd'), (3, 'c')]);
        let after = sorted(vec![(2, 'd'), (3, 'x'), (4, 'e')]);
        let (removals, writes) = difference(&t, &after);
        assert_eq!(removals, vec![1]);
        assert_eq!(writes, vec![(3, 'x'), (4, 'e')]);
        let (removals, writes) = difference(&after, &after);
        assert!(removals.is_empty() && writes.is_empty());
    }

    #[test]
    fn a_policy_change_writes_only_the_entries_that_differ() {
        use flowscope_common::{ENFORCE_EGRESS, POLICY_ALLOW, PolicyKey, PolicyValue, direction};
        let mut h = Harness::new(&[]);
        let ifindex = test_ifindex(&mut h);
        let endpoint = EndpointInfo {
            endpoint_id: 7,
            identity: 300,
            flags: ENFORCE_EGRESS,
            _pad: 0,
        };
        // Egress to anyone on the TCP ports given, each entry attributed to its port.
        let policy = |ports: &[u16]| -> Vec<(PolicyKey, PolicyValue)> {
            ports
                .iter()
                .map(|&port| {
                    let key = PolicyKey {
                        endpoint_id: 7,
                        remote_identity: 0,
                        port,
                        proto: 6,
                        direction: direction::EGRESS,
                    };
                    let value = PolicyValue {
                        action: POLICY_ALLOW,
                        flags: 0,
                        _pad: [0; 2],
                        policy_ref: u32::from(port),
                    };
                    (key, value)
                })
                .collect()
        };
        let ipcache = [("198.18.7.2/32".parse().unwrap(), 400)];
        let install = |h: &mut Harness, ports: &[u16]| {
            h.dp.install_policy(&[(ifindex, endpoint)], &policy(ports), &[], &ipcache, &[])
                .unwrap()
        };
        let mut sport = 1000;
        let mut allowed = |h: &mut Harness, port: u16| {
            sport += 1;
            h.run(PROG_INGRESS, &tcp4(A4, B4, sport, port, tcp::SYN as u8))
                .0
                == PASS
        };
        let a: Vec<u16> = (2000..2100).collect();
        let first = install(&mut h, &a);
        assert_eq!((first.entries, first.endpoints, first.ipcache), (100, 1, 1));
        assert!(allowed(&mut h, 2050) && !allowed(&mut h, 3000));
        // The other generation is empty: the first change writes it whole, then it catches up
        // with the active one by the difference only.
        let b: Vec<u16> = (2000..2100).filter(|p| *p != 2050).chain([3000]).collect();
        assert_eq!(install(&mut h, &b).entries, 100);
        assert_eq!(h.dp.mirror_active().unwrap().entries, 2);
        assert!(!allowed(&mut h, 2050) && allowed(&mut h, 3000));
        // From now on a change of one rule writes one entry, and nothing else.
        let c: Vec<u16> = b.iter().copied().filter(|p| *p != 2051).collect();
        let written = install(&mut h, &c);
        assert_eq!(
            (written.entries, written.endpoints, written.ipcache),
            (1, 0, 0)
        );
        assert!(!allowed(&mut h, 2051) && allowed(&mut h, 2052) && allowed(&mut h, 3000));
        // A changed value (the same port, another attribution) is written too.
        let mut d = policy(&c);
        d[0].1.policy_ref += 1000;
        let written =
            h.dp.install_policy(&[(ifindex, endpoint)], &d, &[], &ipcache, &[])
                .unwrap();
        assert_eq!(
            written.entries, 2,
            "the removal of 2051 and the changed value"
        );
        // What the datapath judges by is exactly the last policy, in both generations once
        // mirrored.
        let expected = sorted(d.clone());
        assert_eq!(
            h.dp.read_generation(written.generation).unwrap().entries,
            expected
        );
        h.dp.mirror_active().unwrap();
        assert_eq!(
            h.dp.read_generation(1 - written.generation)
                .unwrap()
                .entries,
            expected
        );
    }

    #[test]
    fn egress_policy_judges_connections_leaving_the_endpoint() {
        use flowscope_common::{POLICY_ALLOW, direction, drop_reason};
        let (mut h, _) = policy_harness(flowscope_common::ENFORCE_EGRESS);
        // Egress to identity 400 on TCP 80 only (entry 5).
        allow(&mut h, direction::EGRESS, 400, 6, 80, POLICY_ALLOW, 5);
        let (ret, ev) = h.run(PROG_INGRESS, &tcp4(A4, B4, 1000, 80, tcp::SYN as u8));
        assert_eq!(ret, PASS);
        assert_eq!((ev[0].verdict, ev[0].policy_ref), (verdict::FORWARDED, 6));
        // Another port, another protocol, another peer: no entry, isolated: dropped.
        let (ret, ev) = h.run(PROG_INGRESS, &tcp4(A4, B4, 1001, 81, tcp::SYN as u8));
        assert_eq!((ret, ev[0].verdict), (SHOT, verdict::DROPPED));
        assert_eq!(
            (ev[0].drop_reason, ev[0].policy_ref),
            (drop_reason::POLICY_DENIED, 0)
        );
        let (ret, _) = h.run(
            PROG_INGRESS,
            &tcp4(A4, [198, 18, 9, 9], 1002, 80, tcp::SYN as u8),
        );
        assert_eq!(ret, SHOT, "world is not identity 400");
        // The reply of the allowed connection passes: conntrack, not policy.
        assert_eq!(h.run(PROG_EGRESS, &tcp4(B4, A4, 80, 1000, 0x12)).0, PASS);
        // Ingress is not isolated: a connection into the endpoint from anywhere passes.
        let (ret, ev) = h.run(
            PROG_EGRESS,
            &tcp4([198, 18, 9, 9], A4, 5555, 22, tcp::SYN as u8),
        );
        assert_eq!(
            (ret, ev[0].verdict, ev[0].policy_ref),
            (PASS, verdict::FORWARDED, 0)
        );
    }

    #[test]
    fn wildcards_are_tried_from_specific_to_general_and_deny_rules_report_policy_deny() {
        use flowscope_common::{POLICY_ALLOW, POLICY_DENY, direction, drop_reason};
        let (mut h, _) = policy_harness(flowscope_common::ENFORCE_INGRESS);
        let ing = direction::INGRESS;
        allow(&mut h, ing, 0, 0, 0, POLICY_ALLOW, 1); // anyone, anything
        allow(&mut h, ing, 400, 6, 0, POLICY_DENY, 2); // identity 400: no TCP...
        allow(&mut h, ing, 400, 6, 443, POLICY_ALLOW, 3); // ...except 443
        let syn = |src, sport, dport| tcp4(src, A4, sport, dport, tcp::SYN as u8);
        let (ret, ev) = h.run(PROG_EGRESS, &syn(B4, 2000, 443));
        assert_eq!((ret, ev[0].policy_ref), (PASS, 4));
        assert_eq!(
            (ev[0].policy_verdict, ev[0].policy_match),
            (1, policy_match::L3_L4)
        );
        let (ret, ev) = h.run(PROG_EGRESS, &syn(B4, 2001, 22));
        assert_eq!(
            (ret, ev[0].drop_reason, ev[0].policy_ref),
            (SHOT, drop_reason::POLICY_DENY, 3)
        );
        assert_eq!(
            (ev[0].policy_verdict, ev[0].policy_match),
            (1, policy_match::L3_PROTO)
        );
        let (ret, ev) = h.run(PROG_EGRESS, &syn([198, 18, 9, 9], 2002, 22));
        assert_eq!((ret, ev[0].policy_ref), (PASS, 2));
        assert_eq!(
            (ev[0].policy_verdict, ev[0].policy_match),
            (1, policy_match::ALL)
        );
    }

    #[test]
    fn port_blocks_are_found_by_longest_prefix_between_exact_and_any_port() {
        use flowscope_common::{
            POLICY_ALLOW, POLICY_DENY, PolicyRangeKey, PolicyValue, RANGES_INGRESS, direction,
            drop_reason,
        };
        let (mut h, ifindex) = policy_harness(flowscope_common::ENFORCE_INGRESS | RANGES_INGRESS);
        let ing = direction::INGRESS;
        let block = |h: &mut Harness, identity, first: u16, bits, action, r| {
            h.dp.policy_range_insert(
                PolicyRangeKey {
                    endpoint_id: 7,
                    remote_identity: identity,
                    direction: ing,
                    proto: 6,
                    port_be: first.to_be(),
                },
                bits,
                PolicyValue {
                    action,
                    flags: 0,
                    _pad: [0; 2],
                    policy_ref: r,
                },
            )
            .unwrap();
        };
        block(&mut h, 0, 1024, 6, POLICY_ALLOW, 1); // 1024-2047 from anyone
        block(&mut h, 400, 1024, 6, POLICY_ALLOW, 2); // 1024-2047 from identity 400
        block(&mut h, 400, 1536, 7, POLICY_DENY, 3); // but not 1536-2047 from 400
        allow(&mut h, ing, 400, 6, 1600, POLICY_ALLOW, 4); // except 1600 exactly
        allow(&mut h, ing, 400, 6, 0, POLICY_ALLOW, 5); // any other TCP port from 400
        let syn = |src, sport, dport| tcp4(src, A4, sport, dport, tcp::SYN as u8);
        let judged = |h: &mut Harness, src, sport, dport| {
            let (ret, ev) = h.run(PROG_EGRESS, &syn(src, sport, dport));
            (ret, ev[0].policy_ref, ev[0].policy_match)
        };
        let world = [198, 18, 9, 9];
        assert_eq!(
            judged(&mut h, world, 6000, 1500),
            (PASS, 2, policy_match::L4_ONLY)
        );
        assert_eq!(
            judged(&mut h, world, 6001, 3000).0,
            SHOT,
            "outside the block"
        );
        assert_eq!(
            judged(&mut h, B4, 6002, 1100),
            (PASS, 3, policy_match::L3_L4)
        );
        let (ret, ev) = h.run(PROG_EGRESS, &syn(B4, 6003, 1700));
        assert_eq!(
            (ret, ev[0].drop_reason, ev[0].policy_ref),
            (SHOT, drop_reason::POLICY_DENY, 4),
            "the smaller block wins"
        );
        assert_eq!(
            judged(&mut h, B4, 6004, 1600),
            (PASS, 5, policy_match::L3_L4)
        );
        assert_eq!(
            judged(&mut h, B4, 6005, 80),
            (PASS, 6, policy_match::L3_PROTO)
        );
        // Without the flag the blocks are not consulted.
        h.dp.endpoint_insert(
            ifindex,
            flowscope_common::EndpointInfo {
                endpoint_id: 7,
                identity: 300,
                flags: flowscope_common::ENFORCE_INGRESS,
                _pad: 0,
            },
        )
        .unwrap();
        assert_eq!(judged(&mut h, world, 6006, 1500).0, SHOT);
    }

    #[test]
    fn the_matching_key_is_reported_as_hubble_policy_match_type() {
        use flowscope_common::{POLICY_ALLOW, direction};
        let (mut h, _) = policy_harness(flowscope_common::ENFORCE_INGRESS);
        let ing = direction::INGRESS;
        allow(&mut h, ing, 0, 17, 53, POLICY_ALLOW, 1); // UDP 53 from anyone
        allow(&mut h, ing, 0, 6, 0, POLICY_ALLOW, 2); // any TCP port from anyone
        allow(&mut h, ing, 400, 0, 0, POLICY_ALLOW, 3); // anything from identity 400
        let udp = |src, sport, dport| udp4(src, A4, sport, dport);
        let (_, ev) = h.run(PROG_EGRESS, &udp([198, 18, 9, 9], 4000, 53));
        assert_eq!(
            (ev[0].policy_verdict, ev[0].policy_match, ev[0].policy_ref),
            (1, policy_match::L4_ONLY, 2)
        );
        let (_, ev) = h.run(
            PROG_EGRESS,
            &tcp4([198, 18, 9, 9], A4, 4001, 8080, tcp::SYN as u8),
        );
        assert_eq!(
            (ev[0].policy_match, ev[0].policy_ref),
            (policy_match::PROTO_ONLY, 3)
        );
        let (_, ev) = h.run(PROG_EGRESS, &udp(B4, 4002, 9999));
        assert_eq!(
            (ev[0].policy_match, ev[0].policy_ref),
            (policy_match::L3_ONLY, 4)
        );
        // Nothing matches: denied by isolation, match type none, still a policy verdict.
        let (ret, ev) = h.run(PROG_EGRESS, &udp([198, 18, 9, 9], 4003, 9999));
        assert_eq!(ret, SHOT);
        assert_eq!(
            (ev[0].policy_verdict, ev[0].policy_match, ev[0].policy_ref),
            (1, policy_match::NONE, 0)
        );
        // Egress is not enforced and has no entries: no policy verdict at all.
        let (ret, ev) = h.run(PROG_INGRESS, &udp4(A4, [198, 18, 9, 9], 4004, 9999));
        assert_eq!((ret, ev[0].policy_verdict), (PASS, 0));
    }

    #[test]
    fn audit_mode_reports_what_would_be_dropped_and_drops_nothing() {
        use flowscope_common::drop_reason;
        let (mut h, _) = policy_harness(flowscope_common::ENFORCE_INGRESS);
        h.dp.set_audit(true).unwrap();
        let (ret, ev) = h.run(PROG_EGRESS, &tcp4(B4, A4, 3000, 80, tcp::SYN as u8));
        assert_eq!(ret, PASS);
        assert_eq!((ev[0].kind, ev[0].verdict), (kind::NEW, verdict::AUDIT));
        assert_eq!(ev[0].drop_reason, drop_reason::POLICY_DENIED);
        h.dp.set_audit(false).unwrap();
        assert_eq!(
            h.run(PROG_EGRESS, &tcp4(B4, A4, 3001, 80, tcp::SYN as u8))
                .0,
            SHOT
        );
    }

    #[test]
    fn neighbour_discovery_passes_isolated_endpoints() {
        let (mut h, _) = policy_harness(flowscope_common::ENFORCE_EGRESS);
        let icmp6 = |ty: u8| {
            let mut p = eth(0x86dd);
            p.extend_from_slice(&[0x60, 0, 0, 0, 0, 8, 58, 255]);
            p.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
            p.extend_from_slice(&[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
            // An identifier, so the echo is its own connection, not the NDP one.
            p.extend_from_slice(&[ty, 0, 0, 0, 0x12, 0x34, 0, 0]);
            p
        };
        assert_eq!(
            h.run(PROG_INGRESS, &icmp6(133)).0,
            PASS,
            "router solicitation"
        );
        assert_eq!(
            h.run(PROG_INGRESS, &icmp6(135)).0,
            PASS,
            "neighbour solicitation"
        );
        assert_eq!(
            h.run(PROG_INGRESS, &icmp6(143)).0,
            PASS,
            "MLDv2 listener report"
        );
        assert_eq!(
            h.run(PROG_INGRESS, &icmp6(128)).0,
            SHOT,
            "echo request is policy's to judge"
        );
    }
}
