//! Aligned text tables: one per experiment, with a header saying what was measured.
//!
//! Every cell is text, formatted by the experiment; the table only pads. Numeric columns are
//! right-aligned, names left-aligned. A table also carries notes printed under it: which
//! competitors did not run and why, conservation checks, correctness checks of the run.

use std::fmt::Write as _;

/// How a column's cells are padded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    /// Names, kinds: padded on the right.
    Left,
    /// Numbers: padded on the left, so that digits line up.
    Right,
}

/// A table under construction.
#[derive(Debug, Clone)]
pub struct Table {
    title: String,
    header_lines: Vec<String>,
    columns: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
}

impl Table {
    /// An empty table whose first line is `title`.
    pub fn new(title: impl Into<String>, columns: &[(&str, Align)]) -> Self {
        Table {
            title: title.into(),
            header_lines: Vec::new(),
            columns: columns
                .iter()
                .map(|(name, align)| ((*name).to_string(), *align))
                .collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// A line printed under the title, above the column names (method, units, the ratio's meaning).
    pub fn describe(&mut self, line: impl Into<String>) {
        self.header_lines.push(line.into());
    }

    /// Appends a row. A row with fewer cells than columns is padded with empty cells; cells beyond
    /// the last column are kept and printed unaligned, so nothing a caller measured is lost.
    pub fn row(&mut self, mut cells: Vec<String>) {
        while cells.len() < self.columns.len() {
            cells.push(String::new());
        }
        self.rows.push(cells);
    }

    /// A line printed under the rows (skipped competitors, checks).
    pub fn note(&mut self, line: impl Into<String>) {
        self.notes.push(line.into());
    }

    /// The whole table as text, ending with a newline.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self
            .columns
            .iter()
            .map(|(name, _)| name.chars().count())
            .collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.title);
        for line in &self.header_lines {
            let _ = writeln!(out, "  {line}");
        }
        let names: Vec<String> = self.columns.iter().map(|(n, _)| n.clone()).collect();
        self.render_row(&mut out, &names, &widths);
        for row in &self.rows {
            self.render_row(&mut out, row, &widths);
        }
        for note in &self.notes {
            let _ = writeln!(out, "  {note}");
        }
        out
    }

    fn render_row(&self, out: &mut String, cells: &[String], widths: &[usize]) {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            match (self.columns.get(i), widths.get(i)) {
                (Some((_, Align::Left)), Some(&w)) => {
                    let _ = write!(line, "{cell:<w$}");
                }
                (Some((_, Align::Right)), Some(&w)) => {
                    let _ = write!(line, "{cell:>w$}");
                }
                _ => line.push_str(cell),
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }

    /// Prints the table and an empty line to stdout.
    pub fn print(&self) {
        println!("{}", self.render());
    }
}

/// The speed ratio of `ours` over a competitor, both given as times per operation:
/// `competitor / ours`, so that a value above 1 means ours is faster. `"n/a"` when either time
/// is not a positive finite number.
pub fn speed_ratio(ours_ns: f64, competitor_ns: f64) -> String {
    if ours_ns.is_finite() && competitor_ns.is_finite() && ours_ns > 0.0 && competitor_ns > 0.0 {
        format!("{:.2}", competitor_ns / ours_ns)
    } else {
        "n/a".to_string()
    }
}

/// A number with `decimals` digits after the point.
pub fn num(value: f64, decimals: usize) -> String {
    format!("{value:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_notes_follow() {
        let mut t = Table::new("title", &[("name", Align::Left), ("ns/op", Align::Right)]);
        t.describe("what was measured");
        t.row(vec!["a".into(), "1.5".into()]);
        t.row(vec!["longer-name".into(), "123.25".into()]);
        t.note("rte_hash: built without --features dpdk");
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "title");
        assert_eq!(lines[1], "  what was measured");
        assert_eq!(lines[2], "name          ns/op");
        assert_eq!(lines[3], "a               1.5");
        assert_eq!(lines[4], "longer-name  123.25");
        assert_eq!(lines[5], "  rte_hash: built without --features dpdk");
    }

    #[test]
    fn short_rows_are_padded_and_long_rows_kept() {
        let mut t = Table::new("t", &[("a", Align::Left), ("b", Align::Right)]);
        t.row(vec!["x".into()]);
        t.row(vec!["y".into(), "2".into(), "extra".into()]);
        let text = t.render();
        assert!(text.contains("\nx\n"), "{text}");
        assert!(text.contains("y  2  extra"), "{text}");
    }

    #[test]
    fn ratio_is_competitor_time_over_ours() {
        assert_eq!(speed_ratio(10.0, 25.0), "2.50");
        assert_eq!(speed_ratio(20.0, 10.0), "0.50");
        assert_eq!(speed_ratio(0.0, 10.0), "n/a");
        assert_eq!(speed_ratio(f64::NAN, 10.0), "n/a");
        assert_eq!(num(1.23456, 2), "1.23");
    }
}
