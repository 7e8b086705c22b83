//! Draws the visible slice of the flow table into a fixed pool of row elements.
//!
//! At 5,000 flows/s every visible row changes every frame. Creating and disposing a reactive
//! view per row that often cost time and, measured over minutes, memory; here the rows on
//! screen are a pool of plain elements reused in place: a frame sets the text of the cells
//! whose row changed, nothing is created or dropped in steady state. Clicks are read from
//! `data-seq` by one listener on the table body.

use std::sync::Arc;

use wasm_bindgen::JsCast as _;
use web_sys::{Document, Element, HtmlElement};

use crate::rows::{Column, Row};

struct RowEl {
    el: HtmlElement,
    cells: Vec<Element>,
    /// The row shown, by `seq`; 0 before the first.
    seq: u64,
    open: bool,
}

/// The table body's row elements.
pub struct TableDom {
    doc: Document,
    list: Element,
    pool: Vec<RowEl>,
    columns: Vec<Column>,
    template: String,
}

impl TableDom {
    /// Draws rows into `list`, a container between the table's two spacers.
    pub fn new(doc: Document, list: Element) -> Self {
        TableDom {
            doc,
            list,
            pool: Vec::new(),
            columns: Vec::new(),
            template: String::new(),
        }
    }

    /// Shows `rows` (the slice on screen) with `columns`; `open` is the row whose details are
    /// open.
    pub fn render(&mut self, rows: &[Arc<Row>], columns: &[Column], open: Option<u64>) {
        if self.columns != columns {
            self.columns = columns.to_vec();
            self.template = columns
                .iter()
                .map(|c| c.width())
                .collect::<Vec<_>>()
                .join(" ");
            // New cells everywhere: drop the pool, it is rebuilt below.
            for row in self.pool.drain(..) {
                row.el.remove();
            }
        }
        while self.pool.len() > rows.len() {
            if let Some(row) = self.pool.pop() {
                row.el.remove();
            }
        }
        while self.pool.len() < rows.len() {
            let Ok(el) = self.doc.create_element("div") else {
                return;
            };
            let Ok(el) = el.dyn_into::<HtmlElement>() else {
                return;
            };
            let _ = el
                .style()
                .set_property("grid-template-columns", &self.template);
            let _ = el.set_attribute("data-test", "row");
            let cells = self
                .columns
                .iter()
                .filter_map(|c| {
                    let cell = self.doc.create_element("div").ok()?;
                    cell.set_class_name("td");
                    let _ = cell.set_attribute("data-column", c.key());
                    let _ = el.append_child(&cell);
                    Some(cell)
                })
                .collect();
            let _ = self.list.append_child(&el);
            self.pool.push(RowEl {
                el,
                cells,
                seq: 0,
                open: false,
            });
        }
        for (slot, row) in self.pool.iter_mut().zip(rows) {
            let is_open = open == Some(row.seq);
            if slot.seq != row.seq {
                slot.seq = row.seq;
                let verdict = row.verdict.as_str();
                slot.el
                    .set_class_name(&format!("tr verdict-{}", verdict.to_lowercase()));
                let _ = slot.el.set_attribute("data-seq", &row.seq.to_string());
                let _ = slot.el.set_attribute("data-verdict", verdict);
                let _ = slot.el.set_attribute("data-edge", &row.edge);
                for (cell, column) in slot.cells.iter().zip(&self.columns) {
                    cell.set_text_content(Some(row.cell(*column)));
                }
                slot.open = false;
            }
            if slot.open != is_open {
                slot.open = is_open;
                let _ = slot.el.class_list().toggle_with_force("open", is_open);
            }
        }
    }
}

/// The `seq` of the row a click landed on.
pub fn clicked_seq(target: &Element) -> Option<u64> {
    target
        .closest("[data-seq]")
        .ok()
        .flatten()
        .and_then(|e| e.get_attribute("data-seq"))
        .and_then(|s| s.parse().ok())
}
