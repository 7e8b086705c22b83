//! Where the map draws things: a stable, incremental layout grouped by namespace, and the
//! geometry of edges.
//!
//! Each namespace is an island: a box of at most [`COLS`] columns of node slots that grows
//! downwards. Islands sit a fixed number to a row ([`islands_per_row`], chosen once from the
//! map's shape when the page opens, [`ISLANDS_PER_ROW`] by default) in the order their namespaces first
//! appeared. A node keeps its slot for the page's life, and a new node takes the next free
//! slot of its island, so flows arriving never move what is already drawn (hubble-ui #693:
//! the map reshuffling and breaking past ~100 pods). The only movement is a row of islands
//! shifting down when an island above outgrows the space reserved for it, which reserves
//! [`SLACK_ROWS`] more each time to keep that rare.
//!
//! At 200 workloads in 10 namespaces this is a 12 x 17 grid of cards with no overlaps (tested); zoom
//! and the namespace view take it from there.

use std::collections::{BTreeMap, HashMap, HashSet};

use flowscope_model::graph::{EdgeSnapshot, GraphSnapshot, NodeKind, NodeSnapshot};

/// Width of a node slot: the card plus room for an edge and its label between neighbours.
pub const CELL_W: f64 = 240.0;
/// Height of a node slot.
pub const CELL_H: f64 = 100.0;
/// A node card.
pub const NODE_W: f64 = 168.0;
/// See [`NODE_W`].
pub const NODE_H: f64 = 48.0;
/// Columns of slots per island: four cards side by side stay readable at a zoom that shows
/// three islands across a laptop screen.
pub const COLS: usize = 4;
/// Islands per row of islands, by default.
pub const ISLANDS_PER_ROW: usize = 3;
/// Padding inside an island.
pub const PAD: f64 = 20.0;
/// Room for the island's namespace title.
pub const HEADER: f64 = 30.0;
/// Space between islands.
pub const GAP: f64 = 70.0;
/// Extra slot rows reserved when an island outgrows its row, so the next rows rarely move.
pub const SLACK_ROWS: usize = 1;
/// Placed nodes remembered (also after eviction from the graph, so a node that comes back
/// returns to its place); past this, slots of nodes no longer in the graph are reused.
pub const MAX_REMEMBERED: usize = 4_000;

const ISLAND_W: f64 = COLS as f64 * CELL_W + 2.0 * PAD;

struct Island {
    row: usize,
    col: usize,
    /// Slot -> node id; `None` is a freed slot.
    slots: Vec<Option<String>>,
}

struct IslandRow {
    y: f64,
    /// Slot rows reserved for the tallest island of the row.
    reserved: usize,
}

/// The stable layout; feed it every node of the graph (all namespaces) with
/// [`Layout::place`].
pub struct Layout {
    per_row: usize,
    islands: Vec<Island>,
    by_namespace: HashMap<String, usize>,
    rows: Vec<IslandRow>,
    slots: HashMap<String, (usize, usize)>,
}

/// A point on the map.
pub type Point = (f64, f64);

impl Default for Layout {
    fn default() -> Self {
        Layout::new(ISLANDS_PER_ROW)
    }
}

/// Islands per row for a map of `width` x `height` pixels and the graph's first nodes: the
/// number of columns that makes these islands (at least four: namespaces keep coming) about
/// as wide as the map, between 2 and 6. Chosen once, so it never moves anything.
pub fn islands_per_row(width: f64, height: f64, nodes: &[NodeSnapshot]) -> usize {
    if width <= 0.0 || height <= 0.0 {
        return ISLANDS_PER_ROW;
    }
    let mut per_namespace: BTreeMap<&str, usize> = BTreeMap::new();
    for n in nodes {
        *per_namespace.entry(&n.namespace).or_default() += 1;
    }
    let islands = per_namespace.len().max(4) as f64;
    let rows: usize = per_namespace.values().map(|n| n.div_ceil(COLS)).sum();
    let mean_rows = (rows as f64 / per_namespace.len().max(1) as f64).max(1.0);
    let island_aspect = ISLAND_W / (HEADER + mean_rows * CELL_H + PAD / 2.0);
    let columns = (islands * (width / height) / island_aspect).sqrt().round();
    (columns as usize).clamp(2, 6)
}

impl Layout {
    /// An empty layout with `per_row` islands to a row.
    pub fn new(per_row: usize) -> Self {
        Layout {
            per_row: per_row.max(1),
            islands: Vec::new(),
            by_namespace: HashMap::new(),
            rows: Vec::new(),
            slots: HashMap::new(),
        }
    }

    /// True before the first node is placed.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Gives every node not yet placed a slot; nodes already placed do not move.
    pub fn place<'a>(&mut self, nodes: impl IntoIterator<Item = &'a NodeSnapshot>) {
        let nodes: Vec<&NodeSnapshot> = nodes.into_iter().collect();
        if self.slots.len() + nodes.len() > MAX_REMEMBERED {
            let present: HashSet<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
            self.forget_absent(&present);
        }
        for node in nodes {
            if self.slots.contains_key(&node.id) {
                continue;
            }
            let island = self.island(&node.namespace);
            let slots = &mut self.islands[island].slots;
            let slot = match slots.iter().position(Option::is_none) {
                Some(free) => {
                    slots[free] = Some(node.id.clone());
                    free
                }
                None => {
                    slots.push(Some(node.id.clone()));
                    slots.len() - 1
                }
            };
            self.slots.insert(node.id.clone(), (island, slot));
            self.grow_row(island);
        }
    }

    fn forget_absent(&mut self, present: &HashSet<&str>) {
        self.slots.retain(|id, _| present.contains(id.as_str()));
        for island in &mut self.islands {
            for slot in &mut island.slots {
                if slot.as_deref().is_some_and(|id| !present.contains(id)) {
                    *slot = None;
                }
            }
        }
    }

    fn island(&mut self, namespace: &str) -> usize {
        if let Some(&i) = self.by_namespace.get(namespace) {
            return i;
        }
        let index = self.islands.len();
        let (row, col) = (index / self.per_row, index % self.per_row);
        if row == self.rows.len() {
            let y = self
                .rows
                .last()
                .map_or(0.0, |r| r.y + row_height(r.reserved) + GAP);
            self.rows.push(IslandRow { y, reserved: 1 });
        }
        self.islands.push(Island {
            row,
            col,
            slots: Vec::new(),
        });
        self.by_namespace.insert(namespace.to_string(), index);
        index
    }

    fn grow_row(&mut self, island: usize) {
        let row = self.islands[island].row;
        let needed = self.islands[island].slots.len().div_ceil(COLS);
        if needed <= self.rows[row].reserved {
            return;
        }
        self.rows[row].reserved = needed + SLACK_ROWS;
        for r in row + 1..self.rows.len() {
            self.rows[r].y = self.rows[r - 1].y + row_height(self.rows[r - 1].reserved) + GAP;
        }
    }

    /// The centre of a placed node.
    pub fn position(&self, id: &str) -> Option<Point> {
        let &(island, slot) = self.slots.get(id)?;
        let (x, y) = self.island_origin(island);
        Some((
            x + PAD + (slot % COLS) as f64 * CELL_W + CELL_W / 2.0,
            y + HEADER + (slot / COLS) as f64 * CELL_H + CELL_H / 2.0,
        ))
    }

    fn island_origin(&self, island: usize) -> Point {
        let i = &self.islands[island];
        (i.col as f64 * (ISLAND_W + GAP), self.rows[i.row].y)
    }

    /// The box of a namespace's island, sized to the slots in use: (x, y, width, height).
    pub fn island_box(&self, namespace: &str) -> Option<(f64, f64, f64, f64)> {
        let &index = self.by_namespace.get(namespace)?;
        let island = &self.islands[index];
        let used = island.slots.len().max(1);
        let cols = used.min(COLS);
        let rows = used.div_ceil(COLS);
        let (x, y) = self.island_origin(index);
        Some((
            x,
            y,
            cols as f64 * CELL_W + 2.0 * PAD,
            HEADER + rows as f64 * CELL_H + PAD / 2.0,
        ))
    }
}

fn row_height(reserved: usize) -> f64 {
    HEADER + reserved as f64 * CELL_H + PAD / 2.0
}

/// The width of an edge for its rate: logarithmic, so 1 flow/s and 1,000 flows/s both read.
pub fn edge_width(rate: f64) -> f64 {
    let w = 1.5 + 1.2 * (1.0 + rate.max(0.0)).log2();
    // Half-pixel steps: the map only re-renders an edge when its look changes.
    (w.min(8.0) * 2.0).round() / 2.0
}

/// Where a line from `centre` towards `towards` leaves the node card (plus `margin`).
fn card_exit(centre: Point, towards: Point, margin: f64) -> Point {
    let (dx, dy) = (towards.0 - centre.0, towards.1 - centre.1);
    if dx == 0.0 && dy == 0.0 {
        return centre;
    }
    let hw = NODE_W / 2.0 + margin;
    let hh = NODE_H / 2.0 + margin;
    let scale = (hw / dx.abs()).min(hh / dy.abs());
    (centre.0 + dx * scale, centre.1 + dy * scale)
}

/// An edge's SVG path and where its label goes.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeGeometry {
    /// The `d` attribute.
    pub path: String,
    /// The label's anchor.
    pub label: Point,
    /// Start, control point and end of the quadratic curve (None for a loop), so a label can
    /// move along it.
    pub curve: Option<[Point; 3]>,
}

impl EdgeGeometry {
    /// The point at `t` (0 at the start, 1 at the end) of the curve.
    pub fn at(&self, t: f64) -> Option<Point> {
        let [p0, c, p2] = self.curve?;
        let (a, b, d) = ((1.0 - t) * (1.0 - t), 2.0 * t * (1.0 - t), t * t);
        Some((a * p0.0 + b * c.0 + d * p2.0, a * p0.1 + b * c.1 + d * p2.1))
    }
}

/// Where along its curve a label may sit, in the order tried: the middle first.
const LABEL_POSITIONS: [f64; 7] = [0.5, 0.4, 0.6, 0.3, 0.7, 0.22, 0.78];
/// Edge label metrics at the map's 11px font: width per character, height, spacing.
const LABEL_CHAR_W: f64 = 6.4;
const LABEL_H: f64 = 14.0;
/// Grid cell for finding placed labels near a candidate.
const LABEL_CELL: f64 = 64.0;

/// Moves a label that would cover one already placed along its own curve (see
/// [`LABEL_POSITIONS`]), edges taken in order; a label that fits nowhere stays in the middle.
/// Labels are looked up in a grid, so this is linear in the number of edges.
pub fn place_labels(edges: &mut [MapEdge]) {
    type Rect = (f64, f64, f64, f64);
    let cells = |r: &Rect| {
        let (x0, y0) = (
            (r.0 / LABEL_CELL).floor() as i64,
            (r.1 / LABEL_CELL).floor() as i64,
        );
        let (x1, y1) = (
            (r.2 / LABEL_CELL).floor() as i64,
            (r.3 / LABEL_CELL).floor() as i64,
        );
        (x0..=x1).flat_map(move |x| (y0..=y1).map(move |y| (x, y)))
    };
    let mut grid: HashMap<(i64, i64), Vec<Rect>> = HashMap::new();
    for e in edges.iter_mut() {
        if e.label.is_empty() {
            continue;
        }
        let w = e.label.chars().count() as f64 * LABEL_CHAR_W + 6.0;
        // Text anchored in the middle of its baseline.
        let rect_at = |p: Point| (p.0 - w / 2.0, p.1 - LABEL_H + 3.0, p.0 + w / 2.0, p.1 + 3.0);
        let free = |r: &Rect| {
            cells(r).all(|c| {
                grid.get(&c).is_none_or(|placed| {
                    placed
                        .iter()
                        .all(|q| r.2 <= q.0 || q.2 <= r.0 || r.3 <= q.1 || q.3 <= r.1)
                })
            })
        };
        let chosen = LABEL_POSITIONS
            .iter()
            .filter_map(|&t| e.geometry.at(t))
            .find(|&p| free(&rect_at(p)))
            .unwrap_or(e.geometry.label);
        e.geometry.label = chosen;
        let r = rect_at(chosen);
        for c in cells(&r) {
            grid.entry(c).or_default().push(r);
        }
    }
}

/// A quadratic curve from card to card, bent `bend` units to the left of the direction of
/// travel, so A->B and B->A (and several ports between one pair) are drawn apart. An edge from
/// a node to itself is a loop over the card.
pub fn edge_geometry(from: Point, to: Point, bend: f64) -> EdgeGeometry {
    if (from.0 - to.0).abs() < 1e-6 && (from.1 - to.1).abs() < 1e-6 {
        let top = from.1 - NODE_H / 2.0;
        let lift = 40.0 + bend;
        return EdgeGeometry {
            path: format!(
                "M{:.1},{:.1} C{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}",
                from.0 - 14.0,
                top,
                from.0 - 44.0,
                top - lift,
                from.0 + 44.0,
                top - lift,
                from.0 + 14.0,
                top - 4.0
            ),
            label: (from.0, top - lift * 0.75),
            curve: None,
        };
    }
    let (dx, dy) = (to.0 - from.0, to.1 - from.1);
    let len = (dx * dx + dy * dy).sqrt();
    let mid = ((from.0 + to.0) / 2.0, (from.1 + to.1) / 2.0);
    // Left of the direction of travel, in screen coordinates (y down).
    let control = (mid.0 + dy / len * bend, mid.1 - dx / len * bend);
    let start = card_exit(from, control, 2.0);
    let end = card_exit(to, control, 6.0);
    EdgeGeometry {
        path: format!(
            "M{:.1},{:.1} Q{:.1},{:.1} {:.1},{:.1}",
            start.0, start.1, control.0, control.1, end.0, end.1
        ),
        label: (
            0.25 * start.0 + 0.5 * control.0 + 0.25 * end.0,
            0.25 * start.1 + 0.5 * control.1 + 0.25 * end.1,
        ),
        curve: Some([start, control, end]),
    }
}

/// Translation and scale that fit `bounds` (x0, y0, x1, y1) into a `width` x `height` view
/// with a margin, never zooming in past 1.5.
pub fn fit(bounds: (f64, f64, f64, f64), width: f64, height: f64) -> (f64, f64, f64) {
    let (x0, y0, x1, y1) = bounds;
    let margin = 30.0;
    let (bw, bh) = ((x1 - x0).max(1.0), (y1 - y0).max(1.0));
    let k = ((width - 2.0 * margin) / bw)
        .min((height - 2.0 * margin) / bh)
        .clamp(0.05, 1.5);
    let tx = (width - bw * k) / 2.0 - x0 * k;
    let ty = (height - bh * k) / 2.0 - y0 * k;
    (tx, ty, k)
}

/// A node as drawn.
#[derive(Clone, Debug, PartialEq)]
pub struct MapNode {
    /// The graph's node id.
    pub id: String,
    /// The card's title.
    pub name: String,
    /// Its namespace (empty outside the cluster).
    pub namespace: String,
    /// What it stands for.
    pub kind: NodeKind,
    /// The card's centre.
    pub at: Point,
    /// Flows from or to it, and how many were dropped.
    pub flows: u64,
    /// See `flows`.
    pub dropped: u64,
    /// A tooltip: pods and labels.
    pub detail: String,
}

/// An edge as drawn.
#[derive(Clone, Debug, PartialEq)]
pub struct MapEdge {
    /// The graph's edge id.
    pub id: String,
    /// Source node id.
    pub source: String,
    /// Destination node id.
    pub destination: String,
    /// `forwarded`, `dropped`, `mixed` or `audit`.
    pub class: &'static str,
    /// Stroke width.
    pub width: f64,
    /// The curve.
    pub geometry: EdgeGeometry,
    /// The label text.
    pub label: String,
    /// A tooltip: verdict counts, rate, reasons, policies.
    pub detail: String,
}

/// A namespace's box as drawn.
#[derive(Clone, Debug, PartialEq)]
pub struct MapIsland {
    /// The namespace; empty for the outside world.
    pub namespace: String,
    /// x, y, width, height.
    pub rect: (f64, f64, f64, f64),
}

/// Everything the map draws for one snapshot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MapModel {
    /// Island boxes of the namespaces with a node shown.
    pub islands: Vec<MapIsland>,
    /// Cards.
    pub nodes: Vec<MapNode>,
    /// Curves.
    pub edges: Vec<MapEdge>,
    /// (x0, y0, x1, y1) around everything shown.
    pub bounds: (f64, f64, f64, f64),
}

/// Distance between parallel curves of one node pair.
const BEND_STEP: f64 = 22.0;
/// The bend of the first curve of a pair: enough to keep A->B and B->A apart.
const BEND_BASE: f64 = 18.0;

fn edge_detail(e: &EdgeSnapshot) -> String {
    let verdicts: Vec<String> = e
        .verdicts
        .iter()
        .map(|(v, n)| format!("{} {n}", v.as_str()))
        .collect();
    let mut s = format!(
        "{} -> {}\n{}\n{} flows, {:.1}/s",
        e.source,
        e.destination,
        verdicts.join(", "),
        e.flows,
        e.rate
    );
    if !e.drop_reasons.is_empty() {
        let reasons: Vec<&str> = e.drop_reasons.iter().map(|r| r.as_str()).collect();
        s.push_str(&format!("\ndrop reasons: {}", reasons.join(", ")));
    }
    if !e.policies.is_empty() {
        s.push_str(&format!("\npolicies: {}", e.policies.join(", ")));
    }
    s
}

/// Places `place` (in that order; nodes already placed stay), then draws the `view`
/// snapshot. The all-namespaces map places every node of the graph, so positions do not depend
/// on what is shown; a namespace view has a layout of its own, with its namespace first.
pub fn build_map<'a>(
    layout: &mut Layout,
    place: impl IntoIterator<Item = &'a NodeSnapshot>,
    view: &GraphSnapshot,
) -> MapModel {
    layout.place(place);
    let mut model = MapModel::default();
    let mut namespaces: Vec<&str> = Vec::new();
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for n in &view.nodes {
        let Some(at) = layout.position(&n.id) else {
            continue;
        };
        x0 = x0.min(at.0 - CELL_W / 2.0);
        y0 = y0.min(at.1 - CELL_H / 2.0 - HEADER);
        x1 = x1.max(at.0 + CELL_W / 2.0);
        y1 = y1.max(at.1 + CELL_H / 2.0);
        if !namespaces.contains(&n.namespace.as_str()) {
            namespaces.push(&n.namespace);
        }
        let mut detail = n.id.clone();
        if !n.pods.is_empty() {
            detail.push_str(&format!("\npods: {}", n.pods.join(", ")));
        }
        if !n.labels.is_empty() {
            detail.push_str(&format!("\n{}", n.labels.join("\n")));
        }
        model.nodes.push(MapNode {
            id: n.id.clone(),
            name: n.name.clone(),
            namespace: n.namespace.clone(),
            kind: n.kind,
            at,
            flows: n.flows,
            dropped: n.dropped,
            detail,
        });
    }
    model.bounds = if model.nodes.is_empty() {
        (0.0, 0.0, 1.0, 1.0)
    } else {
        (x0, y0, x1, y1)
    };
    namespaces.sort_unstable();
    model.islands = namespaces
        .into_iter()
        .filter_map(|ns| {
            layout.island_box(ns).map(|rect| MapIsland {
                namespace: ns.to_string(),
                rect,
            })
        })
        .collect();
    // Number the curves of each unordered node pair, in id order, to bend them apart.
    let mut pairs: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for e in &view.edges {
        let (Some(from), Some(to)) = (layout.position(&e.source), layout.position(&e.destination))
        else {
            continue;
        };
        let pair = if e.source <= e.destination {
            (e.source.as_str(), e.destination.as_str())
        } else {
            (e.destination.as_str(), e.source.as_str())
        };
        let nth = pairs.entry(pair).or_default();
        let bend = BEND_BASE + *nth as f64 * BEND_STEP;
        *nth += 1;
        model.edges.push(MapEdge {
            id: e.id.clone(),
            source: e.source.clone(),
            destination: e.destination.clone(),
            class: e.class.as_str(),
            width: edge_width(e.rate),
            geometry: edge_geometry(from, to, bend),
            label: e.label(),
            detail: edge_detail(e),
        });
    }
    place_labels(&mut model.edges);
    model
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowscope_model::Timestamp;

    fn node(ns: &str, name: &str) -> NodeSnapshot {
        NodeSnapshot {
            id: if ns.is_empty() {
                name.to_string()
            } else {
                format!("{ns}/{name}")
            },
            namespace: ns.into(),
            name: name.into(),
            kind: NodeKind::Workload,
            labels: vec![],
            pods: vec![],
            identities: vec![],
            flows: 1,
            dropped: 0,
            first_seen: Timestamp::UNIX_EPOCH,
            last_seen: Timestamp::UNIX_EPOCH,
        }
    }

    fn overlap(a: Point, b: Point) -> bool {
        (a.0 - b.0).abs() < NODE_W && (a.1 - b.1).abs() < NODE_H
    }

    #[test]
    fn placed_nodes_never_move_when_others_arrive() {
        let mut layout = Layout::default();
        let first: Vec<NodeSnapshot> = (0..3).map(|i| node("default", &format!("a{i}"))).collect();
        layout.place(&first);
        let before: Vec<Point> = first
            .iter()
            .map(|n| layout.position(&n.id).unwrap())
            .collect();
        // New nodes in the same and in new namespaces, in any order.
        let mut more: Vec<NodeSnapshot> = (0..3)
            .map(|i| node("zeta", &format!("z{i}")))
            .chain((3..7).map(|i| node("default", &format!("a{i}"))))
            .chain([node("", "world")])
            .collect();
        more.extend(first.iter().cloned());
        layout.place(&more);
        let after: Vec<Point> = first
            .iter()
            .map(|n| layout.position(&n.id).unwrap())
            .collect();
        assert_eq!(before, after);
    }

    #[test]
    fn two_hundred_workloads_do_not_overlap_and_islands_stay_apart() {
        let mut layout = Layout::default();
        let mut nodes = Vec::new();
        // Uneven namespaces, arriving interleaved.
        for i in 0..200 {
            let ns = format!("ns{}", (i * 7) % 11);
            nodes.push(node(&ns, &format!("w{i}")));
            layout.place(std::slice::from_ref(nodes.last().unwrap()));
        }
        let points: Vec<Point> = nodes
            .iter()
            .map(|n| layout.position(&n.id).unwrap())
            .collect();
        for (i, a) in points.iter().enumerate() {
            for b in &points[i + 1..] {
                assert!(!overlap(*a, *b), "{a:?} overlaps {b:?}");
            }
        }
        // Every node lies inside its own island's box, and boxes do not intersect.
        let boxes: Vec<(String, (f64, f64, f64, f64))> = (0..11)
            .map(|i| {
                let ns = format!("ns{i}");
                let b = layout.island_box(&ns).unwrap();
                (ns, b)
            })
            .collect();
        for (n, p) in nodes.iter().zip(&points) {
            let (_, (x, y, w, h)) = boxes.iter().find(|(ns, _)| *ns == n.namespace).unwrap();
            assert!(
                p.0 > *x && p.0 < x + w && p.1 > *y && p.1 < y + h,
                "{}",
                n.id
            );
        }
        for (i, (_, a)) in boxes.iter().enumerate() {
            for (_, b) in &boxes[i + 1..] {
                let apart =
                    a.0 + a.2 <= b.0 || b.0 + b.2 <= a.0 || a.1 + a.3 <= b.1 || b.1 + b.3 <= a.1;
                assert!(apart, "{a:?} and {b:?} intersect");
            }
        }
    }

    #[test]
    fn rows_below_move_only_when_an_island_outgrows_its_reserve() {
        let mut layout = Layout::default();
        for ns in ["a", "b", "c", "d"] {
            layout.place(&[node(ns, "x")]);
        }
        let d0 = layout.position("d/x").unwrap();
        // One more row in island a fits the first reserve (1 row) + slack? It needs 2 rows.
        let grow: Vec<NodeSnapshot> = (0..4).map(|i| node("a", &format!("y{i}"))).collect();
        layout.place(&grow);
        let d1 = layout.position("d/x").unwrap();
        assert!(d1.1 > d0.1, "the row below made room");
        // The slack absorbs the next row without moving anything.
        let more: Vec<NodeSnapshot> = (0..3).map(|i| node("a", &format!("z{i}"))).collect();
        layout.place(&more);
        assert_eq!(layout.position("d/x").unwrap(), d1);
        assert_eq!(
            layout.position("a/x").unwrap().0,
            layout.position("a/y3").unwrap().0
        );
    }

    #[test]
    fn freed_slots_are_reused_past_the_memory_bound() {
        let mut layout = Layout::default();
        let old: Vec<NodeSnapshot> = (0..MAX_REMEMBERED)
            .map(|i| node("ns", &format!("o{i}")))
            .collect();
        layout.place(&old);
        let new = vec![node("ns", "fresh"), node("ns", "o5")];
        let o5 = layout.position("ns/o5").unwrap();
        layout.place(&new);
        assert_eq!(layout.position("ns/o5").unwrap(), o5, "present nodes stay");
        assert_eq!(layout.position("ns/o0"), None);
        assert_eq!(
            layout.position("ns/fresh").unwrap(),
            (PAD + CELL_W / 2.0, HEADER + CELL_H / 2.0),
            "the first freed slot"
        );
    }

    #[test]
    fn islands_per_row_follow_the_map_shape() {
        assert_eq!(islands_per_row(0.0, 0.0, &[]), ISLANDS_PER_ROW);
        // 200 workloads in 10 namespaces on a wide map: four or five across.
        let big: Vec<NodeSnapshot> = (0..200)
            .map(|i| node(&format!("ns{}", i % 10), &format!("w{i}")))
            .collect();
        let wide = islands_per_row(1600.0, 440.0, &big);
        assert!((4..=5).contains(&wide), "{wide}");
        assert!(islands_per_row(800.0, 800.0, &big) < wide);
        // A small lab: short islands, two across.
        let small: Vec<NodeSnapshot> = ["a", "a", "a", "b", "c", ""]
            .iter()
            .enumerate()
            .map(|(i, ns)| node(ns, &format!("n{i}")))
            .collect();
        assert_eq!(islands_per_row(1600.0, 440.0, &small), 2);
        assert_eq!(islands_per_row(10_000.0, 10.0, &big), 6);
        assert_eq!(islands_per_row(10.0, 10_000.0, &big), 2);
        let mut layout = Layout::new(5);
        for ns in ["a", "b", "c", "d", "e", "f"] {
            layout.place(&[node(ns, "x")]);
        }
        let (ax, ay) = layout.position("a/x").unwrap();
        let (ex, ey) = layout.position("e/x").unwrap();
        let (fx, fy) = layout.position("f/x").unwrap();
        assert!(ay == ey && ex > ax, "five to a row");
        assert!(fy > ay && fx == ax, "the sixth starts a new row");
    }

    #[test]
    fn widths_grow_with_rate_and_are_bounded() {
        assert_eq!(edge_width(0.0), 1.5);
        assert!(edge_width(1.0) < edge_width(10.0));
        assert!(edge_width(10.0) < edge_width(1000.0));
        assert_eq!(edge_width(1e9), 8.0);
        assert_eq!(edge_width(-1.0), 1.5);
    }

    #[test]
    fn curves_of_opposite_directions_bend_apart() {
        let a = (0.0, 0.0);
        let b = (400.0, 0.0);
        let ab = edge_geometry(a, b, 20.0);
        let ba = edge_geometry(b, a, 20.0);
        assert!(ab.label.1 < 0.0 && ba.label.1 > 0.0, "{ab:?} {ba:?}");
        assert!(ab.path.starts_with("M86.0,"), "{}", ab.path);
        let own = edge_geometry(a, a, 0.0);
        assert!(own.path.contains('C'));
    }

    #[test]
    fn labels_that_would_collide_move_along_their_curves() {
        // Two long edges from one node to neighbours: their middles are close.
        let from = (900.0, 600.0);
        let mk = |id: &str, to: Point| MapEdge {
            id: id.into(),
            source: "a".into(),
            destination: id.into(),
            class: "forwarded",
            width: 1.5,
            geometry: edge_geometry(from, to, BEND_BASE),
            label: "8080/TCP GET /metrics 200".into(),
            detail: String::new(),
        };
        let mut edges = vec![mk("b", (100.0, 100.0)), mk("c", (300.0, 100.0))];
        let middles: Vec<Point> = edges.iter().map(|e| e.geometry.label).collect();
        let w = 25.0 * LABEL_CHAR_W + 6.0;
        let overlap = |p: Point, q: Point| (p.0 - q.0).abs() < w && (p.1 - q.1).abs() < LABEL_H;
        assert!(
            overlap(middles[0], middles[1]),
            "the case must collide: {middles:?}"
        );
        place_labels(&mut edges);
        let (p, q) = (edges[0].geometry.label, edges[1].geometry.label);
        assert_eq!(p, middles[0], "the first keeps the middle");
        assert!(!overlap(p, q), "{p:?} {q:?}");
        // The second moved along its own curve.
        assert!(
            LABEL_POSITIONS
                .iter()
                .any(|&t| edges[1].geometry.at(t) == Some(q))
        );
    }

    #[test]
    fn fit_centres_the_bounds() {
        let (tx, ty, k) = fit((0.0, 0.0, 1000.0, 500.0), 1060.0, 560.0);
        assert!((k - 1.0).abs() < 1e-9);
        assert!((tx - 30.0).abs() < 1e-9 && (ty - 30.0).abs() < 1e-9);
        let (_, _, k) = fit((0.0, 0.0, 10.0, 10.0), 1000.0, 1000.0);
        assert_eq!(k, 1.5);
    }

    #[test]
    fn map_model_of_a_view() {
        use flowscope_model::graph::{GraphView, ServiceGraph};
        use flowscope_model::{
            Flow,
            flow::{Endpoint, Layer4, Tcp, Verdict},
        };
        let ep = |ns: &str, app: &str| Endpoint {
            namespace: ns.into(),
            labels: vec![format!("k8s:app={app}")],
            pod_name: app.into(),
            ..Default::default()
        };
        let flow = |s: Endpoint, d: Endpoint, v: Verdict| Flow {
            verdict: v,
            source: Some(s),
            destination: Some(d),
            l4: Some(Layer4::Tcp(Tcp {
                source_port: 1,
                destination_port: 80,
                flags: None,
            })),
            time: Some(Timestamp::from_unix_nanos(1)),
            ..Default::default()
        };
        let mut g = ServiceGraph::default();
        g.ingest(&flow(
            ep("default", "a"),
            ep("default", "b"),
            Verdict::Dropped,
        ));
        g.ingest(&flow(
            ep("default", "b"),
            ep("default", "a"),
            Verdict::Forwarded,
        ));
        g.ingest(&flow(
            ep("mon", "p"),
            ep("default", "a"),
            Verdict::Forwarded,
        ));
        g.ingest(&flow(ep("mon", "p"), ep("other", "q"), Verdict::Forwarded));
        let all = g.snapshot(&GraphView::all(), None);
        let view = g.snapshot(&GraphView::namespace("default"), None);
        let mut layout = Layout::default();
        let m = build_map(&mut layout, &all.nodes, &view);
        assert_eq!(m.nodes.len(), 3);
        assert_eq!(m.edges.len(), 3);
        assert_eq!(m.islands.len(), 2);
        let ab = m
            .edges
            .iter()
            .find(|e| e.id.starts_with("default/a->"))
            .unwrap();
        assert_eq!(ab.class, "dropped");
        assert_eq!(ab.label, "80/TCP");
        assert!(ab.detail.contains("DROPPED 1"), "{}", ab.detail);
        // Positions come from the whole graph: the same in the all-namespaces view.
        let full = build_map(&mut layout, &all.nodes, &all);
        let pos = |m: &MapModel, id: &str| m.nodes.iter().find(|n| n.id == id).unwrap().at;
        assert_eq!(pos(&m, "default/a"), pos(&full, "default/a"));
        assert_eq!(full.nodes.len(), 4);
    }
}
