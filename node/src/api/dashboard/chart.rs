//! The dashboard's charts as inline SVG, drawn on the server: series over
//! intervals (lines or bars sharing one axis) and an interval's supply and
//! demand curves. Integer inputs; the only floats are the drawing's
//! coordinates, never a value anyone settles with. Each chart is an
//! `img` with a label, and the page beside it has the same numbers as a
//! table.
#![allow(clippy::float_arithmetic, clippy::cast_precision_loss)]

use std::fmt::Write;

use gridshare_api::{BookEntry, Side};

use super::html::Text;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 12.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 32.0;

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mark {
    Line,
    Bars,
}

/// One series of a chart over intervals: a value (or none) per interval.
#[derive(Debug)]
pub(super) struct Series {
    pub(super) name: &'static str,
    pub(super) mark: Mark,
    /// The CSS class that colours it (`a` or `b`).
    pub(super) class: &'static str,
    pub(super) values: Vec<Option<i128>>,
}

/// Scales values in `[low, high]` to the plot's height.
#[derive(Clone, Copy, Debug)]
struct Axis {
    low: i128,
    high: i128,
}

impl Axis {
    /// An axis that holds 0 and every value.
    fn of(values: impl Iterator<Item = i128>) -> Axis {
        let (mut low, mut high) = (0, 0);
        for value in values {
            low = low.min(value);
            high = high.max(value);
        }
        if low == high {
            high = low + 1;
        }
        Axis { low, high }
    }

    fn y(self, value: i128) -> f64 {
        let fraction = position(value - self.low, self.high - self.low);
        TOP + (1.0 - fraction) * (HEIGHT - TOP - BOTTOM)
    }
}

/// `part / whole` in [0, 1] as a coordinate.
fn position(part: i128, whole: i128) -> f64 {
    if whole <= 0 { 0.0 } else { (part as f64 / whole as f64).clamp(0.0, 1.0) }
}

/// The x of slot `index` of `slots`, at its centre.
fn slot_x(index: usize, slots: usize) -> f64 {
    let width = (WIDTH - LEFT - RIGHT) / slots.max(1) as f64;
    LEFT + width * (index as f64 + 0.5)
}

fn open(label: &str, html: &mut String) {
    let _ = write!(
        html,
        "<figure class=\"chart\"><svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\" \
         preserveAspectRatio=\"xMidYMid meet\"><title>{}</title>",
        Text(label),
        Text(label)
    );
}

/// The y axis's ticks: the low end, zero and the high end.
fn ticks(axis: Axis) -> Vec<i128> {
    let mut ticks = vec![axis.low, 0, axis.high];
    ticks.dedup();
    ticks
}

/// The y axis's grid lines, drawn under the marks.
fn grid_lines(axis: Axis, html: &mut String) {
    for tick in ticks(axis) {
        let y = axis.y(tick);
        let _ = write!(
            html,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>",
            WIDTH - RIGHT
        );
    }
}

/// The y axis's labels, just above their lines at the left, drawn over the
/// marks (inside the plot, so no label is cut off however long).
fn tick_labels(axis: Axis, format: &dyn Fn(i128) -> String, html: &mut String) {
    for tick in ticks(axis) {
        let _ = write!(
            html,
            "<text class=\"tick\" x=\"{}\" y=\"{:.1}\">{}</text>",
            LEFT + 2.0,
            axis.y(tick) - 5.0,
            Text(&format(tick))
        );
    }
}

/// A chart of `series` over `intervals` (one slot each), values labelled
/// with `format`; `label` says what it shows.
pub(super) fn over_intervals(
    label: &str,
    intervals: &[u64],
    series: &[Series],
    format: &dyn Fn(i128) -> String,
) -> String {
    let mut html = String::new();
    open(label, &mut html);
    let axis = Axis::of(series.iter().flat_map(|series| series.values.iter().flatten().copied()));
    grid_lines(axis, &mut html);
    let slots = intervals.len();
    let bar_width = ((WIDTH - LEFT - RIGHT) / slots.max(1) as f64 * 0.7).max(1.0);
    for series in series {
        match series.mark {
            Mark::Bars => {
                let zero = axis.y(0);
                for (index, value) in series.values.iter().enumerate() {
                    let Some(value) = value else { continue };
                    let (x, y) = (slot_x(index, slots), axis.y(*value));
                    let _ = write!(
                        html,
                        "<rect class=\"bar {}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{bar_width:.1}\" \
                         height=\"{:.1}\"><title>interval {}: {}</title></rect>",
                        series.class,
                        x - bar_width / 2.0,
                        y.min(zero),
                        (zero - y).abs(),
                        intervals.get(index).copied().unwrap_or_default(),
                        Text(&format(*value))
                    );
                }
            }
            Mark::Line => {
                let points: Vec<String> = series
                    .values
                    .iter()
                    .enumerate()
                    .filter_map(|(index, value)| {
                        value.map(|value| format!("{:.1},{:.1}", slot_x(index, slots), axis.y(value)))
                    })
                    .collect();
                let _ = write!(
                    html,
                    "<polyline class=\"line {}\" points=\"{}\"/>",
                    series.class,
                    points.join(" ")
                );
                for (index, value) in series.values.iter().enumerate() {
                    let Some(value) = value else { continue };
                    let _ = write!(
                        html,
                        "<circle class=\"dot {}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\"><title>interval {}: {}</title></circle>",
                        series.class,
                        slot_x(index, slots),
                        axis.y(*value),
                        intervals.get(index).copied().unwrap_or_default(),
                        Text(&format(*value))
                    );
                }
            }
        }
    }
    tick_labels(axis, format, &mut html);
    // The first and last interval under the plot.
    if let (Some(first), Some(last)) = (intervals.first(), intervals.last()) {
        let y = HEIGHT - 8.0;
        let _ = write!(
            html,
            "<text class=\"tick\" x=\"{LEFT}\" y=\"{y}\">interval {first}</text>\
             <text class=\"tick\" x=\"{}\" y=\"{y}\" text-anchor=\"end\">interval {last}</text>",
            WIDTH - RIGHT
        );
    }
    html.push_str("</svg><figcaption>");
    for series in series {
        let _ = write!(html, "<span class=\"legend {}\">{}</span> ", series.class, Text(series.name));
    }
    html.push_str("</figcaption></figure>");
    html
}

/// The supply and demand curves of a book: offers to sell by ascending
/// price, bids by descending price, energy accumulated along x (ties in
/// the book's order); a dashed line at the clearing price.
pub(super) fn curves(book: &[BookEntry], clearing_price_micro_per_kwh: Option<u64>) -> String {
    let mut sells: Vec<&BookEntry> = book.iter().filter(|entry| entry.side == Side::Sell).collect();
    let mut buys: Vec<&BookEntry> = book.iter().filter(|entry| entry.side == Side::Buy).collect();
    sells.sort_by_key(|entry| entry.price_micro_per_kwh);
    buys.sort_by_key(|entry| std::cmp::Reverse(entry.price_micro_per_kwh));
    let total = |side: &[&BookEntry]| side.iter().map(|entry| u128::from(entry.energy_wh)).sum::<u128>();
    let energy_max = i128::try_from(total(&sells).max(total(&buys))).unwrap_or(i128::MAX).max(1);
    let prices = book.iter().map(|entry| i128::from(entry.price_micro_per_kwh));
    let axis = Axis::of(prices.chain(clearing_price_micro_per_kwh.map(i128::from)));
    let mut html = String::new();
    open("Supply and demand curves: price per kWh against energy", &mut html);
    grid_lines(axis, &mut html);
    let x = |energy: i128| LEFT + position(energy, energy_max) * (WIDTH - LEFT - RIGHT);
    for (side, class) in [(&sells, "a"), (&buys, "b")] {
        let mut path = String::new();
        let mut energy = 0_i128;
        for entry in side.iter() {
            let y = axis.y(i128::from(entry.price_micro_per_kwh));
            let _ = write!(path, "{}{:.1},{y:.1} ", if path.is_empty() { "M" } else { "L" }, x(energy));
            energy += i128::from(entry.energy_wh);
            let _ = write!(path, "L{:.1},{y:.1} ", x(energy));
        }
        if !path.is_empty() {
            let _ = write!(html, "<path class=\"line {class}\" d=\"{}\"/>", path.trim_end());
        }
    }
    if let Some(price) = clearing_price_micro_per_kwh {
        let y = axis.y(i128::from(price));
        let _ = write!(
            html,
            "<line class=\"clearing\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>",
            WIDTH - RIGHT
        );
    }
    tick_labels(axis, &price_label, &mut html);
    let y = HEIGHT - 8.0;
    let _ = write!(
        html,
        "<text class=\"tick\" x=\"{LEFT}\" y=\"{y}\">0 kWh</text>\
         <text class=\"tick\" x=\"{}\" y=\"{y}\" text-anchor=\"end\">{} kWh</text></svg>\
         <figcaption><span class=\"legend a\">Supply (offers to sell)</span> \
         <span class=\"legend b\">Demand (bids to buy)</span> \
         <span class=\"legend clearing\">Clearing price</span></figcaption></figure>",
        WIDTH - RIGHT,
        gridshare_api::decimal::format_kwh(u64::try_from(energy_max).unwrap_or(u64::MAX))
    );
    html
}

/// A price axis label: currency per kWh.
pub(super) fn price_label(micro: i128) -> String {
    let magnitude =
        gridshare_api::decimal::format_price(u64::try_from(micro.unsigned_abs()).unwrap_or(u64::MAX));
    if micro < 0 { format!("-{magnitude}") } else { magnitude }
}

#[cfg(test)]
mod tests {
    use gridshare_ledger::Hash;
    use gridshare_ledger::ids::PublicKey;

    use super::*;

    fn entry(side: Side, energy_wh: u64, price_micro_per_kwh: u64) -> BookEntry {
        BookEntry { id: Hash([0; 32]), account: PublicKey([0; 32]), side, energy_wh, price_micro_per_kwh }
    }

    #[test]
    fn a_chart_has_a_mark_per_value_and_labels_its_axis() {
        let series = [Series {
            name: "Volume",
            mark: Mark::Bars,
            class: "a",
            values: vec![Some(1_000), None, Some(3_000)],
        }];
        let svg = over_intervals("Volume per interval", &[7, 8, 9], &series, &|wh| format!("{wh} Wh"));
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("aria-label=\"Volume per interval\""));
        assert!(svg.contains(">3000 Wh</text>"), "{svg}");
        assert!(svg.contains("interval 9: 3000 Wh"));
        assert!(svg.contains(">interval 7</text>"));
    }

    #[test]
    fn curves_step_through_the_book_and_mark_the_price() {
        let book = [
            entry(Side::Sell, 1_000, 100_000),
            entry(Side::Sell, 500, 50_000),
            entry(Side::Buy, 800, 200_000),
        ];
        let svg = curves(&book, Some(120_000));
        assert_eq!(svg.matches("<path").count(), 2);
        assert!(svg.contains("class=\"clearing\""));
        assert!(svg.contains(">1.500 kWh</text>"), "the longer side sets the x axis");
        assert!(svg.contains(">0.200000</text>"), "the highest price labels the axis");
        let empty = curves(&[], None);
        assert_eq!(empty.matches("<path").count(), 0);
    }
}
