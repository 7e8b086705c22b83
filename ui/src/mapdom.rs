//! Draws a [`MapModel`] into the map's SVG by changing only what changed.
//!
//! The map has hundreds of nodes and edges whose widths, labels and colours change as flows
//! arrive; re-rendering them through the reactive tree cost tens of milliseconds per update at
//! 5,000 flows/s. Here every node and edge keeps its SVG element, keyed by id, and an update
//! touches only the attributes whose value differs, creates what is new and removes what is
//! gone: O(changes). Clicks are read from `data-node` / `data-edge` by one listener on the SVG.

use std::collections::HashMap;

use web_sys::{Document, Element};

use crate::layout::{MapEdge, MapIsland, MapModel, MapNode, NODE_H, NODE_W};
use crate::rows::Selection;

const SVG: &str = "http://www.w3.org/2000/svg";
/// Elements created per update: a first paint of 200 workloads and 600 edges at once is a
/// 100 ms task; in slices of this size each frame stays near 20 ms.
pub const MAX_NEW_PER_UPDATE: usize = 150;

fn el(doc: &Document, name: &str, parent: &Element) -> Element {
    // Creating an SVG element in a live document does not fail.
    let e = doc
        .create_element_ns(Some(SVG), name)
        .expect("create SVG element");
    let _ = parent.append_child(&e);
    e
}

fn set(e: &Element, name: &str, value: &str) {
    let _ = e.set_attribute(name, value);
}

struct EdgeEl {
    g: Element,
    hit: Element,
    line: Element,
    label: Element,
    last: MapEdge,
}

struct NodeEl {
    g: Element,
    name: Element,
    sub: Element,
    last: MapNode,
}

struct IslandEl {
    g: Element,
    rect: Element,
    last: MapIsland,
}

/// The map's drawn elements.
pub struct MapDom {
    doc: Document,
    islands_layer: Element,
    edges_layer: Element,
    nodes_layer: Element,
    islands: HashMap<String, IslandEl>,
    edges: HashMap<String, EdgeEl>,
    nodes: HashMap<String, NodeEl>,
    selection: Option<Selection>,
    last_model: Option<std::sync::Arc<MapModel>>,
}

impl MapDom {
    /// Draws into `root` (a `<g>`), under three layers: islands, edges, nodes.
    pub fn new(doc: Document, root: &Element) -> Self {
        let islands_layer = el(&doc, "g", root);
        let edges_layer = el(&doc, "g", root);
        let nodes_layer = el(&doc, "g", root);
        MapDom {
            doc,
            islands_layer,
            edges_layer,
            nodes_layer,
            islands: HashMap::new(),
            edges: HashMap::new(),
            nodes: HashMap::new(),
            selection: None,
            last_model: None,
        }
    }

    /// Brings the SVG to `model`, with `selection` highlighted. Creates at most
    /// [`MAX_NEW_PER_UPDATE`] elements; returns false when some are left for another call.
    pub fn update(
        &mut self,
        model: &std::sync::Arc<MapModel>,
        selection: Option<&Selection>,
    ) -> bool {
        self.last_model = Some(model.clone());
        let mut budget = MAX_NEW_PER_UPDATE;
        self.islands_to(&model.islands);
        // Nodes first: edges without their cards would look detached.
        let nodes_done = self.nodes_to(&model.nodes, &mut budget);
        let edges_done = self.edges_to(&model.edges, &mut budget);
        self.selection = selection.cloned();
        self.highlight();
        nodes_done && edges_done
    }

    /// Whether `model` is the last one given to [`MapDom::update`] (by identity): a slice
    /// left over from an older model is not worth drawing.
    pub fn drawn(&self, model: &std::sync::Arc<MapModel>) -> bool {
        self.last_model
            .as_ref()
            .is_some_and(|m| std::sync::Arc::ptr_eq(m, model))
    }

    fn islands_to(&mut self, islands: &[MapIsland]) {
        let doc = &self.doc;
        let layer = &self.islands_layer;
        retain_present(
            &mut self.islands,
            islands.iter().map(|i| &i.namespace),
            |i| i.g.remove(),
        );
        for island in islands {
            let e = self
                .islands
                .entry(island.namespace.clone())
                .or_insert_with(|| {
                    let g = el(doc, "g", layer);
                    set(&g, "class", "island");
                    set(&g, "data-namespace", &island.namespace);
                    let rect = el(doc, "rect", &g);
                    set(&rect, "rx", "10");
                    let title = el(doc, "text", &g);
                    set(&title, "class", "island-title");
                    title.set_text_content(Some(if island.namespace.is_empty() {
                        "outside the cluster"
                    } else {
                        &island.namespace
                    }));
                    IslandEl {
                        g,
                        rect,
                        last: MapIsland {
                            namespace: island.namespace.clone(),
                            rect: (f64::NAN, 0.0, 0.0, 0.0),
                        },
                    }
                });
            if e.last.rect != island.rect {
                let (x, y, w, h) = island.rect;
                set(&e.rect, "x", &format!("{x:.1}"));
                set(&e.rect, "y", &format!("{y:.1}"));
                set(&e.rect, "width", &format!("{w:.1}"));
                set(&e.rect, "height", &format!("{h:.1}"));
                if let Some(title) = e.g.last_element_child() {
                    set(&title, "x", &format!("{:.1}", x + 14.0));
                    set(&title, "y", &format!("{:.1}", y + 20.0));
                }
                e.last = island.clone();
            }
        }
    }

    fn edges_to(&mut self, edges: &[MapEdge], budget: &mut usize) -> bool {
        let doc = &self.doc;
        let layer = &self.edges_layer;
        let mut done = true;
        retain_present(&mut self.edges, edges.iter().map(|e| &e.id), |e| {
            e.g.remove()
        });
        for edge in edges {
            if !self.edges.contains_key(&edge.id) {
                if *budget == 0 {
                    done = false;
                    continue;
                }
                *budget -= 1;
            }
            let e = self.edges.entry(edge.id.clone()).or_insert_with(|| {
                let g = el(doc, "g", layer);
                set(&g, "data-edge", &edge.id);
                set(&g, "data-source", &edge.source);
                set(&g, "data-destination", &edge.destination);
                let hit = el(doc, "path", &g);
                set(&hit, "class", "hit");
                let line = el(doc, "path", &g);
                set(&line, "class", "line");
                let label = el(doc, "text", &g);
                set(&label, "class", "edge-label");
                EdgeEl {
                    g,
                    hit,
                    line,
                    label,
                    last: MapEdge {
                        class: "",
                        width: f64::NAN,
                        ..edge.clone()
                    },
                }
            });
            let last = &e.last;
            if last.class != edge.class {
                set(&e.g, "class", &format!("edge {}", edge.class));
                set(&e.g, "data-class", edge.class);
                set(
                    &e.line,
                    "marker-end",
                    &format!("url(#arrow-{})", edge.class),
                );
            }
            if last.width != edge.width {
                set(&e.line, "stroke-width", &edge.width.to_string());
            }
            if last.geometry != edge.geometry || last.class.is_empty() {
                set(&e.hit, "d", &edge.geometry.path);
                set(&e.line, "d", &edge.geometry.path);
                set(&e.label, "x", &format!("{:.1}", edge.geometry.label.0));
                set(&e.label, "y", &format!("{:.1}", edge.geometry.label.1));
            }
            if last.label != edge.label || last.class.is_empty() {
                e.label.set_text_content(Some(&edge.label));
            }
            if last.detail != edge.detail || last.class.is_empty() {
                set(&e.g, "data-detail", &edge.detail);
            }
            e.last = edge.clone();
        }
        done
    }

    fn nodes_to(&mut self, nodes: &[MapNode], budget: &mut usize) -> bool {
        let doc = &self.doc;
        let layer = &self.nodes_layer;
        let mut done = true;
        retain_present(&mut self.nodes, nodes.iter().map(|n| &n.id), |n| {
            n.g.remove()
        });
        for node in nodes {
            if !self.nodes.contains_key(&node.id) {
                if *budget == 0 {
                    done = false;
                    continue;
                }
                *budget -= 1;
            }
            let n = self.nodes.entry(node.id.clone()).or_insert_with(|| {
                let g = el(doc, "g", layer);
                set(&g, "data-node", &node.id);
                set(&g, "data-namespace", &node.namespace);
                let rect = el(doc, "rect", &g);
                set(&rect, "width", &NODE_W.to_string());
                set(&rect, "height", &NODE_H.to_string());
                set(&rect, "rx", "8");
                let name = el(doc, "text", &g);
                set(&name, "class", "name");
                set(&name, "x", "12");
                set(&name, "y", "20");
                let sub = el(doc, "text", &g);
                set(&sub, "class", "sub");
                set(&sub, "x", "12");
                set(&sub, "y", "37");
                NodeEl {
                    g,
                    name,
                    sub,
                    last: MapNode {
                        at: (f64::NAN, 0.0),
                        name: String::new(),
                        dropped: u64::MAX,
                        ..node.clone()
                    },
                }
            });
            let last = &n.last;
            if last.at != node.at {
                let (x, y) = (node.at.0 - NODE_W / 2.0, node.at.1 - NODE_H / 2.0);
                set(&n.g, "transform", &format!("translate({x:.1},{y:.1})"));
            }
            if (last.dropped > 0) != (node.dropped > 0) || last.dropped == u64::MAX {
                let class = if node.dropped > 0 {
                    "node has-drops"
                } else {
                    "node"
                };
                set(&n.g, "class", class);
            }
            if last.name != node.name {
                n.name.set_text_content(Some(&node.name));
                let sub = if node.namespace.is_empty() {
                    format!("{:?}", node.kind).to_lowercase()
                } else {
                    node.namespace.clone()
                };
                n.sub.set_text_content(Some(&sub));
            }
            if last.detail != node.detail {
                set(&n.g, "data-detail", &node.detail);
            }
            n.last = node.clone();
        }
        done
    }

    /// Marks the selected node or edge, and dims what is not part of the selection.
    fn highlight(&self) {
        let toggle = |e: &Element, class: &str, on: bool| {
            let list = e.class_list();
            if list.contains(class) != on {
                let _ = list.toggle_with_force(class, on);
            }
        };
        for (id, n) in &self.nodes {
            let (selected, dim) = match &self.selection {
                Some(Selection::Node(s)) => (s == id, s != id),
                _ => (false, false),
            };
            toggle(&n.g, "selected", selected);
            toggle(&n.g, "dim", dim);
        }
        for (id, e) in &self.edges {
            let (selected, dim) = match &self.selection {
                Some(Selection::Edge(s)) => (s == id, s != id),
                Some(Selection::Node(n)) => {
                    (false, *n != e.last.source && *n != e.last.destination)
                }
                None => (false, false),
            };
            toggle(&e.g, "selected", selected);
            toggle(&e.g, "dim", dim);
        }
    }
}

/// Removes the entries whose key is not in `present`, calling `gone` on each.
fn retain_present<'a, T>(
    map: &mut HashMap<String, T>,
    present: impl Iterator<Item = &'a String>,
    gone: impl Fn(&T),
) {
    let keep: std::collections::HashSet<&String> = present.collect();
    if keep.len() == map.len() && map.keys().all(|k| keep.contains(k)) {
        return;
    }
    map.retain(|k, v| {
        let stay = keep.contains(k);
        if !stay {
            gone(v);
        }
        stay
    });
}

/// The node or edge a click landed on.
pub fn clicked(target: &Element) -> Option<Selection> {
    if let Ok(Some(e)) = target.closest("[data-edge]")
        && let Some(id) = e.get_attribute("data-edge")
    {
        return Some(Selection::Edge(id));
    }
    if let Ok(Some(n)) = target.closest("[data-node]")
        && let Some(id) = n.get_attribute("data-node")
    {
        return Some(Selection::Node(id));
    }
    None
}
