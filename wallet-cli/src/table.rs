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
pub fn render<S: AsRef<str>>(header: &[(&str, Align)], rows: &[Vec<S>]) -> String {
    let titles: Vec<&str> = header.iter().map(|(title, _)| *title).collect();
    let aligns: Vec<Align> = header.iter().map(|(_, align)| *align).collect();
    lay_out(&aligns, Some(&titles), rows)
}

/// Renders rows without a header, e.g. labels and values.
pub fn render_rows<S: AsRef<str>>(aligns: &[Align], rows: &[Vec<S>]) -> String {
    lay_out(aligns, None, rows)
}

fn lay_out<S: AsRef<str>>(aligns: &[Align], header: Option<&[&str]>, rows: &[Vec<S>]) -> String {
    let mut widths: Vec<usize> = vec![0; aligns.len()];
    let mut measure = |cells: &mut dyn Iterator<Item = &str>| {
        for (width, cell) in widths.iter_mut().zip(cells) {
            *width = (*width).max(cell.chars().count());
        }
    };
    if let Some(header) = header {
        measure(&mut header.iter().copied());
    }
    for row in rows {
        measure(&mut row.iter().map(AsRef::as_ref));
    }
    let mut out = String::new();
    let mut line = String::new();
    let mut write = |cells: &mut dyn Iterator<Item = &str>| {
        line.clear();
        for (column, (width, align)) in widths.iter().zip(aligns).enumerate() {
            let cell = cells.next().unwrap_or("");
            if column > 0 {
                line.push_str("  ");
            }
            let padding = width.saturating_sub(cell.chars().count());
            if *align == Align::Right {
                line.extend(std::iter::repeat_n(' ', padding));
            }
            line.push_str(cell);
            if *align == Align::Left {
                line.extend(std::iter::repeat_n(' ', padding));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    if let Some(header) = header {
        write(&mut header.iter().copied());
    }
    for row in rows {
        write(&mut row.iter().map(AsRef::as_ref));
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
            &[vec!["alice", "2.500"], vec!["bo", "12.000"]],
        );
        assert_eq!(table, "NAME   ENERGY (kWh)\nalice         2.500\nbo           12.000\n");
    }

    #[test]
    fn rows_without_a_header() {
        let rows =
            [vec!["Balance".to_string(), "100.00 EUR".into()], vec!["Reserved".into(), "0.275 EUR".into()]];
        assert_eq!(
            render_rows(&[Align::Left, Align::Right], &rows),
            "Balance   100.00 EUR\nReserved   0.275 EUR\n"
        );
        // A short row is padded, and an empty table is empty.
        assert_eq!(render_rows(&[Align::Left, Align::Left], &[vec!["x"]]), "x\n");
        assert_eq!(render_rows::<&str>(&[Align::Left], &[]), "");
    }
}
