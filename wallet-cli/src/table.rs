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
    let titles: Vec<String> = header.iter().map(|(title, _)| (*title).to_string()).collect();
    let aligns: Vec<Align> = header.iter().map(|(_, align)| *align).collect();
    lay_out(&aligns, std::iter::once(&titles).chain(rows))
}

/// Renders rows without a header, e.g. labels and values.
pub fn render_rows(aligns: &[Align], rows: &[Vec<String>]) -> String {
    lay_out(aligns, rows.iter())
}

fn lay_out<'a>(aligns: &[Align], rows: impl Iterator<Item = &'a Vec<String>> + Clone) -> String {
    let mut widths: Vec<usize> = vec![0; aligns.len()];
    for row in rows.clone() {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (column, (width, align)) in widths.iter().zip(aligns).enumerate() {
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

    #[test]
    fn rows_without_a_header() {
        let rows = [vec!["Balance".into(), "100.00 EUR".into()], vec!["Reserved".into(), "0.275 EUR".into()]];
        assert_eq!(
            render_rows(&[Align::Left, Align::Right], &rows),
            "Balance   100.00 EUR\nReserved   0.275 EUR\n"
        );
        // A short row is padded, and an empty table is empty.
        assert_eq!(render_rows(&[Align::Left, Align::Left], &[vec!["x".into()]]), "x\n");
        assert_eq!(render_rows(&[Align::Left], &[]), "");
    }
}
