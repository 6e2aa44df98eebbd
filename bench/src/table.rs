//! Result tables: Markdown for people, CSV and JSON (raw numbers in base units) for tools.

use std::fmt::Write as _;

/// How a numeric cell is shown to people.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fmt {
    /// Nanoseconds, shown as ns / µs / ms.
    Ns,
    /// Per second, shown with k / M / G.
    Rate,
    /// Bytes per second, shown as MB/s / GB/s.
    Bandwidth,
    /// A ratio, shown as `1.23x`.
    Ratio,
    /// A plain number with `digits` decimals.
    Plain(usize),
}

/// One cell.
#[derive(Clone, Debug)]
pub enum Cell {
    /// Text (also in CSV and JSON).
    Text(String),
    /// A number in base units.
    Num(f64, Fmt),
    /// Not measured (with the reason in Markdown; empty/null elsewhere).
    Na(String),
}

impl Cell {
    /// A text cell.
    pub fn text(s: impl Into<String>) -> Cell {
        Cell::Text(s.into())
    }

    fn human(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Na(why) if why.is_empty() => "n/a".into(),
            Cell::Na(_) => "n/a*".into(),
            Cell::Num(v, f) => human(*v, *f),
        }
    }

    fn raw(&self) -> Option<String> {
        match self {
            Cell::Text(s) => Some(s.clone()),
            Cell::Num(v, _) => Some(if v.fract() == 0.0 && v.abs() < 1e15 {
                format!("{v:.0}")
            } else {
                format!("{v:.4}")
            }),
            Cell::Na(_) => None,
        }
    }
}

/// Show a number for people.
pub fn human(v: f64, f: Fmt) -> String {
    match f {
        Fmt::Ns if v >= 1e6 => format!("{:.2} ms", v / 1e6),
        Fmt::Ns if v >= 1e4 => format!("{:.1} µs", v / 1e3),
        Fmt::Ns if v >= 1e3 => format!("{:.2} µs", v / 1e3),
        Fmt::Ns => format!("{v:.0} ns"),
        Fmt::Rate if v >= 1e9 => format!("{:.2} G/s", v / 1e9),
        Fmt::Rate if v >= 1e6 => format!("{:.2} M/s", v / 1e6),
        Fmt::Rate if v >= 1e3 => format!("{:.1} k/s", v / 1e3),
        Fmt::Rate => format!("{v:.0} /s"),
        Fmt::Bandwidth if v >= 1e9 => format!("{:.2} GB/s", v / 1e9),
        Fmt::Bandwidth => format!("{:.1} MB/s", v / 1e6),
        Fmt::Ratio if v >= 100.0 => format!("{v:.0}x"),
        Fmt::Ratio if v >= 10.0 => format!("{v:.1}x"),
        Fmt::Ratio => format!("{v:.2}x"),
        Fmt::Plain(d) => format!("{v:.d$}"),
    }
}

/// A titled table; each column has a header for people and a key for tools.
#[derive(Clone, Debug)]
pub struct Table {
    /// Markdown heading and JSON `title`.
    pub title: String,
    /// A sentence under the heading: what the figure is and how it was measured.
    pub note: String,
    columns: Vec<(String, String)>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    /// A table with `(header, key)` columns.
    pub fn new(
        title: impl Into<String>,
        note: impl Into<String>,
        columns: &[(&str, &str)],
    ) -> Table {
        Table {
            title: title.into(),
            note: note.into(),
            columns: columns
                .iter()
                .map(|(h, k)| (h.to_string(), k.to_string()))
                .collect(),
            rows: Vec::new(),
        }
    }

    /// Append a row (as many cells as columns).
    pub fn row(&mut self, cells: Vec<Cell>) {
        assert_eq!(cells.len(), self.columns.len(), "row width");
        self.rows.push(cells);
    }

    /// Is it empty?
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Markdown, with aligned columns.
    pub fn markdown(&self) -> String {
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(Cell::human).collect())
            .collect();
        let width = |i: usize| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([self.columns[i].0.chars().count(), 3])
                .max()
                .unwrap_or(3)
        };
        let widths: Vec<usize> = (0..self.columns.len()).map(width).collect();
        let line = |items: Vec<String>| {
            let mut s = String::from("|");
            for (i, it) in items.iter().enumerate() {
                let pad = widths[i] - it.chars().count();
                // Text left, numbers right.
                if i == 0 {
                    let _ = write!(s, " {it}{} |", " ".repeat(pad));
                } else {
                    let _ = write!(s, " {}{it} |", " ".repeat(pad));
                }
            }
            s.push('\n');
            s
        };
        let mut out = format!("### {}\n\n", self.title);
        if !self.note.is_empty() {
            let _ = writeln!(out, "{}\n", self.note);
        }
        out += &line(self.columns.iter().map(|c| c.0.clone()).collect());
        let mut sep = String::from("|");
        for (i, w) in widths.iter().enumerate() {
            if i == 0 {
                let _ = write!(sep, ":{}|", "-".repeat(w + 1));
            } else {
                let _ = write!(sep, "{}:|", "-".repeat(w + 1));
            }
        }
        out += &sep;
        out.push('\n');
        for r in cells {
            out += &line(r);
        }
        for r in &self.rows {
            for c in r {
                if let Cell::Na(why) = c {
                    if !why.is_empty() {
                        let _ = write!(out, "\n\\* {}: {why}\n", r[0].human());
                    }
                }
            }
        }
        out
    }

    /// CSV: a `table` column with the title, then the keys.
    pub fn csv(&self, with_header: bool) -> String {
        let esc = |s: &str| {
            if s.contains([',', '"', '\n']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        };
        let mut out = String::new();
        if with_header {
            out += "table,";
            out += &self
                .columns
                .iter()
                .map(|c| esc(&c.1))
                .collect::<Vec<_>>()
                .join(",");
            out.push('\n');
        }
        for r in &self.rows {
            out += &esc(&self.title);
            for c in r {
                out.push(',');
                out += &esc(&c.raw().unwrap_or_default());
            }
            out.push('\n');
        }
        out
    }

    /// A JSON object: title, note, rows as objects keyed by column key.
    pub fn json(&self) -> String {
        let mut out = format!(
            "{{\"title\":{},\"note\":{},\"rows\":[",
            json_str(&self.title),
            json_str(&self.note)
        );
        for (ri, r) in self.rows.iter().enumerate() {
            if ri > 0 {
                out.push(',');
            }
            out.push('{');
            for (i, c) in r.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let v = match c {
                    Cell::Text(s) => json_str(s),
                    Cell::Num(v, _) if v.is_finite() => c.raw().unwrap_or_default(),
                    _ => "null".into(),
                };
                let _ = write!(out, "{}:{v}", json_str(&self.columns[i].1));
            }
            out.push('}');
        }
        out += "]}";
        out
    }
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            '\n' => out += "\\n",
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The whole report as one JSON document.
pub fn json_document(meta: &[(&str, String)], tables: &[Table]) -> String {
    let mut out = String::from("{\"meta\":{");
    for (i, (k, v)) in meta.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{}:{}", json_str(k), json_str(v));
    }
    out += "},\"tables\":[";
    out += &tables.iter().map(Table::json).collect::<Vec<_>>().join(",");
    out += "]}\n";
    out
}

/// The whole report as CSV, one header per table.
pub fn csv_document(tables: &[Table]) -> String {
    tables
        .iter()
        .map(|t| t.csv(true))
        .collect::<Vec<_>>()
        .join("\n")
}
