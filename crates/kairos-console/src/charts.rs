//! Bar charts as plain geometry for the templates to draw as inline SVG: no script, no
//! inline style (the stylesheet colours them by class), a title and description for
//! assistive technology, and the numbers again as a table rows (`rows`) for a
//! `<details>` beneath. Pure: unit-tested without a server.

/// One bar, its geometry in the chart's user units.
pub struct Bar {
    pub x: String,
    pub y: String,
    pub w: String,
    pub h: String,
    /// `label: value`, the bar's tooltip.
    pub tip: String,
}

/// A text placed on the chart.
pub struct Label {
    pub x: String,
    pub y: String,
    pub text: String,
}

/// A horizontal grid line with its value.
pub struct Tick {
    pub y: String,
    pub label: Label,
}

pub struct Chart {
    /// Unique on the page: the ids of the title and description derive from it.
    pub id: String,
    pub title: String,
    pub desc: String,
    pub x_title: String,
    pub y_title: String,
    pub width: u32,
    pub height: u32,
    /// The plot area's left, right, top and bottom edges.
    pub left: u32,
    pub right: u32,
    pub top: u32,
    pub bottom: u32,
    pub bars: Vec<Bar>,
    pub x_labels: Vec<Label>,
    pub ticks: Vec<Tick>,
    /// The data as `(label, value)`, for the table behind the chart.
    pub rows: Vec<(String, String)>,
}

const WIDTH: u32 = 640;
const HEIGHT: u32 = 260;
const LEFT: u32 = 56;
const RIGHT: u32 = 8;
const TOP: u32 = 12;
const BOTTOM: u32 = 72;

/// A number as people read it: at most two decimals, no trailing zeros.
pub fn number(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

fn coord(v: f64) -> String {
    format!("{v:.1}")
}

/// The smallest 1, 2 or 5 times a power of ten that is at least `max` (1 for nothing).
pub fn nice_ceiling(max: f64) -> f64 {
    if max.is_nan() || max <= 0.0 {
        return 1.0;
    }
    let mut step = 10f64.powf(max.log10().floor());
    loop {
        for m in [1.0, 2.0, 5.0, 10.0] {
            if step * m >= max {
                return step * m;
            }
        }
        step *= 10.0;
    }
}

/// A bar chart of `data` (label, value ≥ 0), in order.
pub fn bar_chart(
    id: &str,
    title: &str,
    desc: &str,
    x_title: &str,
    y_title: &str,
    data: &[(String, f64)],
) -> Chart {
    let plot_w = f64::from(WIDTH - LEFT - RIGHT);
    let plot_h = f64::from(HEIGHT - TOP - BOTTOM);
    let bottom = f64::from(HEIGHT - BOTTOM);
    let top_value = nice_ceiling(data.iter().map(|d| d.1).fold(0.0, f64::max));
    let n = data.len().max(1);
    let slot = plot_w / n as f64;
    let gap = (slot * 0.15).min(4.0);
    // Every label when they fit, else every second or third.
    let every = n.div_ceil(16).max(1);
    let mut bars = Vec::with_capacity(data.len());
    let mut x_labels = Vec::new();
    for (i, (label, value)) in data.iter().enumerate() {
        let value = value.max(0.0);
        let h = value / top_value * plot_h;
        let x = f64::from(LEFT) + slot * i as f64;
        bars.push(Bar {
            x: coord(x + gap / 2.0),
            y: coord(bottom - h),
            w: coord((slot - gap).max(1.0)),
            h: coord(h),
            tip: format!("{label}: {}", number(value)),
        });
        if i % every == 0 {
            x_labels.push(Label {
                x: coord(x + slot / 2.0),
                y: coord(bottom + 12.0),
                text: label.clone(),
            });
        }
    }
    let ticks = [0.0, 0.5, 1.0]
        .iter()
        .map(|f| {
            let y = bottom - plot_h * f;
            Tick {
                y: coord(y),
                label: Label {
                    x: coord(f64::from(LEFT) - 6.0),
                    y: coord(y + 4.0),
                    text: number(top_value * f),
                },
            }
        })
        .collect();
    Chart {
        id: id.into(),
        title: title.into(),
        desc: desc.into(),
        x_title: x_title.into(),
        y_title: y_title.into(),
        width: WIDTH,
        height: HEIGHT,
        left: LEFT,
        right: WIDTH - RIGHT,
        top: TOP,
        bottom: HEIGHT - BOTTOM,
        bars,
        x_labels,
        ticks,
        rows: data
            .iter()
            .map(|(label, value)| (label.clone(), number(*value)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(values: &[f64]) -> Vec<(String, f64)> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("d{i}"), *v))
            .collect()
    }

    #[test]
    fn the_scale_ends_on_a_round_number_at_or_above_the_largest_value() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(0.3), 0.5);
        assert_eq!(nice_ceiling(1.0), 1.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(12.0), 20.0);
        assert_eq!(nice_ceiling(480.0), 500.0);
        assert_eq!(nice_ceiling(501.0), 1000.0);
    }

    #[test]
    fn bars_are_scaled_to_the_plot_and_keep_their_order() {
        let c = bar_chart("c", "t", "d", "x", "y", &data(&[0.0, 5.0, 10.0]));
        let plot_h = f64::from(c.bottom - c.top);
        let heights: Vec<f64> = c.bars.iter().map(|b| b.h.parse().unwrap()).collect();
        assert_eq!(heights, vec![0.0, plot_h / 2.0, plot_h]);
        // Each bar stands on the axis.
        for b in &c.bars {
            let y: f64 = b.y.parse().unwrap();
            let h: f64 = b.h.parse().unwrap();
            assert!((y + h - f64::from(c.bottom)).abs() < 0.1);
        }
        let xs: Vec<f64> = c.bars.iter().map(|b| b.x.parse().unwrap()).collect();
        assert!(xs.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(c.bars[1].tip, "d1: 5");
        assert_eq!(c.ticks.last().unwrap().label.text, "10");
        assert_eq!(c.rows[2], ("d2".to_string(), "10".to_string()));
    }

    #[test]
    fn many_bars_get_every_other_label_and_nothing_is_drawn_outside_the_plot() {
        let c = bar_chart("c", "t", "d", "x", "y", &data(&[1.5; 30]));
        assert_eq!(c.bars.len(), 30);
        assert_eq!(c.x_labels.len(), 15);
        let last = c.bars.last().unwrap();
        let end: f64 = last.x.parse::<f64>().unwrap() + last.w.parse::<f64>().unwrap();
        assert!(end <= f64::from(c.right));
        assert_eq!(number(1.5), "1.5");
        assert_eq!(number(2.0), "2");
        assert_eq!(number(0.126), "0.13");
    }

    #[test]
    fn no_data_draws_an_empty_chart() {
        let c = bar_chart("c", "t", "d", "x", "y", &[]);
        assert!(c.bars.is_empty() && c.rows.is_empty());
        assert_eq!(c.ticks.len(), 3);
    }
}
