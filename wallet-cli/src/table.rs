//! Aligned plain-text tables for people: text columns to the left, numbers to
//! the right.

/// How a column is aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// Renders a header and rows with two spaces between columns and no trailing
/// spaces. Rows shorter than the header are padded with empty cells.
pub fn render(header: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|(title, _)| title.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let titles: Vec<String> = header.iter().map(|(title, _)| (*title).to_string()).collect();
    for row in std::iter::once(&titles).chain(rows) {
        let mut line = String::new();
        for (column, (width, (_, align))) in widths.iter().zip(header).enumerate() {
            let cell = row.get(column).map_or("", String::as_str);
            if column > 0 {
                line.push_str("  ");
            }
            match align {
                Align::Left => line.push_str(&format!("{cell:<width$}")),
                Align::Right => line.push_str(&format!("{cell:>width$}")),
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let table = render(
            &[("NAME", Align::Left), ("ENERGY (kWh)", Align::Right)],
            &[vec!["alice".into(), "2.500".into()], vec!["bo".into(), "12.000".into()]],
        );
        assert_eq!(table, "NAME   ENERGY (kWh)\nalice         2.500\nbo           12.000\n");
    }
}
