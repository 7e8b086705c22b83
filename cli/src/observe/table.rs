//! Aligned columns as Go's `text/tabwriter` lays them out with Hubble's settings
//! (`tabwriter.NewWriter(w, 2, 0, 3, ' ', 0)`): every cell but a row's last is padded to the
//! widest cell of its column plus 3 spaces; the last cell is written as is.

/// Go's `minwidth`.
const MIN_WIDTH: usize = 2;
/// Go's `padding`.
const PADDING: usize = 3;

/// Rows kept until the widths are known.
#[derive(Debug, Default)]
pub(crate) struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Renders and forgets the rows.
    pub(crate) fn render(&mut self, out: &mut String) {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0usize; columns.saturating_sub(1)];
        for row in &self.rows {
            // The last cell of a row is not part of a column.
            for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        for row in self.rows.drain(..) {
            let last = row.len().saturating_sub(1);
            for (i, cell) in row.iter().enumerate() {
                out.push_str(cell);
                if i < last {
                    let width = (widths[i] + PADDING).max(MIN_WIDTH);
                    let pad = width - cell.chars().count();
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| (*c).to_owned()).collect()
    }

    #[test]
    fn pads_all_but_the_last_cell_like_go_tabwriter() {
        let mut t = Table::default();
        t.push(row(&["A", "BB", "tail"]));
        t.push(row(&["long cell", "x", "longer tail"]));
        t.push(row(&["é", "", "-"]));
        let mut out = String::new();
        t.render(&mut out);
        assert_eq!(
            out,
            "A           BB   tail\n\
             long cell   x    longer tail\n\
             é                -\n"
        );
        assert!(t.is_empty());
    }
}
